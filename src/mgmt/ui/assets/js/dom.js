// Every node is built with createElement and text nodes, never from an HTML string: queue,
// vhost and user names are chosen by clients, so nothing the API returns is ever parsed as markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    // Through the CSSOM: the page's CSP refuses style attributes written as markup.
    else if (k === 'style') el.style.cssText = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const link = (href, text, attrs) => h('a', { href, ...attrs }, text);

// A titled panel; `tools` sit on the right of the title (buttons, a search box).
export const section = (title, body, tools) =>
  h('section', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', {}, title), tools || null), body);

// Key/value pairs as a definition list, skipping absent values.
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

let toastTimer;
export function toast(text, kind = 'ok') {
  const t = document.getElementById('toast');
  mount(t, text);
  t.className = 'show ' + kind;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = ''; }, kind === 'error' ? 6000 : 2500);
}
