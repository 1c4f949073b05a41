// Priority queues (x-max-priority): higher priority first, FIFO within a priority,
// priorities above the maximum count as the maximum, no priority counts as 0.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, drain, getOne, settle, waitFor, withEnv,
} = require('../lib/helpers');

const { bodies, collect } = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS };

async function publishWithPriorities(ch, queue, list) {
  for (const [body, priority] of list) {
    ch.sendToQueue(queue, Buffer.from(body), priority === undefined ? {} : { priority });
  }
  await ch.waitForConfirms();
}

test('a backlog is delivered highest priority first, FIFO within a priority', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, { maxPriority: 5 });
  await publishWithPriorities(ch, q, [
    ['a1', 1], ['none', undefined], ['c5', 5], ['d9', 9], ['e3', 3], ['f5', 5], ['g0', 0], ['h255', 255], ['i1', 1],
  ]);
  const got = [];
  for (;;) {
    const msg = await ch.get(q, { noAck: true });
    if (msg === false) break;
    got.push([msg.content.toString(), msg.properties.priority]);
  }
  // 9 and 255 count as 5 and keep their place among the 5s; no priority counts as 0.
  // The priority property is delivered as published.
  assert.deepEqual(got.map(([body]) => body), ['c5', 'd9', 'f5', 'h255', 'e3', 'a1', 'i1', 'none', 'g0']);
  assert.deepEqual(got.filter(([, p]) => p > 5), [['d9', 9], ['h255', 255]]);
}));

test('a busy worker gets the urgent job next', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const jobs = await env.queue(pub, { maxPriority: 10 });
  const worker = await env.channel();
  await worker.prefetch(1);
  const got = await collect(worker, jobs, { noAck: false });
  await publishWithPriorities(pub, jobs, [['first', 0]]);
  await waitFor(() => got.msgs.length === 1, 'the first job');
  // while the worker is busy, a backlog builds up
  await publishWithPriorities(pub, jobs, [['report-1', 1], ['report-2', 1], ['urgent', 9], ['report-3', 1]]);
  for (let n = 2; n <= 5; n++) {
    worker.ack(got.msgs[n - 2]);
    await waitFor(() => got.msgs.length === n, `job ${n}`);
  }
  worker.ack(got.msgs[4]);
  assert.deepEqual(bodies(got.msgs), ['first', 'urgent', 'report-1', 'report-2', 'report-3']);
}));

test('requeued messages keep their priority', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, { maxPriority: 10 });
  await publishWithPriorities(ch, q, [['low', 1], ['high', 8]]);
  const high = await getOne(ch, q, { noAck: false });
  const low = await getOne(ch, q, { noAck: false });
  assert.deepEqual(bodies([high, low]), ['high', 'low']);
  ch.nack(low, false, true);
  ch.nack(high, false, true);
  await settle();
  const again = [];
  for (let i = 0; i < 2; i++) {
    const msg = await getOne(ch, q);
    again.push([msg.content.toString(), msg.fields.redelivered]);
  }
  assert.deepEqual(again, [['high', true], ['low', true]]);
}));

test('without x-max-priority the priority property does not reorder', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  await publishWithPriorities(ch, q, [['a', 1], ['b', 9], ['c', undefined], ['d', 5]]);
  assert.deepEqual(await drain(ch, q), ['a', 'b', 'c', 'd']);
}));
