// Dead-lettering: x-dead-letter-exchange / -routing-key, the reasons (rejected, expired,
// maxlen), the x-death and x-first-death-* headers as RabbitMQ 3.10 writes them, counts
// on repeated deaths, and what is not dead-lettered.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const {
  TEST_TIMEOUT_MS, drain, getOne, messageCount, settle, sleep, waitFor, withEnv,
} = require('../lib/helpers');
const { pending } = require('../lib/broker');
const {
  bodies, collect, deathTimes, deaths, firstDeath, headers,
} = require('../lib/lifecycle');

const opts = { timeout: TEST_TIMEOUT_MS }; // what pending('...') becomes once Warren has the feature

test('a rejected order goes to the dead-letter exchange with x-death reason rejected', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const orders = await env.exchange(ch, 'direct');
  const dlx = await env.exchange(ch, 'fanout');
  const work = await env.queue(ch, { deadLetterExchange: dlx });
  const dlq = await env.queue(ch);
  await ch.bindQueue(work, orders, 'order.created');
  await ch.bindQueue(dlq, dlx, '');

  const props = { messageId: 'id', correlationId: 'c-1', headers: { tenant: 'acme' }, deliveryMode: 2 };
  ch.publish(orders, 'order.created', Buffer.from('bad-1'), { ...props, expiration: '60000' });
  ch.publish(orders, 'order.created', Buffer.from('bad-2'), props);
  ch.publish(orders, 'order.created', Buffer.from('good'), props);
  await ch.waitForConfirms();

  // The worker refuses the bad orders: one with basic.nack, one with basic.reject.
  const worker = await env.channel();
  await collect(worker, work, { noAck: false }, (msg) => {
    const body = msg.content.toString();
    if (body === 'bad-1') worker.nack(msg, false, false);
    else if (body === 'bad-2') worker.reject(msg, false);
    else worker.ack(msg);
  });
  const dead = await collect(await env.channel(), dlq);
  await waitFor(() => dead.msgs.length === 2, 'two dead letters');
  await settle();
  assert.deepEqual(bodies(dead.msgs).sort(), ['bad-1', 'bad-2']);

  for (const msg of dead.msgs) {
    const body = msg.content.toString();
    // delivered from the DLX with the original routing key, as a fresh (not redelivered) message
    assert.equal(msg.fields.exchange, dlx);
    assert.equal(msg.fields.routingKey, 'order.created');
    assert.equal(msg.fields.redelivered, false);
    // the properties survive, except expiration, which is removed
    assert.equal(msg.properties.messageId, 'id');
    assert.equal(msg.properties.correlationId, 'c-1');
    assert.equal(msg.properties.deliveryMode, 2);
    assert.equal(msg.properties.expiration, undefined);
    assert.equal(headers(msg).tenant, 'acme');

    const death = { count: 1, reason: 'rejected', queue: work, exchange: orders, 'routing-keys': ['order.created'] };
    if (body === 'bad-1') death['original-expiration'] = '60000';
    assert.deepEqual(deaths(msg), [death], body);
    assert.deepEqual(firstDeath(msg), { exchange: orders, queue: work, reason: 'rejected' }, body);
  }
  assert.equal(await messageCount(ch, work), 0);
}));

test('dead letters are routed by the original routing key and CC, or by x-dead-letter-routing-key alone', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  // Without a dead-letter routing key: the DLX routes by the routing key and the CC keys.
  const dlx = await env.exchange(ch, 'direct');
  const billing = await env.queue(ch);
  const audit = await env.queue(ch);
  await ch.bindQueue(billing, dlx, 'invoice');
  await ch.bindQueue(audit, dlx, 'audit.copy');
  const invoices = await env.queue(ch, { deadLetterExchange: dlx });
  // With one: the default exchange as DLX, a queue name as routing key; CC is dropped.
  const failed = await env.queue(ch);
  const receipts = await env.queue(ch, { deadLetterExchange: '', deadLetterRoutingKey: failed });
  for (const q of [invoices, receipts]) await ch.bindQueue(q, 'amq.direct', 'invoice');
  ch.publish('amq.direct', 'invoice', Buffer.from('inv-7'), { headers: { CC: ['audit.copy'], BCC: ['secret'] } });
  await ch.waitForConfirms();
  for (const q of [invoices, receipts]) ch.nack(await getOne(ch, q, { noAck: false }), false, false);

  const viaKeys = [await getOne(ch, billing), await getOne(ch, audit)];
  for (const dead of viaKeys) {
    assert.equal(dead.content.toString(), 'inv-7');
    assert.equal(dead.fields.exchange, dlx);
    assert.equal(dead.fields.routingKey, 'invoice');
    assert.deepEqual(headers(dead).CC, ['audit.copy'], 'the CC header stays');
    assert.equal(headers(dead).BCC, undefined, 'BCC was removed on publish');
    assert.deepEqual(deaths(dead), [{
      count: 1, reason: 'rejected', queue: invoices, exchange: 'amq.direct', 'routing-keys': ['invoice', 'audit.copy'],
    }]);
  }

  const dead = await getOne(ch, failed);
  assert.equal(dead.content.toString(), 'inv-7');
  assert.equal(dead.fields.exchange, '');
  assert.equal(dead.fields.routingKey, failed);
  assert.equal(headers(dead).CC, undefined, 'CC is removed when x-dead-letter-routing-key is set');
  assert.deepEqual(deaths(dead), [{
    count: 1, reason: 'rejected', queue: receipts, exchange: 'amq.direct', 'routing-keys': ['invoice', 'audit.copy'],
  }]);
  await settle();
  for (const q of [billing, audit, failed]) assert.equal(await messageCount(ch, q), 0, 'one dead letter per queue');
}));

test('one dead-letter office collects rejected, expired and maxlen messages, told apart by x-first-death-reason', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const office = await env.exchange(ch, 'topic');
  const letters = await env.queue(ch);
  await ch.bindQueue(letters, office, 'dead.#');
  const dl = (key, extra = {}) => ({ deadLetterExchange: office, deadLetterRoutingKey: key, ...extra });
  const payments = await env.queue(ch, dl('dead.payments'));
  const sessions = await env.queue(ch, dl('dead.sessions', { messageTtl: 100 }));
  const events = await env.queue(ch, dl('dead.events', { maxLength: 1 }));

  ch.sendToQueue(payments, Buffer.from('declined'));
  ch.sendToQueue(sessions, Buffer.from('timed-out'));
  ch.sendToQueue(events, Buffer.from('oldest'));
  ch.sendToQueue(events, Buffer.from('newest'));
  await ch.waitForConfirms();
  ch.nack(await getOne(ch, payments, { noAck: false }), false, false);

  const dead = await collect(await env.channel(), letters);
  await waitFor(() => dead.msgs.length === 3, 'three dead letters');
  const byReason = Object.fromEntries(dead.msgs.map((m) => [firstDeath(m).reason, m]));
  assert.deepEqual(Object.keys(byReason).sort(), ['expired', 'maxlen', 'rejected']);

  const check = (reason, body, queue, key) => {
    const msg = byReason[reason];
    assert.equal(msg.content.toString(), body);
    assert.equal(msg.fields.routingKey, key);
    assert.deepEqual(firstDeath(msg), { exchange: '', queue, reason });
    assert.deepEqual(deaths(msg), [{ count: 1, reason, queue, exchange: '', 'routing-keys': [queue] }]);
  };
  check('rejected', 'declined', payments, 'dead.payments');
  check('expired', 'timed-out', sessions, 'dead.sessions');
  check('maxlen', 'oldest', events, 'dead.events');
  assert.deepEqual(await drain(ch, events), ['newest']);
}));

test('a message that dies again in the same queue: count goes up, time and x-first-death stay', opts, withEnv(async (env) => {
  // An operator replays dead letters into the work queue (same properties, x-death
  // included); the worker rejects them again.
  const ch = await env.confirmChannel();
  const parked = await env.queue(ch);
  const work = await env.queue(ch, { deadLetterExchange: '', deadLetterRoutingKey: parked });
  ch.sendToQueue(work, Buffer.from('job'), { messageId: 'j-1' });
  await ch.waitForConfirms();
  ch.nack(await getOne(ch, work, { noAck: false }), false, false);
  const first = await getOne(ch, parked);
  assert.deepEqual(deaths(first), [{ count: 1, reason: 'rejected', queue: work, exchange: '', 'routing-keys': [work] }]);

  await sleep(1100); // a new death now would carry a later time (seconds)
  ch.sendToQueue(work, first.content, first.properties);
  await ch.waitForConfirms();
  ch.nack(await getOne(ch, work, { noAck: false }), false, false);
  const second = await getOne(ch, parked);
  assert.deepEqual(deaths(second), [{ count: 2, reason: 'rejected', queue: work, exchange: '', 'routing-keys': [work] }]);
  assert.deepEqual(deathTimes(second), deathTimes(first), 'the entry keeps the time of the first death');
  assert.deepEqual(firstDeath(second), { exchange: '', queue: work, reason: 'rejected' });
  assert.equal(second.properties.messageId, 'j-1');
}));

test('requeued messages are not dead-lettered; nack multiple dead-letters each message', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const dlq = await env.queue(ch);
  const work = await env.queue(ch, { deadLetterExchange: '', deadLetterRoutingKey: dlq });
  for (const body of ['m1', 'm2', 'm3']) ch.sendToQueue(work, Buffer.from(body));
  await ch.waitForConfirms();

  // nack with requeue, and a worker that dies holding messages: both requeue
  let msg = await getOne(ch, work, { noAck: false });
  ch.nack(msg, false, true);
  const dying = await env.channel();
  await getOne(dying, work, { noAck: false });
  await getOne(dying, work, { noAck: false });
  await dying.close();
  await settle();
  assert.equal(await messageCount(ch, dlq), 0);
  await waitFor(async () => (await messageCount(ch, work)) === 3, 'all three back in the queue');

  // nack multiple=true, requeue=false
  const worker = await env.channel();
  const msgs = [];
  for (let i = 0; i < 3; i++) msgs.push(await getOne(worker, work, { noAck: false }));
  worker.nack(msgs[2], true, false);
  const dead = await collect(await env.channel(), dlq);
  await waitFor(() => dead.msgs.length === 3, 'three dead letters');
  assert.deepEqual(bodies(dead.msgs), ['m1', 'm2', 'm3']);
  for (msg of dead.msgs) assert.equal(deaths(msg)[0].reason, 'rejected');
}));

test('a missing dead-letter exchange drops the message quietly', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  const work = await env.queue(ch, { deadLetterExchange: env.name('x.missing') });
  ch.sendToQueue(work, Buffer.from('lost'));
  await ch.waitForConfirms();
  ch.nack(await getOne(ch, work, { noAck: false }), false, false);
  await settle();
  assert.equal(await messageCount(ch, work), 0);
  assert.equal(ch.closed, false);
  assert.deepEqual(ch.errors, []);
}));

test('a queue may dead-letter rejected messages back to itself, but an expiry cycle is dropped', opts, withEnv(async (env) => {
  const ch = await env.confirmChannel();
  // rejections: each one sends the message to the back of the queue with a higher count
  const loop = env.name('q');
  await env.queue(ch, { deadLetterExchange: '', deadLetterRoutingKey: loop }, loop);
  ch.sendToQueue(loop, Buffer.from('again'));
  await ch.waitForConfirms();
  for (let n = 1; n <= 3; n++) {
    ch.nack(await getOne(ch, loop, { noAck: false }), false, false);
    const back = await getOne(ch, loop, { noAck: false });
    assert.deepEqual(deaths(back), [{ count: n, reason: 'rejected', queue: loop, exchange: '', 'routing-keys': [loop] }]);
    ch.nack(back, false, true);
  }

  // expiry only: the second time round the cycle is detected and the message dropped
  const cycle = env.name('q');
  await env.queue(ch, { messageTtl: 100, deadLetterExchange: '', deadLetterRoutingKey: cycle }, cycle);
  ch.sendToQueue(cycle, Buffer.from('round and round'));
  await ch.waitForConfirms();
  await waitFor(async () => (await messageCount(ch, cycle)) === 0, 'the cycle to be broken');
  for (let i = 0; i < 10; i++) {
    await sleep(100);
    assert.equal(await messageCount(ch, cycle), 0, 'the message stays gone');
  }
}));
