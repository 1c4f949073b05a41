// Exchanges: the list with a declare form, and one exchange's page with its bindings (both
// ways), a bind form, publish and delete.

import { h, mount, section, facts, link } from '../dom.js';
import { get, put, post, del, seg, exchangePath } from '../api.js';
import { table } from '../table.js';
import { json, features, exchangeLabel } from '../format.js';
import { field, form, input, select, checkbox, textarea, jsonObject, danger } from '../forms.js';
import { queueHref, vhostNames } from './queues.js';
import { publishForm } from './publish.js';

export const exchangeHref = (vhost, name) =>
  `#/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(name === '' ? 'amq.default' : name)}`;

const TYPES = ['direct', 'fanout', 'topic', 'headers', 'x-consistent-hash', 'x-delayed-message', 'x-message-deduplication'];

export async function list(main, ctx) {
  const t = table({
    source: '/exchanges',
    columns: [
      { label: 'Virtual host', key: 'vhost' },
      { label: 'Name', key: 'name', wrap: true, value: (x) => link(exchangeHref(x.vhost, x.name), exchangeLabel(x.name)) },
      { label: 'Type', key: 'type' },
      { label: 'Features', value: (x) => h('span', { class: 'tags' }, features(x)) },
      { label: 'Policy', key: 'policy' },
    ],
  });
  const adder = h('div');
  mount(main, h('h1', {}, 'Exchanges'), section('All exchanges', t), section('Add an exchange', adder));
  ctx.every(5000, () => t.refresh());
  const vhosts = await vhostNames();
  mount(adder, form({
    inline: true,
    submit: 'Add exchange',
    fields: [
      field('Virtual host', select('vhost', vhosts, vhosts.includes('/') ? '/' : vhosts[0])),
      field('Name', input('name', { required: true })),
      field('Type', select('type', TYPES, 'direct')),
      field('Durable', checkbox('durable', true)),
      field('Auto-delete', checkbox('auto_delete', false)),
      field('Internal', checkbox('internal', false)),
      field('Arguments', textarea('arguments', { rows: 1, placeholder: '{"alternate-exchange": "unrouted"}' }), 'JSON'),
    ],
    run: async (v) => {
      await put(exchangePath(v.vhost, v.name), {
        type: v.type, durable: v.durable, auto_delete: v.auto_delete, internal: v.internal,
        arguments: jsonObject(v.arguments, 'Arguments'),
      });
      return `Exchange ${v.name} declared`;
    },
    onDone: () => t.refresh(),
  }));
}

export async function show(main, ctx, vhost, urlName) {
  const name = urlName === 'amq.default' ? '' : urlName;
  const path = exchangePath(vhost, name);
  const x = await get(path);
  const outgoing = h('div');
  const incoming = h('div');
  const label = exchangeLabel(name);

  async function refresh() {
    const [src, dst] = await Promise.all([get(path + '/bindings/source'), get(path + '/bindings/destination')]);
    mount(outgoing, bindingTable(src, 'destination', true, refresh));
    mount(incoming, bindingTable(dst, 'source', false, refresh));
  }

  const canBind = name !== '';
  mount(main,
    h('div', { class: 'crumbs' }, link('#/exchanges', '← All exchanges')),
    h('h1', {}, 'Exchange ', h('span', { class: 'mono' }, label)),
    h('div', { class: 'grid2' },
      section('Details', facts([
        ['Virtual host', x.vhost], ['Type', x.type], ['Durable', String(x.durable)],
        ['Auto-delete', String(x.auto_delete)], ['Internal', String(x.internal)],
        ['Arguments', json(x.arguments) || 'none'], ['Policy', x.policy || 'none'],
      ])),
      section('Publish a message', publishForm({ vhost, exchange: name }))),
    section('Bindings from this exchange', h('div', {}, outgoing,
      canBind ? [h('h3', {}, 'Add a binding'), bindForm(vhost, name, refresh)] : null)),
    section('Bindings to this exchange', incoming),
    canBind && !name.startsWith('amq.') ? section('Delete', h('div', { class: 'buttons' },
      danger('Delete exchange', `Delete the exchange ${label}?`, async () => {
        await del(path);
        ctx.go('#/exchanges');
        return `Exchange ${label} deleted`;
      }))) : null);
  await refresh();
}

function bindingTable(list, end, unbindable, refresh) {
  if (!list.length) return h('p', { class: 'empty' }, 'No bindings.');
  const target = (b) => (end === 'destination' && b.destination_type === 'queue'
    ? link(queueHref(b.vhost, b.destination), b.destination) : link(exchangeHref(b.vhost, b[end]), exchangeLabel(b[end])));
  return h('table', { class: 'list' },
    h('thead', {}, h('tr', {}, [end === 'destination' ? 'To' : 'From', 'Kind', 'Routing key', 'Arguments', ''].map((t) => h('th', {}, t)))),
    h('tbody', {}, list.map((b) => h('tr', {},
      h('td', {}, target(b)),
      h('td', {}, end === 'destination' ? b.destination_type : 'exchange'),
      h('td', { class: 'mono' }, b.routing_key),
      h('td', { class: 'mono' }, json(b.arguments)),
      h('td', {}, unbindable && b.source !== '' ? danger('Unbind', `Remove this binding to ${b.destination}?`, async () => {
        const kind = b.destination_type === 'queue' ? 'q' : 'e';
        await del(`/bindings/${seg(b.vhost)}/e/${seg(b.source)}/${kind}/${seg(b.destination)}/${seg(b.properties_key)}`);
        refresh();
        return 'Binding removed';
      }) : null)))));
}

function bindForm(vhost, source, refresh) {
  return form({
    inline: true,
    submit: 'Bind',
    fields: [
      field('To', select('kind', [['q', 'queue'], ['e', 'exchange']], 'q')),
      field('Name', input('destination', { required: true })),
      field('Routing key', input('routing_key')),
      field('Arguments', textarea('arguments', { rows: 1 }), 'JSON'),
    ],
    run: async (v) => {
      await post(`/bindings/${seg(vhost)}/e/${seg(source)}/${v.kind}/${seg(v.destination)}`, {
        routing_key: v.routing_key, arguments: jsonObject(v.arguments, 'Arguments'),
      });
      return 'Binding added';
    },
    onDone: refresh,
  });
}
