// Poison-message handling with a quorum queue's x-delivery-limit: redeliveries carry
// an x-delivery-count header, and past the limit the message is dead-lettered
// (reason delivery_limit) or, without a DLX, dropped.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, getOne, messageCount, settle, waitFor, withEnv,
} = require('../lib/helpers');
const { pending } = require('../lib/broker');
const { collect, deaths, firstDeath, headers } = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature

// Quorum queues must be durable (and neither exclusive nor auto-delete).
function quorum(args) {
  return { durable: true, arguments: { 'x-queue-type': 'quorum', ...args } };
}

test('a poison message is redelivered up to x-delivery-limit times, then dead-lettered', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const poison = await env.queue(ch);
  const q = await env.queue(ch, quorum({
    'x-delivery-limit': 2, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': poison,
  }));
  ch.sendToQueue(q, Buffer.from('crash-me'), { headers: { 'order-id': 7 }, messageId: 'm-7' });
  await ch.waitForConfirms();

  // a worker that fails every time and asks for a redelivery
  const worker = await env.channel();
  const seen = await collect(worker, q, { noAck: false }, (msg) => worker.nack(msg, false, true));
  const dead = await collect(await env.channel(), poison);
  await waitFor(() => dead.msgs.length === 1, 'the dead letter');
  await settle();

  // delivered limit + 1 times: the first delivery has no x-delivery-count
  assert.deepEqual(seen.msgs.map((m) => [m.fields.redelivered, headers(m)['x-delivery-count']]),
    [[false, undefined], [true, 1], [true, 2]]);
  for (const m of seen.msgs) assert.equal(headers(m)['order-id'], 7);

  const [msg] = dead.msgs;
  assert.equal(msg.content.toString(), 'crash-me');
  assert.equal(msg.properties.messageId, 'm-7');
  assert.equal(headers(msg)['order-id'], 7);
  assert.equal(headers(msg)['x-delivery-count'], undefined, 'not carried to the dead letter');
  assert.deepEqual(deaths(msg), [{ count: 1, reason: 'delivery_limit', queue: q, exchange: '', 'routing-keys': [q] }]);
  assert.deepEqual(firstDeath(msg), { exchange: '', queue: q, reason: 'delivery_limit' });
  assert.equal(await messageCount(ch, q), 0);
}));

test('workers that crash holding the message use up its deliveries too; without a DLX it is dropped', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, quorum({ 'x-delivery-limit': 1 }));
  ch.sendToQueue(q, Buffer.from('crash-me'));
  await ch.waitForConfirms();

  const seen = [];
  for (let i = 0; i < 2; i++) {
    const worker = await env.channel();
    const got = await collect(worker, q, { noAck: false });
    await waitFor(() => got.msgs.length === 1, `delivery ${i + 1}`);
    seen.push(got.msgs[0]);
    await worker.close(); // crash: the unacked message goes back
  }
  assert.deepEqual(seen.map((m) => [m.fields.redelivered, headers(m)['x-delivery-count']]),
    [[false, undefined], [true, 1]]);
  await waitFor(async () => (await messageCount(ch, q)) === 0, 'the message to be dropped');
  assert.equal(await ch.get(q, { noAck: true }), false);
}));

test('basic.get on a quorum queue: x-delivery-count is 0 on the first delivery', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, quorum({ 'x-delivery-limit': 1 }));
  ch.sendToQueue(q, Buffer.from('polled'));
  await ch.waitForConfirms();
  const counts = [];
  for (let i = 0; i < 2; i++) {
    const msg = await getOne(ch, q, { noAck: false });
    counts.push([msg.fields.redelivered, headers(msg)['x-delivery-count']]);
    ch.reject(msg, true);
  }
  assert.deepEqual(counts, [[false, 0], [true, 1]]);
  await waitFor(async () => (await messageCount(ch, q)) === 0, 'the message to be dropped');
  assert.equal(await ch.get(q, { noAck: true }), false);
}));
