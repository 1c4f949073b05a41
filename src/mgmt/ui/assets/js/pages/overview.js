// The node at a glance: object counts, queued messages and message rates. The broker gives
// rates only as of its last 5 s sample, so the charts are the history this tab has sampled; it
// keeps sampling while the user is on other views, so coming back shows the recent past.

import { h, mount, section, facts } from '../dom.js';
import { get } from '../api.js';
import { History, lineChart, SAMPLE_MS } from '../chart.js';
import { num, rate, duration } from '../format.js';

const history = { rates: new History(), depth: new History(), last: null, listeners: new Set() };
let sampler = null;

async function sample() {
  try {
    const o = await get('/overview');
    const s = o.message_stats || {};
    const r = (k) => (s[k + '_details'] ? s[k + '_details'].rate : 0);
    history.rates.push([r('publish'), r('deliver_get'), r('ack'), r('redeliver')]);
    const q = o.queue_totals || {};
    history.depth.push([q.messages_ready || 0, q.messages_unacknowledged || 0]);
    history.last = o;
    history.listeners.forEach((f) => f(o));
  } catch {
    // A failed sample leaves a gap; a 401 has already sent the user to the login form.
  }
}

export function startSampling() {
  if (sampler) return;
  sample();
  sampler = setInterval(sample, SAMPLE_MS);
}

export function stopSampling() {
  clearInterval(sampler);
  sampler = null;
  history.rates.points = [];
  history.depth.points = [];
  history.last = null;
}

export const RATE_SERIES = [
  { label: 'Publish', color: '#e8672a' },
  { label: 'Deliver / get', color: '#2f7ed8' },
  { label: 'Ack', color: '#36a561' },
  { label: 'Redeliver', color: '#a05cc9' },
];
export const DEPTH_SERIES = [
  { label: 'Ready', color: '#2f7ed8' },
  { label: 'Unacked', color: '#e0a100' },
];

export async function render(main) {
  const tiles = h('div', { class: 'tiles' });
  const rates = lineChart({ series: RATE_SERIES, format: rate });
  const depth = lineChart({ series: DEPTH_SERIES, format: num, integer: true });
  const node = h('div');
  mount(main,
    h('h1', {}, 'Overview'),
    tiles,
    h('div', { class: 'grid2' },
      section('Message rates', rates),
      section('Queued messages', depth)),
    section('Node', node));

  const draw = (o) => {
    if (!tiles.isConnected) {
      history.listeners.delete(draw);
      return;
    }
    const t = o.object_totals || {};
    const q = o.queue_totals || {};
    const tile = (label, value, href) => h(href ? 'a' : 'div', { class: 'tile', href }, h('span', {}, label), h('b', {}, num(value)));
    mount(tiles,
      tile('Connections', t.connections, '#/connections'),
      tile('Channels', t.channels, '#/channels'),
      tile('Exchanges', t.exchanges, '#/exchanges'),
      tile('Queues', t.queues, '#/queues'),
      tile('Consumers', t.consumers, '#/consumers'),
      tile('Ready', q.messages_ready),
      tile('Unacked', q.messages_unacknowledged),
      tile('Total messages', q.messages));
    rates.draw(history.rates.points);
    depth.draw(history.depth.points);
  };
  const drawNode = async () => {
    const [o, n] = await Promise.all([get('/overview'), get('/nodes').then((l) => l[0]).catch(() => ({}))]);
    mount(node,
      facts([
        ['Product', `${o.product_name} ${o.product_version} (RabbitMQ API ${o.management_version})`],
        ['Node', o.node],
        ['Cluster', o.cluster_name],
        ['Uptime', n.uptime !== undefined ? duration(Math.floor(n.uptime / 1000)) : undefined],
        ['Memory', n.mem_used !== undefined ? `${(n.mem_used / 1048576).toFixed(1)} MiB` : undefined],
        ['File descriptors', n.fd_used !== undefined ? `${num(n.fd_used)} of ${num(n.fd_total)}` : undefined],
      ]),
      h('table', { class: 'list compact' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Protocol'), h('th', {}, 'Address'), h('th', { class: 'num' }, 'Port'))),
        h('tbody', {}, (o.listeners || []).map((l) =>
          h('tr', {}, h('td', {}, l.protocol), h('td', {}, l.ip_address), h('td', { class: 'num' }, l.port))))));
    if (!history.last) {
      history.last = o;
    }
    draw(history.last);
  };
  history.listeners.add(draw);
  await drawNode();
}
