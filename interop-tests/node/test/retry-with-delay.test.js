// Retry with delay, the way Node apps build it from dead-lettering and TTL:
// work queue --nack--> retry exchange --> wait queue (TTL) --expired--> work exchange,
// and after N retries the job is parked.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, drain, getOne, messageCount, waitFor, withEnv,
} = require('../lib/helpers');
const { pending } = require('../lib/broker');
const { deaths, firstDeath, headers } = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature
const MAX_RETRIES = 3;

test('failed jobs are retried after a delay, then parked after 3 retries', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const workX = await env.exchange(ch, 'direct');
  const retryX = await env.exchange(ch, 'direct');
  const work = await env.queue(ch, { deadLetterExchange: retryX });
  const wait = await env.queue(ch, { messageTtl: 200, deadLetterExchange: workX });
  const parked = await env.queue(ch);
  await ch.bindQueue(work, workX, 'job');
  await ch.bindQueue(wait, retryX, 'job');

  // The worker: "flaky" succeeds on its second attempt, "poison" never does.
  const worker = await env.channel();
  const attempts = { flaky: [], poison: [] };
  await worker.consume(work, (msg) => {
    const id = msg.properties.messageId;
    attempts[id].push(msg);
    const rejected = (headers(msg)['x-death'] || []).find((d) => d.queue === work && d.reason === 'rejected');
    const retries = rejected ? rejected.count : 0;
    if (id === 'flaky' && retries === 1) {
      worker.ack(msg);
    } else if (retries >= MAX_RETRIES) {
      worker.sendToQueue(parked, msg.content, msg.properties);
      worker.ack(msg);
    } else {
      worker.nack(msg, false, false);
    }
  }, { noAck: false });

  ch.publish(workX, 'job', Buffer.from('f'), { messageId: 'flaky' });
  ch.publish(workX, 'job', Buffer.from('p'), { messageId: 'poison' });
  await ch.waitForConfirms();
  await waitFor(async () => (await messageCount(ch, parked)) === 1, 'the poison job to be parked');

  assert.equal(attempts.flaky.length, 2);
  assert.equal(attempts.poison.length, MAX_RETRIES + 1);
  for (const msgs of Object.values(attempts)) {
    assert.equal(headers(msgs[0])['x-death'], undefined, 'the first attempt has no x-death');
    msgs.slice(1).forEach((msg, i) => {
      const n = i + 1;
      // back from the wait queue through the work exchange, as a new message
      assert.equal(msg.fields.exchange, workX);
      assert.equal(msg.fields.routingKey, 'job');
      assert.equal(msg.fields.redelivered, false);
      // one entry per (queue, reason), the most recent death first
      assert.deepEqual(deaths(msg), [
        { count: n, reason: 'expired', queue: wait, exchange: retryX, 'routing-keys': ['job'] },
        { count: n, reason: 'rejected', queue: work, exchange: workX, 'routing-keys': ['job'] },
      ], `attempt ${n + 1}`);
      assert.deepEqual(firstDeath(msg), { exchange: workX, queue: work, reason: 'rejected' });
    });
  }

  const park = await getOne(ch, parked);
  assert.equal(park.properties.messageId, 'poison');
  assert.equal(deaths(park)[1].count, MAX_RETRIES);
  assert.equal(await messageCount(ch, work), 0);
  assert.equal(await messageCount(ch, wait), 0);
}));

test('exponential backoff: the worker republishes with a growing per-message expiration', opts, withEnv(async (env) => {
  // No DLX on the work queue: the worker itself publishes the failed job to a shared
  // wait queue with expiration 100, 200, 400 ms and acks it.
  const ch = await env.confirmChannel();
  const work = await env.queue(ch);
  const wait = await env.queue(ch, { deadLetterExchange: '', deadLetterRoutingKey: work });

  const worker = await env.channel();
  const seen = [];
  await worker.consume(work, (msg) => {
    seen.push(msg);
    const d = headers(msg)['x-death'];
    const retries = d ? d[0].count : 0;
    if (retries < MAX_RETRIES) {
      worker.sendToQueue(wait, msg.content, { ...msg.properties, expiration: String(100 * 2 ** retries) });
    }
    worker.ack(msg);
  }, { noAck: false });

  ch.sendToQueue(work, Buffer.from('sync-account'), { messageId: 's-1', headers: { account: 42 } });
  await ch.waitForConfirms();
  await waitFor(() => seen.length === MAX_RETRIES + 1, 'all attempts');

  seen.slice(1).forEach((msg, i) => {
    assert.equal(msg.fields.exchange, '');
    assert.equal(msg.fields.routingKey, work);
    assert.equal(msg.properties.expiration, undefined, 'dead-lettering removed the expiration');
    assert.equal(headers(msg).account, 42);
    // the entry is updated in place: count goes up, original-expiration stays the first one
    assert.deepEqual(deaths(msg), [{
      count: i + 1, reason: 'expired', queue: wait, exchange: '', 'routing-keys': [wait], 'original-expiration': '100',
    }]);
  });
  assert.deepEqual(await drain(ch, wait), []);
}));
