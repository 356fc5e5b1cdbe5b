'use strict';
/**
 * Validation of the options of loadModel() and of generation; every error names the option.
 * @module lmcore/options
 */
const { argError } = require('./errors');

const typeErr = (msg) => argError(msg, 'ERR_INVALID_ARG_TYPE', TypeError);
const rangeErr = (msg) => argError(msg, 'ERR_OUT_OF_RANGE', RangeError);
const valueErr = (msg) => argError(msg, 'ERR_INVALID_ARG_VALUE', TypeError);

const show = (v) => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
};

/** A number option in [lo, hi]. */
function num(o, key, lo, hi, what) {
  const v = o[key];
  if (typeof v !== 'number') throw typeErr(`options.${key} must be ${what} (got ${show(v)})`);
  if (!(v >= lo && v <= hi)) throw rangeErr(`options.${key} must be ${what} (got ${show(v)})`);
  return v;
}

/** An integer option in [lo, hi]. */
function int(o, key, lo, hi, what) {
  const v = num(o, key, lo, hi, what);
  if (!Number.isInteger(v)) throw rangeErr(`options.${key} must be ${what} (got ${show(v)})`);
  return v;
}

function bool(o, key) {
  if (typeof o[key] !== 'boolean') throw typeErr(`options.${key} must be a boolean (got ${show(o[key])})`);
  return o[key];
}

function plainObject(v, name) {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeErr(`${name} must be an object (got ${show(v)})`);
  return v;
}

/** Reject keys that are not options (typos would otherwise be silently ignored). */
function checkKeys(o, known, name) {
  for (const k of Object.keys(o)) {
    if (!known.has(k)) throw valueErr(`${name}: unknown option '${k}' (known: ${[...known].join(', ')})`);
  }
}

const LOAD_KEYS = new Set(['threads', 'chatTemplate', 'modelOnly', 'device']);

/**
 * @param {object} [options]
 * @returns {{threads?: number, chatTemplate?: string, modelOnly?: boolean, device?: number}}
 */
function loadOptions(options) {
  const o = plainObject(options, 'options');
  checkKeys(o, LOAD_KEYS, 'loadModel');
  const out = {};
  if (o.threads !== undefined) out.threads = int(o, 'threads', 0, 1024, 'an integer from 0 (one per core) to 1024');
  if (o.chatTemplate !== undefined) {
    if (typeof o.chatTemplate !== 'string' || !o.chatTemplate) {
      throw typeErr(`options.chatTemplate must be a template name (got ${show(o.chatTemplate)})`);
    }
    out.chatTemplate = o.chatTemplate;
  }
  if (o.modelOnly !== undefined) out.modelOnly = bool(o, 'modelOnly');
  if (o.device !== undefined) {
    if (o.device !== 'cpu' && o.device !== 'cuda') throw valueErr(`options.device must be 'cpu' or 'cuda' (got ${show(o.device)})`);
    out.device = o.device === 'cuda' ? 1 : 0;
  }
  return out;
}

const GEN_KEYS = new Set([
  'maxTokens', 'temperature', 'topP', 'topK', 'minP', 'minTokensToKeep', 'xtcProbability', 'xtcThreshold',
  'repetitionPenalty', 'repetitionContextSize', 'presencePenalty', 'presenceContextSize', 'frequencyPenalty',
  'frequencyContextSize', 'logitBias', 'seed', 'stop', 'systemPrompt', 'chatTemplateKwargs', 'ignoreChatTemplate',
  'prefillStepSize', 'logprobs', 'contextSize', 'maxKvSize', 'kvType', 'kvBits', 'kvGroupSize', 'quantizedKvStart', 'signal',
  'onProgress',
]);

const I32 = 2147483647;

/** logitBias: {id: bias}, a Map, or [[id, bias], ...]. */
function logitBias(v, vocab) {
  let pairs;
  if (v instanceof Map) pairs = [...v.entries()];
  else if (Array.isArray(v)) pairs = v;
  else if (v !== null && typeof v === 'object') pairs = Object.entries(v);
  else throw typeErr(`options.logitBias must be an object {tokenId: bias}, a Map or [[tokenId, bias], ...] (got ${show(v)})`);
  const ids = new Int32Array(pairs.length);
  const values = new Float32Array(pairs.length);
  pairs.forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== 2) throw typeErr(`options.logitBias[${i}] must be a [tokenId, bias] pair`);
    const id = typeof p[0] === 'string' && /^\d+$/.test(p[0]) ? Number(p[0]) : p[0];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw rangeErr(`options.logitBias: token id ${show(p[0])} is outside the vocabulary [0, ${vocab})`);
    }
    if (typeof p[1] !== 'number' || !Number.isFinite(p[1])) {
      throw rangeErr(`options.logitBias: the bias of token ${id} must be a finite number (got ${show(p[1])})`);
    }
    ids[i] = id;
    values[i] = p[1];
  });
  return { ids, values };
}

/**
 * Validate generation options against the model; returns the native parameters plus the
 * JS-side ones (signal, onProgress, systemPrompt, chatTemplateKwargs, ignoreChatTemplate).
 * @param {object} [options]
 * @param {{vocabSize: number}} info
 */
function generateOptions(options, info) {
  const o = plainObject(options, 'options');
  checkKeys(o, GEN_KEYS, 'generate');
  const p = {};
  const set = (key, fn) => {
    if (o[key] !== undefined) p[key] = fn(key);
  };
  set('maxTokens', (k) => int(o, k, -1, I32, 'an integer >= -1 (-1: until a stop rule or a full context)'));
  set('temperature', (k) => num(o, k, 0, 1e6, 'a number >= 0 (0: greedy)'));
  set('topP', (k) => num(o, k, 0, 1, 'a probability in [0, 1] (1: off)'));
  set('minP', (k) => num(o, k, 0, 1, 'a probability in [0, 1] (0: off)'));
  set('minTokensToKeep', (k) => int(o, k, 1, I32, 'an integer >= 1'));
  set('topK', (k) => int(o, k, 0, I32, 'an integer >= 0 (0: off)'));
  set('xtcProbability', (k) => num(o, k, 0, 1, 'a probability in [0, 1] (0: off)'));
  set('xtcThreshold', (k) => num(o, k, 0, 0.5, 'a probability in [0, 0.5]'));
  set('repetitionPenalty', (k) => num(o, k, 0, 1e6, 'a factor >= 0 (0: off)'));
  set('repetitionContextSize', (k) => int(o, k, 1, I32, 'an integer >= 1'));
  set('presencePenalty', (k) => num(o, k, -1e6, 1e6, 'a number in [-1e6, 1e6] (0: off)'));
  set('presenceContextSize', (k) => int(o, k, 1, I32, 'an integer >= 1'));
  set('frequencyPenalty', (k) => num(o, k, -1e6, 1e6, 'a number in [-1e6, 1e6] (0: off)'));
  set('frequencyContextSize', (k) => int(o, k, 1, I32, 'an integer >= 1'));
  set('prefillStepSize', (k) => int(o, k, 1, I32, 'an integer >= 1'));
  set('contextSize', (k) => int(o, k, 1, I32, 'a number of tokens >= 1'));
  set('maxKvSize', (k) => int(o, k, 1, I32, 'a number of tokens >= 1'));
  if (o.kvGroupSize !== undefined && ![32, 64, 128].includes(o.kvGroupSize)) {
    throw rangeErr(`options.kvGroupSize must be 32, 64 or 128 (got ${show(o.kvGroupSize)})`);
  }
  if (o.kvGroupSize !== undefined) p.kvGroupSize = o.kvGroupSize;
  set('quantizedKvStart', (k) => int(o, k, 0, I32, 'a number of tokens >= 0'));
  set('logprobs', (k) => bool(o, k));
  if (o.kvBits !== undefined && ![2, 3, 4, 5, 6, 8].includes(o.kvBits)) {
    throw rangeErr(`options.kvBits must be 2, 3, 4, 5, 6 or 8 (got ${show(o.kvBits)})`);
  }
  if (o.kvBits !== undefined) p.kvBits = o.kvBits;
  if (o.kvType !== undefined && !['f32', 'f16'].includes(o.kvType)) {
    throw rangeErr(`options.kvType must be 'f32' or 'f16' (got ${show(o.kvType)})`);
  }
  if (o.kvType !== undefined) p.kvF16 = o.kvType === 'f16';
  if (o.seed !== undefined) {
    const s = typeof o.seed === 'bigint' && o.seed <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(o.seed) : o.seed;
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) {
      throw rangeErr(`options.seed must be a non-negative safe integer (got ${show(o.seed)})`);
    }
    p.seed = s;
  }
  if (o.stop !== undefined) {
    const stop = typeof o.stop === 'string' ? [o.stop] : o.stop;
    if (!Array.isArray(stop)) throw typeErr(`options.stop must be a string or an array of strings (got ${show(o.stop)})`);
    stop.forEach((s, i) => {
      if (typeof s !== 'string' || s === '') throw typeErr(`options.stop[${i}] must be a non-empty string (got ${show(s)})`);
    });
    p.stop = stop;
  }
  if (o.logitBias !== undefined) {
    const { ids, values } = logitBias(o.logitBias, info.vocabSize);
    if (ids.length) {
      p.logitBiasIds = ids;
      p.logitBiasValues = values;
    }
  }
  const js = { ignoreChatTemplate: false };
  if (o.systemPrompt !== undefined) {
    if (typeof o.systemPrompt !== 'string') throw typeErr(`options.systemPrompt must be a string (got ${show(o.systemPrompt)})`);
    js.systemPrompt = o.systemPrompt;
  }
  if (o.chatTemplateKwargs !== undefined) {
    js.chatTemplateKwargs = templateKwargs(o.chatTemplateKwargs, 'options.chatTemplateKwargs');
  }
  if (o.ignoreChatTemplate !== undefined) js.ignoreChatTemplate = bool(o, 'ignoreChatTemplate');
  if (o.signal !== undefined && !isAbortSignal(o.signal)) {
    throw typeErr(`options.signal must be an AbortSignal (got ${show(o.signal)})`);
  }
  js.signal = o.signal;
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
    throw typeErr(`options.onProgress must be a function (got ${show(o.onProgress)})`);
  }
  js.onProgress = o.onProgress;
  return { params: p, js };
}

function isAbortSignal(s) {
  return s !== null && typeof s === 'object' && typeof s.aborted === 'boolean' && typeof s.addEventListener === 'function';
}

/** Template variables as a JSON object string. */
function templateKwargs(v, name) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw typeErr(`${name} must be an object (got ${show(v)})`);
  let json;
  try {
    json = JSON.stringify(v);
  } catch (e) {
    throw typeErr(`${name} must be JSON-serializable (${e.message})`);
  }
  return json;
}

/**
 * Check a message list: [{role: string, content: string | JSON}, ...].
 * @param {any} messages
 * @param {string} name
 */
function checkMessages(messages, name) {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw typeErr(`${name} must be a non-empty array of {role, content} messages (got ${show(messages)})`);
  }
  messages.forEach((m, i) => {
    if (m === null || typeof m !== 'object' || Array.isArray(m)) throw typeErr(`${name}[${i}] must be a {role, content} object`);
    if (typeof m.role !== 'string' || !m.role) throw typeErr(`${name}[${i}].role must be a non-empty string (got ${show(m.role)})`);
  });
}

/**
 * Token ids from an array or typed array, checked against the vocabulary.
 * @param {any} ids
 * @param {string} name
 * @param {number} vocab
 * @param {boolean} [nonEmpty]
 * @returns {Int32Array}
 */
function tokenIds(ids, name, vocab, nonEmpty = false) {
  if (!(Array.isArray(ids) || ArrayBuffer.isView(ids)) || ids instanceof DataView) {
    throw typeErr(`${name} must be an array of token ids (got ${show(ids)})`);
  }
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const v = typeof ids[i] === 'bigint' ? Number(ids[i]) : ids[i];
    if (!Number.isInteger(v) || v < 0 || v >= vocab) {
      throw rangeErr(`${name}[${i}] = ${show(ids[i])} is not a token id in [0, ${vocab})`);
    }
    out[i] = v;
  }
  if (nonEmpty && out.length === 0) throw rangeErr(`${name} must hold at least one token id`);
  return out;
}

module.exports = { loadOptions, generateOptions, templateKwargs, checkMessages, tokenIds, typeErr, rangeErr, valueErr, show };
