// Live traffic: connections (which can be closed from here), channels and consumers.

import { h, mount, section, link } from '../dom.js';
import { get, del, seg } from '../api.js';
import { table } from '../table.js';
import { num, bytes, time, json } from '../format.js';
import { danger } from '../forms.js';
import { queueHref } from './queues.js';

const client = (c) => {
  const p = c.client_properties || {};
  return [p.product, p.version].filter(Boolean).join(' ');
};

export async function connections(main, ctx) {
  const t = table({
    source: '/connections',
    empty: 'No client is connected.',
    columns: [
      { label: 'Name', key: 'name', wrap: true, value: (c) => [h('span', { class: 'mono' }, c.name),
        c.user_provided_name ? h('div', { class: 'sub' }, c.user_provided_name) : null] },
      { label: 'User', key: 'user' },
      { label: 'Virtual host', key: 'vhost' },
      { label: 'Client', value: client },
      { label: 'Protocol', key: 'protocol' },
      { label: 'TLS', key: 'ssl', value: (c) => (c.ssl ? 'yes' : 'no') },
      { label: 'Channels', key: 'channels', num: true },
      { label: 'Received', key: 'recv_oct', num: true, value: (c) => bytes(c.recv_oct) },
      { label: 'Sent', key: 'send_oct', num: true, value: (c) => bytes(c.send_oct) },
      { label: 'Connected at', key: 'connected_at', value: (c) => time(c.connected_at) },
      { label: '', value: (c) => danger('Close', `Close the connection ${c.name}?`, async () => {
        await del(`/connections/${seg(c.name)}`);
        t.refresh();
        return 'Connection closed';
      }) },
    ],
  });
  mount(main, h('h1', {}, 'Connections'), section('All connections', t));
  ctx.every(5000, () => t.refresh());
}

export async function channels(main, ctx) {
  const t = table({
    source: '/channels',
    empty: 'No channel is open.',
    columns: [
      { label: 'Channel', key: 'name', value: (c) => h('span', { class: 'mono' }, c.name) },
      { label: 'User', key: 'user' },
      { label: 'Virtual host', key: 'vhost' },
      { label: 'Mode', value: (c) => [c.confirm ? 'confirm' : '', c.transactional ? 'transactional' : ''].filter(Boolean).join(' ') },
      { label: 'Prefetch', key: 'prefetch_count', num: true },
      { label: 'Unacked', key: 'messages_unacknowledged', num: true, value: (c) => num(c.messages_unacknowledged) },
      { label: 'Consumers', key: 'consumer_count', num: true },
    ],
  });
  mount(main, h('h1', {}, 'Channels'), section('All channels', t));
  ctx.every(5000, () => t.refresh());
}

export async function consumers(main, ctx) {
  // Consumers have no `name` for the API's filter: this list is filtered here, by tag or queue.
  const t = table({
    source: { load: () => get('/consumers'), text: (c) => `${c.consumer_tag} ${c.queue.name}` },
    sort: 'queue.name',
    empty: 'No consumers.',
    columns: [
      { label: 'Virtual host', key: 'queue.vhost' },
      { label: 'Queue', key: 'queue.name', value: (c) => link(queueHref(c.queue.vhost, c.queue.name), c.queue.name) },
      { label: 'Consumer tag', key: 'consumer_tag', value: (c) => h('span', { class: 'mono' }, c.consumer_tag) },
      { label: 'Channel', key: 'channel_details.name', value: (c) => h('span', { class: 'mono' }, (c.channel_details || {}).name || '') },
      { label: 'Ack required', key: 'ack_required', value: (c) => String(c.ack_required) },
      { label: 'Exclusive', key: 'exclusive', value: (c) => String(c.exclusive) },
      { label: 'Prefetch', key: 'prefetch_count', num: true },
      { label: 'Arguments', value: (c) => h('span', { class: 'mono' }, json(c.arguments)) },
    ],
  });
  mount(main, h('h1', {}, 'Consumers'), section('All consumers', t));
  ctx.every(5000, () => t.refresh());
}
