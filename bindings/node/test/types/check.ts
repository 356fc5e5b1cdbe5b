// Compiled (not run) by test/types.test.js: the declarations describe the API as used.
import { loadModel, Model, GenerationResult, GenerationChunk, LmcoreError, AbortError, ModelInfo } from '../..';

async function main(): Promise<void> {
  const model: Model = await loadModel();
  const other = await loadModel('/models/qwen3', { threads: 2, chatTemplate: 'default' });
  const bare = await loadModel({ modelOnly: true });
  const info: ModelInfo = model.info;
  const bits: number | undefined = info.quantization?.bits;
  const ctx: number = info.contextLength + info.parameters + (bits ?? 0);
  const r: GenerationResult = await model.generate('Hello', {
    maxTokens: 32, temperature: 0.7, topP: 0.9, topK: 40, minP: 0.05, repetitionPenalty: 1.1,
    presencePenalty: 0.5, frequencyPenalty: 0.5, logitBias: { 13: -5 }, seed: 7, stop: ['\n\n'],
    systemPrompt: 'Be brief.', chatTemplateKwargs: { enable_thinking: false }, maxKvSize: 512,
    kvBits: 4, kvGroupSize: 64, quantizedKvStart: 0, signal: AbortSignal.timeout(1000), logprobs: true,
    onProgress: ({ done, total }) => void (done / total),
  });
  const n: number = r.usage.promptTokens + r.usage.completionTokens + r.timings.tokensPerSecond + ctx;
  const reason: 'stop' | 'length' | 'cancelled' = r.finishReason;
  const s = model.stream([{ role: 'user', content: 'Hi' }], { maxTokens: 8 });
  for await (const chunk of s) {
    const c: GenerationChunk = chunk;
    const t: string = c.text;
    const ids: number[] = c.tokens;
    void [t, ids];
  }
  const final: GenerationResult = await s.result;
  const ids: number[] = await model.tokenize('x', { addSpecialTokens: false });
  const text: string = await model.detokenize(new Int32Array(ids), { skipSpecialTokens: true });
  const prompt: string = await model.applyChatTemplate([{ role: 'user', content: 'x' }]);
  const promptIds: number[] = await model.applyChatTemplate([{ role: 'user', content: 'x' }], { tokenize: true });
  const ev = await bare.evaluate([1, 2, 3], { decode: 4 });
  const logits: Float32Array = ev.logits;
  try {
    await model.generate('x');
  } catch (e) {
    if (e instanceof AbortError) void e.result?.text;
    if (e instanceof LmcoreError) void (e.code + (e.status ?? 0));
  }
  await other[Symbol.asyncDispose]();
  await model.dispose();
  void [n, reason, final, text, prompt, promptIds, logits];
}
void main;
