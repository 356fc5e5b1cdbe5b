// Type definitions for lmcore (Node.js binding of the lmcore C engine).

/** A chat message; `content` may be any JSON value the model's chat template understands. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  content: string | unknown;
  [key: string]: unknown;
}

/** A prompt: raw text, chat messages (rendered by the model's chat template), or token ids. */
export type Prompt = string | ChatMessage[] | ArrayLike<number>;

export interface LoadOptions {
  /** Engine threads; 0 (default): one per physical core. */
  threads?: number;
  /** A named chat template of the tokenizer (default: the default template). */
  chatTemplate?: string;
  /** Load only config.json + safetensors (no tokenizer): for evaluate() on bare checkpoints. */
  modelOnly?: boolean;
  /** 'cpu' (default) or 'cuda'. */
  device?: 'cpu' | 'cuda';
}

export interface Quantization {
  /** 'affine' (MLX) or 'mxfp4'. */
  mode: string;
  bits: number;
  groupSize: number;
  /** Per-module overrides in config.json's quantization block (mixed recipes). */
  overrides: number;
}

export interface ModelInfo {
  /** config.json's model_type, e.g. "llama". */
  readonly architecture: string;
  /** The lmcore model definition serving it. */
  readonly family: string;
  /** Parameter count (quantized weights counted unpacked). */
  readonly parameters: number;
  /** max_position_embeddings. */
  readonly contextLength: number;
  /** null for float weights. */
  readonly quantization: Readonly<Quantization> | null;
  /** The stored format of the attention weights, e.g. "bf16", "q4/g64", "bf16, experts mxfp4". */
  readonly weightFormat: string;
  readonly layers: number;
  readonly hiddenSize: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
  readonly hasTokenizer: boolean;
  readonly hasChatTemplate: boolean;
  /** The absolute model directory. */
  readonly directory: string;
  /** A multi-line description (architecture, features, parameter count), as `lmcore info`. */
  readonly description: string;
}

/** Generation options; they mirror `lmcore generate`'s flags. */
export interface GenerateOptions {
  /** Tokens to generate (256); -1: until an EOS token, a stop string or a full context. */
  maxTokens?: number;
  /** 0 (default): greedy; > 0: sample from softmax(logits / temperature). */
  temperature?: number;
  /** Nucleus sampling in [0, 1] (1: off). */
  topP?: number;
  /** Keep the k most likely tokens (0: off). */
  topK?: number;
  /** Drop tokens with p < minP * p_max, in [0, 1] (0: off). */
  minP?: number;
  /** With minP: always keep this many tokens (1). */
  minTokensToKeep?: number;
  /** XTC: chance per token in [0, 1] (0: off). */
  xtcProbability?: number;
  /** XTC threshold in [0, 0.5] (0.1). */
  xtcThreshold?: number;
  /** Repetition penalty (0: off) over repetitionContextSize (20) recent tokens. */
  repetitionPenalty?: number;
  repetitionContextSize?: number;
  /** Subtracted once per recent token (0: off) over presenceContextSize (20) tokens. */
  presencePenalty?: number;
  presenceContextSize?: number;
  /** Subtracted per occurrence of a recent token (0: off) over frequencyContextSize (20) tokens. */
  frequencyPenalty?: number;
  frequencyContextSize?: number;
  /** Added to token logits: {tokenId: bias}, a Map, or [[tokenId, bias], ...]. */
  logitBias?: Record<number, number> | Map<number, number> | Array<[number, number]>;
  /** Random seed (default: from the clock). */
  seed?: number | bigint;
  /** Stop strings: generation ends before them (they are not returned). */
  stop?: string | string[];
  /** A system message put before the conversation (chat-template models). */
  systemPrompt?: string;
  /** Extra chat template variables, e.g. {enable_thinking: false}. */
  chatTemplateKwargs?: Record<string, unknown>;
  /** Encode the prompt raw even when the model has a chat template. */
  ignoreChatTemplate?: boolean;
  /** Prompt tokens per forward pass (2048). */
  prefillStepSize?: number;
  /** Report each generated token's log-probability. */
  logprobs?: boolean;
  /** Tokens the KV cache holds (default: the model's context length). */
  contextSize?: number;
  /** KV-cache options (mlx-lm's --max-kv-size, --kv-bits, --kv-group-size, --quantized-kv-start). */
  maxKvSize?: number;
  /** KV-cache rows as f32 (default) or f16 (half the memory; llama.cpp's default cache type). */
  kvType?: 'f32' | 'f16';
  kvBits?: 2 | 3 | 4 | 5 | 6 | 8;
  kvGroupSize?: 32 | 64 | 128;
  quantizedKvStart?: number;
  /** Cancels the generation (it rejects with an AbortError carrying the partial result). */
  signal?: AbortSignal;
  /** Prompt prefill progress; throwing stops the generation, which rejects with that error. */
  onProgress?: (progress: { done: number; total: number }) => void;
}

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface GenerationResult {
  /** The generated text (stop strings excluded). */
  text: string;
  /** The generated token ids (an EOS that ended generation excluded). */
  tokens: number[];
  /** Log-probabilities of `tokens` (with options.logprobs). */
  logprobs?: number[];
  /** 'stop': EOS or a stop string; 'length': maxTokens or a full context; 'cancelled'. */
  finishReason: FinishReason;
  usage: {
    promptTokens: number;
    /** Sampled tokens, including an EOS that ended generation. */
    completionTokens: number;
    totalTokens: number;
    /** Prompt tokens reused from the previous generation's KV cache (not evaluated). */
    cachedPromptTokens: number;
  };
  timings: {
    promptTokensPerSecond: number;
    tokensPerSecond: number;
    /** Wall time of the whole call on the worker thread, prompt encoding included. */
    totalMs: number;
  };
  /** The process's peak resident memory (VmHWM) in GB. */
  peakMemoryGb: number;
}

/** One piece of a streamed generation. */
export interface GenerationChunk {
  /** Text that became final with these tokens (may be empty while a stop string is possible). */
  text: string;
  /** The token ids (empty for the held-back text released at the end). */
  tokens: number[];
  /** Their log-probabilities (with options.logprobs). */
  logprobs?: number[];
}

/** Returned by Model#stream(): iterate it with `for await`; `result` gives the totals. */
export declare class GenerationStream implements AsyncIterableIterator<GenerationChunk> {
  private constructor();
  /** The final result (same as generate()'s); reading it starts the generation. */
  readonly result: Promise<GenerationResult>;
  /** Stop the generation; `result` resolves with finishReason 'cancelled'. */
  cancel(): void;
  next(): Promise<IteratorResult<GenerationChunk, undefined>>;
  /** Called by `break`: cancels the generation. */
  return(): Promise<IteratorResult<GenerationChunk, undefined>>;
  [Symbol.asyncIterator](): GenerationStream;
}

export interface EvaluateOptions {
  /** Greedy tokens to generate one at a time through the KV cache after the prefill (0). */
  decode?: number;
  /** true (default): logits of every position; false: of the last one only. */
  allLogits?: boolean;
}

export interface EvaluateResult {
  /** [ids.length or 1, vocabSize] row-major. */
  logits: Float32Array;
  /** [decode] the greedy continuation. */
  greedyTokens: Int32Array;
  /** [decode, vocabSize]: decodeLogits[i] is the distribution after feeding greedyTokens[i]. */
  decodeLogits: Float32Array;
  vocabSize: number;
}

export declare class Model implements AsyncDisposable {
  private constructor();
  readonly info: ModelInfo;
  /** True once dispose() was called. */
  readonly disposed: boolean;
  generate(prompt: Prompt, options?: GenerateOptions): Promise<GenerationResult>;
  /** Throws synchronously on invalid options; generation starts when iteration does. */
  stream(prompt: Prompt, options?: GenerateOptions): GenerationStream;
  /** addSpecialTokens defaults to true (as Hugging Face): e.g. a BOS is added. */
  tokenize(text: string, options?: { addSpecialTokens?: boolean }): Promise<number[]>;
  detokenize(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): Promise<string>;
  applyChatTemplate(
    messages: ChatMessage[],
    options?: { addGenerationPrompt?: boolean; chatTemplateKwargs?: Record<string, unknown>; tokenize?: false },
  ): Promise<string>;
  applyChatTemplate(
    messages: ChatMessage[],
    options: { addGenerationPrompt?: boolean; chatTemplateKwargs?: Record<string, unknown>; tokenize: true },
  ): Promise<number[]>;
  /** Run ids from an empty cache (works with modelOnly). */
  evaluate(ids: ArrayLike<number>, options?: EvaluateOptions): Promise<EvaluateResult>;
  /** Free the model; calls made before it finish first, later calls reject (ERR_LMCORE_DISPOSED). */
  dispose(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Load a model directory; without `dir`, the bundled default model. */
export declare function loadModel(dir?: string, options?: LoadOptions): Promise<Model>;
export declare function loadModel(options: LoadOptions): Promise<Model>;

/** The bundled model directory ($LMCORE_DEFAULT_MODEL, else the repository's models/default). */
export declare function defaultModelDir(): string;
/** True when `dir` has a config.json. */
export declare function isModelDir(dir: string): boolean;

/**
 * Engine errors have code `LM_ERR_*` (the C status name) and the numeric `status`; binding
 * misuse has `ERR_LMCORE_*` (ERR_LMCORE_DISPOSED, ERR_LMCORE_NO_TOKENIZER, ERR_LMCORE_ADDON).
 * Invalid arguments are TypeError/RangeError with code ERR_INVALID_ARG_TYPE,
 * ERR_INVALID_ARG_VALUE or ERR_OUT_OF_RANGE and a message naming the option.
 */
export declare class LmcoreError extends Error {
  readonly code: string;
  readonly status?: number;
}

/** Rejection of a generation cancelled through its AbortSignal. */
export declare class AbortError extends Error {
  readonly name: 'AbortError';
  readonly code: 'ABORT_ERR';
  /** What had been generated when it stopped. */
  readonly result?: GenerationResult;
}
