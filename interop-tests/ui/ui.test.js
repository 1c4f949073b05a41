// Warren's web console in a real headless Chromium: a wrong password is refused with the API's
// reason; after logging in, a queue declared over AMQP is listed, its messages are peeked
// without being taken, a message published from the page raises its depth, and every main page
// renders. Screenshots of the main pages go to $UI_SCREENSHOTS (docs/ui in the README).

const assert = require('node:assert/strict');
const { test, before, after } = require('node:test');
const { AMQP_URL, MGMT_URL, USER, PASSWORD, SHOTS, unique, browser, api, traffic, samples, shot, amqp } = require('./lib');

const T = { timeout: 180000 };
const queue = unique('ui-test.orders');
const trafficQueue = unique('ui-test.traffic');
// A name that would be markup if the page ever parsed API data as HTML.
const hostile = unique('ui-test.<b>bold</b><img src=x onerror=alert(1)>');
const policy = unique('ui-test-cap');

let b;
let page;
let live;
let conn;
const pageErrors = [];

// Polls `f` until it returns true (Playwright's own waits cover elements, not counts).
async function eventually(what, f, ms = 20000) {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  console.log(`# MGMT_URL=${MGMT_URL} AMQP_URL=${AMQP_URL} screenshots: ${SHOTS}`);
  conn = await amqp.connect(AMQP_URL);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-max-length': 1000 } });
  await ch.assertQueue(hostile, { durable: false });
  await ch.bindQueue(queue, 'amq.direct', 'orders.created');
  for (let i = 1; i <= 3; i++) ch.sendToQueue(queue, Buffer.from(`hello ${i}`), { contentType: 'text/plain', persistent: true });
  await ch.waitForConfirms();
  await ch.close();
  live = await traffic(trafficQueue);
  b = await browser();
  page = b.context.pages()[0] || (await b.context.newPage());
  page.setDefaultTimeout(20000);
  page.on('dialog', (d) => d.accept());
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // The page's Content-Security-Policy must not block any of its own scripts or styles.
  page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) pageErrors.push(m.text()); });
});

after(async () => {
  if (b) await b.close();
  if (live) await live.stop();
  for (const q of [queue, hostile, trafficQueue]) await api('DELETE', `/queues/%2F/${encodeURIComponent(q)}`).catch(() => {});
  await api('DELETE', `/policies/%2F/${encodeURIComponent(policy)}`).catch(() => {});
  if (conn) await conn.close().catch(() => {});
});

async function ready() {
  return (await api('GET', `/queues/%2F/${encodeURIComponent(queue)}`)).body.messages_ready;
}

test('a wrong password is refused with the API reason', T, async () => {
  await page.goto(MGMT_URL + '/');
  await page.fill('#login-user', USER);
  await page.fill('#login-password', PASSWORD + '-wrong');
  await page.click('#login button[type=submit]');
  await page.getByText('Login failed').waitFor();
  await shot(page, 'login');
  assert.equal(await page.locator('#top').isVisible(), false, 'no console without a login');
});

test('logging in shows the overview', T, async () => {
  await page.fill('#login-user', USER);
  await page.fill('#login-password', PASSWORD);
  await page.click('#login button[type=submit]');
  await page.locator('h1', { hasText: 'Overview' }).waitFor();
  assert.equal(await page.locator('#who b').textContent(), USER);
  await page.locator('.tile', { hasText: 'Queues' }).waitFor();
});

test('the queues list shows a queue declared over AMQP, found by the search', T, async () => {
  await page.click('#nav a:text-is("Queues")');
  await page.locator('h1', { hasText: 'Queues' }).waitFor();
  await page.fill('input.search', queue);
  const row = page.locator('tbody tr', { has: page.getByRole('link', { name: queue, exact: true }) });
  await row.waitFor();
  await eventually('the search to leave one row', async () => (await page.locator('table.list tbody tr').count()) === 1);
  const readyColumn = await page.locator('thead th').allTextContents().then((t) => t.indexOf('Ready'));
  assert.equal(await row.locator('td').nth(readyColumn).textContent(), '3', 'three ready messages');
  // Sorting asks the API; the queue is still there after two clicks on a column.
  await page.click('th:text-is("Ready")');
  await page.click('th:text-is("Ready")');
  await row.waitFor();
});

test('names are shown as text, never as markup', T, async () => {
  await page.fill('input.search', 'ui-test.<b>');
  const link = page.getByRole('link', { name: hostile, exact: true });
  await link.waitFor();
  assert.equal(await link.locator('b, img').count(), 0);
  await link.click();
  await page.locator('h1 .mono', { hasText: hostile }).waitFor();
  await page.goBack();
});

test('the queue page peeks at messages without taking them', T, async () => {
  await page.goto(`${MGMT_URL}/#/queues/%2F/${encodeURIComponent(queue)}`);
  await page.locator('h1', { hasText: queue }).waitFor();
  await page.locator('#queue-ready', { hasText: '3' }).waitFor();
  await page.getByText('x-max-length').first().waitFor();
  await page.getByRole('button', { name: 'Peek' }).click();
  const messages = page.locator('#peeked .message');
  await messages.first().waitFor();
  assert.equal(await messages.count(), 3);
  assert.equal(await messages.nth(0).locator('.payload').textContent(), 'hello 1');
  assert.equal(await messages.nth(2).locator('.payload').textContent(), 'hello 3');
  assert.match(await messages.nth(0).textContent(), /text\/plain/);
  assert.equal(await ready(), 3, 'peeking leaves the messages ready');
  const peeked = await api('GET', `/queues/%2F/${encodeURIComponent(queue)}`);
  assert.equal(peeked.body.message_stats.deliver_get, 0, 'and counts no delivery');
});

test('a message published from the page raises the depth', T, async () => {
  const form = page.locator('section', { hasText: 'Publish a message' });
  await form.locator('textarea[name=payload]').fill('from the console');
  await form.locator('input[name=content_type]').fill('text/plain');
  await form.getByRole('button', { name: 'Publish message' }).click();
  await page.locator('#toast', { hasText: 'Message published' }).waitFor();
  await page.locator('#queue-ready', { hasText: '4' }).waitFor();
  assert.equal(await ready(), 4);
  await page.getByRole('button', { name: 'Peek' }).click();
  await page.locator('#peeked .message').nth(3).locator('.payload', { hasText: 'from the console' }).waitFor();
  await page.locator('section', { hasText: 'Peek at messages' }).evaluate((e) => e.scrollIntoView());
  await shot(page, 'queue-peek');
});

test('a busy queue\'s page charts its rates and lists its consumer', T, async () => {
  await page.goto(`${MGMT_URL}/#/queues/%2F/${encodeURIComponent(trafficQueue)}`);
  await page.getByText(`ui-test-consumer.`).first().waitFor();
  await samples(page, 3);
  await shot(page, 'queue');
});

test('the main pages render', T, async () => {
  await page.click('#nav a:text-is("Connections")');
  await page.getByText('ui-test traffic').first().waitFor();
  await shot(page, 'connections');

  await page.click('#nav a:text-is("Channels")');
  await page.locator('table.list tbody tr').first().waitFor();
  await page.locator('h1', { hasText: 'Channels' }).waitFor();

  await page.click('#nav a:text-is("Consumers")');
  await page.getByText(`ui-test-consumer`).first().waitFor();

  await page.click('#nav a:text-is("Exchanges")');
  await page.getByRole('link', { name: 'amq.direct', exact: true }).waitFor();
  await shot(page, 'exchanges');
  await page.getByRole('link', { name: 'amq.direct', exact: true }).click();
  await page.locator('h1', { hasText: 'amq.direct' }).waitFor();
  await page.getByRole('link', { name: queue, exact: true }).waitFor();

  await page.click('#nav a:text-is("Queues")');
  await page.locator('table.list tbody tr').first().waitFor();
  await page.fill('input.search', 'ui-test');
  await page.getByRole('link', { name: trafficQueue, exact: true }).waitFor();
  await shot(page, 'queues');
});

test('admin: users, vhosts, permissions, a policy added and deleted, definitions', T, async () => {
  await page.click('#nav a:text-is("Admin")');
  await page.locator('table.list td', { hasText: USER }).first().waitFor();
  await page.click('.tabs a:text-is("Virtual hosts")');
  await page.locator('table.list td', { hasText: '/' }).first().waitFor();
  await page.click('.tabs a:text-is("Permissions")');
  await page.locator('table.list td', { hasText: USER }).first().waitFor();

  await page.click('.tabs a:text-is("Policies")');
  const form = page.locator('form');
  await form.locator('input[name=name]').fill(policy);
  await form.locator('input[name=pattern]').fill('^ui-test\\.orders\\.');
  await form.locator('textarea[name=definition]').fill('{"max-length": 5000}');
  await form.getByRole('button', { name: 'Save policy' }).click();
  await page.locator('table.list td', { hasText: policy }).waitFor();
  assert.equal((await api('GET', `/policies/%2F/${encodeURIComponent(policy)}`)).status, 200);
  await shot(page, 'admin');
  await page.locator('tr', { hasText: policy }).getByRole('button', { name: 'Delete' }).click();
  await page.locator('table.list td', { hasText: policy }).waitFor({ state: 'detached' });
  assert.equal((await api('GET', `/policies/%2F/${encodeURIComponent(policy)}`)).status, 404);

  await page.click('.tabs a:text-is("Definitions")');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download definitions' }).click(),
  ]);
  const doc = JSON.parse(require('node:fs').readFileSync(await download.path(), 'utf8'));
  assert.ok(doc.queues.some((q) => q.name === queue), 'the download holds the queue');
  await page.locator('textarea[name=definitions]').fill(JSON.stringify({ queues: [{ name: 'ui-test.bad', vhost: 'no-such-vhost' }] }));
  await page.getByRole('button', { name: 'Upload definitions' }).click();
  await page.locator('.form-error').filter({ hasText: /\S/ }).waitFor();
});

test('the overview charts the message rates', T, async () => {
  await page.click('#nav a:text-is("Overview")');
  await page.locator('.legend b').first().waitFor();
  await samples(page, 6);
  // The traffic has run for well over two samples by now: the publish rate is above zero.
  await page.waitForFunction(() => {
    const b = document.querySelector('.legend b');
    return b && /^[1-9]|^0\.[1-9]/.test(b.textContent);
  }, null, { timeout: 30000 });
  await shot(page, 'overview');
});

test('the queue is purged and deleted from its page', T, async () => {
  await page.goto(`${MGMT_URL}/#/queues/%2F/${encodeURIComponent(queue)}`);
  await page.locator('#queue-ready', { hasText: '4' }).waitFor();
  await page.getByRole('button', { name: 'Purge' }).click();
  await page.locator('#queue-ready', { hasText: /^0$/ }).waitFor();
  await page.getByRole('button', { name: 'Delete queue' }).click();
  await page.locator('h1', { hasText: 'Queues' }).waitFor();
  assert.equal((await api('GET', `/queues/%2F/${encodeURIComponent(queue)}`)).status, 404);
});

test('a 401 from the API sends the user back to the login form', T, async () => {
  await page.evaluate(() => sessionStorage.setItem('warren.credentials', 'Basic ' + btoa('guest:stale')));
  await page.click('#nav a:text-is("Exchanges")');
  await page.locator('#login-error', { hasText: 'Login failed' }).waitFor();
});

test('no script error and no CSP refusal on any page', T, () => {
  assert.deepEqual(pageErrors, []);
});
