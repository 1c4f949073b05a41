// What the UI test needs besides the browser: the broker's URLs, a headless Chromium with a
// fresh profile, and AMQP traffic for the console to show.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const amqp = require('amqplib');
const { chromium } = require('playwright-core');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2F';
const mgmt = new URL(process.env.MGMT_URL || 'http://127.0.0.1:15672');
const USER = decodeURIComponent(mgmt.username) || 'guest';
const PASSWORD = decodeURIComponent(mgmt.password) || 'guest';
mgmt.username = '';
mgmt.password = '';
const MGMT_URL = mgmt.href.replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = path.resolve(process.env.UI_SCREENSHOTS || path.join(__dirname, 'screenshots'));

const suffix = crypto.randomBytes(3).toString('hex');
const unique = (name) => `${name}.${suffix}`;

// Without the background-networking flags Chromium keeps calling home (updates, sync, field
// trials), which on a closed network is a stream of failing connections.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--metrics-recording-only', '--mute-audio',
];

async function browser() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-ui-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

// The management API directly, to check what the UI did.
async function api(method, p, body) {
  const r = await fetch(MGMT_URL + '/api' + p, {
    method,
    headers: {
      authorization: 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64'),
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// A steady trickle through a consumed queue while the test runs, so the rate charts, the
// connection, channel and consumer lists have something live to show.
async function traffic(queue, perSecond = 40) {
  const conn = await amqp.connect(AMQP_URL, { clientProperties: { connection_name: 'ui-test traffic' } });
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  await pub.assertQueue(queue, { durable: false, arguments: { 'x-max-length': 10000 } });
  await sub.prefetch(50);
  await sub.consume(queue, (m) => m && sub.ack(m), { consumerTag: `ui-test-consumer.${suffix}` });
  let n = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < perSecond / 10; i++) pub.sendToQueue(queue, Buffer.from(`tick ${n++}`));
  }, 100);
  return {
    async stop() {
      clearInterval(timer);
      await pub.waitForConfirms().catch(() => {});
      await conn.close().catch(() => {});
    },
  };
}

// Until every chart on the page holds `n` samples (one per 5 s).
async function samples(page, n, timeout = 60000) {
  await page.waitForFunction((n) => [...document.querySelectorAll('canvas')].every((c) => Number(c.dataset.samples) >= n),
    n, { timeout, polling: 250 });
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  // Let charts and tables finish drawing from their last poll; no toast over the page.
  await page.evaluate(() => document.getElementById('toast').classList.remove('show'));
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

module.exports = { AMQP_URL, MGMT_URL, USER, PASSWORD, SHOTS, unique, browser, api, traffic, samples, shot, amqp };
