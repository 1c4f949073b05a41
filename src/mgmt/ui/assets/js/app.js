// The console's shell: hash routes (#/queues/%2F/jobs) so one HTML page serves every view, the
// login form, the navigation, and per-view timers that stop when the view is left.

import { h, mount, toast } from './dom.js';
import { session, call, basic } from './api.js';
import * as overview from './pages/overview.js';
import * as queues from './pages/queues.js';
import * as queue from './pages/queue.js';
import * as exchanges from './pages/exchanges.js';
import * as connections from './pages/connections.js';
import * as admin from './pages/admin.js';

const main = document.getElementById('main');
const top = document.getElementById('top');

const NAV = [
  ['', 'Overview'], ['connections', 'Connections'], ['channels', 'Channels'], ['exchanges', 'Exchanges'],
  ['queues', 'Queues'], ['consumers', 'Consumers'], ['admin', 'Admin'],
];

const ROUTES = [
  [/^$/, overview.render],
  [/^queues$/, queues.render],
  [/^queues\/([^/]+)\/([^/]+)$/, queue.render],
  [/^exchanges$/, exchanges.list],
  [/^exchanges\/([^/]+)\/([^/]+)$/, exchanges.show],
  [/^connections$/, connections.connections],
  [/^channels$/, connections.channels],
  [/^consumers$/, connections.consumers],
  [/^admin(?:\/([a-z]+))?$/, admin.render],
];

let timers = [];
let me = null;
let generation = 0;

function stopTimers() {
  timers.forEach(clearInterval);
  timers = [];
}

// What a view gets: who is logged in, and `every` for polling that stops when the view is left
// (the first call is the view's own).
function context(gen) {
  return {
    me,
    every(ms, fn) {
      const tick = () => { if (gen === generation) fn(); };
      timers.push(setInterval(tick, ms));
    },
    go(hash) { location.hash = hash; },
  };
}

async function route() {
  generation++;
  stopTimers();
  if (!session.token) return showLogin();
  if (!me) {
    try {
      me = await call('GET', '/whoami');
    } catch (e) {
      return showLogin(e.message);
    }
    overview.startSampling();
  }
  const path = location.hash.replace(/^#\/?/, '');
  drawHeader(path);
  for (const [re, view] of ROUTES) {
    const m = path.match(re);
    if (!m) continue;
    const params = m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
    // A view draws into its own element: one still loading when the user moves on writes into
    // a detached node, not over the next view.
    const here = h('div');
    mount(main, here);
    window.scrollTo(0, 0);
    try {
      await view(here, context(generation), ...params);
    } catch (e) {
      if (e.status !== 401) mount(here, h('section', { class: 'panel' }, h('p', { class: 'error' }, e.message)));
    }
    return;
  }
  mount(main, h('section', { class: 'panel' }, h('h2', {}, 'Not found'), h('p', {}, 'No such page. '), h('a', { href: '#/' }, 'Overview')));
}

function drawHeader(path) {
  top.hidden = false;
  const current = path.split('/')[0];
  const tags = Array.isArray(me.tags) ? me.tags : String(me.tags || '').split(',');
  const admin = tags.some((t) => t === 'administrator' || t === 'policymaker');
  mount(document.getElementById('nav'), NAV.filter(([p]) => p !== 'admin' || admin)
    .map(([p, label]) => h('a', { href: '#/' + p, class: p === current ? 'active' : '' }, label)));
  mount(document.getElementById('who'), 'User ', h('b', {}, me.name), ' ',
    h('button', { class: 'small', type: 'button', onclick: logout }, 'Log out'));
}

function logout() {
  session.clear();
  me = null;
  overview.stopSampling();
  location.hash = '#/';
  showLogin();
}

function showLogin(reason) {
  stopTimers();
  overview.stopSampling();
  me = null;
  top.hidden = true;
  const user = h('input', { name: 'username', id: 'login-user', autocomplete: 'username', required: true, autofocus: true });
  const password = h('input', { name: 'password', id: 'login-password', type: 'password', autocomplete: 'current-password' });
  const error = h('p', { class: 'form-error', role: 'alert', id: 'login-error' }, reason || '');
  const button = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', { class: 'login', id: 'login' },
    h('h1', {}, h('img', { src: '/ui/favicon.svg', alt: '', width: 28, height: 28 }), ' Warren'),
    h('label', { class: 'field', for: 'login-user' }, h('span', {}, 'Username'), user),
    h('label', { class: 'field', for: 'login-password' }, h('span', {}, 'Password'), password),
    button, error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    mount(error);
    const token = basic(user.value, password.value);
    try {
      await call('GET', '/whoami', undefined, token);
      session.save(user.value, password.value);
      route();
    } catch (err) {
      mount(error, err.message);
      button.disabled = false;
    }
  });
  mount(main, form);
  user.focus();
}

window.addEventListener('warren:logout', (e) => {
  showLogin(e.detail);
  toast('Logged out: ' + e.detail, 'error');
});
window.addEventListener('hashchange', route);
route();
