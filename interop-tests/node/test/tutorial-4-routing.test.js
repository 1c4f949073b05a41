// Tutorial 4: routing log messages by severity through a direct exchange.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, drain, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

test('direct exchange routes by severity, several bindings per queue', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const logs = await env.exchange(ch, 'direct', { durable: false });
  const toDisk = await env.queue(ch, { exclusive: true }, '');
  const toScreen = await env.queue(ch, { exclusive: true }, '');
  await ch.bindQueue(toDisk, logs, 'error');
  for (const sev of ['info', 'warning', 'error']) await ch.bindQueue(toScreen, logs, sev);

  for (const sev of ['info', 'warning', 'error', 'debug']) ch.publish(logs, sev, Buffer.from(`${sev}: x`));
  await ch.waitForConfirms(); // confirmed => routed

  assert.deepEqual(await drain(ch, toDisk), ['error: x']);
  assert.deepEqual(await drain(ch, toScreen), ['info: x', 'warning: x', 'error: x']);
}));

test('unbinding stops the flow', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const x = await env.exchange(ch, 'direct');
  const q = await env.queue(ch);
  await ch.bindQueue(q, x, 'k');
  ch.publish(x, 'k', Buffer.from('one'));
  await ch.waitForConfirms();
  await ch.unbindQueue(q, x, 'k');
  ch.publish(x, 'k', Buffer.from('two'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['one']);
}));
