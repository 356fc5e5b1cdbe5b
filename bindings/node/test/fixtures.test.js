'use strict';
// Every reference checkpoint in ../shared/fixtures/models through the binding: prefill logits,
// the greedy continuation and its decode logits against transformers' expected.safetensors.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { loadModel } = require('..');
const { fixturesDir, readSafetensors, maxAbsDiff } = require('./helpers');

const TOL = 2e-3; // the fixtures' bar (fp32 CPU agrees to ~2e-6)
const modelsDir = path.join(fixturesDir, 'models');

test('the fixtures directory is present', () => {
  assert.ok(fs.existsSync(modelsDir), `${modelsDir} is missing (set LMCORE_FIXTURES)`);
});

const names = fs.existsSync(modelsDir) ? fs.readdirSync(modelsDir).filter((n) => fs.existsSync(path.join(modelsDir, n, 'expected.safetensors'))).sort() : [];

test('all 18 fixture models are found', () => {
  assert.ok(names.length >= 18, `found ${names.length}: ${names.join(', ')}`);
});

for (const name of names) {
  test(`fixture ${name}: greedy ids and logits equal transformers`, async () => {
    const dir = path.join(modelsDir, name);
    const exp = readSafetensors(path.join(dir, 'expected.safetensors'));
    const ids = Array.from(exp.input_ids.data, Number);
    const greedy = Array.from(exp.greedy_ids.data, Number);
    const [T, V] = exp.logits.shape;
    const model = await loadModel(dir, { modelOnly: true });
    try {
      assert.equal(model.info.vocabSize, V);
      assert.equal(model.info.hasTokenizer, false);
      const r = await model.evaluate(ids, { decode: greedy.length });
      assert.equal(r.vocabSize, V);
      assert.equal(r.logits.length, T * V);
      assert.deepEqual(Array.from(r.greedyTokens), greedy);
      const dl = maxAbsDiff(r.logits, exp.logits.data);
      const dd = maxAbsDiff(r.decodeLogits, exp.decode_logits.data);
      assert.ok(dl <= TOL, `${name}: prefill logits max |diff| ${dl}`);
      assert.ok(dd <= TOL, `${name}: decode logits max |diff| ${dd}`);
    } finally {
      await model.dispose();
    }
  });
}
