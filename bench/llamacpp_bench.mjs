// llama.cpp speed on one GGUF through node-llama-cpp's prebuilt CPU binaries: prefill of P
// tokens (evaluateWithoutGeneratingNewTokens), then D decode steps (sequence.evaluate, greedy,
// logits computed every step), each repetition from an empty sequence; prints medians as JSON.
//   node bench/llamacpp_bench.mjs MODEL.gguf [THREADS=2] [P=512] [D=128] [REPS=5]
// Token ids are the same deterministic sequence bench/cpu_bench feeds.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [file, threads = "2", P = "512", D = "128", reps = "5"] = process.argv.slice(2);
if (!file) {
    console.error("usage: node llamacpp_bench.mjs MODEL.gguf [THREADS] [P] [D] [REPS]");
    process.exit(2);
}
const nT = +threads, nP = +P, nD = +D, nR = +reps;
const median = (a) => [...a].sort((x, y) => x - y)[a.length >> 1];

const llama = await getLlama({ gpu: false, build: "never", skipDownload: true, logLevel: LlamaLogLevel.error,
                               maxThreads: nT });
const t0 = performance.now();
const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
const loadS = (performance.now() - t0) / 1000;
const context = await model.createContext({ contextSize: nP + nD + 64, batchSize: nP, threads: nT,
                                            flashAttention: false });
const seq = context.getSequence();
const ids = Array.from({ length: nP + nD }, (_, i) => (1000 + i * 7919) % 120000);
const pp = [], tg = [];
for (let r = -1; r < nR; r++) { // r = -1: warm-up (page faults of the mapped weights)
    await seq.clearHistory();
    let t = performance.now();
    await seq.evaluateWithoutGeneratingNewTokens(ids.slice(0, nP));
    if (r >= 0) pp.push(nP / ((performance.now() - t) / 1000));
    t = performance.now();
    let n = 0;
    // yieldEogToken: an end-of-generation token must not end the timed run early
    for await (const _tok of seq.evaluate([ids[nP]], { temperature: 0, yieldEogToken: true })) {
        if (++n >= (r < 0 ? 4 : nD))
            break;
    }
    if (r >= 0) tg.push(n / ((performance.now() - t) / 1000));
}
console.log(JSON.stringify({ pp_tps: median(pp), tg_tps: median(tg), load_s: loadS, threads: nT,
                             gpu: llama.gpu, build: llama.buildType }));
await context.dispose();
await model.dispose();
await llama.dispose();
