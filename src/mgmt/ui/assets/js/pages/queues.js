// All queues: the broker filters, sorts and pages the list; a form declares a new one.

import { h, mount, section, link } from '../dom.js';
import { get, put, queuePath } from '../api.js';
import { table } from '../table.js';
import { num, rate, features } from '../format.js';
import { field, form, input, select, checkbox, textarea, jsonObject } from '../forms.js';

export const queueHref = (vhost, name) => `#/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;

const r = (key) => (q) => rate(q.message_stats && q.message_stats[key + '_details'] && q.message_stats[key + '_details'].rate);

export const QUEUE_COLUMNS = [
  { label: 'Virtual host', key: 'vhost' },
  { label: 'Name', key: 'name', wrap: true, value: (q) => link(queueHref(q.vhost, q.name), q.name) },
  { label: 'Features', value: (q) => h('span', { class: 'tags' }, features(q)) },
  { label: 'Policy', key: 'policy' },
  { label: 'Consumers', key: 'consumers', num: true },
  { label: 'Ready', key: 'messages_ready', num: true, value: (q) => num(q.messages_ready) },
  { label: 'Unacked', key: 'messages_unacknowledged', num: true, value: (q) => num(q.messages_unacknowledged) },
  { label: 'Total', key: 'messages', num: true, value: (q) => num(q.messages) },
  { label: 'Incoming', key: 'message_stats.publish_details.rate', num: true, value: r('publish') },
  { label: 'Deliver / get', key: 'message_stats.deliver_get_details.rate', num: true, value: r('deliver_get') },
  { label: 'Ack', key: 'message_stats.ack_details.rate', num: true, value: r('ack') },
];

export async function vhostNames() {
  return (await get('/vhosts?columns=name')).map((v) => v.name);
}

export async function render(main, ctx) {
  const list = table({ columns: QUEUE_COLUMNS, source: '/queues', empty: 'No queues yet.' });
  const adder = h('div');
  mount(main, h('h1', {}, 'Queues'), section('All queues', list), section('Add a queue', adder));
  ctx.every(5000, () => list.refresh());
  const vhosts = await vhostNames();
  mount(adder, form({
    inline: true,
    submit: 'Add queue',
    fields: [
      field('Virtual host', select('vhost', vhosts, vhosts.includes('/') ? '/' : vhosts[0])),
      field('Name', input('name', { required: true, placeholder: 'orders' })),
      field('Durable', checkbox('durable', true)),
      field('Auto-delete', checkbox('auto_delete', false)),
      field('Arguments', textarea('arguments', { rows: 1, placeholder: '{"x-max-length": 1000}' }), 'JSON'),
    ],
    run: async (v) => {
      await put(queuePath(v.vhost, v.name), {
        durable: v.durable, auto_delete: v.auto_delete, arguments: jsonObject(v.arguments, 'Arguments'),
      });
      return `Queue ${v.name} declared`;
    },
    onDone: () => list.refresh(),
  }));
}
