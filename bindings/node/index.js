'use strict';
/**
 * lmcore for Node.js: local LLM inference (the lmcore C engine) with async, streaming,
 * cancellable generation. Loading, tokenizing and generating run on worker threads; the event
 * loop only parses arguments and builds results.
 *
 * @example
 * const { loadModel } = require('lmcore');
 * const model = await loadModel();            // the bundled 7.6 M-parameter model
 * const { text } = await model.generate('Once upon a time', { maxTokens: 40 });
 * for await (const chunk of model.stream('The API', { maxTokens: 40 })) process.stdout.write(chunk.text);
 * await model.dispose();
 * @module lmcore
 */
const path = require('node:path');
const fs = require('node:fs');
const { LmcoreError, AbortError, fromNative, argError } = require('./lib/errors');
const opts = require('./lib/options');
const { Mutex } = require('./lib/mutex');
const { GenerationStream } = require('./lib/stream');

const ADDON = process.env.LMCORE_NODE_ADDON || path.join(__dirname, 'build', 'lmcore.node');
let native;
try {
  native = require(ADDON);
} catch (e) {
  throw new LmcoreError(
    `lmcore: cannot load the native addon ${ADDON} (${e.message}); build it with \`npm install\` in ${__dirname}`,
    'ERR_LMCORE_ADDON',
    undefined,
    { cause: e },
  );
}

/** The bundled model directory: $LMCORE_DEFAULT_MODEL, else models/default of this repository. */
function defaultModelDir() {
  return process.env.LMCORE_DEFAULT_MODEL || path.resolve(__dirname, '..', '..', 'models', 'default');
}

/** Call into the addon, turning its errors into LmcoreError / TypeError / RangeError. */
async function call(fn) {
  try {
    return await fn();
  } catch (e) {
    throw fromNative(e);
  }
}

/**
 * {mode, bits, groupSize, overrides} from config.json's MLX `quantization` block (overrides:
 * per-module entries) or Hugging Face `quantization_config` (mxfp4), else from the engine's
 * weight format ("q4/g64", "bf16, experts mxfp4"); null for float weights.
 */
async function quantizationOf(dir, format) {
  try {
    const cfg = JSON.parse(await fs.promises.readFile(path.join(dir, 'config.json'), 'utf8'));
    const q = cfg.quantization;
    if (q && typeof q === 'object' && Number.isInteger(q.bits)) {
      const overrides = Object.values(q).filter((v) => v && typeof v === 'object').length;
      return { mode: typeof q.mode === 'string' ? q.mode : 'affine', bits: q.bits, groupSize: q.group_size, overrides };
    }
    if (cfg.quantization_config?.quant_method === 'mxfp4') return { mode: 'mxfp4', bits: 4, groupSize: 32, overrides: 0 };
  } catch {
    // the engine read it already; fall back to what it reports
  }
  const affine = /q(\d+)\/g(\d+)/.exec(format);
  if (affine) return { mode: 'affine', bits: Number(affine[1]), groupSize: Number(affine[2]), overrides: 0 };
  if (/mxfp4/.test(format)) return { mode: 'mxfp4', bits: 4, groupSize: 32, overrides: 0 };
  return null;
}

function shapeResult(r) {
  const out = {
    text: r.text,
    tokens: Array.from(r.tokens),
    finishReason: r.finishReason,
    usage: {
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
      totalTokens: r.promptTokens + r.completionTokens,
      cachedPromptTokens: r.promptTokensReused,
    },
    timings: {
      promptTokensPerSecond: r.promptTps,
      tokensPerSecond: r.generationTps,
      totalMs: r.totalMs,
    },
    peakMemoryGb: r.peakMemoryGb,
  };
  if (r.logprobs) out.logprobs = Array.from(r.logprobs);
  return out;
}

/**
 * A loaded model. Create it with {@link loadModel}. Every method is safe to call
 * concurrently: generations and evaluations on one model run one at a time in call order;
 * tokenizing and templating run alongside them.
 */
class Model {
  #handle;
  #info;
  #lock = new Mutex();
  #pending = new Set();
  #disposing = null;

  /** @internal */
  constructor(handle, info) {
    this.#handle = handle;
    this.#info = info;
  }

  /**
   * What was loaded: architecture (config.json's model_type), parameters, contextLength,
   * quantization ({mode, bits, groupSize} or null) and more. Stays readable after dispose().
   * @type {import('./index').ModelInfo}
   */
  get info() {
    return this.#info;
  }

  /** True once dispose() was called. */
  get disposed() {
    return this.#disposing !== null;
  }

  #live(what) {
    if (this.#disposing) throw new LmcoreError(`${what}: the model was disposed`, 'ERR_LMCORE_DISPOSED');
  }

  #needTokenizer(what) {
    if (!this.#info.hasTokenizer) {
      throw new LmcoreError(`${what}: the model was loaded with modelOnly (no tokenizer)`, 'ERR_LMCORE_NO_TOKENIZER');
    }
  }

  /** Track an operation so dispose() can wait for it. */
  #track(promise) {
    this.#pending.add(promise);
    const forget = () => this.#pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  /**
   * Encode text to token ids.
   * @param {string} text
   * @param {{addSpecialTokens?: boolean}} [options] addSpecialTokens (default true, as Hugging
   *   Face): apply the tokenizer's post-processor (e.g. BOS)
   * @returns {Promise<number[]>}
   */
  async tokenize(text, options) {
    this.#live('tokenize');
    this.#needTokenizer('tokenize');
    if (typeof text !== 'string') throw opts.typeErr(`text must be a string (got ${opts.show(text)})`);
    const o = options === undefined ? {} : options;
    const add = o.addSpecialTokens === undefined ? true : o.addSpecialTokens;
    if (typeof add !== 'boolean') throw opts.typeErr(`options.addSpecialTokens must be a boolean (got ${opts.show(add)})`);
    const ids = await this.#track(call(() => native.tokenize(this.#handle, text, add)));
    return Array.from(ids);
  }

  /**
   * Decode token ids to text (ids outside the vocabulary are skipped, as Hugging Face does).
   * @param {ArrayLike<number>} ids
   * @param {{skipSpecialTokens?: boolean}} [options]
   * @returns {Promise<string>}
   */
  async detokenize(ids, options) {
    this.#live('detokenize');
    this.#needTokenizer('detokenize');
    const arr = opts.tokenIds(ids, 'ids', 2 ** 31 - 1);
    const o = options === undefined ? {} : options;
    const skip = o.skipSpecialTokens === undefined ? false : o.skipSpecialTokens;
    if (typeof skip !== 'boolean') throw opts.typeErr(`options.skipSpecialTokens must be a boolean (got ${opts.show(skip)})`);
    return this.#track(call(() => native.detokenize(this.#handle, arr, skip)));
  }

  /**
   * Render messages with the model's chat template (as transformers' apply_chat_template).
   * @param {import('./index').ChatMessage[]} messages
   * @param {{addGenerationPrompt?: boolean, chatTemplateKwargs?: object, tokenize?: boolean}} [options]
   * @returns {Promise<string | number[]>} the prompt text, or its ids with tokenize: true
   */
  async applyChatTemplate(messages, options) {
    this.#live('applyChatTemplate');
    this.#needTokenizer('applyChatTemplate');
    opts.checkMessages(messages, 'messages');
    const o = options === undefined ? {} : options;
    const agp = o.addGenerationPrompt === undefined ? true : o.addGenerationPrompt;
    if (typeof agp !== 'boolean') throw opts.typeErr(`options.addGenerationPrompt must be a boolean (got ${opts.show(agp)})`);
    const extra = o.chatTemplateKwargs === undefined ? null : opts.templateKwargs(o.chatTemplateKwargs, 'options.chatTemplateKwargs');
    if (!this.#info.hasChatTemplate) {
      throw new LmcoreError('applyChatTemplate: the model has no chat template', 'LM_ERR_MISSING', -5);
    }
    const text = await this.#track(call(() => native.applyChatTemplate(this.#handle, JSON.stringify(messages), agp, extra)));
    if (o.tokenize) return this.tokenize(text, { addSpecialTokens: false });
    return text;
  }

  /**
   * The native prompt for a string, messages or token ids, following the CLI: with a chat
   * template a string becomes a user message (after options.systemPrompt); without one (or with
   * ignoreChatTemplate) the text, or the messages' contents joined, are encoded raw.
   */
  #prompt(prompt, js) {
    if (typeof prompt === 'string' || (Array.isArray(prompt) && prompt.length && typeof prompt[0] === 'object')) {
      const templated = this.#info.hasChatTemplate && !js.ignoreChatTemplate;
      let messages = typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt;
      if (typeof prompt !== 'string') opts.checkMessages(prompt, 'messages');
      if (!templated) {
        return messages.map((m) => (typeof m.content === 'string' ? m.content : '')).join('');
      }
      if (js.systemPrompt !== undefined && messages[0].role !== 'system') {
        messages = [{ role: 'system', content: js.systemPrompt }, ...messages];
      }
      return { messages: JSON.stringify(messages), extra: js.chatTemplateKwargs ?? null };
    }
    if (Array.isArray(prompt) || ArrayBuffer.isView(prompt)) {
      return opts.tokenIds(prompt, 'prompt', this.#info.vocabSize, true);
    }
    throw opts.typeErr(`prompt must be a string, an array of {role, content} messages or token ids (got ${opts.show(prompt)})`);
  }

  /** Validate, wait for the model, run one generation; onEvent gets native events. */
  async #run(prompt, options, onChunk, cancel) {
    this.#live('generate');
    this.#needTokenizer('generate');
    const { params, js } = opts.generateOptions(options, this.#info);
    const nativePrompt = this.#prompt(prompt, js);
    const signal = js.signal;
    params.stream = Boolean(onChunk);
    params.progress = Boolean(js.onProgress);
    const withLogprobs = Boolean(params.logprobs);
    const token = native.createCancelToken();
    await this.#lock.acquire(signal);
    const stop = () => native.cancel(token);
    let callbackError = null;
    const onEvent = (kind, a, b, c) => {
      try {
        if (kind === 0) {
          const chunk = { text: a, tokens: b >= 0 ? [b] : [] };
          if (withLogprobs) chunk.logprobs = b >= 0 ? [c] : [];
          onChunk(chunk);
        } else {
          js.onProgress({ done: a, total: b });
        }
      } catch (e) {
        // a throwing onProgress stops the generation, which then rejects with its error
        callbackError ??= e;
        stop();
      }
    };
    try {
      if (signal?.aborted) throw new AbortError(signal);
      if (cancel?.aborted) stop();
      signal?.addEventListener('abort', stop, { once: true });
      cancel?.addEventListener('abort', stop, { once: true });
      const raw = await call(() => native.generate(this.#handle, nativePrompt, params, token, onEvent));
      if (callbackError) throw callbackError;
      const result = shapeResult(raw);
      if (signal?.aborted) throw new AbortError(signal, result);
      return result;
    } finally {
      signal?.removeEventListener('abort', stop);
      cancel?.removeEventListener('abort', stop);
      this.#lock.release();
    }
  }

  /**
   * Generate a completion.
   * @param {string | import('./index').ChatMessage[] | ArrayLike<number>} prompt text, chat
   *   messages, or token ids
   * @param {import('./index').GenerateOptions} [options]
   * @returns {Promise<import('./index').GenerationResult>} rejects with AbortError when
   *   options.signal aborts (the partial result is on error.result)
   */
  generate(prompt, options) {
    try {
      this.#live('generate');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#track(this.#run(prompt, options, null, null));
  }

  /**
   * Stream a completion: `for await (const chunk of model.stream(...))` yields
   * `{text, tokens, logprobs?}` as tokens are generated; `stream.result` resolves with the
   * same GenerationResult as generate(). Options are validated now (throws synchronously);
   * generation starts when iteration does.
   * @param {string | import('./index').ChatMessage[] | ArrayLike<number>} prompt
   * @param {import('./index').GenerateOptions} [options]
   * @returns {GenerationStream}
   */
  stream(prompt, options) {
    this.#live('stream');
    this.#needTokenizer('stream');
    const { js } = opts.generateOptions(options, this.#info);
    this.#prompt(prompt, js);
    return new GenerationStream((push, cancel) => this.#track(this.#run(prompt, options, push, cancel)));
  }

  /**
   * Run token ids through the model from an empty cache: the logits of every position (or of
   * the last with allLogits: false) and, with decode: N, a greedy continuation of N tokens fed
   * one at a time through the KV cache (the layout of `lmcore logits --decode N`). Works on
   * models loaded with modelOnly.
   * @param {ArrayLike<number>} ids
   * @param {{decode?: number, allLogits?: boolean}} [options]
   * @returns {Promise<import('./index').EvaluateResult>}
   */
  async evaluate(ids, options) {
    this.#live('evaluate');
    const arr = opts.tokenIds(ids, 'ids', this.#info.vocabSize, true);
    const o = options === undefined ? {} : options;
    if (o === null || typeof o !== 'object') throw opts.typeErr(`options must be an object (got ${opts.show(o)})`);
    const p = {};
    if (o.decode !== undefined) {
      if (!Number.isInteger(o.decode) || o.decode < 0 || o.decode > 1e6) {
        throw opts.rangeErr(`options.decode must be an integer in [0, 1e6] (got ${opts.show(o.decode)})`);
      }
      p.decode = o.decode;
    }
    if (o.allLogits !== undefined) {
      if (typeof o.allLogits !== 'boolean') throw opts.typeErr(`options.allLogits must be a boolean (got ${opts.show(o.allLogits)})`);
      p.allLogits = o.allLogits;
    }
    const run = async () => {
      await this.#lock.acquire();
      try {
        return await call(() => native.evaluate(this.#handle, arr, p));
      } finally {
        this.#lock.release();
      }
    };
    return this.#track(run());
  }

  /**
   * Free the model. Calls made after it fail with ERR_LMCORE_DISPOSED; calls made before it
   * (running or queued) finish first (abort their signals to stop them sooner). Calling it
   * again returns the same promise. Without dispose(), the memory is
   * freed when the Model is garbage-collected.
   * @returns {Promise<void>}
   */
  dispose() {
    if (!this.#disposing) {
      this.#disposing = (async () => {
        while (this.#pending.size) await Promise.allSettled([...this.#pending]);
        await call(() => native.dispose(this.#handle));
      })();
    }
    return this.#disposing;
  }

  /** `await using model = await loadModel()` */
  [Symbol.asyncDispose]() {
    return this.dispose();
  }
}

/**
 * Load a model directory (config.json + safetensors, and unless modelOnly tokenizer.json,
 * the chat template and generation_config.json) on a worker thread.
 * @param {string} [dir] the model directory; omitted: the bundled default model
 * @param {import('./index').LoadOptions} [options]
 * @returns {Promise<Model>}
 */
async function loadModel(dir, options) {
  if (dir !== undefined && dir !== null && typeof dir !== 'string') {
    if (typeof dir === 'object' && options === undefined) return loadModel(undefined, dir);
    throw argError(`dir must be a string (got ${opts.show(dir)})`);
  }
  const resolved = path.resolve(dir ?? defaultModelDir());
  const o = opts.loadOptions(options);
  const handle = await call(() => native.load(resolved, o));
  let raw;
  try {
    raw = native.info(handle);
  } catch (e) {
    await native.dispose(handle).catch(() => {});
    throw fromNative(e);
  }
  const info = Object.freeze({
    architecture: raw.modelType,
    family: raw.family,
    parameters: raw.parameters,
    contextLength: raw.contextLength,
    quantization: Object.freeze(await quantizationOf(resolved, raw.weightFormat)),
    weightFormat: raw.weightFormat,
    layers: raw.layers,
    hiddenSize: raw.hiddenSize,
    heads: raw.heads,
    kvHeads: raw.kvHeads,
    headDim: raw.headDim,
    vocabSize: raw.vocabSize,
    bosTokenId: raw.bosTokenId >= 0 ? raw.bosTokenId : null,
    eosTokenIds: Object.freeze(raw.eosTokenIds),
    hasTokenizer: raw.hasTokenizer,
    hasChatTemplate: raw.hasChatTemplate,
    directory: resolved,
    description: raw.description,
  });
  return new Model(handle, info);
}

/** True when `dir` looks like a model directory (has config.json). */
function isModelDir(dir) {
  return typeof dir === 'string' && fs.existsSync(path.join(dir, 'config.json'));
}

module.exports = { loadModel, Model, GenerationStream, LmcoreError, AbortError, defaultModelDir, isModelDir };
