'use strict';
// Loading and disposing a model 20 times does not grow resident memory; neither does letting
// the garbage collector free models that were never disposed (the finalizer path).
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');
const { loadModel } = require('..');
const { defaultModel } = require('./helpers');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');
const MB = 1024 * 1024;
// The bundled model is 15 MB of bf16 weights, all touched by a generation (tied head): one
// leaked model per cycle would add 15 MB, 300 MB over 20 cycles.
const BUDGET = 12 * MB;

async function settle() {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

async function cycle(dispose) {
  const m = await loadModel(defaultModel, { threads: 1 });
  const r = await m.generate('Once upon a time', { maxTokens: 8 });
  assert.equal(r.usage.completionTokens, 8);
  if (dispose) await m.dispose();
}

test('load + generate + dispose 20 times keeps RSS flat', async (t) => {
  for (let i = 0; i < 10; i++) await cycle(true); // warm up to the allocator's plateau
  await settle();
  const before = process.memoryUsage.rss();
  for (let i = 0; i < 20; i++) await cycle(true);
  await settle();
  const grown = process.memoryUsage.rss() - before;
  t.diagnostic(`RSS ${(before / MB).toFixed(1)} -> ${((before + grown) / MB).toFixed(1)} MB`);
  assert.ok(grown < BUDGET, `RSS grew by ${(grown / MB).toFixed(1)} MB over 20 cycles`);
});

test('models that are never disposed are freed by the garbage collector', async (t) => {
  // V8 collects handles lazily, so a few undisposed models (15 MB each) may be alive at any
  // time: warm up to that plateau, then 20 more must stay within 3 models' worth (a missing
  // finalizer would add 300 MB).
  for (let i = 0; i < 10; i++) await cycle(false);
  await settle();
  const before = process.memoryUsage.rss();
  for (let i = 0; i < 20; i++) {
    await cycle(false);
    if (i % 5 === 4) await settle();
  }
  await settle();
  const grown = process.memoryUsage.rss() - before;
  t.diagnostic(`RSS ${(before / MB).toFixed(1)} -> ${((before + grown) / MB).toFixed(1)} MB`);
  assert.ok(grown < 3 * 16 * MB, `RSS grew by ${(grown / MB).toFixed(1)} MB over 20 undisposed models`);
});
