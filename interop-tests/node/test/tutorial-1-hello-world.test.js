// Tutorial 1: a producer sends to a named queue through the default exchange
// and a consumer prints what arrives.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

test('hello world: send, then receive', opts, withEnv(async (env) => {
  const producer = await env.channel();
  const queue = await env.queue(producer, { durable: false });
  producer.sendToQueue(queue, Buffer.from('Hello World!'));

  const consumer = await env.channel();
  await consumer.assertQueue(queue, { durable: false }); // both sides declare
  const got = [];
  await consumer.consume(queue, (msg) => got.push(msg.content.toString()), { noAck: true });
  await waitFor(() => got.length === 1, 'the hello message');
  assert.deepEqual(got, ['Hello World!']);
}));

test('hello world: consumer first, messages arrive in order', opts, withEnv(async (env) => {
  const consumer = await env.channel();
  const queue = await env.queue(consumer);
  const got = [];
  await consumer.consume(queue, (msg) => got.push(msg.content.toString()), { noAck: true });

  const producer = await env.channel();
  for (let i = 0; i < 5; i++) producer.sendToQueue(queue, Buffer.from(`hello ${i}`));
  await waitFor(() => got.length === 5, '5 messages');
  assert.deepEqual(got, ['hello 0', 'hello 1', 'hello 2', 'hello 3', 'hello 4']);
}));
