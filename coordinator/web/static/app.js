// app.js: the dashboard's pages. Every request goes to the coordinator's own
// HTTP/JSON API with the session cookie and the CSRF header; what a page
// shows is exactly what the API sends to the signed-in role.

import { el } from './dom.js';
import { chart, kmChart } from './chart.js';
import { toCSV, toJSON, numbers, goFloat, num, ago, statsCSV } from './format.js';
import { loadSigner, signAnalysis, signQuery } from './sign.js';

const main = document.getElementById('main');
// signer: the analyst's network key, when loaded on the query page (kept in
// this tab's memory only; sign.js).
const state = { me: null, last: null, signer: null };

// api calls the HTTP/JSON API. It always sends X-Fedstat: 1 (required on
// state-changing requests made with the cookie).
async function api(method, path, body) {
  const opt = { method, credentials: 'same-origin', headers: { 'X-Fedstat': '1' } };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  let data = null;
  try { data = await r.json(); } catch { /* empty body */ }
  if (!r.ok) {
    const e = new Error((data && data.error) || r.statusText);
    e.status = r.status;
    throw e;
  }
  return data;
}

function errorBox(e) {
  return el('div', { class: 'card error' + (e.status === 403 ? ' refused' : ''), id: e.status === 403 ? 'refused' : undefined },
    el('strong', {}, e.status === 403 ? 'Refused (403): ' : `Error${e.status ? ' (' + e.status + ')' : ''}: `), e.message);
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

// ---- sign-in ----

function signInPage(msg) {
  const token = el('input', { id: 'token', type: 'password', autocomplete: 'off', size: 48, placeholder: 'fst_…' });
  const out = el('div', { id: 'signin-msg', class: 'error' }, msg || '');
  const form = el('form', { id: 'signin', class: 'card' },
    el('h2', {}, 'Sign in'),
    el('p', { class: 'muted' }, 'Paste the bearer token your network operator issued (the same token the API and ', el('code', {}, 'fedstat query'), ' use). The token is exchanged for a session cookie and is not stored in the browser.'),
    el('div', { class: 'row' }, el('label', {}, 'Token', token), el('button', { class: 'primary', type: 'submit', id: 'signin-btn' }, 'Sign in')),
    out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      state.me = await api('POST', '/v1/session', { token: token.value });
      token.value = '';
      signedIn();
      if (!location.hash || location.hash === '#/signin') location.hash = '#/query';
      else route();
    } catch (e) {
      out.textContent = e.message;
    }
  });
  show(form);
}

function signedIn() {
  document.getElementById('nav').hidden = false;
  document.getElementById('signout').hidden = false;
  // The audit link is only offered to operators; the API refuses others anyway.
  document.getElementById('nav-audit').hidden = state.me.role !== 'operator';
  document.getElementById('who').textContent = `${state.me.name} (${state.me.role})`;
}

document.getElementById('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/v1/session'); } catch { /* signed out anyway */ }
  state.me = null;
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  location.hash = '#/signin';
});

// ---- network ----

async function networkPage() {
  const r = await api('GET', '/v1/nodes');
  const nodes = r.nodes || [];
  const alive = nodes.filter((n) => n.alive).length;
  show(el('div', { class: 'card' },
    el('h2', {}, 'Network'),
    el('p', {}, `Key epoch ${num(r.epoch)} · decryption threshold ${r.threshold || 0} · ${alive} of ${nodes.length} nodes alive`),
    el('table', { id: 'nodes' },
      el('thead', {}, el('tr', {}, ['Node', 'Status', 'Key epoch', 'Version', 'Address', 'Patients', 'Rows', 'Last seen'].map((h) => el('th', {}, h)))),
      el('tbody', {}, nodes.map((n) => el('tr', { 'data-node': n.node_id },
        el('td', {}, n.node_id),
        el('td', {}, el('span', { class: 'pill ' + (n.alive ? 'alive' : 'dead') }, n.alive ? 'alive' : 'down')),
        el('td', { class: 'num' }, num(n.epoch)),
        el('td', {}, n.version || ''),
        el('td', {}, n.address || ''),
        el('td', { class: 'num' }, num(n.summary && n.summary.patients)),
        el('td', {}, Object.entries((n.summary && n.summary.rows) || {}).map(([t, c]) => `${t} ${num(c)}`).join(', ')),
        el('td', {}, ago(n.last_seen_unix_ms)))))),
    el('p', { class: 'muted' }, 'Data summaries are what each node advertises on gossip (row counts per table), not query results.')));
}

// ---- query editor, form builder, progress, result ----

function sqlString(s) {
  return "'" + String(s).replaceAll("'", "''") + "'";
}

// buildSQL turns the form builder's fields into the dialect.
export function buildSQL(kind, code, from, to) {
  if (kind === 'cohort') return `SELECT COUNT(DISTINCT patient_id) FROM conditions WHERE code = ${sqlString(code)}`;
  const bucket = kind === 'monthly' ? 'month' : 'week';
  return `SELECT ${bucket}(onset_date) AS ${bucket}, region, COUNT(DISTINCT patient_id) FROM conditions WHERE code = ${sqlString(code)} AND onset_date BETWEEN ${sqlString(from)} AND ${sqlString(to)} GROUP BY ${bucket}, region`;
}

// parseErrorBox shows a dialect error at its line and column.
function parseErrorBox(msg, sql) {
  const m = /line (\d+), column (\d+)/.exec(msg);
  const box = el('div', { id: 'sql-error', class: 'card error' }, el('strong', {}, 'The query was refused: '), msg.split('\n')[0]);
  if (m) {
    const line = Number(m[1]), col = Number(m[2]);
    const text = sql.split('\n')[line - 1];
    if (text !== undefined) {
      box.append(el('pre', { id: 'sql-error-at' }, `${text}\n${' '.repeat(Math.max(0, col - 1))}^`));
      box.dataset.line = line;
      box.dataset.column = col;
    }
  }
  return box;
}

function progressView(st) {
  return el('div', { id: 'progress', class: 'card', 'data-state': st.state || '' },
    el('h3', {}, 'Query ', el('code', { id: 'query-id' }, st.query_id), ' ', el('span', { class: 'pill ' + (st.state || ''), id: 'query-state' }, (st.state || '').replace('STATE_', '').toLowerCase())),
    st.error ? el('p', { class: 'error' }, st.error) : null,
    st.reused_from ? el('p', { id: 'reused-from', class: 'muted' }, 'The same question as query ', el('code', {}, st.reused_from),
      ', and no node\'s data changed since: answered from that release, charged nothing. Tick "ask again" to pay for a fresh release.') : null,
    waitingView(st),
    el('p', {}, 'Phases: ', (st.phases || []).map((p) => `${p.name} ${Math.round(num(p.elapsed_ms))} ms`).join(' → ') || '—'),
    el('table', { id: 'progress-nodes' },
      el('thead', {}, el('tr', {}, ['Node', 'Status', 'Elapsed', 'Upload'].map((h) => el('th', {}, h)))),
      el('tbody', {}, (st.nodes || []).map((n) => el('tr', { 'data-node': n.node_id, 'data-status': n.status || '' },
        el('td', {}, n.node_id),
        el('td', {}, el('span', { class: 'pill ' + (n.status || '') }, n.status || 'waiting'), n.error ? ' ' + n.error : ''),
        el('td', { class: 'num' }, n.elapsed_ms ? Math.round(num(n.elapsed_ms)) + ' ms' : ''),
        el('td', { class: 'num' }, n.upload_bytes ? Math.round(num(n.upload_bytes) / 1024) + ' KiB' : ''))))),
    st.plan ? el('details', {}, el('summary', {}, 'Plan'), el('pre', {}, st.plan)) : null);
}

// waitingView: the nodes whose admin the query waits for (approvals that
// wait; the same line `fedstat query` prints), or nothing.
function waitingView(st) {
  const w = st.awaiting_approval || [];
  if (w.length === 0) return null;
  const since = (ms) => new Date(num(ms)).toISOString().replace(/\.\d+Z$/, 'Z');
  const until = num(st.approval_deadline_unix_ms);
  return el('p', { id: 'query-waiting', class: 'muted' },
    'Waiting for approval at ', w.map((x) => `${x.node_id} (since ${since(x.since_unix_ms)})`).join(', '),
    until ? `; gives up at ${since(until)}` : '');
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  // Kept for tests and for copy/paste: the last file offered.
  window.fedstatLastDownload = { name, type, text };
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function resultView(st) {
  const res = st.result;
  const k = res.key_columns || 0;
  const aggs = (res.columns || []).slice(k);
  const id = st.query_id;
  return el('div', { id: 'result', class: 'card', 'data-query-id': id },
    el('h3', {}, 'Result'),
    el('p', { class: 'muted' }, `ε ${goFloat(num(res.epsilon))}, δ ${goFloat(num(res.delta))}, ${res.mechanism || ''}, ${res.nodes || 0} nodes summed. Shaded bands and error bars are 95% intervals from the noise actually added.`),
    el('div', { id: 'chart' }, chart(res)),
    el('div', { class: 'row' },
      el('button', { id: 'dl-csv', type: 'button', onclick: () => download(`${id}.csv`, 'text/csv', toCSV(res)) }, 'Download CSV'),
      el('button', { id: 'dl-json', type: 'button', onclick: () => download(`${id}.json`, 'application/json', toJSON(res)) }, 'Download JSON')),
    el('div', { class: 'scroll' }, el('table', { id: 'result-table' },
      el('thead', {}, el('tr', {}, res.columns.slice(0, k).map((c) => el('th', {}, c)), aggs.map((c) => [el('th', {}, c), el('th', {}, '95% interval')]))),
      el('tbody', {}, (res.rows || []).map((row) => el('tr', {},
        (row.keys || []).map((kv) => el('td', { title: (res.key_names || {})[kv] || '' }, (res.key_names || {})[kv] ? `${kv} (${res.key_names[kv]})` : kv)),
        numbers(row).map((n) => [el('td', { class: 'num' }, n.display || goFloat(n.value)),
          el('td', { class: 'num' }, n.suppressed ? '' : `${goFloat(n.lo)} – ${goFloat(n.hi)}`)])))))));
}

const TERMINAL = new Set(['STATE_DONE', 'STATE_FAILED', 'STATE_CANCELLED']);

// watch reads the NDJSON watch stream until the query ends.
async function watch(id, onStatus) {
  const r = await fetch(`/v1/queries/${encodeURIComponent(id)}/watch`, { credentials: 'same-origin', headers: { 'X-Fedstat': '1' } });
  if (!r.ok || !r.body) return null;
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (!line) continue;
      last = JSON.parse(line);
      onStatus(last);
      if (TERMINAL.has(last.state)) {
        reader.cancel().catch(() => {});
        return last;
      }
    }
  }
  return last;
}

async function follow(id, slot) {
  const render = (st) => slot.replaceChildren(progressView(st));
  render({ query_id: id, state: 'STATE_PLANNED' });
  try {
    await watch(id, render);
  } catch { /* fall back to polling below */ }
  // The final status, with the result.
  let st = await api('GET', `/v1/queries/${encodeURIComponent(id)}`);
  while (!TERMINAL.has(st.state)) {
    render(st);
    await new Promise((r) => setTimeout(r, 500));
    st = await api('GET', `/v1/queries/${encodeURIComponent(id)}`);
  }
  render(st);
  if (st.result) slot.append(resultView(st));
}

async function queryPage() {
  const kind = el('select', { id: 'fb-kind' },
    el('option', { value: 'weekly' }, 'Weekly cases by region'),
    el('option', { value: 'monthly' }, 'Monthly cases by region'),
    el('option', { value: 'cohort' }, 'Cohort count by code'));
  const code = el('input', { id: 'fb-code', value: '840539006', size: 12 });
  const from = el('input', { id: 'fb-from', type: 'date', value: '2021-11-01' });
  const to = el('input', { id: 'fb-to', type: 'date', value: '2022-02-28' });
  const sql = el('textarea', { id: 'sql', spellcheck: 'false' }, buildSQL('weekly', '840539006', '2021-11-01', '2022-02-28'));
  const eps = el('input', { id: 'epsilon', type: 'number', step: 'any', min: '0', placeholder: 'network default', size: 10 });
  const fresh = el('input', { id: 'fresh', type: 'checkbox' });
  const errSlot = el('div', { id: 'error-slot' });
  const runSlot = el('div', { id: 'run-slot' });
  // Signing: the analyst's certificate and key files (as the network CA
  // issues them); every query is then signed in the browser, so that each
  // node checks who asked and what (nodes with require_analyst_signature
  // answer only signed queries).
  const certIn = el('input', { id: 'sign-cert', type: 'file', accept: '.crt,.pem' });
  const keyIn = el('input', { id: 'sign-key', type: 'file', accept: '.key,.pem' });
  const signState = el('span', { id: 'sign-state', class: 'muted' },
    state.signer ? `queries are signed with ${state.signer.file}` : 'queries are not signed');
  const loadKey = async () => {
    if (!certIn.files.length || !keyIn.files.length) return;
    try {
      state.signer = await loadSigner(certIn.files[0], keyIn.files[0], (state.me && state.me.coordinator) || 'coordinator');
      signState.textContent = `queries are signed with ${state.signer.file}`;
    } catch (e) {
      state.signer = null;
      signState.textContent = `cannot sign: ${e.message || e}`;
    }
  };
  certIn.addEventListener('change', loadKey);
  keyIn.addEventListener('change', loadKey);
  const gen = () => { sql.value = buildSQL(kind.value, code.value, from.value, to.value); errSlot.replaceChildren(); };
  kind.addEventListener('change', () => { from.disabled = to.disabled = kind.value === 'cohort'; });
  const run = async () => {
    errSlot.replaceChildren();
    runSlot.replaceChildren();
    let spec = { sql: sql.value };
    if (eps.value) spec.epsilon = Number(eps.value);
    let st;
    try {
      const body = {};
      if (state.signer) {
        const signed = await signQuery(state.signer, spec);
        spec = signed.spec;
        body.analyst_signature = signed.signature;
      }
      body.spec = spec;
      if (fresh.checked) body.fresh = true;
      st = await api('POST', '/v1/queries', body);
    } catch (e) {
      errSlot.replaceChildren(e.status === 400 ? parseErrorBox(e.message, sql.value) : errorBox(e));
      const m = /line (\d+), column (\d+)/.exec(e.message);
      if (m) { // put the cursor where the error is
        const lines = sql.value.split('\n');
        let at = 0;
        for (let i = 0; i < Number(m[1]) - 1 && i < lines.length; i++) at += lines[i].length + 1;
        at += Number(m[2]) - 1;
        sql.focus();
        sql.setSelectionRange(at, at + 1);
      }
      return;
    }
    window.history.replaceState(null, '', `#/query/${encodeURIComponent(st.query_id)}`);
    await follow(st.query_id, runSlot);
  };
  const recent = el('div', { id: 'history' });
  show(
    el('div', { class: 'card' },
      el('h2', {}, 'Query'),
      el('h3', {}, 'Form builder'),
      el('div', { class: 'row' },
        el('label', {}, 'Question', kind), el('label', {}, 'Condition code (SNOMED CT)', code),
        el('label', {}, 'Onset from', from), el('label', {}, 'Onset to', to),
        el('button', { id: 'fb-generate', type: 'button', onclick: gen }, 'Write SQL')),
      el('h3', {}, 'SQL'),
      sql,
      el('div', { class: 'row' }, el('label', {}, 'ε (optional)', eps),
        el('label', { title: 'By default a question you had released before, while no node\'s data changed, is answered from that release and charged nothing' }, fresh, ' ask again (full price)'),
        el('button', { id: 'run', class: 'primary', type: 'button', onclick: run }, 'Run')),
      el('details', { id: 'signing' }, el('summary', {}, 'Sign with my network key'),
        el('div', { class: 'row' }, el('label', {}, 'Certificate', certIn), el('label', {}, 'Key', keyIn), signState),
        el('p', { class: 'muted' }, 'The key stays in this tab; it is never sent. Nodes that require analyst signatures answer only signed queries.')),
      errSlot),
    runSlot, recent);
  // A query id in the address shows that query.
  const id = decodeURIComponent(location.hash.split('/')[2] || '');
  if (id) follow(id, runSlot).catch((e) => runSlot.replaceChildren(errorBox(e)));
  try {
    const l = await api('GET', '/v1/queries?limit=20');
    const qs = l.queries || [];
    if (qs.length) recent.replaceChildren(el('div', { class: 'card' }, el('h3', {}, 'Recent queries'), el('table', {},
      el('tbody', {}, qs.map((q) => el('tr', {},
        el('td', {}, el('a', { href: `#/query/${encodeURIComponent(q.query_id)}` }, q.query_id)),
        el('td', {}, el('span', { class: 'pill ' + q.state }, (q.state || '').replace('STATE_', '').toLowerCase())),
        el('td', {}, el('code', {}, (q.spec && q.spec.sql) || ''))))))));
  } catch { /* history is optional */ }
}

// ---- statistics on study tables ----

const METHODS = {
  km: 'Kaplan-Meier survival',
  cox: 'Cox proportional hazards',
  logit: 'Logistic regression',
  linreg: 'Linear regression',
};

// sig rounds for display (the downloads keep every digit).
function sig(v, n = 4) {
  return v === null || v === undefined || !Number.isFinite(Number(v)) ? '—' : goFloat(Number(Number(v).toPrecision(n)));
}

// isCategorical: the API lists the levels of the columns it accepts as
// factors (and strata); the rule lives there only.
function isCategorical(c) {
  return (c.levels || []).length > 0;
}

function estimatesTable(res) {
  const reg = res.method !== 'km';
  return el('table', { id: 'coef-table' },
    el('thead', {}, el('tr', {}, [reg ? 'Coefficient' : 'Statistic', 'Estimate', 'SE', '95% interval', reg ? 'of which DP noise (SE)' : ''].map((h) => el('th', {}, h)))),
    el('tbody', {}, (res.estimates || []).map((e) => el('tr', { 'data-term': e.name },
      el('td', {}, el('code', {}, e.name)),
      el('td', { class: 'num' }, sig(e.value)),
      el('td', { class: 'num' }, sig(e.se)),
      el('td', { class: 'num' }, e.ci_low === null && e.ci_high === null ? '' : `${sig(e.ci_low)} – ${sig(e.ci_high)}`),
      el('td', { class: 'num' }, e.noise_se === undefined ? '' : sig(e.noise_se))))));
}

function statsResultView(res) {
  const base = `${res.method}-${res.table}`;
  const what = res.method === 'km'
    ? 'Steps are the Kaplan-Meier estimate; shaded bands its 95% interval (Greenwood, log scale, widened by the DP noise); dashed marks the medians.'
    : (res.method === 'cox' ? 'Coefficients are log hazard ratios.' : (res.method === 'logit' ? 'Coefficients are log odds ratios.' : 'Coefficients are in the outcome\'s units.')) + ' Standard errors and intervals include the DP noise.';
  return el('div', { id: 'stats-result', class: 'card', 'data-method': res.method },
    el('h3', {}, METHODS[res.method] || res.method, ' on ', el('code', {}, res.table), res.strata ? [' by ', el('code', {}, res.strata)] : ''),
    el('p', { class: 'muted' }, `ε ${goFloat(num(res.epsilon))}, δ ${goFloat(num(res.delta))} for the whole analysis: ${(res.queries || []).length} ${(res.queries || []).length === 1 ? 'query' : 'queries'} (${Math.round(num(res.elapsed_ms))} ms). ${what}`),
    res.method === 'km' ? el('div', { id: 'stats-chart' }, kmChart(res.curves || [], res.strata)) : null,
    el('div', { class: 'row' },
      el('button', { id: 'stats-dl-csv', type: 'button', onclick: () => download(`${base}.csv`, 'text/csv', statsCSV(res)) }, 'Download CSV'),
      el('button', { id: 'stats-dl-json', type: 'button', onclick: () => download(`${base}.json`, 'application/json', JSON.stringify(res, null, 2) + '\n') }, 'Download JSON')),
    el('div', { class: 'scroll' }, estimatesTable(res)),
    el('p', { class: 'muted' }, 'Queries: ', (res.queries || []).map((id, i) => [i ? ', ' : '', el('a', { href: `#/query/${encodeURIComponent(id)}` }, id)])));
}

async function statsPage() {
  const r = await api('GET', '/v1/studies');
  const studies = r.studies || [];
  if (!studies.length) {
    show(el('div', { class: 'card', id: 'stats-none' }, el('h2', {}, 'Statistics'),
      el('p', {}, 'The network catalogue has no study tables. An operator lists study schemas under ', el('code', {}, 'studies = [...]'), ' in the coordinator\'s and the nodes\' configs, and each node imports its rows with ', el('code', {}, 'fedstat node import --study'), ' (docs/statistics.md).')));
    return;
  }
  const method = el('select', { id: 'st-method' }, Object.entries(METHODS).map(([k, v]) => el('option', { value: k }, v)));
  const table = el('select', { id: 'st-table' }, studies.map((s) => el('option', { value: s.name }, s.name)));
  const time = el('select', { id: 'st-time' });
  const status = el('select', { id: 'st-status' });
  const event = el('input', { id: 'st-event', size: 6 });
  const width = el('input', { id: 'st-width', type: 'number', step: 'any', min: '0', value: '1', size: 6 });
  const strata = el('select', { id: 'st-strata' });
  const outcome = el('input', { id: 'st-outcome', size: 18 });
  const outcomeCol = el('select', { id: 'st-outcome-col' });
  const rounds = el('input', { id: 'st-rounds', type: 'number', min: '1', max: '20', placeholder: 'default', size: 6 });
  const where = el('input', { id: 'st-where', size: 30, placeholder: 'optional SQL condition' });
  const eps = el('input', { id: 'st-epsilon', type: 'number', step: 'any', min: '0', placeholder: 'network default', size: 10 });
  const terms = el('div', { class: 'terms', id: 'st-terms' });
  const field = (label, input, cls) => el('label', { class: cls }, label, input);
  const survFields = [field('Time column', time, 'f-surv'), field('Status column', status, 'f-surv'), field('Event value', event, 'f-surv'), field('Time bin width', width, 'f-surv')];
  const kmFields = [field('Strata (optional)', strata, 'f-km')];
  const logitFields = [field('Outcome (0/1 column or condition)', outcome, 'f-logit')];
  const linFields = [field('Outcome column', outcomeCol, 'f-linreg')];
  const roundFields = [field('Newton rounds', rounds, 'f-rounds')];
  const termsBox = el('div', { id: 'st-terms-box' }, el('h3', {}, 'Covariates'),
    el('p', { class: 'muted' }, 'A number column enters with its public range from the schema; a factor adds one indicator per level but the first.'), terms);
  const slot = el('div', { id: 'stats-slot' });
  const errSlot = el('div', { id: 'stats-error' });

  const study = () => studies.find((s) => s.name === table.value) || studies[0];
  const opts = (sel, cols, pick, none) => {
    sel.replaceChildren(...(none ? [el('option', { value: '' }, '(none)')] : []), ...cols.map((c) => el('option', { value: c.name }, c.name)));
    if (pick && cols.some((c) => c.name === pick)) sel.value = pick;
  };
  const fillTable = () => {
    const s = study();
    const nums = s.columns.filter((c) => c.min !== undefined && c.max !== undefined);
    const cats = s.columns.filter(isCategorical);
    opts(time, nums, 'time');
    opts(status, cats, 'status');
    const st = s.columns.find((c) => c.name === status.value);
    event.value = st ? st.levels.slice(-1)[0] : '';
    opts(strata, cats.filter((c) => c.name !== status.value), '', true);
    opts(outcomeCol, nums, '');
    outcome.value = st ? `${st.name} = ${st.type === 'int' ? st.max : sqlString(event.value)}` : '';
    terms.replaceChildren(...s.columns.filter((c) => c.type !== 'date').map((c) => {
      const sel = el('select', { 'data-term': c.name },
        el('option', { value: '' }, '—'),
        c.min !== undefined ? el('option', { value: 'x' }, 'number') : null,
        isCategorical(c) ? el('option', { value: 'factor' }, 'factor') : null);
      return el('label', {}, c.name + (c.min !== undefined ? ` [${goFloat(c.min)}, ${goFloat(c.max)}]` : ''), sel);
    }));
  };
  const fillMethod = () => {
    const m = method.value;
    for (const f of survFields) f.hidden = !(m === 'km' || m === 'cox');
    for (const f of kmFields) f.hidden = m !== 'km';
    for (const f of logitFields) f.hidden = m !== 'logit';
    for (const f of linFields) f.hidden = m !== 'linreg';
    for (const f of roundFields) f.hidden = !(m === 'logit' || m === 'cox');
    termsBox.hidden = m === 'km';
    if (m === 'cox' && Number(width.value) === 1) width.value = '7';
  };
  table.addEventListener('change', fillTable);
  method.addEventListener('change', fillMethod);

  const run = async () => {
    errSlot.replaceChildren();
    const m = method.value;
    let body = { table: table.value };
    if (where.value.trim()) body.where = where.value.trim();
    if (eps.value) body.epsilon = Number(eps.value);
    if (m === 'km' || m === 'cox') Object.assign(body, { time: time.value, status: status.value, event: event.value, width: Number(width.value) || 1 });
    if (m === 'km' && strata.value) body.strata = strata.value;
    if (m === 'logit') body.outcome = outcome.value;
    if (m === 'linreg') body.outcome = outcomeCol.value;
    if ((m === 'logit' || m === 'cox') && rounds.value) body.rounds = Number(rounds.value);
    if (m !== 'km') {
      body.covariates = [...terms.querySelectorAll('select')].filter((s) => s.value === 'x').map((s) => s.dataset.term);
      body.factors = [...terms.querySelectorAll('select')].filter((s) => s.value === 'factor').map((s) => s.dataset.term);
    }
    slot.replaceChildren(el('div', { class: 'card', id: 'stats-running' }, `Running ${METHODS[m]}: each round is a query submitted as ${state.me.name}, answered by the nodes and charged to your budget…`));
    const btn = document.getElementById('st-run');
    btn.disabled = true;
    try {
      if (state.signer) {
        // Signed once for the whole analysis with the key loaded on the
        // query page; every node checks each round against it.
        const { spec, signature } = await signAnalysis(state.signer, { method: m, ...body });
        body = { ...spec, analyst_signature: signature };
        delete body.method;
      }
      const res = await api('POST', `/v1/stats/${encodeURIComponent(m)}`, body);
      window.fedstatLastStats = res;
      slot.replaceChildren(statsResultView(res));
    } catch (e) {
      slot.replaceChildren();
      errSlot.replaceChildren(errorBox(e));
    } finally {
      btn.disabled = false;
    }
  };
  show(
    el('div', { class: 'card' },
      el('h2', {}, 'Statistics'),
      el('p', { class: 'muted' }, 'Research statistics on a study table, computed by the coordinator from released totals exactly as ', el('code', {}, 'fedstat stats'), ' does: every round is an ordinary differentially private query of yours (it appears under Query and is debited at each node). ε is the budget of the whole analysis.'),
      el('div', { class: 'row' }, field('Method', method), field('Study table', table), field('Rows (WHERE)', where), field('ε (whole analysis)', eps)),
      el('div', { class: 'row' }, survFields, kmFields, logitFields, linFields, roundFields),
      termsBox,
      el('div', { class: 'row' }, el('button', { id: 'st-run', class: 'primary', type: 'button', onclick: run }, 'Run')),
      errSlot),
    slot);
  fillTable();
  fillMethod();
}

// ---- standing series ----

// seriesResult turns a series' released periods (and, when given, its
// forecast rows) into a result the time-series chart draws: one line per
// label with its 95% band, dated by each period's last day, and the
// forecast of each label as a line of medians with its 90% band.
export function seriesResult(s, fc) {
  const rows = [];
  for (const p of s.periods || []) {
    for (const v of p.values || []) {
      // Drawn at 0 when the (unbiased, noisy) estimate is below it, as
      // its interval is.
      rows.push({ keys: [p.last, v.label], values: [{ value: Math.max(0, num(v.value)), ci_low: num(v.ci_low), ci_high: num(v.ci_high), display: v.suppressed ? 'small' : '' }] });
    }
  }
  if (fc) {
    const by = new Map();
    for (const r of fc.rows || []) {
      const k = r.location + '\u0000' + r.target_end_date;
      if (!by.has(k)) by.set(k, { label: r.location, date: r.target_end_date, q: new Map() });
      by.get(k).q.set(Number(num(r.output_type_id).toFixed(3)), num(r.value));
    }
    for (const f of by.values()) {
      rows.push({ keys: [f.date, f.label + ' (forecast)'], values: [{ value: f.q.get(0.5), ci_low: f.q.get(0.05), ci_high: f.q.get(0.95) }] });
    }
  }
  return { columns: ['week', s.key_column || 'series', 'count'], key_columns: 2, rows };
}

async function seriesListPage() {
  const r = await api('GET', '/v1/series');
  const list = r.series || [];
  show(el('div', { class: 'card' },
    el('h2', {}, 'Standing series'),
    el('p', { class: 'muted' }, 'Counts the coordinator releases every period by itself, under one budget for the whole lifetime (binary-tree mechanism). Register one with ', el('code', {}, 'fedstat series create'), ' or the API (POST /v1/series).'),
    list.length ? el('table', { id: 'series-list' },
      el('thead', {}, el('tr', {}, ['Series', 'Every', 'Start', 'Released', 'State', 'Owner', 'ε (lifetime)', 'Alerts', 'Next due'].map((h) => el('th', {}, h)))),
      el('tbody', {}, list.map((x) => el('tr', { 'data-series': x.spec.name },
        el('td', {}, el('a', { href: '#/series/' + encodeURIComponent(x.spec.name) }, x.spec.name)),
        el('td', {}, x.spec.every), el('td', {}, x.spec.start),
        el('td', { class: 'num' }, `${x.released || 0} / ${x.spec.periods}`),
        el('td', {}, el('span', { class: 'pill ' + (x.state === 'waiting' ? 'failed' : 'alive') }, x.state)),
        el('td', {}, x.owner), el('td', { class: 'num' }, goFloat(num(x.spec.epsilon))),
        el('td', { class: 'num' }, (x.alerts || []).length), el('td', {}, x.next_due || '')))))
      : el('p', {}, 'No series yet.')));
}

async function seriesPage(name) {
  const s = await api('GET', '/v1/series/' + encodeURIComponent(name));
  let fc = null, fcErr = null;
  if (s.spec.every === 'week' && (s.released || 0) > 0) {
    try { fc = await api('GET', '/v1/series/' + encodeURIComponent(name) + '/forecast'); } catch (e) { fcErr = e; }
  }
  let budget = null;
  if (state.me && state.me.name === s.owner) {
    try { budget = await api('GET', '/v1/budget'); } catch { /* shown as unknown */ }
  }
  const sp = s.spec;
  const rho = num(s.rho);
  const res = seriesResult(s, fc);
  const late = (s.periods || []).filter((p) => p.late);
  show(el('div', { class: 'card', id: 'series' },
    el('h2', {}, `Series ${sp.name}`),
    el('p', {}, `COUNT(DISTINCT patient_id) FROM ${sp.table}${sp.where ? ' WHERE ' + sp.where : ''}${sp.by ? ' by ' + sp.by : ''}, placed by ${sp.date_column}; every ${sp.every} from ${sp.start}; at most ${sp.max_periods_per_patient} periods per patient.`),
    el('p', {}, el('span', { class: 'pill ' + (s.state === 'waiting' ? 'failed' : 'alive') }, s.state), ` ${s.released || 0} of ${sp.periods} periods released`, s.next_due ? ` · next due ${s.next_due}` : ''),
    s.error ? el('p', { class: 'error', id: 'series-waiting' }, 'Waiting: ' + s.error) : '',
    el('h3', {}, 'Released values (95% intervals) and forecast (median, 90% interval)'),
    res.rows.length ? chart(res) : el('p', { class: 'muted' }, 'Nothing released yet.'),
    fcErr ? el('p', { class: 'muted' }, 'No forecast: ' + fcErr.message) : '',
    fc && fc.notes ? el('p', { class: 'muted' }, Object.entries(fc.notes).map(([k, v]) => `${k}: ${v}`).join('; ')) : '',
    el('h3', {}, 'Alerts'),
    (s.alerts || []).length ? el('table', { id: 'series-alerts' },
      el('thead', {}, el('tr', {}, ['Week', 'Label', 'Value', 'Rule', 'Statistic', 'Threshold'].map((h) => el('th', {}, h)))),
      el('tbody', {}, s.alerts.map((a) => el('tr', {},
        el('td', {}, a.week), el('td', {}, a.label), el('td', { class: 'num' }, Math.round(num(a.value))),
        el('td', {}, a.rule), el('td', { class: 'num' }, sig(num(a.statistic))), el('td', { class: 'num' }, sig(num(a.threshold)))))))
      : el('p', { class: 'muted' }, `No alert has fired (rules: ${(s.rules || []).map((r) => r.rule + (r.threshold ? ' > ' + r.threshold : '')).join(', ')}).`),
    el('h3', {}, 'Budget'),
    el('p', {}, `The whole lifetime costs ρ ${sig(rho)} (ε ${goFloat(num(sp.epsilon))}, δ ${goFloat(num(sp.delta))}), charged once at every node to ${s.owner} at the first period; every period after that is free.`),
    budget ? el('table', { id: 'series-budget' },
      el('thead', {}, el('tr', {}, ['Node', 'Spent ρ (all your queries)', 'Left ρ'].map((h) => el('th', {}, h)))),
      el('tbody', {}, (budget.nodes || []).map((n) => el('tr', {},
        el('td', {}, n.node_id), el('td', { class: 'num' }, sig(num(n.spent_rho))),
        el('td', { class: 'num' }, n.error ? n.error : sig(Math.max(0, num(n.limit_rho) - num(n.spent_rho))))))))
      : el('p', { class: 'muted' }, 'The owner sees the budget left at each node here.'),
    late.length ? el('div', {}, el('h3', {}, 'Late periods'), el('ul', { id: 'series-late' }, late.map((p) => el('li', {}, `${p.first}: ${p.note}`)))) : '',
    (s.periods || []).some((p) => !p.late && p.note) ? el('p', { class: 'muted' }, `${(s.periods || []).filter((p) => !p.late && p.note).length} periods were over when the series was registered: released at once (a backfill).`) : '',
    el('h3', {}, 'Periods'),
    el('div', { class: 'scroll' }, el('table', { id: 'series-periods' },
      el('thead', {}, el('tr', {}, ['Period', 'Label', 'Count', '95% interval', 'Running total', '95% interval', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, (s.periods || []).flatMap((p) => (p.values || []).map((v) => el('tr', {},
        el('td', {}, `${p.first} – ${p.last}`), el('td', {}, v.label),
        el('td', { class: 'num' }, v.suppressed ? 'small' : Math.round(num(v.value))),
        el('td', { class: 'num' }, `${Math.round(num(v.ci_low))} – ${Math.round(num(v.ci_high))}`),
        el('td', { class: 'num' }, Math.max(0, Math.round(num(v.total)))),
        el('td', { class: 'num' }, `${Math.round(num(v.total_ci_low))} – ${Math.round(num(v.total_ci_high))}`),
        el('td', {}, p.late ? 'late' : '')))))))));
}

async function seriesRoute() {
  const name = decodeURIComponent(location.hash.split('/')[2] || '');
  return name ? seriesPage(name) : seriesListPage();
}

// ---- budgets ----

async function budgetPage() {
  const r = await api('GET', '/v1/budget');
  const f = (v) => goFloat(Math.round(num(v) * 1e4) / 1e4);
  show(el('div', { class: 'card' },
    el('h2', {}, `Privacy budget of ${r.analyst}`),
    el('p', { class: 'muted' }, 'Each node keeps the authoritative ledger for its own data (zCDP ρ, per analyst and in total); these are the nodes\' answers now.'),
    el('table', { id: 'budget' },
      el('thead', {}, el('tr', {}, ['Node', 'Spent ρ', 'Limit ρ', 'Left', 'Node total spent ρ', 'Node total limit ρ', ''].map((h) => el('th', {}, h)))),
      el('tbody', {}, (r.nodes || []).map((n) => el('tr', { 'data-node': n.node_id },
        el('td', {}, n.node_id),
        el('td', { class: 'num' }, f(n.spent_rho)), el('td', { class: 'num' }, f(n.limit_rho)),
        el('td', { class: 'num' }, num(n.limit_rho) ? Math.max(0, Math.round(100 * (1 - num(n.spent_rho) / num(n.limit_rho)))) + ' %' : ''),
        el('td', { class: 'num' }, f(n.total_spent_rho)), el('td', { class: 'num' }, f(n.total_limit_rho)),
        el('td', { class: 'error' }, n.error || '')))))));
}

// ---- audit (operators) ----

async function auditPage() {
  const r = await api('GET', '/v1/audit?limit=500');
  const entries = (r.entries || []).slice().reverse();
  show(el('div', { class: 'card' },
    el('h2', {}, 'Audit trail'),
    el('p', { class: 'muted' }, `The coordinator's hash-chained audit log${r.path ? ' (' + r.path + ')' : ''}, newest first. Verify the chain with `, el('code', {}, 'fedstat audit verify'), '.'),
    el('div', { class: 'scroll' }, el('table', { id: 'audit' },
      el('thead', {}, el('tr', {}, ['Seq', 'Time', 'Actor', 'Action', 'Query', 'Details', 'Hash'].map((h) => el('th', {}, h)))),
      el('tbody', {}, entries.map((e) => el('tr', {},
        el('td', { class: 'num' }, e.seq), el('td', {}, e.time), el('td', {}, e.actor), el('td', {}, e.action),
        el('td', {}, e.query_id || ''), el('td', {}, el('code', {}, e.details ? JSON.stringify(e.details) : '')),
        el('td', {}, el('code', { class: 'hash' }, (e.hash || '').slice(0, 12))))))))));
}

// ---- approvals (node admins) ----

function approvalsPage() {
  show(el('div', { class: 'card', id: 'approvals' },
    el('h2', {}, 'Approval queue'),
    el('p', {}, 'Nodes that require manual approval keep their queue on the node itself: the coordinator never sees it, by design (a node trusts no one else with the decision).'),
    el('p', {}, 'On the node\'s machine, list and decide pending queries with:'),
    el('pre', {}, 'fedstat node approvals\nfedstat node approve QUERY-ID\nfedstat node deny QUERY-ID'),
    el('p', { class: 'muted' }, 'A query that waits for a node\'s admin shows "Waiting for approval at NODE (since …)" in its progress, to everyone who may read it; it waits up to its approval wait (fedstat query --approval-wait, the network\'s default otherwise), also across restarts of the node and of the coordinator.')));
}

// ---- routing ----

const PAGES = { network: networkPage, query: queryPage, stats: statsPage, series: seriesRoute, budget: budgetPage, audit: auditPage, approvals: approvalsPage };

async function route() {
  const name = (location.hash.split('/')[1] || '').trim();
  if (!state.me || name === 'signin') return signInPage();
  const page = PAGES[name] || queryPage;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === (PAGES[name] ? name : 'query'));
  try {
    await page();
  } catch (e) {
    if (e.status === 401) {
      state.me = null;
      return signInPage('Your session ended; sign in again.');
    }
    show(errorBox(e));
  }
}

window.addEventListener('hashchange', route);

(async () => {
  try {
    state.me = await api('GET', '/v1/session');
    signedIn();
  } catch { /* not signed in */ }
  route();
})();
