'use strict';
// Misuse and bad input: every error is a JS Error with a code and a message naming the
// option or file; nothing crashes (bad types, use after dispose, double dispose, direct calls
// into the addon with garbage).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { loadModel, LmcoreError } = require('..');
const { defaultModel, fixturesDir } = require('./helpers');
const native = require(process.env.LMCORE_NODE_ADDON || '../build/lmcore.node');

let model;
test.before(async () => {
  model = await loadModel(defaultModel, { threads: 1 });
});
test.after(async () => {
  await model.dispose();
});

const code = (c, re) => (e) => {
  assert.equal(e.code, c, `${e.code}: ${e.message}`);
  if (re) assert.match(e.message, re);
  return true;
};

test('load errors name the directory and the problem', async () => {
  await assert.rejects(loadModel('/nonexistent/model'), (e) => {
    assert.ok(e instanceof LmcoreError);
    assert.equal(e.code, 'LM_ERR_MISSING');
    assert.equal(e.status, -5);
    assert.match(e.message, /\/nonexistent\/model/);
    return true;
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lmcore-bad-'));
  try {
    fs.writeFileSync(path.join(tmp, 'config.json'), '{"model_type": "llama",');
    await assert.rejects(loadModel(tmp), code('LM_ERR_FORMAT', /config\.json/));
    fs.writeFileSync(path.join(tmp, 'config.json'), fs.readFileSync(path.join(defaultModel, 'config.json')));
    await assert.rejects(loadModel(tmp), (e) => e instanceof LmcoreError && /safetensors/.test(e.message));
    fs.writeFileSync(path.join(tmp, 'model.safetensors'), Buffer.from([1, 2, 3]));
    await assert.rejects(loadModel(tmp), (e) => e instanceof LmcoreError && /model\.safetensors/.test(e.message));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  // a fixture has no tokenizer: a full load says so, modelOnly works
  const fx = path.join(fixturesDir, 'models', 'llama');
  await assert.rejects(loadModel(fx), (e) => e instanceof LmcoreError && /tokenizer/.test(e.message));
});

test('load options are validated by name', async () => {
  await assert.rejects(loadModel(42), code('ERR_INVALID_ARG_TYPE', /dir/));
  await assert.rejects(loadModel(defaultModel, { threads: -1 }), code('ERR_OUT_OF_RANGE', /options\.threads/));
  await assert.rejects(loadModel(defaultModel, { threads: '2' }), code('ERR_INVALID_ARG_TYPE', /options\.threads/));
  await assert.rejects(loadModel(defaultModel, { thread: 2 }), code('ERR_INVALID_ARG_VALUE', /unknown option 'thread'/));
  await assert.rejects(loadModel(defaultModel, { device: 'tpu' }), code('ERR_INVALID_ARG_VALUE', /options\.device/));
  await assert.rejects(loadModel(defaultModel, { chatTemplate: 'tool_use' }), (e) => e instanceof LmcoreError);
});

test('generation options are validated by name', async () => {
  const bad = [
    [{ temperature: 'hot' }, 'ERR_INVALID_ARG_TYPE', /options\.temperature/],
    [{ temperature: -1 }, 'ERR_OUT_OF_RANGE', /options\.temperature/],
    [{ topP: 1.5 }, 'ERR_OUT_OF_RANGE', /options\.topP/],
    [{ topK: 2.5 }, 'ERR_OUT_OF_RANGE', /options\.topK/],
    [{ minP: -0.1 }, 'ERR_OUT_OF_RANGE', /options\.minP/],
    [{ maxTokens: -2 }, 'ERR_OUT_OF_RANGE', /options\.maxTokens/],
    [{ repetitionPenalty: NaN }, 'ERR_OUT_OF_RANGE', /options\.repetitionPenalty/],
    [{ presencePenalty: Infinity }, 'ERR_OUT_OF_RANGE', /options\.presencePenalty/],
    [{ frequencyPenalty: '1' }, 'ERR_INVALID_ARG_TYPE', /options\.frequencyPenalty/],
    [{ seed: -1 }, 'ERR_OUT_OF_RANGE', /options\.seed/],
    [{ stop: [''] }, 'ERR_INVALID_ARG_TYPE', /options\.stop\[0\]/],
    [{ stop: 5 }, 'ERR_INVALID_ARG_TYPE', /options\.stop/],
    [{ logitBias: { 99999: 1 } }, 'ERR_OUT_OF_RANGE', /options\.logitBias.*99999/],
    [{ logitBias: { 5: 'x' } }, 'ERR_OUT_OF_RANGE', /options\.logitBias/],
    [{ kvBits: 7 }, 'ERR_OUT_OF_RANGE', /options\.kvBits/],
    [{ kvType: 'q8' }, 'ERR_OUT_OF_RANGE', /options\.kvType/],
    [{ kvGroupSize: 48 }, 'ERR_OUT_OF_RANGE', /options\.kvGroupSize/],
    [{ maxKvSize: 0 }, 'ERR_OUT_OF_RANGE', /options\.maxKvSize/],
    [{ systemPrompt: 1 }, 'ERR_INVALID_ARG_TYPE', /options\.systemPrompt/],
    [{ chatTemplateKwargs: 'x' }, 'ERR_INVALID_ARG_TYPE', /options\.chatTemplateKwargs/],
    [{ signal: {} }, 'ERR_INVALID_ARG_TYPE', /options\.signal/],
    [{ onProgress: 1 }, 'ERR_INVALID_ARG_TYPE', /options\.onProgress/],
    [{ maxTokns: 5 }, 'ERR_INVALID_ARG_VALUE', /unknown option 'maxTokns'/],
  ];
  for (const [o, c, re] of bad) {
    await assert.rejects(model.generate('x', o), code(c, re), JSON.stringify(o));
    assert.throws(() => model.stream('x', o), code(c, re), JSON.stringify(o));
  }
  await assert.rejects(model.generate('x', 'fast'), code('ERR_INVALID_ARG_TYPE', /options/));
});

test('bad prompts', async () => {
  await assert.rejects(model.generate(42), code('ERR_INVALID_ARG_TYPE', /prompt/));
  await assert.rejects(model.generate([]), code('ERR_OUT_OF_RANGE', /prompt must hold at least one token/));
  await assert.rejects(model.generate([{ content: 'x' }]), code('ERR_INVALID_ARG_TYPE', /messages\[0\]\.role/));
  await assert.rejects(model.generate([1, 99999]), code('ERR_OUT_OF_RANGE', /prompt\[1\]/));
  await assert.rejects(model.generate([1, 2.5]), code('ERR_OUT_OF_RANGE', /prompt\[1\]/));
  await assert.rejects(model.evaluate([]), code('ERR_OUT_OF_RANGE', /ids/));
  await assert.rejects(model.evaluate([1], { decode: -1 }), code('ERR_OUT_OF_RANGE', /options\.decode/));
  await assert.rejects(model.tokenize(5), code('ERR_INVALID_ARG_TYPE', /text/));
  await assert.rejects(model.detokenize('abc'), code('ERR_INVALID_ARG_TYPE', /ids/));
  await assert.rejects(model.applyChatTemplate([{ role: 'user', content: 'x' }]), code('LM_ERR_MISSING', /chat template/));
  // engine-side checks: a prompt longer than the context
  await assert.rejects(model.generate('one two three four five six', { contextSize: 3 }), (e) => {
    assert.ok(e instanceof LmcoreError);
    assert.equal(e.code, 'LM_ERR_CONTEXT');
    assert.equal(e.status, -9);
    assert.match(e.message, /context holds 3/);
    return true;
  });
});

test('a throwing onProgress rejects the generation with its error', async () => {
  const boom = new Error('boom');
  await assert.rejects(model.generate('x y z', { onProgress: () => { throw boom; } }), (e) => e === boom);
  const r = await model.generate('x y z', { maxTokens: 2 }); // the model is still usable
  assert.equal(r.usage.completionTokens, 2);
});

test('use after dispose, double dispose, Symbol.asyncDispose', async () => {
  const m = await loadModel(defaultModel, { threads: 1 });
  const running = m.generate('Once upon a time', { maxTokens: 50 });
  const queued = m.generate('Once upon a time', { maxTokens: 50 });
  const d1 = m.dispose();
  const d2 = m.dispose();
  assert.equal(d1, d2);
  assert.equal(m.disposed, true);
  // calls made before dispose() finish, running or queued
  assert.equal((await running).usage.completionTokens, 50);
  assert.deepEqual((await queued).tokens, (await running).tokens);
  await d1;
  await m.dispose();
  await m[Symbol.asyncDispose]();
  assert.equal(m.info.architecture, 'llama'); // info stays readable
  await assert.rejects(m.generate('x'), code('ERR_LMCORE_DISPOSED'));
  await assert.rejects(m.tokenize('x'), code('ERR_LMCORE_DISPOSED'));
  await assert.rejects(m.detokenize([1]), code('ERR_LMCORE_DISPOSED'));
  await assert.rejects(m.evaluate([1]), code('ERR_LMCORE_DISPOSED'));
  await assert.rejects(m.applyChatTemplate([{ role: 'user', content: 'x' }]), code('ERR_LMCORE_DISPOSED'));
  assert.throws(() => m.stream('x'), code('ERR_LMCORE_DISPOSED'));

  const m2 = await loadModel(defaultModel, { threads: 1 });
  const s = m2.stream('Once', { maxTokens: 5 });
  await m2[Symbol.asyncDispose]();
  await assert.rejects(s.next(), code('ERR_LMCORE_DISPOSED')); // a stream started after dispose
});

test('a model-only load has no tokenizer', async () => {
  const m = await loadModel(path.join(fixturesDir, 'models', 'qwen3'), { modelOnly: true });
  try {
    await assert.rejects(m.generate('x'), code('ERR_LMCORE_NO_TOKENIZER'));
    await assert.rejects(m.tokenize('x'), code('ERR_LMCORE_NO_TOKENIZER'));
    assert.throws(() => m.stream('x'), code('ERR_LMCORE_NO_TOKENIZER'));
    await assert.rejects(m.evaluate([600]), code('ERR_OUT_OF_RANGE', /\[0, 512\)/));
  } finally {
    await m.dispose();
  }
});

test('the native addon rejects garbage without crashing', async () => {
  const h = await native.load(defaultModel, { threads: 1 });
  const tok = native.createCancelToken();
  const garbage = [undefined, null, 1, 'x', {}, [], () => {}, tok, Symbol('s'), 10n];
  for (const g of garbage) {
    assert.throws(() => native.info(g), TypeError);
    assert.throws(() => native.dispose(g), TypeError);
    assert.throws(() => native.generate(g, 'x', {}, tok), TypeError);
    assert.throws(() => native.tokenize(g, 'x', true), TypeError);
    assert.throws(() => native.evaluate(g, new Int32Array([1]), {}), TypeError);
    if (g !== tok) assert.throws(() => native.cancel(g), TypeError);
  }
  assert.throws(() => native.cancel(h), TypeError); // a model is not a cancel token
  assert.throws(() => native.load(), TypeError);
  assert.throws(() => native.load(5), TypeError);
  assert.throws(() => native.load(defaultModel, { threads: 'x' }), TypeError);
  assert.throws(() => native.tokenize(h, 5, true), TypeError);
  assert.throws(() => native.tokenize(h, 'x'), TypeError);
  assert.throws(() => native.detokenize(h, [1, 2], false), TypeError);
  assert.throws(() => native.detokenize(h, new Float32Array(2), false), TypeError);
  assert.throws(() => native.evaluate(h, [1, 2], {}), TypeError);
  assert.throws(() => native.evaluate(h, new Int32Array([-1]), {}), RangeError);
  assert.throws(() => native.generate(h, 5, {}, tok), TypeError);
  assert.throws(() => native.generate(h, 'x', null, tok), TypeError);
  assert.throws(() => native.generate(h, 'x', { maxTokens: 'a' }, tok), TypeError);
  assert.throws(() => native.generate(h, 'x', { maxTokens: 1.5 }, tok), /32-bit integer/);
  assert.throws(() => native.generate(h, 'x', { stop: [1] }, tok), TypeError);
  assert.throws(() => native.generate(h, 'x', { logitBiasIds: new Int32Array(1) }, tok), TypeError);
  assert.throws(() => native.generate(h, 'x', {}, {}), TypeError);
  assert.throws(() => native.generate(h, 'x', { stream: true }, tok, 'notfn'), TypeError);
  assert.throws(() => native.generate(h, { messages: '[]' }, {}, tok), /chat template/);
  // the engine's own checks reject what the JS layer would have caught
  await assert.rejects(native.generate(h, 'x', { topP: 7 }, tok), (e) => e.code === 'LM_ERR_INVALID_ARG' && /top_p/.test(e.message));
  await assert.rejects(native.generate(h, new Int32Array([9e6]), {}, tok), (e) => e.code === 'LM_ERR_INVALID_ARG');
  await assert.rejects(native.generate(h, new Int32Array(0), {}, tok), (e) => e.code === 'LM_ERR_INVALID_ARG');
  native.cancel(tok); // after its generations ended: harmless
  assert.equal(await native.dispose(h), true);
  assert.equal(await native.dispose(h), false);
  assert.throws(() => native.info(h), { code: 'ERR_LMCORE_DISPOSED' });
  assert.throws(() => native.generate(h, 'x', {}, tok), { code: 'ERR_LMCORE_DISPOSED' });
});

test('a worker thread terminated mid-generation does not crash the process', async () => {
  const { Worker } = require('node:worker_threads');
  const index = require.resolve('..');
  const code = `
    const { loadModel } = require(${JSON.stringify(index)});
    const { parentPort } = require('node:worker_threads');
    (async () => {
      const m = await loadModel(undefined, { threads: 1 });
      for await (const c of m.stream('Once upon a time', { maxTokens: -1 })) parentPort.postMessage(c.tokens.length);
    })();`;
  for (let i = 0; i < 2; i++) {
    const w = new Worker(code, { eval: true });
    let n = 0;
    await new Promise((resolve, reject) => {
      w.on('error', reject);
      w.on('message', () => {
        if (++n === 10) resolve();
      });
    });
    assert.equal(await w.terminate(), 1); // exit code of a terminated worker
  }
  const r = await model.generate('Once upon a time', { maxTokens: 3 }); // this thread is fine
  assert.equal(r.usage.completionTokens, 3);
});
