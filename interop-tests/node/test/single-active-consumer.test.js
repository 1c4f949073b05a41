// Single active consumer (x-single-active-consumer): several app instances consume, one
// at a time gets the messages, and the next one in line takes over on cancel or crash.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, expectChannelError, getOne, settle, waitFor, withEnv,
} = require('../lib/helpers');
const { pending } = require('../lib/broker');
const { bodies, collect } = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature
const SAC = { arguments: { 'x-single-active-consumer': true } };

// One app instance: its own connection, manual acks, prefetch 10, acks everything.
async function instance(env, queue, { prefetch = 10, ack = true } = {}) {
  const conn = await env.connect();
  const ch = await env.channel(conn);
  await ch.prefetch(prefetch);
  const got = await collect(ch, queue, { noAck: false }, (msg) => ack && ch.ack(msg));
  return { conn, ch, got };
}

async function publish(ch, queue, list) {
  for (const body of list) ch.sendToQueue(queue, Buffer.from(body));
  await ch.waitForConfirms();
}

test('only the first consumer receives messages; the others wait', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub, SAC);
  const a = await instance(env, q);
  const b = await instance(env, q);
  assert.deepEqual(await pub.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 2 });
  await publish(pub, q, ['m1', 'm2', 'm3', 'm4', 'm5']);
  await waitFor(() => a.got.msgs.length === 5, 'all five at the active consumer');
  await settle();
  assert.deepEqual(bodies(a.got.msgs), ['m1', 'm2', 'm3', 'm4', 'm5']);
  assert.deepEqual(b.got.msgs, []);
}));

test('failover on cancel: the next consumer in line takes over', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub, SAC);
  const a = await instance(env, q);
  const b = await instance(env, q);
  const c = await instance(env, q);
  await publish(pub, q, ['m1', 'm2']);
  await waitFor(() => a.got.msgs.length === 2, 'the first two at a');

  // a shuts down gracefully: everything acked, then basic.cancel
  await a.ch.cancel(a.got.tag);
  await publish(pub, q, ['m3', 'm4']);
  await waitFor(() => b.got.msgs.length === 2, 'the next two at b');

  // b goes away by closing its channel; c is next
  await b.ch.close();
  await publish(pub, q, ['m5']);
  await waitFor(() => c.got.msgs.length === 1, 'the last one at c');
  await settle();
  assert.deepEqual(bodies(a.got.msgs), ['m1', 'm2']);
  assert.deepEqual(bodies(b.got.msgs), ['m3', 'm4']);
  assert.deepEqual(bodies(c.got.msgs), ['m5']);
}));

test('failover on a crash: the next consumer gets the unacked messages first, in order', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub, SAC);
  const a = await instance(env, q, { prefetch: 1, ack: false }); // holds m1, never acks
  const b = await instance(env, q);
  await publish(pub, q, ['m1', 'm2', 'm3']);
  await waitFor(() => a.got.msgs.length === 1, 'a holding m1');
  await settle();
  assert.deepEqual(b.got.msgs, [], 'b waits even though a is busy');

  await a.conn.close(); // the instance dies
  await waitFor(() => b.got.msgs.length === 3, 'b to take over');
  assert.deepEqual(b.got.msgs.map((m) => [m.content.toString(), m.fields.redelivered]),
    [['m1', true], ['m2', false], ['m3', false]]);
}));

test('basic.get still works on a single-active-consumer queue; an exclusive consume is refused', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, SAC);
  await publish(ch, q, ['polled']);
  assert.equal((await getOne(ch, q)).content.toString(), 'polled');
  const conn = await env.connect();
  const text = await expectChannelError(403, async () => (await env.channel(conn)).consume(q, () => {}, { exclusive: true }));
  assert.equal(text, `ACCESS_REFUSED - queue '${q}' in vhost '/' in exclusive use`);
}));
