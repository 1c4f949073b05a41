// Tutorial 6: RPC -- requests carry replyTo and correlationId; the server
// answers through the default exchange. Callback via an exclusive
// server-named queue, and via direct reply-to (amq.rabbitmq.reply-to).
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, expectChannelError, getOne, waitFor, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

function fib(n) {
  let [a, b] = [0, 1];
  for (let i = 0; i < n; i++) [a, b] = [b, a + b];
  return a;
}

async function startServer(env, queue) {
  const ch = await env.channel();
  await env.queue(ch, { durable: false }, queue);
  await ch.prefetch(1);
  await ch.consume(queue, (msg) => {
    const n = Number.parseInt(msg.content.toString(), 10);
    ch.sendToQueue(msg.properties.replyTo, Buffer.from(String(fib(n))), {
      correlationId: msg.properties.correlationId,
    });
    ch.ack(msg);
  });
  return ch;
}

test('rpc with an exclusive callback queue and correlation ids', opts, withEnv(async (env) => {
  const rpcQueue = env.name('rpc');
  await startServer(env, rpcQueue);

  const client = await env.channel();
  const { queue: callbackQueue } = await client.assertQueue('', { exclusive: true });
  const answers = new Map();
  await client.consume(callbackQueue, (msg) => {
    answers.set(msg.properties.correlationId, msg.content.toString());
  }, { noAck: true });

  const calls = new Map();
  for (const n of [0, 1, 10, 30]) {
    const id = crypto.randomUUID();
    calls.set(id, n);
    client.sendToQueue(rpcQueue, Buffer.from(String(n)), { replyTo: callbackQueue, correlationId: id });
  }
  await waitFor(() => answers.size === calls.size, 'all replies');
  for (const [id, n] of calls) assert.equal(answers.get(id), String(fib(n)));
}));

test('rpc with direct reply-to', opts, withEnv(async (env) => {
  const rpcQueue = env.name('rpc');
  await startServer(env, rpcQueue);

  const client = await env.channel();
  const replies = [];
  // consume (no-ack) from the pseudo queue before publishing with it
  await client.consume('amq.rabbitmq.reply-to', (msg) => {
    replies.push([msg.properties.correlationId, msg.content.toString()]);
  }, { noAck: true });
  client.sendToQueue(rpcQueue, Buffer.from('25'), { replyTo: 'amq.rabbitmq.reply-to', correlationId: 'c-25' });
  await waitFor(() => replies.length === 1, 'direct reply-to answer');
  assert.deepEqual(replies, [['c-25', String(fib(25))]]);
}));

test('direct reply-to: the server sees a generated reply address', opts, withEnv(async (env) => {
  const rpcQueue = env.name('rpc');
  const server = await env.channel();
  await env.queue(server, {}, rpcQueue);

  const client = await env.channel();
  const replies = [];
  await client.consume('amq.rabbitmq.reply-to', (msg) => replies.push(msg.content.toString()), { noAck: true });
  client.sendToQueue(rpcQueue, Buffer.from('ping'), { replyTo: 'amq.rabbitmq.reply-to' });

  const req = await getOne(server, rpcQueue);
  assert.ok(req.properties.replyTo.startsWith('amq.rabbitmq.reply-to.'), req.properties.replyTo);
  server.sendToQueue(req.properties.replyTo, Buffer.from('pong'));
  await waitFor(() => replies.length === 1, 'pong');
  assert.deepEqual(replies, ['pong']);
}));

test('direct reply-to must be consumed in no-ack mode', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const text = await expectChannelError(406, () => ch.consume('amq.rabbitmq.reply-to', () => {}, { noAck: false }));
  assert.match(text, /^PRECONDITION_FAILED/);
}));
