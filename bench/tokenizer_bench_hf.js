#!/usr/bin/env node
// Hugging Face `tokenizers` (npm, the official Rust binding) on the same text and the same
// 64 KB newline-aligned chunks as tokenizer_bench.c. Prints: name load_s MB/s tokens bytes
// usage: node tokenizer_bench_hf.js NODE_MODULES TEXT_FILE DIR [DIR...]
'use strict';
const fs = require('fs');
const path = require('path');
const [mods, file, ...dirs] = process.argv.slice(2);
const { Tokenizer } = require(path.join(mods, 'tokenizers'));

function chunks(buf) {
  const out = [];
  for (let off = 0; off < buf.length;) {
    let len = Math.min(65536, buf.length - off);
    while (off + len < buf.length && buf[off + len - 1] !== 0x0a) len++;
    out.push(buf.subarray(off, off + len).toString('utf8'));
    off += len;
  }
  return out;
}

async function main() {
  const buf = fs.readFileSync(file);
  const parts = chunks(buf);
  for (const dir of dirs) {
    let t0 = process.hrtime.bigint();
    const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    const load = Number(process.hrtime.bigint() - t0) / 1e9;
    let best = 1e30, total = 0;
    for (let rep = 0; rep < 3; rep++) {
      total = 0;
      t0 = process.hrtime.bigint();
      for (const p of parts) total += (await tok.encode(p, null, { addSpecialTokens: false })).getIds().length;
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    console.log(`${path.basename(dir)}\t${load.toFixed(3)}\t${(buf.length / best / 1e6).toFixed(2)}\t${total}\t${buf.length}`);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
