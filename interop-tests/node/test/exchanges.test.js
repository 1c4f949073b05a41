// Exchanges: default exchange, predeclared amq.* exchanges, headers
// matching, exchange-to-exchange bindings, alternate exchange, mandatory.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, drain, expectChannelError, settle, waitChannelError, waitFor, withEnv,
} = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

test('default exchange routes by queue name', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const q1 = await env.queue(ch);
  const q2 = await env.queue(ch);
  ch.publish('', q1, Buffer.from('to q1'));
  ch.publish('', q2, Buffer.from('to q2'));
  ch.publish('', env.name('nobody'), Buffer.from('dropped'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q1), ['to q1']);
  assert.deepEqual(await drain(ch, q2), ['to q2']);
}));

for (const [name, type] of [
  ['amq.direct', 'direct'],
  ['amq.fanout', 'fanout'],
  ['amq.topic', 'topic'],
  ['amq.headers', 'headers'],
  ['amq.match', 'headers'],
]) {
  test(`predeclared ${name} exists and routes`, opts, withEnv(async (env) => {
    const ch = await env.confirmChannel();
    await ch.checkExchange(name);
    await ch.assertExchange(name, type, { durable: true }); // equivalent redeclare is fine
    const q = await env.queue(ch);
    const key = env.name('key');
    const tag = env.name('tag');
    const args = type === 'headers' ? { 'x-match': 'all', tag } : {};
    await ch.bindQueue(q, name, key, args);
    try {
      ch.publish(name, key, Buffer.from(`via ${name}`), { headers: { tag } });
      await ch.waitForConfirms();
      assert.deepEqual(await drain(ch, q), [`via ${name}`]);
    } finally {
      await ch.unbindQueue(q, name, key, args);
    }
  }));
}

test('headers exchange: x-match all and any', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const x = await env.exchange(ch, 'headers');
  const qAll = await env.queue(ch);
  const qAny = await env.queue(ch);
  await ch.bindQueue(qAll, x, '', { 'x-match': 'all', format: 'pdf', type: 'report' });
  await ch.bindQueue(qAny, x, '', { 'x-match': 'any', format: 'pdf', type: 'log' });
  const pub = (body, headers) => ch.publish(x, 'ignored', Buffer.from(body), { headers });
  pub('pdf report', { format: 'pdf', type: 'report' });
  pub('pdf only', { format: 'pdf' });
  pub('log only', { type: 'log' });
  pub('zip', { format: 'zip', type: 'report' });
  pub('none', {});
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, qAll), ['pdf report']);
  assert.deepEqual(await drain(ch, qAny), ['pdf report', 'pdf only', 'log only']);
}));

test('exchange-to-exchange bindings, and unbinding them', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const source = await env.exchange(ch, 'topic');
  const dest = await env.exchange(ch, 'direct');
  const q = await env.queue(ch);
  await ch.bindExchange(dest, source, 'stock.*');
  await ch.bindQueue(q, dest, 'stock.nyse');
  ch.publish(source, 'stock.nyse', Buffer.from('ibm'));
  ch.publish(source, 'stock.lse', Buffer.from('not bound at dest'));
  ch.publish(source, 'bond.nyse', Buffer.from('not bound at source'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['ibm']);

  await ch.unbindExchange(dest, source, 'stock.*');
  ch.publish(source, 'stock.nyse', Buffer.from('after unbind'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), []);
}));

test('alternate exchange takes unroutable messages', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const ae = await env.exchange(ch, 'fanout');
  const main = await env.exchange(ch, 'direct', { alternateExchange: ae });
  const qMain = await env.queue(ch);
  const qAe = await env.queue(ch);
  await ch.bindQueue(qMain, main, 'known');
  await ch.bindQueue(qAe, ae, '');
  const returned = [];
  ch.on('return', (m) => returned.push(m));
  ch.publish(main, 'known', Buffer.from('routed'));
  ch.publish(main, 'unknown', Buffer.from('unroutable'), { mandatory: true });
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, qMain), ['routed']);
  assert.deepEqual(await drain(ch, qAe), ['unroutable']);
  assert.equal(returned.length, 0, 'the alternate exchange satisfied mandatory');
}));

test('mandatory publish with no route: basic.return 312 NO_ROUTE', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const x = await env.exchange(ch, 'direct');
  const returned = [];
  ch.on('return', (m) => returned.push(m));
  ch.publish(x, 'nowhere', Buffer.from('bounce'), { mandatory: true, messageId: 'm-1' });
  await waitFor(() => returned.length === 1, 'basic.return');
  const [msg] = returned;
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.replyText, 'NO_ROUTE');
  assert.equal(msg.fields.exchange, x);
  assert.equal(msg.fields.routingKey, 'nowhere');
  assert.equal(msg.properties.messageId, 'm-1');
  assert.equal(msg.content.toString(), 'bounce');

  const q = await env.queue(ch);
  ch.sendToQueue(q, Buffer.from('routable'), { mandatory: true });
  await settle();
  assert.equal(returned.length, 1, 'routable mandatory message is not returned');
}));

test('declaring an amq.* exchange is refused with 403', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const name = `amq.${env.name('foo')}`;
  const text = await expectChannelError(403, () => ch.assertExchange(name, 'direct'));
  assert.match(text, /^ACCESS_REFUSED/);
}));

test('publishing to a missing exchange closes the channel with 404', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const ch = await env.channel(conn);
  ch.publish(env.name('nox'), 'k', Buffer.from('x'));
  const text = await waitChannelError(ch, 404);
  assert.match(text, /^NOT_FOUND/);
  await (await env.channel(conn)).checkExchange('amq.direct'); // connection still fine
}));
