// Tutorial 3: publish/subscribe -- a fanout exchange and one exclusive,
// server-named queue per subscriber.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, expectChannelError, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

test('fanout reaches every subscriber queue', opts, withEnv(async (env) => {
  const pub = await env.channel();
  const logs = await env.exchange(pub, 'fanout', { durable: false });

  const subscribers = [];
  for (let i = 0; i < 3; i++) {
    const ch = await env.channel();
    await ch.assertExchange(logs, 'fanout', { durable: false });
    const { queue } = await ch.assertQueue('', { exclusive: true });
    assert.ok(queue.length > 0, 'server generated a name');
    await ch.bindQueue(queue, logs, '');
    const got = [];
    await ch.consume(queue, (msg) => got.push(msg.content.toString()), { noAck: true });
    subscribers.push({ queue, got });
  }
  assert.equal(new Set(subscribers.map((s) => s.queue)).size, 3);

  pub.publish(logs, 'ignored', Buffer.from('log line 1'));
  pub.publish(logs, '', Buffer.from('log line 2'));
  for (const s of subscribers) {
    await waitFor(() => s.got.length === 2, 'both log lines');
    assert.deepEqual(s.got, ['log line 1', 'log line 2']);
  }
}));

test('exclusive queue disappears with its connection', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const ch = await env.channel(conn);
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await conn.close();

  const other = await env.channel();
  const text = await expectChannelError(404, () => other.checkQueue(queue));
  assert.match(text, /^NOT_FOUND/);
}));
