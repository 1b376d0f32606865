// chart.js: hand-written SVG charts of a released result with its 95%
// intervals. A result whose first key is a time bucket (week, month, year,
// day) is drawn as one line per remaining key with a shaded interval band;
// any other result as bars with error bars.

import { el, svg } from './dom.js';
import { numbers, goFloat } from './format.js';

const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#8250df', '#bf8700', '#0a7d8c', '#cf222e', '#6e7781', '#953800', '#116329', '#4c2889', '#a40e26'];
const W = 900, H = 320, M = { l: 60, r: 40, t: 12, b: 46 };

const TIME_COL = /^(week|month|year|day|date)$/i;
const TIME_KEY = /^\d{4}(-W\d{2}|-\d{2}(-\d{2})?)?$/;

// isTimeSeries reports whether the first key column is a time bucket.
export function isTimeSeries(res) {
  if ((res.key_columns || 0) < 1 || !(res.rows || []).length) return false;
  if (TIME_COL.test(res.columns[0])) return true;
  return res.rows.every((r) => TIME_KEY.test((r.keys || [])[0] || ''));
}

function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((s) => s * mag).find((s) => raw <= s);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function label(v) {
  return Math.abs(v) >= 1e6 ? goFloat(v) : String(Math.round(v * 100) / 100);
}

function frame(yLo, yHi) {
  const ticks = niceTicks(yLo, yHi);
  const lo = Math.min(ticks[0], yLo), hi = Math.max(ticks[ticks.length - 1], yHi);
  const y = (v) => M.t + (H - M.t - M.b) * (1 - (v - lo) / (hi - lo || 1));
  const g = svg('g', { class: 'frame' });
  for (const t of ticks) {
    g.append(svg('line', { class: 'grid', x1: M.l, x2: W - M.r, y1: y(t), y2: y(t) }));
    g.append(svg('text', { x: M.l - 6, y: y(t) + 4, 'text-anchor': 'end' }, label(t)));
  }
  g.append(svg('line', { class: 'axis', x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }));
  g.append(svg('line', { class: 'axis', x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }));
  return { g, y };
}

function xLabels(g, cats, x) {
  const every = Math.max(1, Math.ceil(cats.length / 14));
  cats.forEach((c, i) => {
    if (i % every) return;
    g.append(svg('text', { x: x(i), y: H - M.b + 16, 'text-anchor': 'middle' }, c));
  });
}

// panel draws lines with their bands (one per entry of lines: [name, Map
// time -> number]) over the shared time axis and value range, with axis
// titles; a suppressed or missing bucket breaks a line.
function panel(lines, times, lo, hi, dims, titles, colorOf) {
  const { w, h, m } = dims;
  const ticks = niceTicks(lo, hi, h < 250 ? 3 : 5);
  const ylo = Math.min(ticks[0], lo), yhi = Math.max(ticks[ticks.length - 1], hi);
  const y = (v) => m.t + (h - m.t - m.b) * (1 - (v - ylo) / (yhi - ylo || 1));
  const x = (i) => m.l + (times.length < 2 ? (w - m.l - m.r) / 2 : (i * (w - m.l - m.r)) / (times.length - 1));
  const g = svg('g', { class: 'frame' });
  for (const t of ticks) {
    g.append(svg('line', { class: 'grid', x1: m.l, x2: w - m.r, y1: y(t), y2: y(t) }));
    g.append(svg('text', { x: m.l - 6, y: y(t) + 4, 'text-anchor': 'end' }, label(t)));
  }
  g.append(svg('line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: h - m.b }));
  g.append(svg('line', { class: 'axis', x1: m.l, x2: w - m.r, y1: h - m.b, y2: h - m.b }));
  const every = Math.max(1, Math.ceil(times.length / Math.max(2, Math.floor((w - m.l - m.r) / 64))));
  times.forEach((c, i) => {
    if (i % every) return;
    g.append(svg('text', { x: x(i), y: h - m.b + 16, 'text-anchor': 'middle' }, c));
  });
  if (titles.x) g.append(svg('text', { class: 'axis-title', x: (m.l + w - m.r) / 2, y: h - 4, 'text-anchor': 'middle' }, titles.x));
  if (titles.y) g.append(svg('text', { class: 'axis-title', x: 12, y: (m.t + h - m.b) / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${(m.t + h - m.b) / 2})` }, titles.y));
  if (titles.panel) g.append(svg('text', { class: 'panel-title', x: m.l + 4, y: m.t + 12 }, titles.panel));
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, width: '100%', role: 'img', 'data-kind': 'timeseries', 'aria-label': `${titles.panel || 'time series'} with 95% interval bands` }, g);
  for (const [name, pts] of lines) {
    const color = colorOf(name);
    const runs = [[]];
    times.forEach((t, i) => {
      const n = pts.get(t);
      if (n && Number.isFinite(n.value)) runs[runs.length - 1].push({ i, n });
      else if (runs[runs.length - 1].length) runs.push([]);
    });
    const sg = svg('g', { class: 'series', 'data-series': name });
    // A suppressed bucket (a count below the small-count threshold) is a
    // hollow mark on the axis, not a gap that looks like missing data.
    times.forEach((t, i) => {
      const n = pts.get(t);
      if (n && n.suppressed) {
        sg.append(svg('circle', { class: 'small', cx: x(i).toFixed(1), cy: y(0).toFixed(1), r: 2.5, stroke: color },
          svg('title', {}, `${name} ${t}: ${n.display || 'small count'} (below the small-count threshold)`)));
      }
    });
    for (const run of runs.filter((r) => r.length)) {
      if (run.length === 1) { // a lone bucket: its interval as an error bar
        const { i, n } = run[0];
        if (Number.isFinite(n.lo) && Number.isFinite(n.hi)) {
          sg.append(svg('path', { class: 'pointbar', stroke: color, d: `M${x(i) - 4},${y(n.hi)}H${x(i) + 4}M${x(i)},${y(n.hi)}V${y(n.lo)}M${x(i) - 4},${y(n.lo)}H${x(i) + 4}` }));
        }
      }
      const up = run.map(({ i, n }) => `${x(i).toFixed(1)},${y(Number.isFinite(n.hi) ? n.hi : n.value).toFixed(1)}`);
      const down = run.slice().reverse().map(({ i, n }) => `${x(i).toFixed(1)},${y(Number.isFinite(n.lo) ? n.lo : n.value).toFixed(1)}`);
      sg.append(svg('path', { class: 'band', fill: color, d: `M${up.join('L')}L${down.join('L')}Z` }));
      sg.append(svg('path', { class: 'line', stroke: color, d: 'M' + run.map(({ i, n }) => `${x(i).toFixed(1)},${y(n.value).toFixed(1)}`).join('L') }));
      for (const { i, n } of run) {
        sg.append(svg('circle', { cx: x(i).toFixed(1), cy: y(n.value).toFixed(1), r: 2, fill: color },
          svg('title', {}, `${name} ${times[i]}: ${n.display || goFloat(n.value)} (95% CI ${goFloat(n.lo)} – ${goFloat(n.hi)})`)));
      }
    }
    root.append(sg);
  }
  return root;
}

const FORECAST = ' (forecast)';

// timeSeries draws a time-bucketed result: one panel with one line and
// band when there is one series (with its forecast, if any); otherwise small
// multiples, one panel per series (its forecast in the same panel), on
// shared axes, so that regions can be compared without overlapping.
function timeSeries(res, agg) {
  const times = [...new Set(res.rows.map((r) => r.keys[0]))].sort();
  const series = new Map();
  for (const r of res.rows) {
    const name = r.keys.slice(1).join(' / ') || res.columns[res.key_columns + agg];
    if (!series.has(name)) series.set(name, new Map());
    series.get(name).set(r.keys[0], numbers(r)[agg]);
  }
  let lo = 0, hi = 0;
  for (const s of series.values()) for (const n of s.values()) {
    if (Number.isFinite(n.lo)) lo = Math.min(lo, n.lo);
    if (Number.isFinite(n.hi)) hi = Math.max(hi, n.hi);
    if (Number.isFinite(n.value)) { lo = Math.min(lo, n.value); hi = Math.max(hi, n.value); }
  }
  // Panels: a series and its forecast share one.
  const panels = new Map();
  for (const [name, pts] of series) {
    const base = name.endsWith(FORECAST) ? name.slice(0, -FORECAST.length) : name;
    if (!panels.has(base)) panels.set(base, []);
    panels.get(base).push([name, pts]);
  }
  const titles = { x: res.columns[0], y: res.columns[res.key_columns + agg] };
  const colorOf = (name) => PALETTE[name.endsWith(FORECAST) ? 1 : 0];
  if (panels.size === 1) {
    const [base, lines] = [...panels][0];
    const legend = el('div', { class: 'legend' });
    for (const [name] of lines) {
      legend.append(el('span', {}, svg('svg', { width: 10, height: 10, class: 'swatch' }, svg('rect', { width: 10, height: 10, rx: 2, fill: colorOf(name) })), ' ', name));
    }
    return el('div', {}, panel(lines, times, lo, hi, { w: W, h: H, m: { ...M, l: M.l + 14, b: M.b + 10 } }, { ...titles, panel: lines.length > 1 ? base : '' }, colorOf), legend);
  }
  const grid = el('div', { class: 'multiples', 'data-panels': panels.size });
  for (const [base, lines] of panels) {
    grid.append(el('div', { class: 'panel', 'data-panel': base },
      panel(lines, times, lo, hi, { w: 440, h: 200, m: { l: 54, r: 12, t: 18, b: 40 } }, { ...titles, panel: base }, colorOf)));
  }
  return el('div', {}, grid, el('p', { class: 'muted' }, `${panels.size} panels on shared axes, one per ${res.columns.slice(1, res.key_columns).join(' / ') || 'series'}; bands are 95% intervals; hollow marks on the axis are counts below the small-count threshold.`));
}

// bars draws one bar per row with its interval as an error bar.
function bars(res, agg) {
  const rows = res.rows;
  const cats = rows.map((r) => (r.keys || []).join(' / ') || res.columns[res.key_columns + agg]);
  const ns = rows.map((r) => numbers(r)[agg]);
  let lo = 0, hi = 0;
  for (const n of ns) for (const v of [n.value, n.lo, n.hi]) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const { g, y } = frame(lo, hi);
  const bw = (W - M.l - M.r) / Math.max(1, cats.length);
  const x = (i) => M.l + bw * (i + 0.5);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'data-kind': 'bars', 'aria-label': 'bar chart with 95% interval error bars' }, g);
  ns.forEach((n, i) => {
    const color = PALETTE[0];
    if (!Number.isFinite(n.value)) {
      root.append(svg('text', { x: x(i), y: y(0) - 4, 'text-anchor': 'middle' }, n.display || 'suppressed'));
      return;
    }
    const top = Math.min(y(n.value), y(0)), h = Math.abs(y(n.value) - y(0));
    root.append(svg('rect', { class: 'bar', fill: color, x: (x(i) - bw * 0.35).toFixed(1), y: top.toFixed(1), width: (bw * 0.7).toFixed(1), height: h.toFixed(1) },
      svg('title', {}, `${cats[i]}: ${n.display || goFloat(n.value)} (95% CI ${goFloat(n.lo)} – ${goFloat(n.hi)})`)));
    if (Number.isFinite(n.lo) && Number.isFinite(n.hi)) {
      const w = Math.min(8, bw * 0.2);
      root.append(svg('path', { class: 'errbar', d: `M${x(i) - w},${y(n.hi)}H${x(i) + w}M${x(i)},${y(n.hi)}V${y(n.lo)}M${x(i) - w},${y(n.lo)}H${x(i) + w}` }));
    }
  });
  xLabels(g, cats, x);
  return el('div', {}, root);
}

// chart returns a chart of a result's first aggregate (or agg).
export function chart(res, agg = 0) {
  if (!(res.rows || []).length) return el('p', { class: 'muted' }, 'No rows.');
  return isTimeSeries(res) ? timeSeries(res, agg) : bars(res, agg);
}

// stepPoints returns the corners of a step function that is `start` before
// times[0] and vals[i] from times[i] on, up to times[last].
function stepPoints(times, vals, start) {
  const pts = [[0, start]];
  let prev = start;
  times.forEach((t, i) => {
    pts.push([t, prev], [t, vals[i]]);
    prev = vals[i];
  });
  return pts;
}

// kmChart draws Kaplan-Meier curves: per stratum, the survival as a step
// line from 1 at time 0, its 95% interval (Greenwood, widened by the DP
// noise) as a shaded step band, and the median where the curve crosses
// the dashed 0.5 line.
export function kmChart(curves, strata) {
  const all = curves.flatMap((c) => c.times || []).filter(Number.isFinite);
  const tMax = Math.max(1, ...all);
  const xt = niceTicks(0, tMax, 8);
  const xHi = Math.max(tMax, xt[xt.length - 1]);
  const x = (t) => M.l + ((W - M.l - M.r) * t) / xHi;
  const { g, y } = frame(0, 1);
  for (const t of xt) g.append(svg('text', { x: x(t), y: H - M.b + 16, 'text-anchor': 'middle' }, label(t)));
  g.append(svg('text', { x: (M.l + W - M.r) / 2, y: H - 8, 'text-anchor': 'middle' }, 'time'));
  g.append(svg('line', { class: 'ref', x1: M.l, x2: W - M.r, y1: y(0.5), y2: y(0.5) }));
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, width: '100%', role: 'img', 'data-kind': 'km', 'aria-label': 'Kaplan-Meier survival curves with 95% interval bands' }, g);
  const legend = el('div', { class: 'legend' });
  const fin = (v, d) => (Number.isFinite(v) ? v : d);
  curves.forEach((c, si) => {
    const color = PALETTE[si % PALETTE.length];
    const name = strata ? `${strata}=${c.stratum}` : 'all';
    const times = (c.times || []).map((t) => fin(t, 0));
    const s = (c.survival || []).map((v) => fin(v, 0));
    const lo = (c.lower || []).map((v, i) => fin(v, s[i]));
    const hi = (c.upper || []).map((v, i) => fin(v, s[i]));
    const xy = ([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`;
    const sg = svg('g', { class: 'series', 'data-series': name });
    const up = stepPoints(times, hi, 1), down = stepPoints(times, lo, 1).reverse();
    sg.append(svg('path', { class: 'band', fill: color, d: `M${up.map(xy).join('L')}L${down.map(xy).join('L')}Z` }));
    sg.append(svg('path', { class: 'line step', stroke: color, d: 'M' + stepPoints(times, s, 1).map(xy).join('L') },
      svg('title', {}, `${name}: ${times.length} event times, ${Math.round(fin(c.at_risk, 0))} at risk at the start`)));
    const m = c.median || {};
    if (Number.isFinite(m.value)) {
      sg.append(svg('path', { class: 'median', stroke: color, d: `M${x(m.value).toFixed(1)},${y(0.5).toFixed(1)}V${y(0).toFixed(1)}` },
        svg('title', {}, `median ${name}: ${goFloat(m.value)} (95% CI ${goFloat(fin(m.ci_low, NaN))} – ${goFloat(fin(m.ci_high, NaN))})`)));
    }
    root.append(sg);
    legend.append(el('span', {}, svg('svg', { width: 10, height: 10, class: 'swatch' }, svg('rect', { width: 10, height: 10, rx: 2, fill: color })), ' ', name));
  });
  return el('div', {}, root, legend);
}
