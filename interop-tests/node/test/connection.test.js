// Connection-level behaviour: authentication, vhosts, heartbeats.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const amqp = require('amqplib');
const { AMQP_URL, TEST_TIMEOUT_MS, getOne, sleep, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

function urlWith(change) {
  const u = new URL(AMQP_URL);
  change(u);
  return u.toString();
}

test('wrong password is refused: 403 ACCESS_REFUSED', opts, async () => {
  const url = urlWith((u) => {
    u.password = 'definitely-not-the-password';
  });
  await assert.rejects(amqp.connect(url, { timeout: 10000 }), (err) => {
    assert.match(err.message, /403 \(ACCESS-REFUSED\)/);
    assert.match(err.message, /ACCESS_REFUSED/);
    return true;
  });
});

test('unknown vhost is refused with connection.close', opts, async () => {
  const url = urlWith((u) => {
    u.pathname = `/interop-no-such-vhost-${Date.now()}`;
  });
  // The broker answers connection.open with connection.close 530 NOT_ALLOWED;
  // amqplib reports that without the code: "Expected ConnectionOpenOk; got
  // <ConnectionClose channel:0>". (The pika suite checks the 530 itself.)
  await assert.rejects(amqp.connect(url, { timeout: 10000 }), /Expected ConnectionOpenOk; got <ConnectionClose/);
});

test('heartbeat of 2 s is negotiated and an idle connection survives 6 s', opts, withEnv(async (env) => {
  const conn = await env.connect({}, urlWith((u) => u.searchParams.set('heartbeat', '2')));
  assert.equal(conn.connection.heartbeat, 2);
  const ch = await env.channel(conn);
  const q = await env.queue(ch);
  // amqplib closes the connection ('Heartbeat timeout') if the broker sends
  // nothing for two intervals, and the broker does likewise for us.
  await sleep(6000);
  assert.equal(conn.errors.length, 0, conn.errors.map((e) => e.message).join('; '));
  assert.equal(conn.closed, false);
  ch.sendToQueue(q, Buffer.from('still alive'));
  assert.equal((await getOne(ch, q)).content.toString(), 'still alive');
}));

test('server advertises the capabilities clients rely on', opts, withEnv(async (env) => {
  const conn = await env.connect();
  const caps = conn.connection.serverProperties.capabilities;
  for (const c of ['publisher_confirms', 'exchange_exchange_bindings', 'basic.nack', 'consumer_cancel_notify']) {
    assert.equal(caps[c], true, c);
  }
}));
