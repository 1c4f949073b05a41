// Policies: list, add (or replace) and delete, per vhost.

import { h, mount, section } from '../dom.js';
import { put, del, seg } from '../api.js';
import { table } from '../table.js';
import { field, form, input, select, textarea, jsonObject, danger } from '../forms.js';
import { vhostNames } from './queues.js';

export async function policies(body) {
  const t = table({
    source: '/policies',
    empty: 'No policies.',
    columns: [
      { label: 'Virtual host', key: 'vhost' },
      { label: 'Name', key: 'name' },
      { label: 'Pattern', key: 'pattern', value: (p) => h('code', {}, p.pattern) },
      { label: 'Apply to', key: 'apply-to' },
      { label: 'Definition', value: (p) => h('span', { class: 'mono' }, JSON.stringify(p.definition)) },
      { label: 'Priority', key: 'priority', num: true },
      { label: '', value: (p) => danger('Delete', `Delete the policy ${p.name}?`, async () => {
        await del(`/policies/${seg(p.vhost)}/${seg(p.name)}`);
        t.refresh();
        return `Policy ${p.name} deleted`;
      }) },
    ],
  });
  const adder = h('div');
  mount(body, section('Policies', t), section('Add or update a policy', adder));
  const vhosts = await vhostNames();
  mount(adder, form({
    inline: true,
    submit: 'Save policy',
    fields: [
      field('Virtual host', select('vhost', vhosts, vhosts.includes('/') ? '/' : vhosts[0])),
      field('Name', input('name', { required: true })),
      field('Pattern', input('pattern', { required: true, placeholder: '^orders\\.' }), 'regex on names'),
      field('Apply to', select('apply_to', ['queues', 'exchanges', 'all'], 'queues')),
      field('Priority', input('priority', { type: 'number', value: 0 })),
      field('Definition', textarea('definition', { rows: 1, required: true, placeholder: '{"max-length": 1000}' }), 'JSON'),
    ],
    run: async (v) => {
      await put(`/policies/${seg(v.vhost)}/${seg(v.name)}`, {
        pattern: v.pattern, 'apply-to': v.apply_to, priority: Number(v.priority || 0),
        definition: jsonObject(v.definition, 'Definition'),
      });
      return `Policy ${v.name} saved`;
    },
    onDone: () => t.refresh(),
  }));
}
