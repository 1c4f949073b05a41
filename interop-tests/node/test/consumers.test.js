// Consumers: cancel, server-sent cancel when the queue is deleted, and
// basic.qos prefetch per consumer and per channel (global).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, messageCount, settle, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

async function filledQueues(env, nQueues, nMsgs) {
  const ch = await env.confirmChannel();
  const queues = [];
  for (let i = 0; i < nQueues; i++) {
    const q = await env.queue(ch);
    for (let j = 0; j < nMsgs; j++) ch.sendToQueue(q, Buffer.from(`m${j}`));
    queues.push(q);
  }
  await ch.waitForConfirms();
  return { probe: ch, queues };
}

test('cancel stops deliveries', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub);
  const ch = await env.channel();
  const got = [];
  const { consumerTag } = await ch.consume(q, (m) => got.push([m.fields.consumerTag, m.content.toString()]), { noAck: true });
  pub.sendToQueue(q, Buffer.from('before'));
  await waitFor(() => got.length === 1, 'delivery before cancel');
  assert.deepEqual(got, [[consumerTag, 'before']]);

  const ok = await ch.cancel(consumerTag);
  assert.equal(ok.consumerTag, consumerTag);
  pub.sendToQueue(q, Buffer.from('after'));
  await pub.waitForConfirms();
  await settle();
  assert.equal(got.length, 1);
  assert.deepEqual(await pub.checkQueue(q), { queue: q, messageCount: 1, consumerCount: 0 });
}));

test('server cancels the consumer when its queue is deleted', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch);
  const calls = [];
  await ch.consume(q, (msg) => calls.push(msg), { noAck: true });
  await (await env.channel()).deleteQueue(q);
  await waitFor(() => calls.length === 1, 'consumer callback with null (basic.cancel)');
  assert.equal(calls[0], null);
  assert.equal(ch.closed, false, 'channel stays open');
  await env.queue(ch); // and usable
}));

test('prefetch applies per consumer (global=false)', opts, withEnv(async (env) => {
  const { probe, queues: [q1, q2] } = await filledQueues(env, 2, 5);
  const ch = await env.channel();
  await ch.prefetch(2, false);
  const got = { [q1]: [], [q2]: [] };
  for (const q of [q1, q2]) await ch.consume(q, (m) => got[q].push(m), { noAck: false });
  await waitFor(() => got[q1].length === 2 && got[q2].length === 2, '2 per consumer');
  await settle();
  assert.equal(got[q1].length, 2);
  assert.equal(got[q2].length, 2);
  assert.equal(await messageCount(probe, q1), 3);

  ch.ack(got[q1][0]);
  await waitFor(() => got[q1].length === 3, 'next delivery after ack');
  await settle();
  assert.equal(got[q2].length, 2);
}));

test('global prefetch is shared by the channel', opts, withEnv(async (env) => {
  const { probe, queues: [q1, q2] } = await filledQueues(env, 2, 5);
  const ch = await env.channel();
  await ch.prefetch(3, true);
  const got = [];
  for (const q of [q1, q2]) await ch.consume(q, (m) => got.push(m), { noAck: false });
  await waitFor(() => got.length === 3, '3 deliveries on the channel');
  await settle();
  assert.equal(got.length, 3);
  assert.equal((await messageCount(probe, q1)) + (await messageCount(probe, q2)), 7);
  ch.ackAll();
  await waitFor(() => got.length === 6, '3 more after acking');
  await settle();
  assert.equal(got.length, 6);
}));
