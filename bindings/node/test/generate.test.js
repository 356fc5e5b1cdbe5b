'use strict';
// Generation from the bundled default model: greedy text, streaming, stop rules, sampling
// options, token ids, logprobs, cancellation, concurrency and event-loop responsiveness.
const test = require('node:test');
const assert = require('node:assert/strict');
const { loadModel, AbortError } = require('..');
const { logSoftmax } = require('./helpers');

// `lmcore generate -p "Once upon a time" -n 40` (README, Generate section): the CLI's greedy output.
const ONCE = 'Once upon a time';
const ONCE_40 =
  ', this is the timezone-aware API for the\n:ref:`timezone <timezone>` timezone.\n\n' +
  'This is the timezone-aware API for the timezone.\n';

// One engine thread: on the shared 2-core CI machine the spinning 2-thread pool is ~10x slower
// when other processes hold the cores (LMCORE_TEST_THREADS=0 uses one per core).
const threads = Number(process.env.LMCORE_TEST_THREADS ?? 1);

let model;
test.before(async () => {
  model = await loadModel(undefined, { threads });
});
test.after(async () => {
  await model.dispose();
});

test('info describes the bundled model', () => {
  const i = model.info;
  assert.equal(i.architecture, 'llama');
  assert.equal(i.parameters, 7606528); // 8 layers, hidden 256, vocab 8192 (tied)
  assert.equal(i.contextLength, 1024);
  assert.equal(i.quantization, null);
  assert.equal(i.weightFormat, 'bf16');
  assert.equal(i.vocabSize, 8192);
  assert.deepEqual([i.layers, i.hiddenSize, i.heads, i.kvHeads, i.headDim], [8, 256, 8, 4, 32]);
  assert.equal(i.bosTokenId, 0);
  assert.deepEqual([...i.eosTokenIds], [0]);
  assert.equal(i.hasTokenizer, true);
  assert.equal(i.hasChatTemplate, false);
  assert.ok(Object.isFrozen(i));
});

test('tokenize / detokenize', async () => {
  assert.deepEqual(await model.tokenize('Hello world'), [0, 7914, 7342]); // BOS added by default
  assert.deepEqual(await model.tokenize('Hello world', { addSpecialTokens: false }), [7914, 7342]);
  assert.equal(await model.detokenize([0, 7914, 7342]), '<|endoftext|>Hello world');
  assert.equal(await model.detokenize(new Int32Array([0, 7914, 7342]), { skipSpecialTokens: true }), 'Hello world');
  const text = 'naïve café — 東京 🙂';
  assert.equal(await model.detokenize(await model.tokenize(text, { addSpecialTokens: false })), text);
  assert.deepEqual(await model.tokenize(''), [0]);
});

test('greedy generate equals the CLI and the greedy continuation of evaluate()', async () => {
  const r = await model.generate(ONCE, { maxTokens: 40 });
  assert.equal(r.text, ONCE_40);
  assert.equal(r.finishReason, 'length');
  assert.equal(r.usage.promptTokens, 6); // BOS + 5
  assert.equal(r.usage.completionTokens, 40);
  assert.equal(r.usage.totalTokens, 46);
  assert.equal(r.tokens.length, 40);
  assert.ok(r.timings.tokensPerSecond > 0 && r.timings.promptTokensPerSecond > 0);
  assert.ok(r.peakMemoryGb > 0.01);
  const ids = await model.tokenize(ONCE);
  const e = await model.evaluate(ids, { decode: 40 });
  assert.deepEqual(Array.from(e.greedyTokens), r.tokens);
  assert.equal(await model.detokenize(r.tokens), r.text);
  // token ids as the prompt give the same continuation
  const r2 = await model.generate(ids, { maxTokens: 40 });
  assert.deepEqual(r2.tokens, r.tokens);
});

test('stream: concatenated chunks equal the non-streaming text, with ids and logprobs', async () => {
  const opts = { maxTokens: 60, logprobs: true };
  const full = await model.generate(ONCE, opts);
  const s = model.stream(ONCE, opts);
  let text = '';
  const tokens = [];
  const logprobs = [];
  let chunks = 0;
  for await (const chunk of s) {
    chunks++;
    text += chunk.text;
    tokens.push(...chunk.tokens);
    logprobs.push(...chunk.logprobs);
  }
  assert.equal(text, full.text);
  assert.deepEqual(tokens, full.tokens);
  assert.deepEqual(logprobs, full.logprobs);
  assert.ok(chunks >= 60);
  const res = await s.result;
  assert.equal(res.text, full.text);
  assert.equal(res.finishReason, 'length');
  // greedy logprobs are the log-softmax of the model's logits at the chosen token
  const e = await model.evaluate(await model.tokenize(ONCE), { allLogits: false, decode: 3 });
  const first = logSoftmax(e.logits);
  assert.ok(Math.abs(first[full.tokens[0]] - full.logprobs[0]) < 1e-4);
  const second = logSoftmax(e.decodeLogits.subarray(0, 8192));
  assert.ok(Math.abs(second[full.tokens[1]] - full.logprobs[1]) < 1e-4);
});

test('stop strings end the text before them', async () => {
  const r = await model.generate(ONCE, { maxTokens: 40, stop: ':ref:' });
  assert.equal(r.text, ', this is the timezone-aware API for the\n');
  assert.equal(r.finishReason, 'stop');
  const s = model.stream(ONCE, { maxTokens: 40, stop: [':ref:', 'zzz'] });
  let t = '';
  for await (const c of s) t += c.text;
  assert.equal(t, r.text);
});

test('sampling: seeds reproduce, logit bias steers, penalties change the output', async () => {
  const o = { maxTokens: 24, temperature: 1, topP: 0.95, topK: 50, seed: 42 };
  const a = await model.generate(ONCE, o);
  const b = await model.generate(ONCE, o);
  assert.equal(a.text, b.text);
  const c = await model.generate(ONCE, { ...o, seed: 43 });
  const d = await model.generate(ONCE, { ...o, seed: 44 });
  assert.ok(c.text !== a.text || d.text !== a.text, 'different seeds give different samples');
  const greedy = await model.generate(ONCE, { maxTokens: 40 });
  // +100 on token 7914 ("Hello"'s id) makes it the greedy choice at every step
  const biased = await model.generate(ONCE, { maxTokens: 3, logitBias: { 7914: 100 } });
  assert.deepEqual(biased.tokens, [7914, 7914, 7914]);
  const viaMap = await model.generate(ONCE, { maxTokens: 2, logitBias: new Map([[7342, 100]]) });
  assert.deepEqual(viaMap.tokens, [7342, 7342]);
  const pen = await model.generate(ONCE, { maxTokens: 40, repetitionPenalty: 1.5 });
  assert.notEqual(pen.text, greedy.text); // greedy repeats "timezone"; the penalty avoids it
  const minp = await model.generate(ONCE, { maxTokens: 40, temperature: 0.7, minP: 0.99, seed: 1 });
  assert.equal(minp.text, greedy.text); // min-p 0.99 keeps only the argmax token
});

test('AbortSignal cancels a running generation promptly', async () => {
  const ac = new AbortController();
  let seen = 0;
  let abortedAt = 0;
  const s = model.stream(ONCE, { maxTokens: -1, signal: ac.signal, ignoreChatTemplate: true });
  await assert.rejects(
    (async () => {
      for await (const c of s) {
        seen += c.tokens.length;
        if (seen === 5) {
          abortedAt = performance.now();
          ac.abort(new Error('enough'));
        }
      }
    })(),
    (err) => {
      assert.ok(err instanceof AbortError);
      assert.equal(err.name, 'AbortError');
      assert.equal(err.code, 'ABORT_ERR');
      assert.equal(err.cause.message, 'enough');
      assert.ok(err.result.usage.completionTokens < 40, `stopped after ${err.result.usage.completionTokens} tokens`);
      assert.equal(err.result.finishReason, 'cancelled');
      return true;
    },
  );
  assert.ok(performance.now() - abortedAt < 1000);
  assert.ok(seen >= 5);

  // generate(): abort from a timer
  const ac2 = new AbortController();
  const t0 = performance.now();
  const p = model.generate(ONCE, { maxTokens: -1, signal: ac2.signal });
  setTimeout(() => ac2.abort(), 20);
  const err = await p.catch((e) => e);
  assert.ok(err instanceof AbortError);
  assert.ok(err.result.usage.completionTokens < 1000);
  assert.ok(performance.now() - t0 < 5000);

  // an already aborted signal rejects without generating
  await assert.rejects(model.generate(ONCE, { signal: AbortSignal.abort() }), { name: 'AbortError' });
});

test('an abort while queued behind another generation rejects at once', async () => {
  const first = model.generate(ONCE, { maxTokens: 200 });
  const ac = new AbortController();
  const queued = model.generate(ONCE, { maxTokens: 200, signal: ac.signal });
  ac.abort();
  const t0 = performance.now();
  await assert.rejects(queued, { name: 'AbortError' });
  const rejectedIn = performance.now() - t0;
  const r = await first;
  assert.equal(r.usage.completionTokens, 200);
  assert.ok(rejectedIn < 50, `rejected after ${rejectedIn} ms`);
});

test('breaking out of for await cancels the stream', async () => {
  const s = model.stream(ONCE, { maxTokens: 500 });
  let n = 0;
  for await (const c of s) {
    n += c.tokens.length;
    if (n >= 3) break;
  }
  const r = await s.result;
  assert.equal(r.finishReason, 'cancelled');
  assert.ok(r.usage.completionTokens < 100);
});

test('concurrent generations on one model and on two models match sequential ones', async () => {
  const prompts = [ONCE, 'The function returns', 'import numpy as np'];
  const seq = [];
  for (const p of prompts) seq.push((await model.generate(p, { maxTokens: 30 })).text);
  const par = await Promise.all(prompts.map((p) => model.generate(p, { maxTokens: 30 })));
  assert.deepEqual(par.map((r) => r.text), seq);
  const streamed = await Promise.all(
    prompts.map(async (p) => {
      let t = '';
      for await (const c of model.stream(p, { maxTokens: 30 })) t += c.text;
      return t;
    }),
  );
  assert.deepEqual(streamed, seq);
  const other = await loadModel(undefined, { threads });
  try {
    const both = await Promise.all([model.generate(prompts[1], { maxTokens: 30 }), other.generate(prompts[1], { maxTokens: 30 })]);
    assert.equal(both[0].text, seq[1]);
    assert.equal(both[1].text, seq[1]);
  } finally {
    await other.dispose();
  }
});

test('the event loop keeps running during generation', async () => {
  let ticks = 0;
  let last = performance.now();
  let maxGap = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const t0 = performance.now();
  let r;
  try {
    r = await model.generate(ONCE, { maxTokens: 300, ignoreChatTemplate: true });
  } finally {
    clearInterval(timer);
  }
  const ms = performance.now() - t0;
  assert.equal(r.usage.completionTokens, 300);
  // a blocked loop would give ~0 ticks and one gap as long as the generation
  assert.ok(ticks >= Math.min(10, ms / 50), `${ticks} ticks in ${ms.toFixed(0)} ms`);
  assert.ok(maxGap < Math.max(150, ms / 4), `max gap ${maxGap.toFixed(0)} ms in ${ms.toFixed(0)} ms`);
});

test('onProgress reports the prompt prefill', async () => {
  const events = [];
  const long = 'The quick brown fox jumps over the lazy dog. '.repeat(20);
  const r = await model.generate(long, { maxTokens: 1, prefillStepSize: 64, onProgress: (p) => events.push(p) });
  // the tokens to evaluate: the prompt less what the model's cached session shares with it
  const total = r.usage.promptTokens - r.usage.cachedPromptTokens;
  assert.deepEqual(events[0], { done: 0, total });
  assert.deepEqual(events.at(-1), { done: total, total });
  assert.ok(events.length >= Math.floor((total - 1) / 64) + 2);
});

test('KV-cache options: a large maxKvSize and an 8-bit cache keep the greedy text', async () => {
  const plain = await model.generate(ONCE, { maxTokens: 24 });
  const rotating = await model.generate(ONCE, { maxTokens: 24, maxKvSize: 64 });
  assert.equal(rotating.text, plain.text);
  // past a small rotating cache generation goes on to maxTokens
  const small = await model.generate(ONCE, { maxTokens: 40, maxKvSize: 12, contextSize: 12 });
  assert.equal(small.usage.completionTokens, 40);
  assert.equal(small.finishReason, 'length');
  const q8 = await model.generate(ONCE, { maxTokens: 24, kvBits: 8, kvGroupSize: 32, quantizedKvStart: 0 });
  assert.equal(q8.text, plain.text);
  const f16 = await model.generate(ONCE, { maxTokens: 24, kvType: 'f16' });
  assert.equal(f16.text, plain.text);
  // a group size that does not divide the head size (32) is an engine error naming it
  await assert.rejects(model.generate(ONCE, { maxTokens: 4, kvBits: 8, kvGroupSize: 64 }), /kv_group_size/);
});
