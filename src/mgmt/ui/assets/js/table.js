// A list with a name search, sortable columns and pages. Lists the API can page (queues,
// exchanges, connections, ...) are filtered, sorted and paged by the broker (`page`, `name`,
// `sort`), so a broker with 10,000 queues sends one page; the rest are filtered here.

import { h, mount } from './dom.js';
import { page } from './api.js';

const PAGE_SIZE = 50;

// columns: [{ label, key (dotted path, for sorting), value?: item => text|Node, num?: bool,
//   wrap?: bool (long names: the other cells keep to one line) }]
// source: an API path (paged by the broker) or { load: () => Promise<items>, text: item => string }
export function table({ columns, source, sort, empty = 'Nothing here.', tools }) {
  const state = { name: '', sort: sort || '', reverse: false, page: 1 };
  const body = h('tbody');
  const foot = h('div', { class: 'table-foot' });
  const search = h('input', { type: 'search', placeholder: 'Filter by name', class: 'search', 'aria-label': 'Filter by name' });
  let timer;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { state.name = search.value.trim(); state.page = 1; refresh(); }, 200);
  });
  const heads = columns.map((c) => {
    const th = h('th', { class: c.num ? 'num' : '' }, c.label);
    if (c.key) {
      th.classList.add('sortable');
      th.tabIndex = 0;
      const flip = () => {
        if (state.sort === c.key) state.reverse = !state.reverse;
        else { state.sort = c.key; state.reverse = !!c.num; }
        refresh();
      };
      th.addEventListener('click', flip);
      th.addEventListener('keydown', (e) => { if (e.key === 'Enter') flip(); });
    }
    return th;
  });
  const el = h('div', { class: 'table-wrap' },
    h('div', { class: 'table-tools' }, search, tools || null),
    h('table', { class: 'list' }, h('thead', {}, h('tr', {}, heads)), body), foot);

  async function load() {
    if (typeof source === 'string') return page(source, { ...state, size: PAGE_SIZE });
    let items = await source.load();
    const total = items.length;
    if (state.name) {
      const needle = state.name.toLowerCase();
      items = items.filter((i) => source.text(i).toLowerCase().includes(needle));
    }
    if (state.sort) {
      const key = (i) => lookup(i, state.sort);
      items.sort((a, b) => compare(key(a), key(b)) * (state.reverse ? -1 : 1));
    }
    const filtered = items.length;
    const pages = Math.max(1, Math.ceil(filtered / PAGE_SIZE));
    state.page = Math.min(state.page, pages);
    return { items: items.slice((state.page - 1) * PAGE_SIZE, state.page * PAGE_SIZE), filtered, total, pages };
  }

  async function refresh() {
    let r;
    try {
      r = await load();
    } catch (e) {
      if (e.status === 400 && state.page > 1) { state.page = 1; return refresh(); }
      mount(body, h('tr', {}, h('td', { colspan: columns.length, class: 'error' }, e.message)));
      return;
    }
    heads.forEach((th, i) => {
      th.dataset.sort = columns[i].key === state.sort ? (state.reverse ? 'desc' : 'asc') : '';
    });
    mount(body, r.items.length ? r.items.map((item) => h('tr', {}, columns.map((c) =>
      h('td', { class: c.num ? 'num' : c.wrap ? 'wrap' : '' }, c.value ? c.value(item) : text(lookup(item, c.key))))))
      : h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, state.name ? 'No match.' : empty)));
    const pages = r.pages || 1;
    const nav = (label, to, off) => h('button', { class: 'small', disabled: off, onclick: () => { state.page = to; refresh(); } }, label);
    mount(foot,
      h('span', {}, r.filtered === r.total ? `${r.total} item${r.total === 1 ? '' : 's'}` : `${r.filtered} of ${r.total} items`),
      pages > 1 ? h('span', { class: 'pager' }, nav('‹ Prev', state.page - 1, state.page <= 1),
        ` page ${state.page} of ${pages} `, nav('Next ›', state.page + 1, state.page >= pages)) : null);
  }

  el.refresh = refresh;
  refresh();
  return el;
}

function lookup(o, path) {
  return path.split('.').reduce((v, k) => (v === undefined || v === null ? undefined : v[k]), o);
}

function text(v) {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b));
}
