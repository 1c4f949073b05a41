// Validation of the lifecycle arguments: a known argument with a wrong type or value is
// refused with 406 and RabbitMQ's exact text; unknown arguments are ignored.
//
// RabbitMQ names the AMQP field type in its texts, so they depend on how amqplib encodes
// a JS value: strings are longstr, booleans bool, non-integers double, null void,
// objects table, arrays array, and integers the smallest of byte (-128..127), short,
// signedint, long; {'!': 'long', value: 5} forces a type.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, expectChannelError, withEnv } = require('../lib/helpers');
const { isWarren, pending } = require('../lib/broker');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature

// [arguments, the text after "invalid arg '<key>' for queue '<q>' in vhost '/': "]
const INVALID = [
  [{ 'x-message-ttl': '60000' }, '"expected integer, got longstr"'],
  [{ 'x-message-ttl': 1.5 }, '"expected integer, got double"'],
  [{ 'x-message-ttl': { '!': 'float', value: 5 } }, '"expected integer, got float"'],
  [{ 'x-message-ttl': { '!': 'timestamp', value: 5 } }, '"expected integer, got timestamp"'],
  [{ 'x-message-ttl': null }, '"expected integer, got void"'],
  [{ 'x-message-ttl': { ttl: 5 } }, '"expected integer, got table"'],
  [{ 'x-message-ttl': [5] }, '"expected integer, got array"'],
  [{ 'x-message-ttl': -1 }, '{value_negative,-1}'],
  [{ 'x-expires': 0 }, '{value_zero,0}'],
  [{ 'x-expires': -5 }, '{value_negative,-5}'],
  [{ 'x-max-length': -1 }, '{value_negative,-1}'],
  [{ 'x-max-length-bytes': true }, '"expected integer, got bool"'],
  [{ 'x-max-priority': 'high' }, '"expected integer, got longstr"'],
  [{ 'x-max-priority': 256 }, '{max_value_exceeded,256}'],
  [{ 'x-max-priority': -1 }, '{value_negative,-1}'],
  [{ 'x-overflow': 'drop-tail' }, 'invalid_overflow'],
  [{ 'x-overflow': 5 }, '{unacceptable_type,byte}'],
  [{ 'x-overflow': 1000 }, '{unacceptable_type,short}'],
  [{ 'x-overflow': { '!': 'long', value: 5 } }, '{unacceptable_type,long}'],
  [{ 'x-dead-letter-routing-key': 'failed' }, 'routing_key_but_no_dlx_defined'],
  [{ 'x-dead-letter-exchange': 'dlx', 'x-dead-letter-routing-key': 5 }, '{unacceptable_type,byte}'],
  [{ 'x-single-active-consumer': 'true' }, '{unacceptable_type,longstr}'],
  [{ 'x-single-active-consumer': 1 }, '{unacceptable_type,byte}'],
  [{ 'x-queue-mode': 'slow' }, '"unsupported queue mode \'slow\'"'],
  [{ 'x-queue-type': 'fast' }, '"unsupported queue type \'fast\'"'],
];

test('known queue arguments with a wrong type or value are refused with 406', opts, withEnv(async (env) => {
  const conn = await env.connect();
  for (const [args, detail] of INVALID) {
    const q = env.trackQueue(env.name('q'));
    const key = Object.keys(args).at(-1);
    const text = await expectChannelError(406, async () => (await env.channel(conn)).assertQueue(q, { arguments: args }));
    assert.equal(text, `PRECONDITION_FAILED - invalid arg '${key}' for queue '${q}' in vhost '/': ${detail}`, JSON.stringify(args));
  }
}));

test('a dead-letter exchange name that is not a string is refused with its own text', opts, withEnv(async (env) => {
  const conn = await env.connect();
  for (const [value, type] of [[5, 'byte'], [true, 'bool'], [{ '!': 'long', value: 5 }, 'long']]) {
    const q = env.trackQueue(env.name('q'));
    const text = await expectChannelError(406, async () => (await env.channel(conn)).assertQueue(q, {
      arguments: { 'x-dead-letter-exchange': value },
    }));
    assert.equal(text, `PRECONDITION_FAILED - invalid type '${type}' for arg 'x-dead-letter-exchange' in queue '${q}' in vhost '/'`);
  }
}));

test('x-delivery-limit is refused on a classic queue by RabbitMQ 3.x, accepted by Warren', opts, withEnv(async (env) => {
  // Warren takes a delivery limit on every queue (RabbitMQ 4 has it on quorum queues only).
  const q = env.trackQueue(env.name('q'));
  if (isWarren()) {
    const ch = await env.channel();
    await ch.assertQueue(q, { arguments: { 'x-delivery-limit': 3 } });
    return;
  }
  const text = await expectChannelError(406, async () => (await env.channel()).assertQueue(q, {
    arguments: { 'x-delivery-limit': 3 },
  }));
  assert.equal(text, `PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '${q}' in vhost '/' of queue type rabbit_classic_queue`);
}));

test('with several invalid arguments the first in RabbitMQ\'s order is reported', opts, withEnv(async (env) => {
  // RabbitMQ checks x-expires, x-message-ttl, ..., x-max-priority, x-overflow in that
  // order, whatever the order in the table.
  const q = env.trackQueue(env.name('q'));
  const text = await expectChannelError(406, async () => (await env.channel()).assertQueue(q, {
    arguments: {
      'x-overflow': 'nope', 'x-max-priority': 256, 'x-message-ttl': 'soon', 'x-expires': 0,
    },
  }));
  assert.equal(text, `PRECONDITION_FAILED - invalid arg 'x-expires' for queue '${q}' in vhost '/': {value_zero,0}`);
}));

test('x-priority on basic.consume must be an integer', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch);
  const conn = await env.connect();
  for (const [value, type] of [['high', 'longstr'], [1.5, 'double']]) {
    const text = await expectChannelError(406, async () => (await env.channel(conn)).consume(q, () => {}, {
      arguments: { 'x-priority': value },
    }));
    assert.equal(text, `PRECONDITION_FAILED - invalid arg 'x-priority' for queue '${q}' in vhost '/': "expected integer, got ${type}"`);
  }
}));

test('valid values at the edges are accepted', opts, withEnv(async (env) => {
  const ch = await env.channel();
  for (const args of [
    { 'x-message-ttl': 0 },
    { 'x-message-ttl': { '!': 'unsignedint', value: 5000 } },
    { 'x-message-ttl': { '!': 'long', value: 99999999999 } },
    { 'x-max-priority': 0 },
    { 'x-max-priority': 255 },
    { 'x-max-length': 0 },
    { 'x-overflow': 'reject-publish-dlx' },
    { 'x-dead-letter-exchange': '' },
    { 'x-dead-letter-exchange': env.name('x.not-declared-yet') },
    { 'x-queue-mode': 'lazy' },
    { 'x-single-active-consumer': false },
  ]) {
    await env.queue(ch, { arguments: args });
  }
}));

test('unknown arguments are ignored, also when a redeclare changes them', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const args = { 'x-app-owner': 'billing', 'x-custom-ttl': 'soon', retries: 3 };
  const q = await env.queue(ch, { arguments: args });
  await ch.assertQueue(q, { arguments: { 'x-app-owner': 'payments' } });
  await ch.assertQueue(q);
  assert.equal(ch.closed, false);
}));
