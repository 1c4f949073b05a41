// Tutorial 5: topic exchange -- '*' is exactly one word, '#' zero or more;
// '#' alone matches everything; empty words count as words.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { TEST_TIMEOUT_MS, drain, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };

const KEYS = [
  'quick.orange.rabbit', 'lazy.orange.elephant', 'quick.orange.fox', 'lazy.brown.fox',
  'lazy.pink.rabbit', 'quick.brown.fox', 'orange', 'quick.orange.male.rabbit',
  'lazy.orange.male.rabbit', 'lazy', 'a.b', 'a.x.b', 'a.x.y.b', 'a.b.c', 'x.a.b', 'a..b', 'a.', '.a', '',
];

const EXPECTED = {
  '*.orange.*': ['quick.orange.rabbit', 'lazy.orange.elephant', 'quick.orange.fox'],
  '*.*.rabbit': ['quick.orange.rabbit', 'lazy.pink.rabbit'],
  'lazy.#': ['lazy.orange.elephant', 'lazy.brown.fox', 'lazy.pink.rabbit', 'lazy.orange.male.rabbit', 'lazy'],
  '#': KEYS,
  'a.#.b': ['a.b', 'a.x.b', 'a.x.y.b', 'a..b'],
  'a.*.b': ['a.x.b', 'a..b'],
  '#.b': ['a.b', 'a.x.b', 'a.x.y.b', 'x.a.b', 'a..b'],
  '*.a': ['.a'],
  'a.*': ['a.b', 'a.'],
  '*': ['orange', 'lazy'],
};

test('topic binding patterns', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const x = await env.exchange(ch, 'topic');
  const queues = {};
  for (const pattern of Object.keys(EXPECTED)) {
    queues[pattern] = await env.queue(ch);
    await ch.bindQueue(queues[pattern], x, pattern);
  }
  for (const key of KEYS) ch.publish(x, key, Buffer.from(key));
  await ch.waitForConfirms();

  for (const [pattern, q] of Object.entries(queues)) {
    const got = await drain(ch, q);
    assert.equal(new Set(got).size, got.length, `duplicates for ${pattern}`);
    assert.deepEqual([...got].sort(), [...EXPECTED[pattern]].sort(), `binding '${pattern}'`);
  }
}));

test('overlapping bindings deliver one copy', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const x = await env.exchange(ch, 'topic');
  const q = await env.queue(ch);
  for (const p of ['*.orange.*', '*.*.rabbit', '#', 'quick.#']) await ch.bindQueue(q, x, p);
  ch.publish(x, 'quick.orange.rabbit', Buffer.from('once'));
  await ch.waitForConfirms();
  assert.deepEqual(await drain(ch, q), ['once']);
}));
