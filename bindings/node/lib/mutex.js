'use strict';

const { AbortError } = require('./errors');

/** A FIFO lock; waiting can be abandoned through an AbortSignal. */
class Mutex {
  #locked = false;
  #waiters = [];

  /**
   * @param {AbortSignal} [signal]
   * @returns {Promise<void>} resolves when the caller holds the lock
   */
  acquire(signal) {
    if (signal?.aborted) return Promise.reject(new AbortError(signal));
    if (!this.#locked) {
      this.#locked = true;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w = { resolve, reject, signal, onAbort: null };
      if (signal) {
        w.onAbort = () => {
          const i = this.#waiters.indexOf(w);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new AbortError(signal));
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.#waiters.push(w);
    });
  }

  release() {
    const w = this.#waiters.shift();
    if (!w) {
      this.#locked = false;
      return;
    }
    if (w.signal) w.signal.removeEventListener('abort', w.onAbort);
    w.resolve(); // the lock passes to the next waiter
  }
}

module.exports = { Mutex };
