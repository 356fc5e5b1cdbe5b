'use strict';
/**
 * The async iterable returned by Model#stream().
 * @module lmcore/stream
 */

/**
 * Chunks of a generation as they are produced. Generation starts on the first `next()` (or
 * when `result` is read); breaking out of `for await` cancels it. Chunks are buffered when the
 * consumer is slower than the model.
 */
class GenerationStream {
  #start;
  #cancel;
  #chunks = [];
  #waiters = [];
  #done = false;
  #error = null;
  #result = null;

  /**
   * @param {(push: (chunk: object) => void, cancel: AbortSignal) => Promise<object>} start
   *   runs the generation, calling push for each chunk; resolves with the final result
   */
  constructor(start) {
    this.#start = start;
  }

  #begin() {
    if (this.#result) return this.#result;
    const ctl = new AbortController();
    this.#cancel = ctl;
    this.#result = this.#start((chunk) => this.#push(chunk), ctl.signal).then(
      (r) => {
        this.#finish(null);
        return r;
      },
      (e) => {
        this.#finish(e);
        throw e;
      },
    );
    this.#result.catch(() => {}); // surfaced through next() and `result`, never unhandled
    return this.#result;
  }

  #push(chunk) {
    const w = this.#waiters.shift();
    if (w) w.resolve({ value: chunk, done: false });
    else this.#chunks.push(chunk);
  }

  #finish(err) {
    this.#done = true;
    this.#error = err;
    for (const w of this.#waiters.splice(0)) {
      if (err) w.reject(err);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** The final GenerationResult (text, finishReason, usage, timings); starts the generation. */
  get result() {
    return this.#begin();
  }

  /** Stop the generation; the stream ends and `result` resolves with finishReason 'cancelled'. */
  cancel() {
    this.#begin();
    this.#cancel.abort();
  }

  /** @returns {Promise<IteratorResult<object>>} */
  next() {
    this.#begin();
    if (this.#chunks.length) return Promise.resolve({ value: this.#chunks.shift(), done: false });
    if (this.#done) {
      if (this.#error) {
        const e = this.#error;
        this.#error = null; // report once, then behave as finished
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Called by `break` in for await: cancels the generation. */
  async return() {
    if (this.#result && !this.#done) {
      this.#cancel.abort();
      await this.#result.catch(() => {});
    }
    this.#done = true;
    this.#error = null;
    this.#chunks.length = 0;
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

module.exports = { GenerationStream };
