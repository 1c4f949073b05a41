// One queue: its settings and effective policy, depth and rate charts sampled while the page is
// open, consumers, bindings, Warren's non-destructive peek, publish (through the default
// exchange, as RabbitMQ's console does), purge and delete.

import { h, mount, section, facts, link, toast } from '../dom.js';
import { get, del, queuePath } from '../api.js';
import { History, lineChart, SAMPLE_MS } from '../chart.js';
import { num, rate, bytes, duration, json, exchangeLabel } from '../format.js';
import { field, form, input, select, danger } from '../forms.js';
import { RATE_SERIES, DEPTH_SERIES } from './overview.js';
import { exchangeHref } from './exchanges.js';
import { publishForm } from './publish.js';

export async function render(main, ctx, vhost, name) {
  const path = queuePath(vhost, name);
  const depthHistory = new History();
  const rateHistory = new History();
  const summary = h('div');
  const args = h('div');
  const consumers = h('div');
  const depth = lineChart({ series: DEPTH_SERIES, format: num, integer: true });
  const rates = lineChart({ series: RATE_SERIES, format: rate });
  const bindings = h('div');
  const peeked = h('div', { class: 'messages', id: 'peeked' });

  mount(main,
    h('div', { class: 'crumbs' }, link('#/queues', '← All queues')),
    h('h1', {}, 'Queue ', h('span', { class: 'mono' }, name)),
    h('div', { class: 'grid2' }, section('Details', summary), section('Arguments and policy', args)),
    h('div', { class: 'grid2' }, section('Queued messages', depth), section('Message rates', rates)),
    section('Consumers', consumers),
    section('Bindings', bindings),
    section('Peek at messages', h('div', {}, peekForm(path, peeked), peeked)),
    section('Publish a message', publishForm({ vhost, exchange: '', routingKey: name, fixedKey: true, onDone: () => refresh() })),
    section('Purge or delete', h('div', { class: 'buttons' },
      danger('Purge', `Remove every ready message from ${name}?`, async () => {
        await del(path + '/contents');
        refresh();
        return `Queue ${name} purged`;
      }),
      danger('Delete queue', `Delete the queue ${name} and its messages?`, async () => {
        await del(path);
        ctx.go('#/queues');
        return `Queue ${name} deleted`;
      }))));

  async function refresh() {
    const q = await get(path);
    const s = q.message_stats || {};
    const r = (k) => (s[k + '_details'] ? s[k + '_details'].rate : 0);
    depthHistory.push([q.messages_ready, q.messages_unacknowledged]);
    rateHistory.push([r('publish'), r('deliver_get'), r('ack'), r('redeliver')]);
    depth.draw(depthHistory.points);
    rates.draw(rateHistory.points);
    mount(summary, facts([
      ['Virtual host', q.vhost],
      ['Type', q.type],
      ['State', q.state],
      ['Durable', String(q.durable)],
      ['Auto-delete', String(q.auto_delete)],
      ['Exclusive', String(q.exclusive)],
      ['Messages', h('span', { id: 'queue-messages' }, num(q.messages))],
      ['Ready', h('span', { id: 'queue-ready' }, num(q.messages_ready))],
      ['Unacked', num(q.messages_unacknowledged)],
      ['Ready bytes', bytes(q.message_bytes_ready)],
      ['Oldest message waited', duration(q.head_message_age_seconds)],
      ['Consumers', num(q.consumers)],
      ['Consumer utilisation', q.consumers ? `${Math.round(q.consumer_utilisation * 100)} %` : undefined],
      ['Memory', bytes(q.memory)],
    ]));
    mount(args, keyValues('Arguments', q.arguments), facts([
      ['Policy', q.policy || 'none'],
      ['Operator policy', q.operator_policy || 'none'],
    ]), keyValues('Effective policy definition', q.effective_policy_definition));
    const cs = q.consumer_details || [];
    mount(consumers, cs.length ? h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, ['Consumer tag', 'Channel', 'Ack required', 'Exclusive', 'Prefetch', 'Arguments']
        .map((t) => h('th', {}, t)))),
      h('tbody', {}, cs.map((c) => h('tr', {},
        h('td', { class: 'mono' }, c.consumer_tag), h('td', {}, (c.channel_details || {}).name || ''),
        h('td', {}, String(c.ack_required)), h('td', {}, String(c.exclusive)),
        h('td', {}, c.prefetch_count), h('td', { class: 'mono' }, json(c.arguments)))))) : h('p', { class: 'empty' }, 'No consumers.'));
  }

  async function refreshBindings() {
    const list = await get(path + '/bindings');
    mount(bindings, h('table', { class: 'list' },
      h('thead', {}, h('tr', {}, ['From exchange', 'Routing key', 'Arguments'].map((t) => h('th', {}, t)))),
      h('tbody', {}, list.map((b) => h('tr', {},
        h('td', {}, link(exchangeHref(b.vhost, b.source), exchangeLabel(b.source))),
        h('td', { class: 'mono' }, b.routing_key), h('td', { class: 'mono' }, json(b.arguments)))))));
  }

  await Promise.all([refresh(), refreshBindings()]);
  ctx.every(SAMPLE_MS, () => refresh().catch((e) => toast(e.message, 'error')));
}

function keyValues(title, obj) {
  const entries = Object.entries(obj || {});
  return h('div', { class: 'kv' }, h('h3', {}, title), entries.length
    ? h('table', { class: 'list compact' }, h('tbody', {}, entries.map(([k, v]) =>
      h('tr', {}, h('th', { class: 'mono' }, k), h('td', { class: 'mono' }, typeof v === 'string' ? v : JSON.stringify(v))))))
    : h('p', { class: 'empty' }, 'none'));
}

// GET /api/queues/{v}/{q}/messages (Warren's): ready messages shown where they are, not
// redelivered and not counted as delivered.
function peekForm(path, out) {
  return form({
    inline: true,
    submit: 'Peek',
    fields: [
      field('From position', input('offset', { type: 'number', min: 0, value: 0 })),
      field('Count', input('count', { type: 'number', min: 1, max: 1000, value: 5 })),
      field('Show as', select('encoding', [['auto', 'text when possible'], ['base64', 'base64']], 'auto')),
    ],
    run: async (v) => {
      const q = new URLSearchParams({ offset: v.offset || 0, count: v.count || 1, encoding: v.encoding, truncate: 50000 });
      const messages = await get(`${path}/messages?${q}`);
      mount(out, messages.length ? messages.map((m, i) => message(m, Number(v.offset || 0) + i))
        : h('p', { class: 'empty' }, 'No ready messages at this position.'));
    },
  });
}

function message(m, position) {
  const props = Array.isArray(m.properties) ? {} : m.properties;
  return h('article', { class: 'message' },
    h('header', {},
      h('b', {}, `#${position}`),
      ` exchange ${exchangeLabel(m.exchange)} · routing key `, h('span', { class: 'mono' }, m.routing_key),
      ` · ${num(m.payload_bytes)} bytes`, m.redelivered ? ' · redelivered' : '',
      m.payload_encoding === 'base64' ? ' · base64' : ''),
    Object.keys(props).length ? h('div', { class: 'mono props' }, JSON.stringify(props)) : null,
    h('pre', { class: 'payload' }, m.payload));
}
