// Queues: declare-ok counts, passive declare, redeclare preconditions,
// exclusivity, purge and delete (if-unused / if-empty).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, expectChannelError, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

async function fill(ch, q, n) {
  for (let i = 0; i < n; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  await ch.waitForConfirms();
}

test('declare-ok reports message and consumer counts', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  let ok = await ch.assertQueue(q);
  assert.deepEqual(ok, { queue: q, messageCount: 0, consumerCount: 0 });
  await fill(ch, q, 3);
  ok = await ch.checkQueue(q);
  assert.deepEqual(ok, { queue: q, messageCount: 3, consumerCount: 0 });

  const consumer = await env.channel();
  await consumer.prefetch(1);
  const got = [];
  await consumer.consume(q, (m) => got.push(m), { noAck: false });
  await waitFor(() => got.length === 1, 'one delivery');
  ok = await ch.checkQueue(q);
  assert.deepEqual(ok, { queue: q, messageCount: 2, consumerCount: 1 }); // ready messages only
}));

test('passive declare of a missing queue closes the channel with 404', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const ch = await env.channel(conn);
  const name = env.name('missing');
  const text = await expectChannelError(404, () => ch.checkQueue(name));
  assert.match(text, /^NOT_FOUND/);
  assert.ok(text.includes(name));
  await waitFor(() => ch.closed, 'channel closed');
  const again = await env.channel(conn); // connection survives
  await env.queue(again);
}));

test('redeclare with a different durable flag fails with 406', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch, { durable: true });
  const text = await expectChannelError(406, () => ch.assertQueue(q, { durable: false }));
  assert.ok(text.startsWith('PRECONDITION_FAILED - inequivalent arg'), text);
  assert.ok(text.includes('durable'), text);
}));

test('redeclare with different arguments fails with 406', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch, { arguments: { 'x-message-ttl': 60000 } });
  const text = await expectChannelError(406, () => ch.assertQueue(q, { arguments: { 'x-message-ttl': 5000 } }));
  assert.ok(text.startsWith('PRECONDITION_FAILED - inequivalent arg'), text);
  assert.ok(text.includes('x-message-ttl'), text);
}));

test('exclusive queue is locked (405) for another connection', opts, withEnv(async (env) => {
  const owner = await env.channel();
  const q = await env.queue(owner, { exclusive: true });
  const otherConn = await env.connect();
  let text = await expectChannelError(405, async () => (await env.channel(otherConn)).assertQueue(q));
  assert.match(text, /^RESOURCE_LOCKED/);
  text = await expectChannelError(405, async () => (await env.channel(otherConn)).consume(q, () => {}));
  assert.match(text, /^RESOURCE_LOCKED/);
  text = await expectChannelError(405, async () => (await env.channel(otherConn)).get(q));
  assert.match(text, /^RESOURCE_LOCKED/);
}));

test('purge and delete report message counts', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  await fill(ch, q, 5);
  assert.deepEqual(await ch.purgeQueue(q), { messageCount: 5 });
  await fill(ch, q, 2);
  assert.deepEqual(await ch.deleteQueue(q), { messageCount: 2 });
  const probe = await env.channel();
  await expectChannelError(404, () => probe.checkQueue(q));
}));

test('delete if-empty and if-unused', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  await fill(ch, q, 1);
  let text = await expectChannelError(406, async () => (await env.channel()).deleteQueue(q, { ifEmpty: true }));
  assert.match(text, /^PRECONDITION_FAILED/);

  const consumer = await env.channel();
  const { consumerTag } = await consumer.consume(q, () => {}, { noAck: false });
  text = await expectChannelError(406, async () => (await env.channel()).deleteQueue(q, { ifUnused: true }));
  assert.match(text, /^PRECONDITION_FAILED/);

  await consumer.cancel(consumerTag);
  await consumer.close(); // requeues the unacked message
  const ch2 = await env.channel();
  await ch2.purgeQueue(q);
  assert.deepEqual(await ch2.deleteQueue(q, { ifUnused: true, ifEmpty: true }), { messageCount: 0 });
}));
