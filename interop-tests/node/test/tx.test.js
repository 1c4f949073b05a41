// Transactions. amqplib has no tx helpers, so the tx methods are sent with
// its generic channel RPC (the same frames any client library sends). Its
// protocol definitions are not in the package's exports map, hence the path.
const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');

const defs = require(path.join(path.dirname(require.resolve('amqplib')), 'lib', 'defs.js'));
const { TEST_TIMEOUT_MS, drain, expectChannelError, getOne, messageCount, withEnv } = require('../lib/helpers');

const opts = { timeout: TEST_TIMEOUT_MS };
const txSelect = (ch) => ch.rpc(defs.TxSelect, {}, defs.TxSelectOk);
const txCommit = (ch) => ch.rpc(defs.TxCommit, {}, defs.TxCommitOk);
const txRollback = (ch) => ch.rpc(defs.TxRollback, {}, defs.TxRollbackOk);

test('tx commit publishes, rollback discards', opts, withEnv(async (env) => {
  const ch = await env.channel();
  const q = await env.queue(ch);
  const observer = await env.channel();
  await txSelect(ch);
  ch.sendToQueue(q, Buffer.from('a'));
  ch.sendToQueue(q, Buffer.from('b'));
  assert.equal(await messageCount(observer, q), 0);
  await txCommit(ch);
  assert.equal(await messageCount(observer, q), 2);

  ch.sendToQueue(q, Buffer.from('discarded'));
  await txRollback(ch);
  assert.deepEqual(await drain(observer, q), ['a', 'b']);
}));

test('tx covers acks', opts, withEnv(async (env) => {
  const setup = await env.confirmChannel();
  const q = await env.queue(setup);
  setup.sendToQueue(q, Buffer.from('one'));
  setup.sendToQueue(q, Buffer.from('two'));
  await setup.waitForConfirms();

  const ch = await env.channel();
  await txSelect(ch);
  const one = await getOne(ch, q, { noAck: false });
  const two = await getOne(ch, q, { noAck: false });
  ch.ack(one);
  await txCommit(ch);
  ch.ack(two);
  await txRollback(ch); // ack of 'two' undone: still unacked
  await ch.close(); // and so requeued
  const back = await getOne(setup, q);
  assert.equal(back.content.toString(), 'two');
  assert.equal(back.fields.redelivered, true);
  assert.equal(await messageCount(setup, q), 0);
}));

test('confirm.select on a tx channel fails with 406', opts, withEnv(async (env) => {
  const ch = await env.channel();
  await txSelect(ch);
  const text = await expectChannelError(406, () => ch.rpc(defs.ConfirmSelect, { nowait: false }, defs.ConfirmSelectOk));
  assert.match(text, /^PRECONDITION_FAILED/);
}));
