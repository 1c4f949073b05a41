// Tutorial 2: work queues -- durable queue, persistent tasks, manual acks,
// fair dispatch with prefetch(1).
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, getOne, settle, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

test('durable queue keeps persistent task', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const queue = await env.queue(ch, { durable: true });
  ch.sendToQueue(queue, Buffer.from('task'), { persistent: true });
  await ch.waitForConfirms();
  const ok = await ch.assertQueue(queue, { durable: true });
  assert.equal(ok.messageCount, 1);
  const msg = await getOne(ch, queue);
  assert.equal(msg.content.toString(), 'task');
  assert.equal(msg.properties.deliveryMode, 2);
}));

test('fair dispatch: a busy worker with prefetch 1 gets no more tasks', opts, withEnv(async (env) => {
  const setup = await env.channel();
  const queue = await env.queue(setup, { durable: true });

  const busy = await env.channel();
  const idle = await env.channel();
  await busy.prefetch(1);
  await idle.prefetch(1);
  const busyGot = [];
  const idleGot = [];
  await busy.consume(queue, (msg) => busyGot.push(msg.content.toString()), { noAck: false }); // never acks
  await idle.consume(queue, (msg) => {
    idleGot.push(msg.content.toString());
    idle.ack(msg);
  }, { noAck: false });

  const tasks = Array.from({ length: 8 }, (_, i) => `task ${i}`);
  for (const t of tasks) setup.sendToQueue(queue, Buffer.from(t), { persistent: true });

  await waitFor(() => busyGot.length === 1 && idleGot.length === 7, 'busy 1 task, idle 7 tasks');
  await settle();
  assert.equal(busyGot.length, 1);
  assert.deepEqual([...busyGot, ...idleGot].sort(), [...tasks].sort());
}));

test('unacked task is redelivered to another worker when its worker dies', opts, withEnv(async (env) => {
  const setup = await env.channel();
  const queue = await env.queue(setup, { durable: true });
  setup.sendToQueue(queue, Buffer.from('important'), { persistent: true });

  const dyingConn = await env.connect();
  const dying = await env.channel(dyingConn);
  await dying.prefetch(1);
  const first = [];
  await dying.consume(queue, (msg) => first.push(msg), { noAck: false });
  await waitFor(() => first.length === 1, 'first delivery');
  assert.equal(first[0].fields.redelivered, false);
  await dyingConn.close(); // without ack

  const worker = await env.channel();
  const again = [];
  await worker.consume(queue, (msg) => {
    again.push(msg);
    worker.ack(msg);
  }, { noAck: false });
  await waitFor(() => again.length === 1, 'redelivery');
  assert.equal(again[0].content.toString(), 'important');
  assert.equal(again[0].fields.redelivered, true);
}));
