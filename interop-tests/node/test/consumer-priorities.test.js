// Consumer priorities (x-priority in basic.consume arguments; amqplib's `priority`
// consume option): higher-priority consumers get messages while they have capacity.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, messageCount, settle, waitFor, withEnv,
} = require('../lib/helpers');
const { bodies, collect } = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS };

async function publish(ch, queue, list) {
  for (const body of list) ch.sendToQueue(queue, Buffer.from(body));
  await ch.waitForConfirms();
}

test('the preferred worker gets messages while it has capacity; the fallback gets the overflow', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub);
  const fallback = await env.channel();
  await fallback.prefetch(2);
  const low = await collect(fallback, q, { noAck: false }); // default priority 0
  const preferred = await env.channel();
  await preferred.prefetch(2);
  const high = await collect(preferred, q, { noAck: false, priority: 10 });

  await publish(pub, q, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  await waitFor(() => high.msgs.length === 2 && low.msgs.length === 2, 'both at their prefetch limit');
  await settle();
  assert.deepEqual(bodies(high.msgs), ['m1', 'm2']);
  assert.deepEqual(bodies(low.msgs), ['m3', 'm4']);
  assert.equal(await messageCount(pub, q), 2);

  // capacity frees up at the preferred worker: it gets the rest
  preferred.ack(high.msgs[1], true);
  await waitFor(() => high.msgs.length === 4, 'the rest at the preferred worker');
  await settle();
  assert.deepEqual(bodies(high.msgs), ['m1', 'm2', 'm5', 'm6']);
  assert.equal(low.msgs.length, 2);
}));

test('equal priorities share round-robin; a negative priority gets nothing while others have room', opts, withEnv(async (env) => {
  const pub = await env.confirmChannel();
  const q = await env.queue(pub);
  const backup = await collect(await env.channel(), q, { noAck: true, priority: -1 });
  const a = await collect(await env.channel(), q, { noAck: true, priority: 5 });
  const b = await collect(await env.channel(), q, { noAck: true, arguments: { 'x-priority': 5 } });
  await publish(pub, q, ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  await waitFor(() => a.msgs.length + b.msgs.length === 6, 'all six at the priority-5 consumers');
  await settle();
  assert.equal(a.msgs.length, 3);
  assert.equal(b.msgs.length, 3);
  assert.deepEqual(backup.msgs, []);
}));
