'use strict';
/**
 * Errors thrown by lmcore.
 * @module lmcore/errors
 */

/**
 * An error from the engine or from the binding. `code` is a stable string:
 * `LM_ERR_*` for engine failures (the C library's status name, e.g. `LM_ERR_IO`, with the
 * numeric `status`), `ERR_LMCORE_*` for misuse of the binding (e.g. `ERR_LMCORE_DISPOSED`).
 */
class LmcoreError extends Error {
  /**
   * @param {string} message
   * @param {string} code
   * @param {number} [status] the engine's lm_status (negative) when it came from C
   * @param {ErrorOptions} [options]
   */
  constructor(message, code, status, options) {
    super(message, options);
    this.name = 'LmcoreError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

/** Rejection of a generation cancelled through its AbortSignal. `result` holds what was generated. */
class AbortError extends Error {
  /**
   * @param {AbortSignal} [signal]
   * @param {object} [result] the partial GenerationResult
   */
  constructor(signal, result) {
    super('The operation was aborted', signal && signal.reason !== undefined ? { cause: signal.reason } : undefined);
    this.name = 'AbortError';
    this.code = 'ABORT_ERR';
    if (result) this.result = result;
  }
}

/**
 * Turn an error thrown by the native addon into an LmcoreError (keeping TypeErrors and
 * RangeErrors from argument checks as they are).
 * @param {any} err
 * @returns {Error}
 */
function fromNative(err) {
  if (!(err instanceof Error) || err instanceof LmcoreError || err instanceof TypeError || err instanceof RangeError) {
    return err;
  }
  const code = typeof err.code === 'string' ? err.code : 'LM_ERR_INTERNAL';
  if (code === 'ERR_OUT_OF_RANGE') {
    const r = new RangeError(err.message);
    r.code = code;
    return r;
  }
  return new LmcoreError(err.message, code, err.status);
}

/**
 * @param {string} message
 * @param {string} code
 * @param {ErrorConstructor} [Ctor]
 */
function argError(message, code = 'ERR_INVALID_ARG_TYPE', Ctor = TypeError) {
  const e = new Ctor(message);
  e.code = code;
  return e;
}

module.exports = { LmcoreError, AbortError, fromNative, argError };
