// Warren-only extensions (skipped against RabbitMQ, which has them only as plugins or
// in later versions):
// - x-consumer-timeout queue argument: like RabbitMQ's consumer_timeout, a channel that
//   holds a delivery unacked for longer is closed with 406 and the message requeued.
//   The text is rabbit_channel's (checked against RabbitMQ 3.10.8 with its global
//   consumer_timeout set to 1000 ms).
// - the x-delayed-message exchange type, as in rabbitmq-delayed-message-exchange:
//   x-delayed-type picks the routing, an x-delay header (ms) holds the message back, and
//   a delayed message is delivered with x-delay negated.
// - message deduplication, as in rabbitmq-message-deduplication: a queue declared with
//   x-message-deduplication=true does not enqueue a message whose x-deduplication-header
//   value is already in the queue (ready or unacked); an x-message-deduplication exchange
//   (fanout routing, x-cache-size required, x-cache-ttl optional) does not route a value it
//   has seen within the cache TTL. Duplicates are confirmed (ack), not nacked.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  drain, expectChannelError, getOne, messageCount, replyText, settle, sleep,
  waitChannelError, waitFor, withEnv,
} = require('../lib/helpers');
const { pending, warrenOnly } = require('../lib/broker');
const {
  bodies, collect, headers, publishOutcome,
} = require('../lib/lifecycle');

// ---- consumer timeout -------------------------------------------------------------

test('x-consumer-timeout: a consumer that sits on a delivery loses its channel, the message is requeued', warrenOnly(), withEnv(async (env) => {
  const conn = await env.connect();
  const pub = await env.confirmChannel(conn);
  const q = await env.queue(pub, { arguments: { 'x-consumer-timeout': 1000 } });
  const stuck = await env.channel(conn);
  const got = await collect(stuck, q, { noAck: false });
  pub.sendToQueue(q, Buffer.from('slow-job'));
  await pub.waitForConfirms();
  await waitFor(() => got.msgs.length === 1, 'the delivery');

  // RabbitMQ checks its (global) consumer_timeout once a minute; Warren is expected to
  // act within a few seconds of the queue's timeout.
  await waitFor(() => stuck.errors.length > 0 || stuck.closed, 'the consumer timeout', 20000);
  const text = await waitChannelError(stuck, 406);
  assert.equal(text, `PRECONDITION_FAILED - delivery acknowledgement on channel ${stuck.ch} timed out. `
    + 'Timeout value used: 1000 ms. This timeout value can be configured, see consumers doc guide to learn more');
  await waitFor(() => stuck.closed, 'the channel to close');

  // the connection and its other channels carry on; the job is back, redelivered
  const again = await getOne(pub, q, { noAck: false });
  assert.equal(again.content.toString(), 'slow-job');
  assert.equal(again.fields.redelivered, true);
  pub.ack(again);
  assert.equal(conn.closed, false);
}));

test('x-consumer-timeout: consumers that ack in time, and noAck consumers, are left alone', warrenOnly(), withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub, { arguments: { 'x-consumer-timeout': 1000 } });
  const auto = await env.queue(pub, { arguments: { 'x-consumer-timeout': 1000 } });
  const worker = await env.channel();
  const done = await collect(worker, q, { noAck: false }, (msg) => worker.ack(msg));
  const reader = await env.channel();
  const read = await collect(reader, auto, { noAck: true });
  for (let i = 0; i < 5; i++) {
    pub.sendToQueue(q, Buffer.from(`job-${i}`));
    pub.sendToQueue(auto, Buffer.from(`event-${i}`));
    await pub.waitForConfirms();
    await sleep(500);
  }
  await sleep(1500);
  assert.equal(done.msgs.length, 5);
  assert.equal(read.msgs.length, 5);
  assert.equal(worker.closed, false);
  assert.equal(reader.closed, false);
}));

// ---- delayed-message exchange -----------------------------------------------------

test('x-delayed-message: reminders are routed after x-delay ms, by the x-delayed-type rules', warrenOnly(), withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const x = await env.exchange(ch, 'x-delayed-message', { arguments: { 'x-delayed-type': 'direct' } });
  const reminders = await env.queue(ch);
  const other = await env.queue(ch);
  await ch.bindQueue(reminders, x, 'remind');
  await ch.bindQueue(other, x, 'other');

  ch.publish(x, 'remind', Buffer.from('in-3s'), { headers: { 'x-delay': 3000 } });
  ch.publish(x, 'remind', Buffer.from('in-1.5s'), { headers: { 'x-delay': 1500 } });
  ch.publish(x, 'remind', Buffer.from('now'));
  ch.publish(x, 'remind', Buffer.from('zero'), { headers: { 'x-delay': 0 } });
  await ch.waitForConfirms(); // delayed messages are confirmed when accepted, not when routed
  assert.equal(await messageCount(ch, reminders), 2, 'only the undelayed ones so far');

  const got = await collect(await env.channel(), reminders);
  await waitFor(() => got.msgs.length === 4, 'all four reminders');
  assert.deepEqual(bodies(got.msgs), ['now', 'zero', 'in-1.5s', 'in-3s']);
  assert.deepEqual(got.msgs.map((m) => headers(m)['x-delay']), [undefined, 0, -1500, -3000]);
  for (const m of got.msgs) {
    assert.equal(m.fields.exchange, x);
    assert.equal(m.fields.routingKey, 'remind');
  }
  assert.equal(await messageCount(ch, other), 0, 'direct routing applies');
}));

test('x-delayed-message needs x-delayed-type naming a known exchange type', warrenOnly(), withEnv(async (env) => {
  const conn = await env.connect();
  const missing = env.trackExchange(env.name('x.delayed'));
  const text = await expectChannelError(406, async () => (await env.channel(conn)).assertExchange(missing, 'x-delayed-message'));
  assert.equal(text, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type");

  // an unknown type is a connection error, as for exchange.declare with that type
  const other = await env.connect();
  const bad = env.trackExchange(env.name('x.delayed'));
  await assert.rejects((await env.channel(other)).assertExchange(bad, 'x-delayed-message', {
    arguments: { 'x-delayed-type': 'nope' },
  }));
  await waitFor(() => other.errors.length > 0, 'the connection error');
  assert.equal(other.errors[0].code, 503);
  assert.equal(replyText(other.errors[0]), "COMMAND_INVALID - unknown exchange type 'nope'");
}));

// ---- deduplication ----------------------------------------------------------------

const DEDUP_QUEUE = { arguments: { 'x-message-deduplication': true } };
const dedupKey = (key) => ({ headers: { 'x-deduplication-header': key } });

test('queue deduplication: a message whose key is already in the queue is dropped (and confirmed)', warrenOnly(), withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, DEDUP_QUEUE);
  const outcomes = [];
  for (const [body, options] of [
    ['order-1', dedupKey('order-1')],
    ['order-1 again', dedupKey('order-1')],
    ['order-2', dedupKey('order-2')],
    ['no key', {}],
    ['no key', {}],
    ['number key', dedupKey(42)],
    ['number key again', dedupKey(42)],
  ]) outcomes.push(await publishOutcome(ch, '', q, body, options));
  assert.deepEqual(outcomes, ['ack', 'ack', 'ack', 'ack', 'ack', 'ack', 'ack']);
  assert.deepEqual(await drain(ch, q), ['order-1', 'order-2', 'no key', 'no key', 'number key']);
}));

test('queue deduplication: a key stays taken until its message is acked, rejected or fetched with noAck', warrenOnly(), withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, DEDUP_QUEUE);
  await publishOutcome(ch, '', q, 'first', dedupKey('k'));

  const held = await getOne(ch, q, { noAck: false });
  await publishOutcome(ch, '', q, 'while unacked', dedupKey('k'));
  ch.nack(held, false, true); // requeued: still in the queue
  await publishOutcome(ch, '', q, 'after requeue', dedupKey('k'));
  assert.equal(await messageCount(ch, q), 1);

  const again = await getOne(ch, q, { noAck: false });
  assert.equal(again.content.toString(), 'first');
  ch.ack(again);
  await publishOutcome(ch, '', q, 'after ack', dedupKey('k'));
  ch.reject(await getOne(ch, q, { noAck: false }), false);
  await publishOutcome(ch, '', q, 'after reject', dedupKey('k'));
  await getOne(ch, q, { noAck: true });
  await publishOutcome(ch, '', q, 'after autoack get', dedupKey('k'));
  assert.deepEqual(await drain(ch, q), ['after autoack get']);
}));

test('exchange deduplication: repeated keys are not routed; it routes like a fanout', warrenOnly(), withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const returned = [];
  ch.on('return', (msg) => returned.push(msg));
  const x = await env.exchange(ch, 'x-message-deduplication', { arguments: { 'x-cache-size': 100 } });
  const a = await env.queue(ch);
  const b = await env.queue(ch);
  await ch.bindQueue(a, x, 'a');
  await ch.bindQueue(b, x, 'b');
  for (const [body, options] of [
    ['payment-1', dedupKey('payment-1')],
    ['payment-1 retry', dedupKey('payment-1')],
    ['payment-2', dedupKey('payment-2')],
    ['no key', {}],
    ['no key', {}],
  ]) assert.equal(await publishOutcome(ch, x, 'ignored', body, options), 'ack');
  for (const q of [a, b]) assert.deepEqual(await drain(ch, q), ['payment-1', 'payment-2', 'no key', 'no key']);

  // a duplicate routes nowhere, so a mandatory one comes back
  await publishOutcome(ch, x, 'ignored', 'payment-2 retry', { mandatory: true, ...dedupKey('payment-2') });
  assert.equal(returned.length, 1);
  assert.equal(returned[0].fields.replyCode, 312);
  assert.equal(returned[0].fields.replyText, 'NO_ROUTE');
}));

test('exchange deduplication: keys are forgotten after x-cache-ttl (argument or header)', warrenOnly(), withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  const withTtl = await env.exchange(ch, 'x-message-deduplication', { arguments: { 'x-cache-size': 100, 'x-cache-ttl': 500 } });
  const noTtl = await env.exchange(ch, 'x-message-deduplication', { arguments: { 'x-cache-size': 100 } });
  for (const x of [withTtl, noTtl]) await ch.bindQueue(q, x, '');

  await publishOutcome(ch, withTtl, '', 'a1', dedupKey('a'));
  await publishOutcome(ch, withTtl, '', 'a2', dedupKey('a'));
  await publishOutcome(ch, noTtl, '', 'b1', { headers: { 'x-deduplication-header': 'b', 'x-cache-ttl': 500 } });
  await publishOutcome(ch, noTtl, '', 'c1', dedupKey('c'));
  await sleep(1500);
  await publishOutcome(ch, withTtl, '', 'a3', dedupKey('a'));
  await publishOutcome(ch, noTtl, '', 'b2', { headers: { 'x-deduplication-header': 'b', 'x-cache-ttl': 500 } });
  await publishOutcome(ch, noTtl, '', 'c2', dedupKey('c')); // no TTL: still a duplicate
  await settle();
  assert.deepEqual(await drain(ch, q), ['a1', 'b1', 'c1', 'a3', 'b2']);
}));

test('exchange deduplication needs a positive x-cache-size', warrenOnly(), withEnv(async (env) => {
  const conn = await env.connect();
  for (const args of [{}, { 'x-cache-size': 0 }, { 'x-cache-size': 'lots' }]) {
    const x = env.trackExchange(env.name('x.dedup'));
    const text = await expectChannelError(406, async () => (await env.channel(conn)).assertExchange(x, 'x-message-deduplication', {
      arguments: args,
    }));
    assert.match(text, /^PRECONDITION_FAILED - Missing or invalid argument, +'x-cache-size' must be an integer greater than 0$/);
  }
}));
