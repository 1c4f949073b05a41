const nf = new Intl.NumberFormat('en-US');

export const num = (n) => (n === undefined || n === null ? '' : nf.format(n));

export function rate(r) {
  if (r === undefined || r === null) return '';
  if (r === 0) return '0/s';
  if (r < 1) return r.toFixed(2) + '/s';
  return (r < 10 ? r.toFixed(1) : nf.format(Math.round(r))) + '/s';
}

export function bytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

export function duration(secs) {
  if (secs === undefined || secs === null) return '';
  if (secs < 60) return secs + ' s';
  if (secs < 3600) return Math.floor(secs / 60) + ' min ' + (secs % 60) + ' s';
  if (secs < 86400) return Math.floor(secs / 3600) + ' h ' + Math.floor((secs % 3600) / 60) + ' min';
  return Math.floor(secs / 86400) + ' d ' + Math.floor((secs % 86400) / 3600) + ' h';
}

export function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

// Arguments and policy definitions: small JSON objects shown inline.
export function json(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) return '';
  return JSON.stringify(v);
}

// The short feature flags RabbitMQ users read in a queue or exchange list.
export function features(o) {
  const f = [];
  if (o.durable) f.push('D');
  if (o.auto_delete) f.push('AD');
  if (o.exclusive) f.push('Excl');
  if (o.internal) f.push('I');
  for (const k of Object.keys(o.arguments || {})) f.push(k.replace(/^x-/, ''));
  return f.join(' ');
}

export const exchangeLabel = (name) => (name === '' ? '(AMQP default)' : name);
