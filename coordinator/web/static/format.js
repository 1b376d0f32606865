// format.js: numbers and files in the same form as the fedstat CLI
// (queries/result WriteCSV and WriteJSON), built from the API's result.

// num reads a protobuf-JSON double: absent is 0, "NaN"/"Infinity" are strings.
export function num(v) {
  if (v === undefined || v === null) return 0;
  return typeof v === 'string' ? Number(v) : v;
}

// goFloat formats like Go's strconv.FormatFloat(v, 'g', -1, 64).
export function goFloat(v) {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (v === 0) return Object.is(v, -0) ? '-0' : '0';
  const [mant, e] = v.toExponential().split('e');
  const exp = Number(e);
  if (exp < -4 || exp >= 6) {
    const a = Math.abs(exp);
    return mant + 'e' + (exp < 0 ? '-' : '+') + (a < 10 ? '0' + a : String(a));
  }
  return String(v);
}

// csvField quotes a field the way Go's encoding/csv does.
function csvField(f) {
  if (f === '') return f;
  const needs = f === '\\.' || /[",\r\n]/.test(f) || /^\s/u.test(f);
  return needs ? '"' + f.replaceAll('"', '""') + '"' : f;
}

// numbers turns a wire row's values into {value, lo, hi, display, suppressed}
// with NaN where nothing was released.
export function numbers(row) {
  return (row.values || []).map((n) => {
    const suppressed = !!n.suppressed;
    return {
      value: suppressed ? NaN : num(n.value),
      lo: suppressed ? NaN : num(n.ci_low),
      hi: suppressed ? NaN : num(n.ci_high),
      display: n.display || '',
      suppressed,
    };
  });
}

// toCSV mirrors result.WriteCSV: key columns, then per aggregate name,
// name_ci_low, name_ci_high, name_suppressed; a suppressed number is empty
// in its value and interval columns, with name_suppressed true.
export function toCSV(res) {
  const cols = res.columns || [];
  const k = res.key_columns || 0;
  const head = cols.slice(0, k);
  for (const c of cols.slice(k)) head.push(c, c + '_ci_low', c + '_ci_high', c + '_suppressed');
  const lines = [head];
  const f = (v) => (Number.isNaN(v) ? '' : goFloat(v));
  for (const row of res.rows || []) {
    const line = [...(row.keys || [])];
    for (const n of numbers(row)) {
      if (n.suppressed) line.push('', '', '', 'true');
      else line.push(f(n.value), f(n.lo), f(n.hi), 'false');
    }
    lines.push(line);
  }
  return lines.map((l) => l.map(csvField).join(',') + '\n').join('');
}

// toJSON mirrors result.WriteJSON.
export function toJSON(res) {
  const fin = (v) => (Number.isFinite(v) ? v : null);
  const out = {
    columns: res.columns || [],
    key_columns: res.key_columns || 0,
    rows: (res.rows || []).map((row) => ({
      keys: row.keys || [],
      values: numbers(row).map((n) => {
        if (n.suppressed) return { value: null, display: n.display };
        const o = { value: fin(n.value) };
        if (fin(n.lo) !== null) o.ci_low = n.lo;
        if (fin(n.hi) !== null) o.ci_high = n.hi;
        o.display = n.display;
        return o;
      }),
    })),
    epsilon: num(res.epsilon),
    delta: num(res.delta),
    rho: num(res.rho),
  };
  if (res.mechanism) out.mechanism = res.mechanism;
  out.nodes = res.nodes || 0;
  out.small_count_threshold = res.small_count_threshold || 0;
  return JSON.stringify(out, null, 2) + '\n';
}

// ago says how long ago a unix-ms time was.
export function ago(ms) {
  const t = num(ms);
  if (!t) return 'never';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  return new Date(t).toISOString().replace('T', ' ').slice(0, 19) + ' UTC';
}

// statsRows lists a statistics answer (POST /v1/stats/{method}) as the
// statistics `fedstat stats` prints: the estimates, then for Kaplan-Meier
// every step of each curve as km.survival[.<strata>=<value>].t=<time> (the
// survival just after it, with its interval; no standard error).
export function statsRows(res) {
  const rows = (res.estimates || []).map((e) => ({ name: e.name, value: e.value, se: e.se, lo: e.ci_low, hi: e.ci_high }));
  for (const c of res.curves || []) {
    const suffix = res.strata ? `.${res.strata}=${c.stratum}` : '';
    (c.times || []).forEach((t, i) => rows.push({ name: `km.survival${suffix}.t=${goFloat(t)}`, value: c.survival[i], se: null, lo: c.lower[i], hi: c.upper[i] }));
  }
  return rows;
}

// statsCSV is statsRows as CSV: statistic, value, se, ci_low, ci_high
// (empty where there is no number).
export function statsCSV(res) {
  const f = (v) => (v === null || v === undefined || !Number.isFinite(Number(v)) ? '' : goFloat(Number(v)));
  const lines = [['statistic', 'value', 'se', 'ci_low', 'ci_high']];
  for (const r of statsRows(res)) lines.push([r.name, f(r.value), f(r.se), f(r.lo), f(r.hi)]);
  return lines.map((l) => l.map(csvField).join(',') + '\n').join('');
}
