// Helpers for the message-lifecycle tests: TTL, dead-lettering, length limits,
// priorities, consumer selection, delivery limits.

const assert = require('node:assert/strict');
const { watch } = require('./helpers');

// Consume `queue` and record every delivery in `msgs` (the null that amqplib passes
// for a server-sent basic.cancel is recorded in `cancelled` instead). `onMessage(msg)`
// runs after recording, e.g. to ack.
async function collect(ch, queue, options = { noAck: true }, onMessage = () => {}) {
  const out = { msgs: [], cancelled: false, tag: null };
  const ok = await ch.consume(
    queue,
    (msg) => {
      if (msg === null) {
        out.cancelled = true;
        return;
      }
      out.msgs.push(msg);
      onMessage(msg);
    },
    options,
  );
  out.tag = ok.consumerTag;
  return out;
}

function bodies(msgs) {
  return msgs.map((m) => m.content.toString());
}

// Does the queue exist? A passive declare on a throwaway channel (a 404 closes only it).
// A passive declare counts as use of the queue (it resets an x-expires timer): to wait
// for a queue to expire, poll with routesTo instead.
async function queueExists(conn, name) {
  const ch = watch(await conn.createChannel());
  try {
    await ch.checkQueue(name);
  } catch (err) {
    if (err.code === 404) return false;
    throw err;
  }
  await ch.close();
  return true;
}

// Does the default exchange still route to `queue`? A mandatory publish of a probe
// message on a confirm channel: basic.return (312 NO_ROUTE) comes before the ack when the
// queue is gone. Publishing does not count as use of a queue, so this does not keep an
// x-expires queue alive.
async function routesTo(confirmCh, queue) {
  let returned = false;
  const onReturn = (msg) => {
    if (msg.fields.routingKey === queue) returned = true;
  };
  confirmCh.on('return', onReturn);
  try {
    await new Promise((resolve, reject) => {
      confirmCh.publish('', queue, Buffer.from('probe'), { mandatory: true }, (err) => (err ? reject(err) : resolve()));
    });
  } finally {
    confirmCh.removeListener('return', onReturn);
  }
  return !returned;
}

// Publish on a confirm channel; resolves 'ack' or 'nack' (never rejects).
function publishOutcome(ch, exchange, key, body, options = {}) {
  return new Promise((resolve) => {
    ch.publish(exchange, key, Buffer.from(body), options, (err) => resolve(err ? 'nack' : 'ack'));
  });
}

function headers(msg) {
  return msg.properties.headers || {};
}

// The x-death entries of a dead-lettered message, each with its `time` checked (an AMQP
// timestamp, in seconds, close to now: broker and tests share a host) and removed, so the
// rest can be compared with deepEqual.
function deaths(msg) {
  const list = headers(msg)['x-death'];
  assert.ok(Array.isArray(list), `no x-death array in headers ${JSON.stringify(headers(msg))}`);
  return list.map((entry) => {
    const { time, ...rest } = entry;
    assert.ok(time && time['!'] === 'timestamp', `x-death time is not a timestamp: ${JSON.stringify(time)}`);
    assert.ok(Math.abs(time.value - Date.now() / 1000) < 300, `x-death time ${time.value} is not about now`);
    return rest;
  });
}

// The `time` of each x-death entry, in seconds.
function deathTimes(msg) {
  return headers(msg)['x-death'].map((entry) => entry.time.value);
}

// The x-first-death-* headers.
function firstDeath(msg) {
  const h = headers(msg);
  return {
    exchange: h['x-first-death-exchange'],
    queue: h['x-first-death-queue'],
    reason: h['x-first-death-reason'],
  };
}

module.exports = {
  bodies,
  collect,
  deathTimes,
  deaths,
  firstDeath,
  headers,
  publishOutcome,
  queueExists,
  routesTo,
};
