// Tutorial 7: publisher confirms -- individually, in batches, and
// asynchronously with per-message callbacks.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, messageCount, publishConfirmed, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };
const N = 300;

test('confirm each message individually', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  for (let i = 0; i < 50; i++) await publishConfirmed(ch, '', q, `m${i}`);
  assert.equal(await messageCount(ch, q), 50);
}));

test('confirm in batches', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  const batch = 50;
  for (let sent = 0; sent < N; sent += batch) {
    for (let i = 0; i < batch; i++) ch.sendToQueue(q, Buffer.from(`m${sent + i}`));
    await ch.waitForConfirms(); // rejects if any message of the batch is nacked
  }
  assert.equal(await messageCount(ch, q), N);
}));

test('confirm asynchronously', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q = await env.queue(ch);
  let acked = 0;
  let nacked = 0;
  const acksSeen = [];
  ch.on('ack', (fields) => acksSeen.push(fields));
  for (let i = 0; i < N; i++) {
    ch.sendToQueue(q, Buffer.from(`m${i}`), {}, (err) => {
      if (err) nacked++;
      else acked++;
    });
  }
  await waitFor(() => acked + nacked === N, 'all confirms');
  assert.equal(nacked, 0);
  // tags were confirmed up to the last one (possibly with multiple=true)
  assert.equal(Math.max(...acksSeen.map((f) => f.deliveryTag)), N);
  assert.equal(await messageCount(ch, q), N);
}));

test('unroutable mandatory message is returned, then confirmed', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const returned = [];
  ch.on('return', (msg) => returned.push(msg));
  await publishConfirmed(ch, '', env.name('nobody'), 'bounce', { mandatory: true });
  assert.equal(returned.length, 1, 'basic.return arrives before the ack');
  assert.equal(returned[0].fields.replyCode, 312);
  assert.equal(returned[0].fields.replyText, 'NO_ROUTE');
}));
