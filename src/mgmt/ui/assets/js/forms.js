// Small forms over the API: each field is labelled, a submit disables the button while the call
// runs, and the API's reason for a refusal is shown next to the button.

import { h, mount, toast } from './dom.js';

export const input = (name, attrs = {}) => h('input', { name, id: 'f-' + name, ...attrs });
export const textarea = (name, attrs = {}) => h('textarea', { name, id: 'f-' + name, rows: 3, ...attrs });
export const checkbox = (name, checked) => h('input', { type: 'checkbox', name, id: 'f-' + name, checked });

export function select(name, options, value) {
  return h('select', { name, id: 'f-' + name },
    options.map((o) => {
      const [v, label] = Array.isArray(o) ? o : [o, o];
      return h('option', { value: v, selected: v === value }, label);
    }));
}

// wide: the field takes a whole row of a grid form.
export const field = (label, control, hint, wide) =>
  h('label', { class: wide ? 'field wide' : 'field', for: control.id }, h('span', {}, label), control, hint ? h('small', {}, hint) : null);

// fields: nodes from field(); run(values) performs the call and returns a success message.
// layout: 'inline' (one row that wraps), 'grid' (columns), or stacked.
export function form({ fields, submit, run, onDone, inline, grid }) {
  const error = h('span', { class: 'form-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'primary' }, submit);
  const layout = inline ? 'form inline' : grid ? 'form grid' : 'form';
  const el = h('form', { class: layout }, fields, h('div', { class: 'form-actions' }, button, error));
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    mount(error);
    button.disabled = true;
    try {
      const message = await run(values(el));
      if (message) toast(message);
      if (onDone) onDone();
    } catch (err) {
      mount(error, err.message);
    } finally {
      button.disabled = false;
    }
  });
  return el;
}

function values(el) {
  const out = {};
  for (const c of el.elements) {
    if (!c.name) continue;
    out[c.name] = c.type === 'checkbox' ? c.checked : c.value;
  }
  return out;
}

// A JSON object typed into a textarea ({} when empty); a typing error names the field.
export function jsonObject(text, what) {
  if (!text || !text.trim()) return {};
  let v;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${what}: not JSON (${e.message})`); }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what}: must be a JSON object`);
  return v;
}

// A button that asks first, then runs `action`, reporting the API's answer.
export function danger(label, question, action) {
  return h('button', {
    type: 'button', class: 'danger',
    onclick: async (e) => {
      if (!window.confirm(question)) return;
      e.target.disabled = true;
      try {
        const message = await action();
        if (message) toast(message);
      } catch (err) {
        toast(err.message, 'error');
      } finally {
        e.target.disabled = false;
      }
    },
  }, label);
}
