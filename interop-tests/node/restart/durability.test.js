// Durability across a broker restart (BROKER_RESTART_CMD): durable queues,
// exchanges and bindings come back with their arguments, persistent messages
// come back unchanged and in order, unacked deliveries come back flagged
// redelivered; transient entities and transient messages are gone.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { drain, expectChannelError, getOne, publishConfirmed, waitFor, withEnv } = require('../lib/helpers');
const { RESTART_TEST_TIMEOUT_MS, restartBroker, skipUnlessRestartable } = require('../lib/restart');

const opts = { timeout: RESTART_TEST_TIMEOUT_MS, skip: skipUnlessRestartable };

test('durable queue, exchange and binding survive a restart; transient ones are gone', opts, withEnv(async (env, t) => {
  const ch = await env.channel();
  const args = { 'x-custom-arg': 'v', 'x-dead-letter-exchange': 'interop.js.dlx' };
  const dq = await env.queue(ch, { durable: true, arguments: args });
  const dx = await env.exchange(ch, 'topic', { durable: true });
  await ch.bindQueue(dq, dx, 'orders.*');
  const tq = await env.queue(ch, { durable: false });
  const tx = await env.exchange(ch, 'fanout', { durable: false });

  await restartBroker(t);

  const conn = await env.connect();
  const after = await env.confirmChannel(conn);
  await after.checkQueue(dq);
  await after.assertQueue(dq, { durable: true, arguments: args }); // same attributes: fine
  await after.checkExchange(dx);
  await after.assertExchange(dx, 'topic', { durable: true });

  const fresh = () => env.channel(conn);
  let text = await expectChannelError(406, async () =>
    (await fresh()).assertQueue(dq, { durable: true, arguments: { ...args, 'x-dead-letter-exchange': 'other' } }));
  assert.ok(text.startsWith("PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-exchange'"), text);
  text = await expectChannelError(406, async () => (await fresh()).assertQueue(dq, { durable: false, arguments: args }));
  assert.ok(text.startsWith("PRECONDITION_FAILED - inequivalent arg 'durable'"), text);
  text = await expectChannelError(406, async () => (await fresh()).assertExchange(dx, 'direct', { durable: true }));
  assert.ok(text.startsWith("PRECONDITION_FAILED - inequivalent arg 'type'"), text);

  // The binding survived: a publish through dx is routed to dq.
  await publishConfirmed(after, dx, 'orders.new', 'routed');
  assert.equal((await getOne(after, dq)).content.toString(), 'routed');

  text = await expectChannelError(404, async () => (await fresh()).checkQueue(tq));
  assert.ok(text.startsWith('NOT_FOUND') && text.includes(tq), text);
  text = await expectChannelError(404, async () => (await fresh()).checkExchange(tx));
  assert.ok(text.startsWith('NOT_FOUND') && text.includes(tx), text);
}));

function messageOptions(i, persistent) {
  return {
    contentType: 'application/octet-stream',
    contentEncoding: 'identity',
    headers: {
      str: 'v',
      small: 7,
      neg: -3,
      int: 100000,
      big: 2 ** 40,
      float: 1.5,
      bool: true,
      void: null,
      bytes: Buffer.from([0, 255]),
      list: [1, 'two', { k: [true, null] }],
      nested: { k: 'v', deeper: { n: i, l: [1, 2, 3] } },
    },
    deliveryMode: persistent ? 2 : 1,
    priority: i % 10,
    correlationId: `corr-${i}`,
    replyTo: 'interop.js.reply',
    messageId: `msg-${i}`,
    timestamp: 1700000000 + i,
    type: 'durability.test',
    appId: 'interop.js',
  };
}

test('persistent messages survive a restart unchanged and in order; transient ones do not', opts, withEnv(async (env, t) => {
  const ch = await env.confirmChannel();
  const dq = await env.queue(ch, { durable: true });
  const tq = await env.queue(ch, { durable: false });
  const bodies = [
    Buffer.from('first'),
    Buffer.alloc(0),
    Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
    Buffer.alloc(300000, 'x'), // several frames
    Buffer.from('last \u00e9'),
  ];
  const sent = bodies.map((body, i) => ({ body, options: messageOptions(i, true) }));
  sent.forEach(({ body, options }, i) => {
    ch.sendToQueue(dq, body, options);
    ch.sendToQueue(dq, Buffer.from(`transient ${i}`), messageOptions(100 + i, false));
    ch.sendToQueue(tq, Buffer.from('persistent in a transient queue'), options);
  });
  await ch.waitForConfirms();
  assert.equal((await ch.checkQueue(dq)).messageCount, 2 * bodies.length);

  await restartBroker(t);

  const after = await env.channel();
  assert.equal((await after.checkQueue(dq)).messageCount, bodies.length);
  for (const [i, { body, options }] of sent.entries()) {
    const msg = await after.get(dq, { noAck: true });
    assert.ok(msg, `message ${i} missing after the restart`);
    assert.ok(msg.content.equals(body), `message ${i}: body differs`);
    const got = Object.fromEntries(Object.keys(options).map((k) => [k, msg.properties[k]]));
    assert.deepEqual(got, options, `message ${i}: properties differ`);
  }
  assert.deepEqual(await drain(after, dq), []);
  await expectChannelError(404, () => after.checkQueue(tq));
}));

test('unacked deliveries come back redelivered after a restart', opts, withEnv(async (env, t) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, { durable: true });
  for (let i = 0; i < 4; i++) ch.sendToQueue(q, Buffer.from(`m${i}`), { persistent: true });
  await ch.waitForConfirms();

  const consumer = await env.channel();
  await consumer.prefetch(2);
  const got = [];
  await consumer.consume(q, (m) => m && got.push(m), { noAck: false });
  await waitFor(() => got.length === 2, 'two deliveries');
  consumer.ack(got[0]); // m0 acked; m1 stays unacked and m2 follows
  await waitFor(() => got.length === 3, 'a third delivery after the ack');
  const seen = (msgs) => msgs.map((m) => [m.fields.redelivered, m.content.toString()]);
  assert.deepEqual(seen(got), [[false, 'm0'], [false, 'm1'], [false, 'm2']]);
  // m1 and m2 are unacked and m3 was never delivered when the broker restarts.

  await restartBroker(t);

  const after = await env.channel();
  assert.equal((await after.checkQueue(q)).messageCount, 3);
  const back = [];
  for (let i = 0; i < 3; i++) back.push(await getOne(after, q));
  assert.deepEqual(seen(back), [[true, 'm1'], [true, 'm2'], [false, 'm3']]);
  assert.deepEqual(await drain(after, q), []);
}));
