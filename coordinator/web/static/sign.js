// sign.js: the dashboard signs a query or a statistical analysis with the
// analyst's network key, as
// `fedstat query` and the Go, Python and R clients do (docs/operations.md,
// "Analyst-signed queries"): the network's signed envelope (crypto/envelope)
// over the protobuf encoding of the spec (internal/signedquery). The key is
// read from a file the analyst picks, imported as a non-extractable
// WebCrypto key, and kept only in this tab's memory; it is never sent.

const enc = new TextEncoder();
const SIG_DOMAIN = enc.encode('fedstat/envelope/v1 signature\0');

// Field numbers and wire types of fedstat.types.v1.QuerySpec and
// AnalysisSpec (proto/fedstat/types/v1/types.proto), in field number
// order: s string, d double, i varint, rs repeated string.
export const QUERY_FIELDS = [
  ['sql', 1, 's'], ['epsilon', 2, 'd'], ['delta', 3, 'd'], ['mechanism', 4, 'i'], ['min_nodes', 5, 'i'],
  ['threshold', 6, 'i'], ['reference_date', 7, 's'], ['partial_limit', 8, 'i'], ['link_holders', 9, 'i'],
  ['approval_wait_seconds', 40, 'i'],
];
export const ANALYSIS_FIELDS = [
  ['method', 1, 's'], ['table', 2, 's'], ['where', 3, 's'], ['epsilon', 4, 'd'], ['delta', 5, 'd'],
  ['reference_date', 6, 's'], ['time', 8, 's'], ['status', 9, 's'], ['event', 10, 's'], ['width', 11, 'd'],
  ['strata', 12, 's'], ['outcome', 13, 's'], ['covariates', 14, 'rs'], ['factors', 15, 'rs'], ['rounds', 16, 'i'],
];
const MECHANISMS = { MECHANISM_UNSPECIFIED: 0, MECHANISM_GAUSSIAN: 1, MECHANISM_LAPLACE: 2 };

function varint(n) {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`cannot sign the value ${n}`);
  const out = [];
  do {
    let b = n % 128;
    n = (n - b) / 128;
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

// encodeSpec is the protobuf encoding of spec (protobuf JSON field names)
// with fields (QUERY_FIELDS by default), leaving out unset and zero fields
// as proto3 does; a field it does not know is an error, so that nothing is
// sent unsigned.
export function encodeSpec(spec, fields = QUERY_FIELDS) {
  const known = new Set(fields.map((f) => f[0]));
  for (const k of Object.keys(spec)) {
    if (!known.has(k)) throw new Error(`cannot sign the request: unknown field ${k}`);
  }
  const out = [];
  for (const [name, num, kind] of fields) {
    let v = spec[name];
    if (kind === 'rs') {
      for (const item of v || []) {
        const b = enc.encode(String(item));
        out.push(...varint(num * 8 + 2), ...varint(b.length), ...b);
      }
      continue;
    }
    if (v === undefined || v === null || v === '' || v === 0) continue;
    if (kind === 's') {
      const b = enc.encode(String(v));
      out.push(...varint(num * 8 + 2), ...varint(b.length), ...b);
    } else if (kind === 'd') {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setFloat64(0, Number(v), true);
      out.push(...varint(num * 8 + 1), ...b);
    } else {
      if (typeof v === 'string') v = MECHANISMS[v];
      out.push(...varint(num * 8), ...varint(Number(v)));
    }
  }
  return new Uint8Array(out);
}

function field(s) {
  const b = enc.encode(s);
  return [b.length >> 8, b.length & 0xff, ...b];
}

function pemDER(text, label) {
  const m = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`).exec(text);
  if (!m) throw new Error(`no PEM ${label} block`);
  return Uint8Array.from(atob(m[1].replace(/\s+/g, '')), (c) => c.charCodeAt(0));
}

function b64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

// derSignature turns WebCrypto's r || s into the ASN.1 DER form the
// network's envelope verifies (ecdsa.VerifyASN1).
function derSignature(raw) {
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    b = b.slice(i);
    return b[0] & 0x80 ? [0x02, b.length + 1, 0, ...b] : [0x02, b.length, ...b];
  };
  const half = raw.length / 2;
  const body = [...int(raw.slice(0, half)), ...int(raw.slice(half))];
  return new Uint8Array([0x30, body.length, ...body]);
}

// loadSigner reads the analyst's certificate and PKCS#8 key (PEM files as
// the network CA issues them) into a signer for the coordinator named
// coordinator.
export async function loadSigner(certFile, keyFile, coordinator) {
  const cert = pemDER(await certFile.text(), 'CERTIFICATE');
  const keyDER = pemDER(await keyFile.text(), 'PRIVATE KEY');
  const key = await crypto.subtle.importKey('pkcs8', keyDER, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  return { cert, key, coordinator, file: certFile.name };
}

// signQuery returns spec with the network's defaults stated (epsilon 1,
// delta 1e-6, today's reference date, as the coordinator would fill them
// in) and its signature (an AnalystSignature in protobuf JSON).
export async function signQuery(signer, spec) {
  spec = { ...spec };
  if (spec.epsilon === undefined) spec.epsilon = 1;
  if (spec.delta === undefined && spec.mechanism !== 'MECHANISM_LAPLACE') spec.delta = 1e-6;
  if (spec.reference_date === undefined) spec.reference_date = new Date().toISOString().slice(0, 10);
  return { spec, signature: await seal(signer, encodeSpec(spec), 'analyst-request') };
}

// signAnalysis returns a statistical analysis (the method and the
// request's fields but deadline_ms) with the network's defaults stated
// (epsilon 1 and delta 1e-6 for the whole analysis, today's reference
// date) and its signature: every node checks each round against it.
export async function signAnalysis(signer, spec) {
  spec = { ...spec };
  if (!spec.epsilon) spec.epsilon = 1;
  if (!spec.delta) spec.delta = 1e-6;
  if (spec.reference_date === undefined) spec.reference_date = new Date().toISOString().slice(0, 10);
  return { spec, signature: await seal(signer, encodeSpec(spec, ANALYSIS_FIELDS), 'analyst-analysis') };
}

// seal signs payload as an envelope of kind for the signer's coordinator:
// an AnalystSignature in protobuf JSON.
async function seal(signer, payload, kind) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', payload));
  const ts = new Uint8Array(8);
  new DataView(ts.buffer).setBigInt64(0, BigInt(Date.now()) * 1000000n, false);
  const header = new Uint8Array([
    ...enc.encode('FSEH'), 1, ...field(''), 0, 0, 0, 0, 0, 0, 0, 0, ...field(signer.coordinator),
    ...field(kind), ...digest, ...ts, ...crypto.getRandomValues(new Uint8Array(16)),
  ]);
  const msg = new Uint8Array([...SIG_DOMAIN, ...header]);
  const raw = new Uint8Array(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, signer.key, msg));
  return {
    request: { header: b64(header), payload: b64(payload), signature: b64(derSignature(raw)) },
    certificate: b64(signer.cert),
  };
}
