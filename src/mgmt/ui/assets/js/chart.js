// Time-series line charts on a <canvas>. The API reports only current values and rates, so the
// history a chart shows is what this page has sampled since it was opened (every 5 s, as the
// broker computes its rates).

import { h, mount } from './dom.js';

export const SAMPLE_MS = 5000;

// The last `size` samples: { t: ms, v: [numbers] }.
export class History {
  constructor(size = 120) {
    this.size = size;
    this.points = [];
  }

  push(v, t = Date.now()) {
    this.points.push({ t, v });
    if (this.points.length > this.size) this.points.shift();
  }
}

// series: [{ label, color }]; format: value => text (the legend and the y axis); integer: counts,
// whose axis never shows fractions.
export function lineChart({ series, format = String, height = 190, integer = false }) {
  const canvas = h('canvas', { height, role: 'img', 'aria-label': series.map((s) => s.label).join(', ') });
  canvas.dataset.samples = 0;
  const legend = h('ul', { class: 'legend' });
  const el = h('div', { class: 'chart' }, canvas, legend);
  let last = [];

  function draw(points = last) {
    last = points;
    canvas.dataset.samples = points.length;
    const now = points.length ? points[points.length - 1].v : [];
    mount(legend, series.map((s, i) => h('li', {},
      h('span', { class: 'swatch', style: `background:${s.color}` }), s.label, ' ',
      h('b', {}, now[i] === undefined ? '–' : format(now[i])))));
    const width = canvas.clientWidth;
    if (!width) return;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    const pad = { l: 56, r: 10, t: 10, b: 22 };
    const w = width - pad.l - pad.r;
    const ht = height - pad.t - pad.b;
    const step = niceStep(Math.max(0, ...points.flatMap((p) => p.v.filter(Number.isFinite))) / 4, integer);
    const max = step * 4;
    const t1 = points.length ? points[points.length - 1].t : Date.now();
    const t0 = Math.min(points.length ? points[0].t : t1, t1 - 30000);
    const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * w;
    const y = (v) => pad.t + ht - (v / max) * ht;

    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (max / 4) * i;
      g.strokeStyle = i === 0 ? '#9aa3ad' : '#e3e7eb';
      g.beginPath();
      g.moveTo(pad.l, Math.round(y(v)) + 0.5);
      g.lineTo(pad.l + w, Math.round(y(v)) + 0.5);
      g.stroke();
      g.fillStyle = '#66707a';
      g.textAlign = 'right';
      g.fillText(format(v), pad.l - 6, y(v));
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    for (let i = 0; i <= 3; i++) {
      const t = t0 + ((t1 - t0) / 3) * i;
      g.fillStyle = '#66707a';
      g.fillText(clock(t), Math.min(Math.max(x(t), pad.l + 24), pad.l + w - 24), pad.t + ht + 6);
    }
    if (!points.length) {
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText('collecting samples…', pad.l + w / 2, pad.t + ht / 2);
      return;
    }
    series.forEach((s, i) => {
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.lineJoin = 'round';
      g.beginPath();
      points.forEach((p, j) => (j ? g.lineTo(x(p.t), y(p.v[i])) : g.moveTo(x(p.t), y(p.v[i]))));
      g.stroke();
      if (points.length === 1) {
        g.fillStyle = s.color;
        g.beginPath();
        g.arc(x(points[0].t), y(points[0].v[i]), 3, 0, 2 * Math.PI);
        g.fill();
      }
    });
  }

  const onResize = () => (el.isConnected ? draw() : window.removeEventListener('resize', onResize));
  window.addEventListener('resize', onResize);
  el.draw = draw;
  // How many samples the chart holds (the browser test waits for a few before its screenshot).
  el.samples = () => last.length;
  requestAnimationFrame(() => draw());
  return el;
}

// The gridline spacing: 1, 2, 2.5 or 5 times a power of ten, so that four steps reach `v`;
// whole numbers for counts.
function niceStep(v, integer) {
  const floor = integer ? 1 : 0.25;
  if (v <= floor) return floor;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * p >= v && (!integer || Number.isInteger(m * p))) return m * p;
  }
  return 10 * p;
}

function clock(t) {
  const d = new Date(t);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
}
