// Queue length limits: x-max-length and x-max-length-bytes with the overflow behaviours
// drop-head (the default; dead-letters with reason maxlen), reject-publish (publisher
// confirms nack) and reject-publish-dlx.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, drain, getOne, messageCount, settle, waitFor, withEnv,
} = require('../lib/helpers');
const { pending } = require('../lib/broker');
const {
  bodies, collect, deaths, firstDeath, publishOutcome,
} = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature

async function publishAll(ch, queue, list, options = {}) {
  for (const body of list) ch.sendToQueue(queue, Buffer.from(body), options);
  await ch.waitForConfirms();
}

test('drop-head: a "latest events" queue keeps the newest, the oldest are dead-lettered as maxlen', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const dlq = await env.queue(ch);
  const latest = await env.queue(ch, { maxLength: 3, deadLetterExchange: '', deadLetterRoutingKey: dlq });
  const plain = await env.queue(ch, { maxLength: 2 }); // no DLX: dropped
  await publishAll(ch, latest, ['e1', 'e2', 'e3', 'e4', 'e5']);
  await publishAll(ch, plain, ['e1', 'e2', 'e3', 'e4', 'e5']);

  assert.equal(await messageCount(ch, latest), 3);
  assert.deepEqual(await drain(ch, latest), ['e3', 'e4', 'e5']);
  assert.deepEqual(await drain(ch, plain), ['e4', 'e5']);

  const dead = await collect(await env.channel(), dlq);
  await waitFor(() => dead.msgs.length === 2, 'two dead letters');
  assert.deepEqual(bodies(dead.msgs), ['e1', 'e2'], 'oldest first');
  for (const msg of dead.msgs) {
    assert.equal(msg.fields.routingKey, dlq);
    assert.deepEqual(deaths(msg), [{ count: 1, reason: 'maxlen', queue: latest, exchange: '', 'routing-keys': [latest] }]);
    assert.deepEqual(firstDeath(msg), { exchange: '', queue: latest, reason: 'maxlen' });
  }
}));

test('only ready messages count toward x-max-length; requeued ones count again', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch, { maxLength: 2 });
  const worker = await env.channel();
  await worker.prefetch(2);
  const held = await collect(worker, q, { noAck: false });
  await publishAll(ch, q, ['m1', 'm2', 'm3', 'm4']);
  await waitFor(() => held.msgs.length === 2, 'the worker to hold two');
  await settle();
  assert.deepEqual(bodies(held.msgs), ['m1', 'm2']);
  assert.equal(await messageCount(ch, q), 2, 'two held (unacked) + two ready: nothing dropped');

  // The worker dies: m1 and m2 go back to the head of the queue, which is then over its
  // limit, so drop-head removes them.
  await worker.close();
  await waitFor(async () => (await messageCount(ch, q)) === 2, 'the requeue');
  assert.deepEqual(await drain(ch, q), ['m3', 'm4']);
}));

test('x-max-length 0: messages only reach a consumer that is already waiting', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const dlq = await env.queue(ch);
  const live = await env.queue(ch, { maxLength: 0, deadLetterExchange: '', deadLetterRoutingKey: dlq });
  await publishAll(ch, live, ['nobody-listening']);
  const dead = await getOne(ch, dlq);
  assert.equal(dead.content.toString(), 'nobody-listening');
  assert.equal(deaths(dead)[0].reason, 'maxlen');
  assert.equal(await messageCount(ch, live), 0);

  const got = await collect(await env.channel(), live);
  await publishAll(ch, live, ['heard']);
  await waitFor(() => got.msgs.length === 1, 'the delivery');
  assert.deepEqual(bodies(got.msgs), ['heard']);
  await settle();
  assert.equal(await messageCount(ch, dlq), 0);
}));

test('reject-publish: the publisher gets a nack when the queue is full', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const returned = [];
  ch.on('return', (msg) => returned.push(msg));
  const dlq = await env.queue(ch);
  const q = await env.queue(ch, {
    maxLength: 2, overflow: 'reject-publish', deadLetterExchange: '', deadLetterRoutingKey: dlq,
  });
  const outcomes = [];
  for (const body of ['a', 'b', 'c']) outcomes.push(await publishOutcome(ch, '', q, body, { mandatory: true }));
  assert.deepEqual(outcomes, ['ack', 'ack', 'nack']);
  assert.deepEqual(returned, [], 'a refused message is not returned (it was routed)');
  assert.equal(await messageCount(ch, dlq), 0, 'reject-publish does not dead-letter');

  // Once a message is fetched there is room again (unacked messages do not count).
  const msg = await getOne(ch, q, { noAck: false });
  assert.equal(msg.content.toString(), 'a');
  assert.equal(await publishOutcome(ch, '', q, 'd'), 'ack');
  // full again: waitForConfirms rejects when a message of the batch was nacked
  ch.sendToQueue(q, Buffer.from('e'));
  await assert.rejects(ch.waitForConfirms());

  // Without confirms the refused message just disappears; the channel stays open.
  const plain = await env.channel();
  plain.sendToQueue(q, Buffer.from('f'));
  await settle();
  assert.equal(plain.closed, false);
  ch.ack(msg);
  assert.deepEqual(await drain(ch, q), ['b', 'd']);
}));

test('reject-publish-dlx: the refused message is nacked and dead-lettered', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const dlq = await env.queue(ch);
  const q = await env.queue(ch, {
    maxLength: 1, overflow: 'reject-publish-dlx', deadLetterExchange: '', deadLetterRoutingKey: dlq,
  });
  assert.equal(await publishOutcome(ch, '', q, 'kept'), 'ack');
  assert.equal(await publishOutcome(ch, '', q, 'refused'), 'nack');
  const dead = await getOne(ch, dlq);
  assert.equal(dead.content.toString(), 'refused');
  assert.deepEqual(deaths(dead), [{ count: 1, reason: 'maxlen', queue: q, exchange: '', 'routing-keys': [q] }]);
  assert.deepEqual(await drain(ch, q), ['kept']);
}));

test('reject-publish behind a fanout: nacked if one queue refused, delivered to the others', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const fanout = await env.exchange(ch, 'fanout');
  const full = await env.queue(ch, { maxLength: 0, overflow: 'reject-publish' });
  const open = await env.queue(ch);
  for (const q of [full, open]) await ch.bindQueue(q, fanout, '');
  assert.equal(await publishOutcome(ch, fanout, '', 'broadcast'), 'nack');
  assert.deepEqual(await drain(ch, open), ['broadcast']);
  assert.equal(await messageCount(ch, full), 0);
}));

test('x-max-length-bytes counts body bytes only', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const big = { headers: { padding: 'x'.repeat(1000) } }; // headers do not count
  // drop-head: keep the newest messages whose bodies fit in 10 bytes
  const q = await env.queue(ch, { arguments: { 'x-max-length-bytes': 10 } });
  await publishAll(ch, q, ['aaaaaa', 'bbbbbb', 'cccc', 'd'], big);
  assert.deepEqual(await drain(ch, q), ['cccc', 'd']);
  // a body larger than the limit on its own: it and everything before it are dropped
  await publishAll(ch, q, ['1234567890', 'ab', '', 'x'.repeat(11)]);
  assert.deepEqual(await drain(ch, q), []);

  // reject-publish: exactly 10 bytes is allowed; empty bodies always fit
  const strict = await env.queue(ch, { arguments: { 'x-max-length-bytes': 10, 'x-overflow': 'reject-publish' } });
  const outcomes = [];
  for (const body of ['123456', '12345', '1234', '', 'x']) outcomes.push(await publishOutcome(ch, '', strict, body, big));
  assert.deepEqual(outcomes, ['ack', 'nack', 'ack', 'ack', 'nack']);

  // both limits: whichever is exceeded drops from the head
  const both = await env.queue(ch, { maxLength: 2, arguments: { 'x-max-length-bytes': 5 } });
  await publishAll(ch, both, ['aa', 'bb', 'cc', 'dddd']);
  assert.deepEqual(await drain(ch, both), ['dddd']);
}));
