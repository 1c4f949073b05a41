// The one way the UI talks to the broker: the management JSON API with HTTP basic auth, as
// rabbitmqadmin does. The credentials live in sessionStorage (gone with the tab), and a 401 sends
// the user back to the login form with the API's reason.

const KEY = 'warren.credentials';

export class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

// Basic auth wants base64 of UTF-8; btoa alone takes Latin-1 only.
export function basic(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'Basic ' + btoa(bin);
}

export const session = {
  get user() { return sessionStorage.getItem(KEY + '.user'); },
  get token() { return sessionStorage.getItem(KEY); },
  save(user, password) {
    sessionStorage.setItem(KEY, basic(user, password));
    sessionStorage.setItem(KEY + '.user', user);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(KEY + '.user');
  },
};

export async function call(method, path, body, token = session.token) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = token;
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  // credentials 'omit': the browser must not answer the API's WWW-Authenticate challenge with
  // its own password dialog; this page handles the 401 itself.
  const r = await fetch('/api' + path, { method, headers, body: payload, credentials: 'omit', cache: 'no-store' });
  const text = await r.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!r.ok) {
    const reason = (data && (data.reason || data.error)) || r.statusText || `HTTP ${r.status}`;
    const e = new ApiError(r.status, typeof reason === 'string' ? reason : JSON.stringify(reason));
    if (r.status === 401 && token === session.token) {
      session.clear();
      window.dispatchEvent(new CustomEvent('warren:logout', { detail: e.message }));
    }
    throw e;
  }
  return data;
}

export const get = (path) => call('GET', path);
export const put = (path, body) => call('PUT', path, body ?? {});
export const post = (path, body) => call('POST', path, body ?? {});
export const del = (path) => call('DELETE', path);

// One path segment: a vhost `/` is `%2F`, as the API wants.
export const seg = encodeURIComponent;

export const queuePath = (vhost, name) => `/queues/${seg(vhost)}/${seg(name)}`;
export const exchangePath = (vhost, name) => `/exchanges/${seg(vhost)}/${seg(name === '' ? 'amq.default' : name)}`;

// A list with the API's own filter, sort and paging, normalised to {items, filtered, total}.
export async function page(path, { name, sort, reverse, page = 1, size = 50, columns } = {}) {
  const q = new URLSearchParams({ page, page_size: size });
  if (name) q.set('name', name);
  if (sort) q.set('sort', sort);
  if (reverse) q.set('sort_reverse', 'true');
  if (columns) q.set('columns', columns);
  const r = await get(`${path}?${q}`);
  return { items: r.items, filtered: r.filtered_count, total: r.total_count, pages: r.page_count };
}
