// Helpers shared by the amqplib interop tests.
//
// Every test talks to the broker named by AMQP_URL (default: a local Warren
// on 5672). Each test gets an Env: it opens connections, declares queues and
// exchanges with unique names, and deletes all of it again afterwards from a
// fresh connection.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const amqp = require('amqplib');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2F';

// Default wait for something expected to happen "soon", and per-test limit.
const WAIT_MS = 10000;
const TEST_TIMEOUT_MS = 60000;

function unique(kind) {
  return `interop.js.${kind}.${crypto.randomBytes(6).toString('hex')}`;
}

// Record channel errors instead of letting an unhandled 'error' event crash
// the test process; tests inspect ch.errors / ch.closed.
function watch(emitter) {
  emitter.errors = [];
  emitter.closed = false;
  emitter.on('error', (err) => emitter.errors.push(err));
  emitter.on('close', () => {
    emitter.closed = true;
  });
  return emitter;
}

// The broker's reply text, from amqplib's error message
// ('... 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ..."').
function replyText(err) {
  const m = /with message "([\s\S]*)"$/.exec(err.message);
  return m ? m[1] : err.message;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(predicate, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(10);
  }
}

// Let in-flight deliveries arrive; only used before asserting "no more".
function settle(ms = 300) {
  return sleep(ms);
}

class Env {
  constructor() {
    this.connections = [];
    this.queues = [];
    this.exchanges = [];
  }

  name(kind = 'q') {
    return unique(kind);
  }

  async connect(options = {}, url = AMQP_URL) {
    // `timeout` bounds the TCP + AMQP handshake, so a silent broker fails fast.
    const conn = watch(await amqp.connect(url, { timeout: 10000, ...options }));
    this.connections.push(conn);
    return conn;
  }

  async channel(conn) {
    const c = conn || (await this.connect());
    return watch(await c.createChannel());
  }

  async confirmChannel(conn) {
    const c = conn || (await this.connect());
    return watch(await c.createConfirmChannel());
  }

  trackQueue(name) {
    this.queues.push(name);
    return name;
  }

  trackExchange(name) {
    this.exchanges.push(name);
    return name;
  }

  // Declare a queue (unique name unless given; '' = server-named) and track it.
  async queue(ch, options = {}, name = unique('q')) {
    const ok = await ch.assertQueue(name, options);
    return this.trackQueue(ok.queue);
  }

  async exchange(ch, type = 'direct', options = {}, name = unique(`x.${type}`)) {
    await ch.assertExchange(name, type, options);
    return this.trackExchange(name);
  }

  async cleanup() {
    // Close the test's own connections first: that cancels its consumers and
    // drops its exclusive queues, so the deletes below cannot clash.
    for (const conn of this.connections) {
      if (!conn.closed) await conn.close().catch(() => {});
    }
    if (!this.queues.length && !this.exchanges.length) return;
    let conn;
    try {
      conn = watch(await amqp.connect(AMQP_URL, { timeout: 10000 }));
    } catch {
      return; // broker gone: nothing to clean
    }
    let ch = watch(await conn.createChannel());
    const attempt = async (fn) => {
      try {
        await fn(ch);
      } catch {
        if (ch.closed) ch = watch(await conn.createChannel());
      }
    };
    for (const q of this.queues) await attempt((c) => c.deleteQueue(q));
    for (const x of this.exchanges) await attempt((c) => c.deleteExchange(x));
    await conn.close().catch(() => {});
  }
}

// Wrap a test body: fresh Env, always cleaned up.
function withEnv(body) {
  return async (t) => {
    const env = new Env();
    try {
      await body(env, t);
    } finally {
      await env.cleanup();
    }
  };
}

// Await an operation the broker must refuse by closing the channel.
async function expectChannelError(code, fn) {
  let failed = false;
  try {
    await fn();
  } catch (err) {
    failed = true;
    assert.equal(err.code, code, `expected ${code}, got: ${err.message}`);
    return replyText(err);
  }
  assert.ok(failed, `expected channel close ${code}, but the call succeeded`);
}

// For asynchronous errors (publish, ack): wait for the channel's 'error' event.
async function waitChannelError(ch, code) {
  await waitFor(() => ch.errors.length > 0 || ch.closed, `channel close ${code}`);
  assert.ok(ch.errors.length > 0, 'channel closed without an error');
  const err = ch.errors[0];
  assert.equal(err.code, code, `expected ${code}, got: ${err.message}`);
  return replyText(err);
}

// basic.get, retried until a message shows up (routing may be asynchronous).
async function getOne(ch, queue, options = { noAck: true }, timeoutMs = WAIT_MS) {
  let msg = false;
  await waitFor(
    async () => {
      msg = await ch.get(queue, options);
      return msg !== false;
    },
    `a message in ${queue}`,
    timeoutMs,
  );
  return msg;
}

// basic.get until get-empty; returns the bodies as strings.
async function drain(ch, queue) {
  const out = [];
  for (;;) {
    const msg = await ch.get(queue, { noAck: true });
    if (msg === false) return out;
    out.push(msg.content.toString());
  }
}

// Publish on a confirm channel and wait for the broker's ack.
function publishConfirmed(ch, exchange, key, content, options = {}) {
  return new Promise((resolve, reject) => {
    ch.publish(exchange, key, Buffer.from(content), options, (err) => (err ? reject(err) : resolve()));
  });
}

async function messageCount(ch, queue) {
  return (await ch.checkQueue(queue)).messageCount;
}

module.exports = {
  AMQP_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  Env,
  drain,
  expectChannelError,
  getOne,
  messageCount,
  publishConfirmed,
  replyText,
  settle,
  sleep,
  unique,
  waitChannelError,
  waitFor,
  watch,
  withEnv,
};
