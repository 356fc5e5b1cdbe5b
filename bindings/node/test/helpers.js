'use strict';
// Shared test helpers: paths, a safetensors reader, numeric comparisons.
const fs = require('node:fs');
const path = require('node:path');

const repoRoot = path.resolve(__dirname, '..', '..', '..');
/** ../shared/fixtures relative to the repository root, or $LMCORE_FIXTURES. */
const fixturesDir = process.env.LMCORE_FIXTURES
  ? path.resolve(process.env.LMCORE_FIXTURES)
  : path.resolve(repoRoot, '..', 'shared', 'fixtures');
const defaultModel = path.join(repoRoot, 'models', 'default');

/** Read a safetensors file: {name: {dtype, shape, data (Float32Array | BigInt64Array | Int32Array)}}. */
function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const base = 8 + n;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const bytes = buf.subarray(base + a, base + b);
    const copy = new Uint8Array(bytes).buffer; // aligned copy
    const Ctor = { F32: Float32Array, I64: BigInt64Array, I32: Int32Array }[t.dtype];
    if (!Ctor) throw new Error(`${file}: ${name}: dtype ${t.dtype} not handled by the test reader`);
    out[name] = { dtype: t.dtype, shape: t.shape, data: new Ctor(copy) };
  }
  return out;
}

function maxAbsDiff(a, b) {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** log-softmax of one row. */
function logSoftmax(row) {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  return Array.from(row, (v) => v - lse);
}

module.exports = { repoRoot, fixturesDir, defaultModel, readSafetensors, maxAbsDiff, logSoftmax };
