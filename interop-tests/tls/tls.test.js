// AMQP over TLS with amqplib: the same broker set-up as test_tls.py (verify_peer,
// fail_if_no_peer_cert, TLS 1.2 and 1.3, SASL EXTERNAL as the certificate's RFC 2253 subject).
// Passes against Warren and against RabbitMQ 3.10 configured the same way (run.sh starts either).
//
// Environment (run.sh sets it): AMQPS_URL, AMQP_URL (the plain listener, optional), MGMT_URL,
// TLS_PKI — see tlslib.py.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');
const { createRequire } = require('node:module');

// amqplib as installed for the node suite (interop-tests/node/node_modules).
const amqp = createRequire(path.join(__dirname, '..', 'node', 'package.json'))('amqplib');

const AMQPS_URL = process.env.AMQPS_URL || 'amqps://guest:guest@127.0.0.1:5671/%2F';
const AMQP_URL = process.env.AMQP_URL || '';
const MGMT_URL = (process.env.MGMT_URL || 'http://127.0.0.1:15672').replace(/\/$/, '');
const PKI = process.env.TLS_PKI || '';
const url = new URL(AMQPS_URL);
const HOST = url.hostname;
const PORT = Number(url.port || 5671);
const VHOST = url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : '/';
const WAIT_MS = 10000;
const HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');
const opts = { timeout: 60000 };

const pki = (name) => fs.readFileSync(path.join(PKI, name));
const dn = (name) => pki(`${name}.dn`).toString().trim();

function unique(kind) {
  return `interop.tls.js.${kind}.${crypto.randomBytes(6).toString('hex')}`;
}

// TLS options for amqplib's socketOptions (passed on to tls.connect).
function tlsOptions({ ca = 'ca', cert = 'client', version } = {}) {
  const o = { ca: [pki(`${ca}.pem`)], timeout: WAIT_MS };
  if (cert) Object.assign(o, { cert: pki(`${cert}.pem`), key: pki(`${cert}.key`) });
  if (version) Object.assign(o, { minVersion: `TLSv${version}`, maxVersion: `TLSv${version}` });
  return o;
}

const open = [];
async function connect(options, credentials) {
  const conn = await amqp.connect(AMQPS_URL, credentials ? { ...options, credentials } : options);
  conn.on('error', () => {});
  conn.on('close', () => {
    conn.closed = true;
  });
  open.push(conn);
  return conn;
}

test.afterEach(async () => {
  // (close() of a connection the broker closed already would never settle)
  while (open.length) {
    const conn = open.pop();
    if (!conn.closed) await conn.close().catch(() => {});
  }
});

// A raw TLS connection (handshake done, or its error), then the broker's first answer to the
// AMQP header: { start: the connection.start payload } or { error } / { closed: true }.
function tlsSocket(options) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: HOST, port: PORT, ...options }, () => resolve(sock));
    sock.once('error', reject);
  });
}

function firstFrame(sock) {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => resolve({ timeout: true, data }), WAIT_MS);
    const done = (r) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    sock.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      if (data.length >= 7 && data.length >= data.readUInt32BE(3) + 8) done({ frame: data });
    });
    sock.on('error', (error) => done({ error, data }));
    sock.on('close', () => done({ closed: true, data }));
    sock.write(HEADER);
  });
}

// The SASL mechanisms of a connection.start frame (class 10, method 10).
function mechanisms(frame) {
  assert.equal(frame[0], 1, 'a method frame');
  assert.equal(frame.readUInt16BE(7), 10);
  assert.equal(frame.readUInt16BE(9), 10);
  let at = 13; // after the version octets
  at += 4 + frame.readUInt32BE(at); // server-properties
  const len = frame.readUInt32BE(at);
  return frame.subarray(at + 4, at + 4 + len).toString().split(' ');
}

async function consume(ch, queue, n) {
  const got = [];
  let tag;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${n} messages in ${WAIT_MS} ms`)), WAIT_MS);
    ch.consume(queue, (msg) => {
      ch.ack(msg);
      got.push(msg);
      if (got.length === n) {
        clearTimeout(timer);
        resolve();
      }
    }).then((ok) => {
      tag = ok.consumerTag;
    }, reject);
  });
  await ch.cancel(tag);
  return got;
}

// The management API, with the credentials of MGMT_URL (guest:guest by default).
async function api(method, parts, body) {
  const u = new URL(MGMT_URL);
  const auth = Buffer.from(`${decodeURIComponent(u.username || 'guest')}:${decodeURIComponent(u.password || 'guest')}`);
  const target = `${u.origin}${u.pathname.replace(/\/$/, '')}/api/${parts.map(encodeURIComponent).join('/')}`;
  const res = await fetch(target, {
    method,
    headers: { authorization: `Basic ${auth.toString('base64')}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return res.status;
}

test('amqplib publishes and consumes over TLS', opts, async () => {
  // The broker's certificate is checked against the test CA and its name (127.0.0.1) against
  // its subject alternative names; the client presents its own certificate and logs in with PLAIN.
  const conn = await connect(tlsOptions());
  assert.equal(conn.connection.stream.authorized, true);
  const ch = await conn.createConfirmChannel();
  const { queue } = await ch.assertQueue(unique('q'), { exclusive: true });
  const bodies = [Buffer.from('hello over TLS'), Buffer.alloc(0), crypto.randomBytes(300000)];
  bodies.forEach((b, i) => ch.sendToQueue(queue, b, { messageId: String(i), persistent: true }));
  await ch.waitForConfirms();
  const got = await consume(ch, queue, bodies.length);
  assert.deepEqual(got.map((m) => m.content), bodies);
  assert.deepEqual(got.map((m) => m.properties.messageId), ['0', '1', '2']);
});

for (const version of ['1.2', '1.3']) {
  test(`TLS ${version} is accepted`, opts, async () => {
    const conn = await connect(tlsOptions({ version }));
    assert.equal(conn.connection.stream.getProtocol(), `TLSv${version}`);
    const ch = await conn.createChannel();
    const { queue } = await ch.assertQueue(unique('q'), { exclusive: true });
    ch.sendToQueue(queue, Buffer.from(`over TLS ${version}`));
    const [msg] = await consume(ch, queue, 1);
    assert.equal(msg.content.toString(), `over TLS ${version}`);
  });
}

test('a client trusting another CA refuses the broker', opts, async () => {
  // Client-side verification: the broker's certificate is not from a CA this client trusts.
  await assert.rejects(connect(tlsOptions({ ca: 'other-ca' })), (err) => {
    assert.match(err.code, /^(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/);
    return true;
  });
});

// The broker refuses the TLS session: the handshake fails, or (TLS 1.3, where the client may
// finish first) an alert or the end of the stream comes instead of connection.start.
async function refusedSession(options) {
  let sock;
  try {
    sock = await tlsSocket(options);
  } catch (err) {
    return err;
  }
  const r = await firstFrame(sock);
  assert.ok(!r.frame && !r.timeout, `the broker answered ${JSON.stringify(r)}`);
  return r.error;
}

for (const version of ['1.2', '1.3']) {
  test(`a client without a certificate is refused (TLS ${version})`, opts, async () => {
    await refusedSession(tlsOptions({ cert: null, version }));
    await assert.rejects(connect(tlsOptions({ cert: null, version })));
  });
}

test('a client certificate from another CA is refused', opts, async () => {
  await refusedSession(tlsOptions({ cert: 'other-client' }));
  await assert.rejects(connect(tlsOptions({ cert: 'other-client' })));
});

test('EXTERNAL is offered over TLS only', opts, async () => {
  const r = await firstFrame(await tlsSocket(tlsOptions()));
  assert.ok(r.frame, JSON.stringify(r));
  assert.ok(mechanisms(r.frame).includes('EXTERNAL'));
  if (!AMQP_URL) return;
  const plain = new URL(AMQP_URL);
  const sock = net.connect({ host: plain.hostname, port: Number(plain.port || 5672) });
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  const p = await firstFrame(sock);
  assert.ok(p.frame, JSON.stringify(p));
  assert.ok(mechanisms(p.frame).includes('PLAIN'));
  assert.ok(!mechanisms(p.frame).includes('EXTERNAL'));
});

test('EXTERNAL logs in as the certificate subject', opts, async () => {
  const user = dn('client'); // the RFC 2253 subject, as openssl prints it
  assert.equal(user, 'CN=app,OU=interop,O=Acme,C=XX');
  const external = amqp.credentials.external();
  try {
    // A user without a password; no permissions yet: the login works, the vhost is refused.
    assert.ok([201, 204].includes(await api('PUT', ['users', user], { password_hash: '', tags: '' })));
    await assert.rejects(connect(tlsOptions(), external), (err) => {
      // amqplib reports only that connection.open was answered with connection.close
      assert.match(err.message, /Expected ConnectionOpenOk; got <ConnectionClose/);
      return true;
    });
    const permissions = { configure: '.*', write: '.*', read: '.*' };
    assert.ok([201, 204].includes(await api('PUT', ['permissions', VHOST, user], permissions)));

    const conn = await connect(tlsOptions(), external);
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.assertQueue(unique('q'), { exclusive: true });
    // The broker checks a message's user_id against the login: it takes the subject ...
    ch.sendToQueue(queue, Buffer.from('from the certificate'), { userId: user });
    await ch.waitForConfirms();
    const [msg] = await consume(ch, queue, 1);
    assert.equal(msg.properties.userId, user);
    assert.equal(msg.content.toString(), 'from the certificate');
    // ... and nothing else.
    const closed = new Promise((resolve) => ch.once('error', resolve));
    ch.sendToQueue(queue, Buffer.from('x'), { userId: 'guest' });
    const err = await closed;
    assert.equal(err.code, 406);
    assert.match(err.message, new RegExp(`user_id property set to 'guest' but authenticated user was '${user}'`));
    await conn.close();
    conn.closed = true;
  } finally {
    await api('DELETE', ['users', user]);
  }
});

// RabbitMQ's user name for tricky.pem (see TRICKY_USER in test_tls.py: not openssl's form).
const TRICKY_USER = String.raw`EMAILADDRESS=app@example.com,CN=Jos\C3\A9 \<x\> \7E\;,TITLE=Dr,OU=a\+b,O=Acme\, Inc.,C=XX`;

test('EXTERNAL user names escape as RabbitMQ does', opts, async () => {
  assert.notEqual(dn('tricky'), TRICKY_USER);
  try {
    assert.ok([201, 204].includes(await api('PUT', ['users', TRICKY_USER], { password_hash: '', tags: '' })));
    const permissions = { configure: '.*', write: '.*', read: '.*' };
    assert.ok([201, 204].includes(await api('PUT', ['permissions', VHOST, TRICKY_USER], permissions)));
    const conn = await connect(tlsOptions({ cert: 'tricky' }), amqp.credentials.external());
    const ch = await conn.createConfirmChannel();
    const { queue } = await ch.assertQueue(unique('q'), { exclusive: true });
    ch.sendToQueue(queue, Buffer.from('x'), { userId: TRICKY_USER });
    await ch.waitForConfirms();
    const [msg] = await consume(ch, queue, 1);
    assert.equal(msg.properties.userId, TRICKY_USER);
    await conn.close();
    conn.closed = true;
  } finally {
    await api('DELETE', ['users', TRICKY_USER]);
  }
});

test('EXTERNAL for a subject that is no user is refused', opts, async () => {
  await assert.rejects(connect(tlsOptions({ cert: 'nobody' }), amqp.credentials.external()), (err) => {
    assert.match(err.message, /ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL/);
    return true;
  });
});

test('plain AMQP to the TLS port is closed', opts, async () => {
  // The AMQP header is no TLS ClientHello: at most a TLS alert, then the broker closes at once.
  const started = Date.now();
  const sock = net.connect({ host: HOST, port: PORT });
  await new Promise((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  const r = await firstFrame(sock);
  assert.ok(r.closed || r.error, JSON.stringify(r));
  assert.ok(r.data.length <= 7 && (r.data.length === 0 || r.data[0] === 0x15), r.data.toString('hex'));
  // amqplib speaking plain AMQP there gives up as quickly.
  await assert.rejects(amqp.connect(`amqp://guest:guest@${HOST}:${PORT}/`, { timeout: WAIT_MS }));
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  // And the listener still serves.
  await connect(tlsOptions());
});

test('TLS to the plain port is refused at once', opts, async (t) => {
  // The plain listener answers a TLS ClientHello with the AMQP protocol header and closes.
  if (!AMQP_URL) return t.skip('AMQP_URL (the plain listener) not given');
  const plain = new URL(AMQP_URL);
  const started = Date.now();
  await assert.rejects(
    new Promise((resolve, reject) => {
      const sock = tls.connect({ host: plain.hostname, port: Number(plain.port || 5672), ...tlsOptions() }, () =>
        resolve(sock),
      );
      sock.once('error', reject);
    }),
  );
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
});
