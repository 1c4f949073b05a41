// Sender-selected distribution (CC / BCC headers) and user_id validation.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { AMQP_URL, TEST_TIMEOUT_MS, drain, getOne, waitChannelError, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

test('CC and BCC add routes; BCC is stripped on delivery', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const to = await env.queue(ch);
  const cc = await env.queue(ch);
  const bcc = await env.queue(ch);
  ch.sendToQueue(to, Buffer.from('memo'), { headers: { CC: [cc], BCC: [bcc], keep: 'me' } });
  await ch.waitForConfirms();
  for (const q of [to, cc, bcc]) {
    const msg = await ch.get(q, { noAck: true });
    assert.ok(msg, `message in ${q}`);
    assert.equal(msg.content.toString(), 'memo');
    assert.equal(msg.fields.routingKey, to);
    assert.deepEqual(msg.properties.headers.CC, [cc]);
    assert.equal(msg.properties.headers.keep, 'me');
    assert.ok(!('BCC' in msg.properties.headers), `BCC stripped in ${q}`);
  }
}));

test('CC on a direct exchange', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const x = await env.exchange(ch, 'direct');
  const main = await env.queue(ch);
  const copy = await env.queue(ch);
  await ch.bindQueue(main, x, 'main');
  await ch.bindQueue(copy, x, 'copy');
  ch.publish(x, 'main', Buffer.from('m'), { CC: 'copy' }); // amqplib option form
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, main), ['m']);
  assert.deepEqual(await drain(ch, copy), ['m']);
}));

test('user_id must match the authenticated user', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch);
  const user = decodeURIComponent(new URL(AMQP_URL).username) || 'guest';
  ch.sendToQueue(q, Buffer.from('me'), { userId: user });
  const msg = await getOne(ch, q);
  assert.equal(msg.properties.userId, user);

  ch.sendToQueue(q, Buffer.from('forged'), { userId: 'mallory' });
  const text = await waitChannelError(ch, 406);
  assert.match(text, /^PRECONDITION_FAILED/);
  assert.ok(text.includes('mallory'), text);
  assert.equal(await (await env.channel()).get(q), false, 'forged message not enqueued');
}));
