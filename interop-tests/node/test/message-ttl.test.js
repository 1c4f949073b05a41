// Message TTL (x-message-ttl, per-message expiration, the lower one wins, TTL 0,
// invalid expirations) and queue expiry (x-expires).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, getOne, messageCount, settle, sleep, waitChannelError, waitFor, withEnv,
} = require('../lib/helpers');
const { pending } = require('../lib/broker');
const {
  bodies, collect, deaths, firstDeath, queueExists, routesTo,
} = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature

test('x-message-ttl: quotes nobody consumed in time are discarded', opts, withEnv(async (env) => {
  // A price-ticker queue: a quote older than 300 ms is worthless.
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, { messageTtl: 300 });
  for (const body of ['q1', 'q2', 'q3']) ch.sendToQueue(q, Buffer.from(body));
  await ch.waitForConfirms();
  await waitFor(async () => (await messageCount(ch, q)) === 0, 'the stale quotes to expire');
  assert.equal(await ch.get(q, { noAck: true }), false);

  // A live consumer still gets fresh quotes; the queue TTL sets no expiration property.
  const live = await collect(await env.channel(), q);
  ch.sendToQueue(q, Buffer.from('fresh'));
  await ch.waitForConfirms();
  await waitFor(() => live.msgs.length === 1, 'the fresh quote');
  assert.deepEqual(bodies(live.msgs), ['fresh']);
  assert.equal(live.msgs[0].properties.expiration, undefined);
}));

test('per-message expiration: a stale message is dropped, the others are delivered', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  ch.sendToQueue(q, Buffer.from('stale'), { expiration: '100' });
  ch.sendToQueue(q, Buffer.from('keep'), { expiration: 60000 }); // amqplib sends "60000"
  ch.sendToQueue(q, Buffer.from('forever'));
  await ch.waitForConfirms();
  await waitFor(async () => (await messageCount(ch, q)) === 2, 'the stale message to expire');

  const keep = await getOne(ch, q);
  assert.equal(keep.content.toString(), 'keep');
  assert.equal(keep.properties.expiration, '60000', 'the expiration property is delivered as published');
  const forever = await getOne(ch, q);
  assert.equal(forever.content.toString(), 'forever');
  assert.equal(forever.properties.expiration, undefined);
  assert.equal(await ch.get(q, { noAck: true }), false);
}));

test('the lower of x-message-ttl and the message expiration wins', opts, withEnv(async (env) => {
  // Each message would live a minute under one of the two TTLs; it is dead-lettered
  // well before that, under the other one.
  const ch = await env.confirmChannel();
  const dlq = await env.queue(ch);
  const dl = (extra) => ({ deadLetterExchange: '', deadLetterRoutingKey: dlq, ...extra });
  const longQueue = await env.queue(ch, dl({ messageTtl: 60000 }));
  const shortQueue = await env.queue(ch, dl({ messageTtl: 200 }));
  ch.sendToQueue(longQueue, Buffer.from('message-ttl-wins'), { expiration: '200' });
  ch.sendToQueue(shortQueue, Buffer.from('queue-ttl-wins'), { expiration: '60000' });
  await ch.waitForConfirms();

  const dead = await collect(await env.channel(), dlq);
  await waitFor(() => dead.msgs.length === 2, 'both messages dead-lettered');
  const byBody = Object.fromEntries(dead.msgs.map((m) => [m.content.toString(), m]));
  assert.deepEqual(deaths(byBody['message-ttl-wins']), [{
    count: 1, reason: 'expired', queue: longQueue, exchange: '', 'routing-keys': [longQueue], 'original-expiration': '200',
  }]);
  assert.deepEqual(deaths(byBody['queue-ttl-wins']), [{
    count: 1, reason: 'expired', queue: shortQueue, exchange: '', 'routing-keys': [shortQueue], 'original-expiration': '60000',
  }]);
  // dead-lettering removes the expiration property (it lives on as original-expiration)
  for (const m of dead.msgs) assert.equal(m.properties.expiration, undefined);
}));

test('expiration 0: delivered only to a consumer that can take it at once', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub);

  // nobody consuming: the message is gone at once
  pub.sendToQueue(q, Buffer.from('nobody-home'), { expiration: '0' });
  await pub.waitForConfirms();
  await waitFor(async () => (await messageCount(pub, q)) === 0, 'the message to be dropped');
  assert.equal(await pub.get(q, { noAck: true }), false);

  // a consumer with room gets it, expiration property and all
  const ch = await env.channel();
  await ch.prefetch(1);
  const got = await collect(ch, q, { noAck: false });
  pub.sendToQueue(q, Buffer.from('caught'), { expiration: '0' });
  await pub.waitForConfirms();
  await waitFor(() => got.msgs.length === 1, 'delivery to the waiting consumer');
  assert.equal(got.msgs[0].content.toString(), 'caught');
  assert.equal(got.msgs[0].properties.expiration, '0');

  // the consumer is at its prefetch limit: the next one is dropped, not queued
  pub.sendToQueue(q, Buffer.from('too-late'), { expiration: '0' });
  await pub.waitForConfirms();
  await waitFor(async () => (await messageCount(pub, q)) === 0, 'the message to be dropped');
  ch.ack(got.msgs[0]);
  await settle();
  assert.deepEqual(bodies(got.msgs), ['caught']);

  // x-message-ttl 0 with a DLX: dead-lettered as expired, no original-expiration
  const dlq = await env.queue(pub);
  const zero = await env.queue(pub, { messageTtl: 0, deadLetterExchange: '', deadLetterRoutingKey: dlq });
  pub.sendToQueue(zero, Buffer.from('z'));
  await pub.waitForConfirms();
  const dead = await getOne(pub, dlq);
  assert.equal(dead.content.toString(), 'z');
  assert.deepEqual(deaths(dead), [{ count: 1, reason: 'expired', queue: zero, exchange: '', 'routing-keys': [zero] }]);
  assert.deepEqual(firstDeath(dead), { exchange: '', queue: zero, reason: 'expired' });
}));

test('an invalid expiration closes the channel with 406', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const q = await env.queue(await env.channel(conn));
  const cases = [
    ['abc', "PRECONDITION_FAILED - invalid expiration 'abc': no_integer"],
    ['-1', "PRECONDITION_FAILED - invalid expiration '-1': {value_negative,-1}"],
    ['5s', `PRECONDITION_FAILED - invalid expiration '5s': {leftover_string,"s"}`],
    ['1.5', `PRECONDITION_FAILED - invalid expiration '1.5': {leftover_string,".5"}`],
    ['', "PRECONDITION_FAILED - invalid expiration '': no_integer"],
  ];
  for (const [expiration, expected] of cases) {
    const ch = await env.channel(conn);
    ch.sendToQueue(q, Buffer.from('x'), { expiration });
    assert.equal(await waitChannelError(ch, 406), expected, `expiration ${JSON.stringify(expiration)}`);
  }
  const probe = await env.channel(conn); // the connection survives
  assert.equal(await messageCount(probe, q), 0, 'nothing was enqueued');
}));

test('x-expires: an unused queue is deleted, its messages are not dead-lettered', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const ch = await env.confirmChannel(conn);
  const dlq = await env.queue(ch);
  const q = await env.queue(ch, { expires: 300, deadLetterExchange: '', deadLetterRoutingKey: dlq });
  ch.sendToQueue(q, Buffer.from('left behind'));
  await ch.waitForConfirms();
  await waitFor(async () => !(await routesTo(ch, q)), 'the queue to expire');
  await settle();
  assert.equal(await messageCount(ch, dlq), 0);
}));

test('x-expires: consumers, basic.get and redeclares keep a queue alive, publishes do not', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const ch = await env.confirmChannel(conn);
  const args = { expires: 1000 };
  const [consumed, polled, redeclared, published] = [
    await env.queue(ch, args), await env.queue(ch, args), await env.queue(ch, args), await env.queue(ch, args),
  ];
  const consumer = await env.channel(conn);
  const { tag } = await collect(consumer, consumed);

  // Use each queue every 200 ms for 2.5 s: 2.5 x its expiry, 5 uses per expiry period.
  const until = Date.now() + 2500;
  const every200ms = async (fn) => {
    while (Date.now() < until) {
      await fn();
      await sleep(200);
    }
  };
  await Promise.all([
    every200ms(() => ch.get(polled, { noAck: true })),
    every200ms(() => ch.assertQueue(redeclared, args)),
    every200ms(async () => {
      ch.sendToQueue(published, Buffer.from('ping'));
      await ch.waitForConfirms();
    }),
  ]);
  assert.ok(await queueExists(conn, consumed), 'a queue with a consumer does not expire');
  assert.ok(await queueExists(conn, polled), 'basic.get resets the expiry timer');
  assert.ok(await queueExists(conn, redeclared), 'queue.declare resets the expiry timer');
  await waitFor(async () => !(await routesTo(ch, published)), 'the published-to queue to expire');

  // the timer starts when the last consumer goes
  await consumer.cancel(tag);
  await waitFor(async () => !(await routesTo(ch, consumed)), 'the queue to expire after the cancel');
}));
