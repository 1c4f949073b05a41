// Administration: users, virtual hosts, permissions, policies and the definitions file, each a
// list with add and delete, as the API allows.

import { h, mount, section, toast } from '../dom.js';
import { get, put, post, del, seg, session } from '../api.js';
import { table } from '../table.js';
import { num } from '../format.js';
import { field, form, input, select, textarea, danger } from '../forms.js';
import { vhostNames } from './queues.js';
import { policies } from './policies.js';

const TABS = [['users', 'Users'], ['vhosts', 'Virtual hosts'], ['permissions', 'Permissions'],
  ['policies', 'Policies'], ['definitions', 'Definitions']];

export async function render(main, ctx, tab = 'users') {
  const views = { users, vhosts, permissions, policies, definitions };
  const view = views[tab] || users;
  const body = h('div');
  mount(main,
    h('h1', {}, 'Admin'),
    h('nav', { class: 'tabs' }, TABS.map(([t, label]) => h('a', { href: '#/admin/' + t, class: t === tab ? 'active' : '' }, label))),
    body);
  await view(body, ctx);
}

const tagList = (t) => (Array.isArray(t) ? t : String(t || '').split(',')).filter(Boolean).join(', ');

async function users(body) {
  const t = table({
    source: { load: () => get('/users'), text: (u) => u.name },
    sort: 'name',
    columns: [
      { label: 'Name', key: 'name' },
      { label: 'Tags', value: (u) => h('span', { class: 'tags' }, tagList(u.tags)) },
      { label: 'Password hash', value: (u) => (u.password_hash ? u.hashing_algorithm : 'none') },
      { label: '', value: (u) => (u.name === session.user ? null : danger('Delete', `Delete the user ${u.name}?`, async () => {
        await del(`/users/${seg(u.name)}`);
        t.refresh();
        return `User ${u.name} deleted`;
      })) },
    ],
  });
  mount(body, section('Users', t), section('Add or update a user', form({
    inline: true,
    submit: 'Save user',
    fields: [
      field('Name', input('name', { required: true, autocomplete: 'off' })),
      field('Password', input('password', { type: 'password', autocomplete: 'new-password' }), 'empty: no password login (replaces the old one)'),
      field('Tags', input('tags', { placeholder: 'management', list: 'known-tags' }), 'comma-separated'),
      h('datalist', { id: 'known-tags' }, ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator']
        .map((v) => h('option', { value: v }))),
    ],
    run: async (v) => {
      const user = { tags: v.tags };
      // Without a password the API gives the user an unguessable one: no password login.
      if (v.password) user.password = v.password;
      await put(`/users/${seg(v.name)}`, user);
      return `User ${v.name} saved`;
    },
    onDone: () => t.refresh(),
  })));
}

async function vhosts(body) {
  const t = table({
    source: { load: () => get('/vhosts'), text: (v) => v.name },
    sort: 'name',
    columns: [
      { label: 'Name', key: 'name' },
      { label: 'Description', key: 'description' },
      { label: 'Tags', value: (v) => tagList(v.tags) },
      { label: 'Ready', key: 'messages_ready', num: true, value: (v) => num(v.messages_ready) },
      { label: 'Unacked', key: 'messages_unacknowledged', num: true, value: (v) => num(v.messages_unacknowledged) },
      { label: '', value: (v) => danger('Delete', `Delete the virtual host ${v.name} and everything in it?`, async () => {
        await del(`/vhosts/${seg(v.name)}`);
        t.refresh();
        return `Virtual host ${v.name} deleted`;
      }) },
    ],
  });
  mount(body, section('Virtual hosts', t), section('Add a virtual host', form({
    inline: true,
    submit: 'Add virtual host',
    fields: [
      field('Name', input('name', { required: true })),
      field('Description', input('description')),
      field('Tags', input('tags'), 'comma-separated'),
    ],
    run: async (v) => {
      await put(`/vhosts/${seg(v.name)}`, { description: v.description, tags: v.tags });
      return `Virtual host ${v.name} added`;
    },
    onDone: () => t.refresh(),
  })));
}

async function permissions(body) {
  const t = table({
    source: { load: () => get('/permissions'), text: (p) => `${p.user} ${p.vhost}` },
    sort: 'user',
    columns: [
      { label: 'User', key: 'user' },
      { label: 'Virtual host', key: 'vhost' },
      { label: 'Configure', key: 'configure', value: (p) => h('code', {}, p.configure) },
      { label: 'Write', key: 'write', value: (p) => h('code', {}, p.write) },
      { label: 'Read', key: 'read', value: (p) => h('code', {}, p.read) },
      { label: '', value: (p) => danger('Clear', `Clear ${p.user}'s permissions in ${p.vhost}?`, async () => {
        await del(`/permissions/${seg(p.vhost)}/${seg(p.user)}`);
        t.refresh();
        return 'Permissions cleared';
      }) },
    ],
  });
  const adder = h('div');
  mount(body, section('Permissions', t), section('Set permissions', adder));
  const [vs, us] = await Promise.all([vhostNames(), get('/users').then((l) => l.map((u) => u.name))]);
  mount(adder, form({
    inline: true,
    submit: 'Set permissions',
    fields: [
      field('User', select('user', us, us[0])),
      field('Virtual host', select('vhost', vs, vs.includes('/') ? '/' : vs[0])),
      field('Configure', input('configure', { value: '.*' }), 'regex'),
      field('Write', input('write', { value: '.*' }), 'regex'),
      field('Read', input('read', { value: '.*' }), 'regex'),
    ],
    run: async (v) => {
      await put(`/permissions/${seg(v.vhost)}/${seg(v.user)}`, { configure: v.configure, write: v.write, read: v.read });
      return `Permissions of ${v.user} in ${v.vhost} set`;
    },
    onDone: () => t.refresh(),
  }));
}

// The whole broker's definitions as RabbitMQ's JSON file; an upload is checked in full by the
// broker before anything is applied.
async function definitions(body) {
  const file = h('input', { type: 'file', accept: '.json,application/json', id: 'definitions-file' });
  const text = textarea('definitions', { rows: 6, class: 'mono', placeholder: '{"queues": [...], "exchanges": [...]}' });
  file.addEventListener('change', async () => {
    if (file.files[0]) text.value = await file.files[0].text();
  });
  const download = h('button', { type: 'button', class: 'primary', onclick: async () => {
    try {
      const doc = await get('/definitions');
      const blob = new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' });
      const a = h('a', { href: URL.createObjectURL(blob), download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      toast(e.message, 'error');
    }
  } }, 'Download definitions');
  mount(body,
    section('Export', h('div', {}, h('p', {}, 'Users, virtual hosts, permissions, policies, queues, exchanges and bindings as one JSON file (RabbitMQ\'s format).'), download)),
    section('Import', form({
      submit: 'Upload definitions',
      fields: [field('File', file), field('or paste JSON', text)],
      run: async (v) => {
        if (!v.definitions.trim()) throw new Error('Choose a file or paste a definitions document.');
        let doc;
        try { doc = JSON.parse(v.definitions); } catch (e) { throw new Error('Not JSON: ' + e.message); }
        await post('/definitions', doc);
        return 'Definitions imported';
      },
    })));
}
