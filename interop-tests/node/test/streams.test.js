// Streams (x-queue-type=stream) with amqplib: the main subset of python/tests/test_streams.py.
//
// A stream is an append-only log: consuming removes nothing, each consumer starts where its
// x-stream-offset says ("first", "last", "next" = the default, an integer, a timestamp or an
// interval), each delivery carries its offset in the x-stream-offset header, and acks only
// return credit. Consumers need a per-consumer prefetch; basic.get closes the connection
// (540). Texts are RabbitMQ 3.10.8's.
//
// amqplib sends a JS integer as the smallest type that holds it and a string as longstr;
// it decodes the 64-bit x-stream-offset header to a Number.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, expectChannelError, replyText, settle, waitFor, withEnv,
} = require('../lib/helpers');
const { warrenOnly } = require('../lib/broker');

const opts = { timeout: TEST_TIMEOUT_MS };
const STREAM = { 'x-queue-type': 'stream' };

async function stream(env, ch, args = {}) {
  return env.queue(ch, { durable: true, arguments: { ...STREAM, ...args } });
}

const numbered = (prefix, n, start = 0) => Array.from({ length: n }, (_, i) => `${prefix}${start + i}`);

async function publish(ch, q, bodies, options = {}) {
  for (const b of bodies) ch.sendToQueue(q, Buffer.from(b), options);
  await ch.waitForConfirms();
}

// One message at a time, each confirmed before the next: on RabbitMQ each is then a chunk of
// its own. RabbitMQ hands a stream consumer whole chunks while it has credit, so a burst
// written as one chunk arrives whole whatever the prefetch; Warren counts credit per
// message. Tests that count deliveries against the prefetch publish this way.
async function publishEach(ch, q, bodies) {
  for (const b of bodies) {
    await new Promise((resolve, reject) => {
      ch.sendToQueue(q, Buffer.from(b), {}, (err) => (err ? reject(err) : resolve()));
    });
  }
}

// A stream consumer on its own channel: records { offset, body, msg } and acks each delivery
// at once unless ack is false.
async function reader(env, q, { offset, prefetch = 100, ack = true, conn, args = {} } = {}) {
  const ch = await env.channel(conn);
  await ch.prefetch(prefetch);
  const r = { ch, got: [], cancelled: false };
  const arguments_ = { ...args };
  if (offset !== undefined) arguments_['x-stream-offset'] = offset;
  const ok = await ch.consume(q, (msg) => {
    if (msg === null) {
      r.cancelled = true;
      return;
    }
    r.got.push({ offset: msg.properties.headers['x-stream-offset'], body: msg.content.toString(), msg });
    if (ack) ch.ack(msg);
  }, { noAck: false, arguments: arguments_ });
  r.tag = ok.consumerTag;
  r.bodies = () => r.got.map((g) => g.body);
  r.offsets = () => r.got.map((g) => g.offset);
  // Wait for n deliveries and check that no more follow.
  r.read = async (n) => {
    await waitFor(() => r.got.length >= n, `${n} deliveries (have ${r.got.length})`);
    await settle();
    assert.equal(r.got.length, n, `expected ${n} deliveries, got ${r.bodies()}`);
    return r.bodies();
  };
  return r;
}

// ---- declaring ----------------------------------------------------------------------------

test('a durable stream can be declared, redeclared and checked', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await stream(env, ch, { 'x-max-age': '7D', 'x-max-length-bytes': 1000000 });
  await ch.assertQueue(q, { durable: true, arguments: { ...STREAM, 'x-max-age': '7D', 'x-max-length-bytes': 1000000 } });
  await ch.checkQueue(q);
  const text = await expectChannelError(406, async () => (await env.channel()).assertQueue(q, {
    durable: true, arguments: { ...STREAM, 'x-max-age': '8D', 'x-max-length-bytes': 1000000 },
  }));
  assert.equal(text, `PRECONDITION_FAILED - inequivalent arg 'x-max-age' for queue '${q}' in vhost '/': received '8D' but current is '7D'`);
}));

test('a stream must be durable, not exclusive, not auto-delete and not server-named', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const cases = [
    [{ durable: true, autoDelete: true }, 'auto-delete'],
    [{ durable: true, exclusive: true }, 'exclusive-owner'],
    [{ durable: false }, 'non-durable'],
  ];
  for (const [flags, prop] of cases) {
    const q = env.trackQueue(env.name('stream'));
    const text = await expectChannelError(406, async () => (await env.channel(conn)).assertQueue(q, { ...flags, arguments: STREAM }));
    assert.equal(text, `PRECONDITION_FAILED - invalid property '${prop}' for queue '${q}' in vhost '/'`, JSON.stringify(flags));
  }
  const text = await expectChannelError(406, async () => (await env.channel(conn)).assertQueue('', { durable: true, arguments: STREAM }));
  assert.equal(text, 'PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue');
}));

test('arguments of other queue types and bad x-max-age values are refused', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const declare = async (args) => {
    const q = env.trackQueue(env.name('stream'));
    const text = await expectChannelError(406, async () => (await env.channel(conn)).assertQueue(q, {
      durable: true, arguments: { ...STREAM, ...args },
    }));
    return [q, text];
  };
  for (const args of [{ 'x-max-length': 10 }, { 'x-message-ttl': 1000 }, { 'x-overflow': 'reject-publish' },
    { 'x-dead-letter-exchange': 'dlx' }, { 'x-max-priority': 5 }, { 'x-single-active-consumer': true }]) {
    const [q, text] = await declare(args);
    const key = Object.keys(args)[0];
    assert.equal(text, `PRECONDITION_FAILED - invalid arg '${key}' for queue '${q}' in vhost '/' of queue type rabbit_stream_queue`);
  }
  for (const age of ['7d', '1A', '0D']) {
    const [q, text] = await declare({ 'x-max-age': age });
    assert.equal(text, `PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '${q}' in vhost '/': invalid_max_age`, age);
  }
}));

test('stream arguments are accepted', opts, withEnv(async (env) => {
  const conn = await env.connect();
  for (const args of [{ 'x-max-length-bytes': 1000000 }, { 'x-max-age': '7D' }, { 'x-max-age': '12h' },
    { 'x-max-age': '30m' }, { 'x-stream-max-segment-size-bytes': 1000 }, { 'x-initial-cluster-size': 1 },
    { 'x-queue-leader-locator': 'balanced' }]) {
    await stream(env, await env.channel(conn), args);
  }
}));

// ---- consuming ----------------------------------------------------------------------------

test('consuming needs a consumer prefetch; basic.get closes the connection with 540', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await stream(env, pub);
  await publish(pub, q, ['m']);

  const ch = await env.channel();
  const text = await expectChannelError(406, () => ch.consume(q, () => {}, { noAck: false }));
  assert.equal(text, `PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '${q}' in vhost '/''`);

  const conn = await env.connect();
  const getter = await env.channel(conn);
  await getter.get(q, { noAck: false }).catch(() => {}); // rejected: the channel ends with the connection
  await waitFor(() => conn.errors.length > 0, 'connection close 540');
  assert.equal(conn.errors[0].code, 540, conn.errors[0].message);
  assert.equal(replyText(conn.errors[0]), `NOT_IMPLEMENTED - basic.get not supported by stream queues queue '${q}' in vhost '/'`);
}));

test('"first" delivers everything in order, with x-stream-offset headers from 0', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await stream(env, pub);
  for (let i = 0; i < 10; i++) pub.sendToQueue(q, Buffer.from(`m${i}`), { headers: { app: 'v', n: i } });
  await pub.waitForConfirms();

  const r = await reader(env, q, { offset: 'first' });
  assert.deepEqual(await r.read(10), numbered('m', 10));
  assert.deepEqual(r.offsets(), Array.from({ length: 10 }, (_, i) => i));
  r.got.forEach(({ offset, msg }, i) => {
    assert.ok(Number.isInteger(offset));
    assert.deepEqual(msg.properties.headers, { app: 'v', n: i, 'x-stream-offset': offset });
    assert.equal(msg.fields.redelivered, false);
  });

  // without x-stream-offset ("next"): only what is published after attaching
  const next = await reader(env, q);
  await settle();
  assert.deepEqual(next.got, []);
  await publish(pub, q, ['new']);
  assert.deepEqual(await next.read(1), ['new']);
  assert.deepEqual(next.offsets(), [10]);
}));

test('an integer x-stream-offset starts at that offset', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await stream(env, pub);
  await publish(pub, q, numbered('m', 10));
  const r = await reader(env, q, { offset: 4 });
  assert.deepEqual(await r.read(6), numbered('m', 6, 4));
  assert.deepEqual(r.offsets(), [4, 5, 6, 7, 8, 9]);
  const long = await reader(env, q, { offset: { '!': 'long', value: 8 } });
  assert.deepEqual(await long.read(2), ['m8', 'm9']);
}));

test('acks only return credit: prefetch 10 delivers 10 until one is acked, and nothing is removed', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await stream(env, pub);
  await publishEach(pub, q, numbered('m', 25));
  const r = await reader(env, q, { offset: 'first', prefetch: 10, ack: false });
  await waitFor(() => r.got.length === 10, '10 deliveries');
  await settle();
  assert.equal(r.got.length, 10);
  r.ch.ack(r.got[0].msg);
  await waitFor(() => r.got.length === 11, 'one more after one ack');
  await settle();
  assert.equal(r.got.length, 11);
  r.ch.ack(r.got[10].msg, true); // the other 10
  await waitFor(() => r.got.length === 21, '10 more');
  r.ch.ackAll();
  assert.deepEqual(await r.read(25), numbered('m', 25));

  const again = await reader(env, q, { offset: 'first' });
  assert.deepEqual(await again.read(25), numbered('m', 25));
}));

test('independent consumers each read the whole stream', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await stream(env, pub);
  await publish(pub, q, numbered('m', 8));
  const shared = await env.connect();
  const readers = [
    await reader(env, q, { offset: 'first', conn: shared }),
    await reader(env, q, { offset: 'first', conn: shared, prefetch: 3 }),
    await reader(env, q, { offset: 'first' }),
  ];
  await publish(pub, q, ['m8', 'm9']);
  for (const r of readers) {
    assert.deepEqual(await r.read(10), numbered('m', 10));
    assert.deepEqual(r.offsets(), Array.from({ length: 10 }, (_, i) => i));
  }
}));

test('deleting the stream cancels its consumers', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await stream(env, ch);
  const r = await reader(env, q, { offset: 'first' });
  await (await env.channel()).deleteQueue(q);
  await waitFor(() => r.cancelled, 'basic.cancel from the server');
  assert.equal(r.ch.closed, false);
}));

// ---- Warren-only: exact filtering per message ----------------------------------------------
// RabbitMQ 3.13's names: header x-stream-filter-value, consumer arguments x-stream-filter (a
// string or an array, ORed) and x-stream-match-unfiltered. RabbitMQ filters per chunk (the
// client filters again); Warren per message.

test('x-stream-filter delivers only the matching messages (Warren: exactly)', warrenOnly(), withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await stream(env, pub);
  const plan = ['eu', 'us', null, 'eu', 'apac', null, 'us'];
  plan.forEach((v, i) => pub.sendToQueue(q, Buffer.from(`m${i}-${v}`), { headers: v ? { 'x-stream-filter-value': v } : {} }));
  await pub.waitForConfirms();
  const want = (values, unfiltered = false) => plan
    .map((v, i) => [i, `m${i}-${v}`, v])
    .filter(([, , v]) => values.includes(v) || (unfiltered && v === null));

  const cases = [
    [{ 'x-stream-filter': 'eu' }, want(['eu'])],
    [{ 'x-stream-filter': ['eu', 'us'] }, want(['eu', 'us'])],
    [{ 'x-stream-filter': 'apac', 'x-stream-match-unfiltered': true }, want(['apac'], true)],
  ];
  for (const [args, expected] of cases) {
    const r = await reader(env, q, { offset: 'first', args });
    await r.read(expected.length);
    assert.deepEqual(r.got.map((g) => [g.offset, g.body]), expected.map(([i, b]) => [i, b]), JSON.stringify(args));
  }
}));
