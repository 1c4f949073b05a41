// basic.get / get-empty, acks, nack and reject (with and without requeue),
// basic.recover, and acking an unknown delivery tag.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, drain, getOne, messageCount, waitChannelError, waitFor, withEnv,
} = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

async function setup(env, n) {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  for (let i = 0; i < n; i++) ch.sendToQueue(q, Buffer.from(`m${i}`), { messageId: `id${i}` });
  await ch.waitForConfirms();
  return { ch, q };
}

test('get-ok carries the remaining count; get-empty when drained', opts, withEnv(async (env) => {
  const { ch, q } = await setup(env, 3);
  for (const remaining of [2, 1, 0]) {
    const msg = await ch.get(q, { noAck: true });
    assert.equal(msg.fields.messageCount, remaining);
    assert.equal(msg.fields.routingKey, q);
    assert.equal(msg.fields.exchange, '');
    assert.equal(msg.fields.redelivered, false);
    assert.equal(msg.content.toString(), `m${2 - remaining}`);
    assert.equal(msg.properties.messageId, `id${2 - remaining}`);
  }
  assert.equal(await ch.get(q, { noAck: true }), false); // basic.get-empty
}));

test('message properties and a multi-frame binary body round-trip', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch);
  const body = Buffer.alloc(300000);
  for (let i = 0; i < body.length; i++) body[i] = i % 251;
  const props = {
    contentType: 'application/octet-stream',
    contentEncoding: 'identity',
    headers: { s: 'v', n: 42, neg: -7, t: true, list: [1, 'two'], nested: { k: 'v' } },
    deliveryMode: 2,
    priority: 3,
    correlationId: 'corr',
    replyTo: 'somewhere',
    expiration: '600000',
    messageId: 'mid',
    timestamp: 1700000000,
    type: 'kind',
    appId: 'interop',
  };
  ch.sendToQueue(q, body, props);
  const msg = await getOne(ch, q);
  assert.ok(msg.content.equals(body));
  for (const [k, v] of Object.entries(props)) {
    if (k !== 'headers') assert.deepEqual(msg.properties[k], v, k);
  }
  assert.deepEqual(msg.properties.headers, props.headers);
}));

test('reject with requeue redelivers, without requeue drops', opts, withEnv(async (env) => {
  const { ch, q } = await setup(env, 1);
  let msg = await getOne(ch, q, { noAck: false });
  ch.reject(msg, true);
  msg = await getOne(ch, q, { noAck: false });
  assert.equal(msg.fields.redelivered, true);
  assert.equal(msg.content.toString(), 'm0');
  ch.reject(msg, false);
  assert.equal(await messageCount(ch, q), 0);
  assert.equal(await ch.get(q), false);
}));

test('nack with requeue comes back to the consumer as redelivered', opts, withEnv(async (env) => {
  const { q } = await setup(env, 1);
  const ch = await env.channel();
  const seen = [];
  await ch.consume(q, (msg) => {
    seen.push([msg.fields.redelivered, msg.content.toString()]);
    if (!msg.fields.redelivered) ch.nack(msg, false, true);
    else ch.ack(msg);
  }, { noAck: false });
  await waitFor(() => seen.length === 2, 'delivery and redelivery');
  assert.deepEqual(seen, [[false, 'm0'], [true, 'm0']]);
}));

test('nack multiple without requeue drops them', opts, withEnv(async (env) => {
  const { ch, q } = await setup(env, 3);
  const msgs = [];
  for (let i = 0; i < 3; i++) msgs.push(await getOne(ch, q, { noAck: false }));
  ch.nack(msgs[2], true, false);
  await ch.close();
  const probe = await env.channel();
  assert.equal(await messageCount(probe, q), 0);
}));

test('ack multiple, the rest is requeued on close', opts, withEnv(async (env) => {
  const { ch, q } = await setup(env, 3);
  const msgs = [];
  for (let i = 0; i < 3; i++) msgs.push(await getOne(ch, q, { noAck: false }));
  ch.ack(msgs[1], true);
  await ch.close();
  const probe = await env.channel();
  assert.deepEqual(await drain(probe, q), ['m2']);
}));

test('basic.recover redelivers unacked messages', opts, withEnv(async (env) => {
  const { q } = await setup(env, 2);
  const ch = await env.channel();
  const seen = [];
  await ch.consume(q, (msg) => seen.push([msg.fields.redelivered, msg.content.toString()]), { noAck: false });
  await waitFor(() => seen.length === 2, 'first deliveries');
  await ch.recover();
  await waitFor(() => seen.length === 4, 'redeliveries');
  assert.deepEqual(seen.slice(0, 2), [[false, 'm0'], [false, 'm1']]);
  assert.deepEqual(seen.slice(2).sort(), [[true, 'm0'], [true, 'm1']]);
}));

test('ack of an unknown delivery tag closes the channel with 406', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const ch = await env.channel(conn);
  // a fake message object carrying a tag the broker never issued
  ch.ack({ fields: { deliveryTag: 999 } });
  const text = await waitChannelError(ch, 406);
  assert.match(text, /^PRECONDITION_FAILED - unknown delivery tag 999/);
  await env.channel(conn); // the connection is still usable
}));
