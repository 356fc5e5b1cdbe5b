#!/usr/bin/env python3
"""GPU benchmark (issue 9): lmcore --device cuda against PyTorch/transformers on a synthetic
Llama-3.1-8B-shape checkpoint, next to the bounds of the machine.

Run on a machine with an NVIDIA GPU, PyTorch, transformers and safetensors (bench/gpu_bench.sh
builds lmcore and calls this):
  python3 bench/gpu_bench.py --build build-gpu --work /tmp/lmbench --out OUTDIR

Steps (each skipped when its output exists):
 1. probes: read bandwidth (torch sum over an 8 GiB bf16 tensor) and bf16 GEMM rate (8192^3);
 2. a random bf16 checkpoint of Llama-3.1-8B's shape (hidden 4096, 32 layers, 32/8 heads,
    head_dim 128, intermediate 14336, vocab 128256, untied, llama3 RoPE scaling), written with
    torch + safetensors; MLX 8-bit and 4-bit (group 64) versions through `lmcore convert -q`;
 3. lmcore: build/bench/gpu_bench on each checkpoint (decode at contexts 128 and 4096, prefill
    of 2048 tokens);
 4. PyTorch eager on the bf16 checkpoint (forward loop with a dynamic cache: decode at the same
    contexts, prefill of 2048 tokens); optionally static cache + torch.compile (--compile).
Prints one table and writes gpu_bench.md / gpu_bench.json to --out. --torch-from FILE reuses the
PyTorch numbers of an earlier gpu_bench.json (device time is scarce); --variants runs lmcore again
with backend switches (e.g. "no fusion:LMCORE_CUDA_FUSE=0,graphs:LMCORE_CUDA_GRAPHS=1").
bench/gpu_bench_baseline.json and bench/gpu_bench_results.json hold the runs in bench/GPU-NOTES.md.

Bounds: decode reads every weight once per token (the embedding: one row) plus the KV cache up to
the context (lmcore stores it in f32: layers * 2 * ctx * kv_dim * 4 bytes); bound = bandwidth /
bytes per token. Prefill: 2 * parameters FLOPs per token plus attention (4 * ctx * hidden per
layer, causal halves it) at the measured GEMM rate.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

SHAPE = dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, inter=14336, vocab=128256)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --- probes ---------------------------------------------------------------------------------------

def probes():
    import torch
    dev = torch.device("cuda")
    x = torch.randn(4 << 30, dtype=torch.bfloat16, device=dev)  # 8 GiB
    times = []
    for i in range(12):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        x.sum(dtype=torch.float32)
        e.record()
        torch.cuda.synchronize()
        if i >= 2:
            times.append(s.elapsed_time(e) / 1e3)
    times.sort()
    bw = x.numel() * 2 / times[len(times) // 2]
    del x
    a = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    b = torch.randn(8192, 8192, dtype=torch.bfloat16, device=dev)
    for _ in range(3):
        a @ b
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10):
        a @ b
    e.record()
    torch.cuda.synchronize()
    flops = 10 * 2 * 8192 ** 3 / (s.elapsed_time(e) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return dict(gpu=torch.cuda.get_device_name(0), read_bw=bw, gemm_flops=flops, torch=torch.__version__)


# --- synthetic checkpoint ---------------------------------------------------------------------------

def config_json():
    S = SHAPE
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": S["hidden"], "intermediate_size": S["inter"], "num_hidden_layers": S["layers"],
        "num_attention_heads": S["heads"], "num_key_value_heads": S["kv_heads"], "head_dim": S["head_dim"],
        "vocab_size": S["vocab"], "max_position_embeddings": 131072, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
    }


def tensor_shapes():
    S = SHAPE
    H, Q, KV, I, V = S["hidden"], S["heads"] * S["head_dim"], S["kv_heads"] * S["head_dim"], S["inter"], S["vocab"]
    yield "model.embed_tokens.weight", (V, H)
    for l in range(S["layers"]):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (H,)
        yield p + "post_attention_layernorm.weight", (H,)
        yield p + "self_attn.q_proj.weight", (Q, H)
        yield p + "self_attn.k_proj.weight", (KV, H)
        yield p + "self_attn.v_proj.weight", (KV, H)
        yield p + "self_attn.o_proj.weight", (H, Q)
        yield p + "mlp.gate_proj.weight", (I, H)
        yield p + "mlp.up_proj.weight", (I, H)
        yield p + "mlp.down_proj.weight", (H, I)
    yield "model.norm.weight", (H,)
    yield "lm_head.weight", (V, H)


def generate_bf16(out_dir, shard_bytes=4 << 30):
    import torch
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    g = torch.Generator(device="cuda").manual_seed(1234)
    shard, size, n, weight_map = {}, 0, 0, {}
    names = []

    def flush():
        nonlocal shard, size, n
        if shard:
            n += 1
            fn = f"model-{n:05d}.safetensors"
            save_file(shard, os.path.join(out_dir, fn), metadata={"format": "pt"})
            for k in shard:
                weight_map[k] = fn
            shard, size = {}, 0

    for name, shape in tensor_shapes():
        if len(shape) == 1:
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:  # uniform-ish random weights, std 0.02
            t = (torch.randn(shape, device="cuda", generator=g, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()
        shard[name] = t
        names.append(name)
        size += t.numel() * 2
        if size >= shard_bytes:
            flush()
    flush()
    # shards are numbered while written; rename to the "-of-" scheme
    final = {}
    for i in range(1, n + 1):
        old = f"model-{i:05d}.safetensors"
        new = f"model-{i:05d}-of-{n:05d}.safetensors"
        os.rename(os.path.join(out_dir, old), os.path.join(out_dir, new))
        final[old] = new
    weight_map = {k: final[v] for k, v in weight_map.items()}
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in final.values())
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_json(), f, indent=1)


def st_tensor_bytes(d):
    """{tensor name: bytes} over every safetensors file of a directory (header only)."""
    out = {}
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(d, fn), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            hdr = json.loads(f.read(n))
        for k, v in hdr.items():
            if k != "__metadata__":
                out[k] = v["data_offsets"][1] - v["data_offsets"][0]
    return out


def decode_bytes(d, ctx, kv_bytes_per_el=4):
    """Bytes read per decode token at context ctx: weights (embedding: one row) + KV cache."""
    S = SHAPE
    w = 0
    for k, b in st_tensor_bytes(d).items():
        w += b // S["vocab"] if k.startswith("model.embed_tokens.") else b
    kv = S["layers"] * 2 * ctx * S["kv_heads"] * S["head_dim"] * kv_bytes_per_el
    return w, kv


def prefill_flops_per_token(T):
    S = SHAPE
    H, Q, KV, I, V = S["hidden"], S["heads"] * S["head_dim"], S["kv_heads"] * S["head_dim"], S["inter"], S["vocab"]
    params = S["layers"] * (H * Q * 2 + H * KV * 2 + 3 * H * I)  # the head: only the last token
    attn = S["layers"] * 4 * Q * (T / 2)  # q.k and p.v over half the keys on average (causal)
    return 2 * params + attn


# --- lmcore ------------------------------------------------------------------------------------------

def run_lmcore(build, d, args, env=None):
    cmd = [os.path.join(build, "bench", "gpu_bench"), d, "--device", "cuda", "--prefill", str(args.prefill),
           "--ctx", ",".join(map(str, args.ctx)), "--decode", str(args.decode)]
    log("+", " ".join(cmd))
    t = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.lmcore_timeout,
                           env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % args.lmcore_timeout}
    log(p.stderr.strip())
    if p.returncode != 0:
        return {"error": (p.stderr.strip() or "exit %d" % p.returncode)[-400:]}
    r = json.loads(p.stdout)
    r["wall_s"] = time.time() - t
    return r


# --- PyTorch -----------------------------------------------------------------------------------------

def torch_bench(d, args):
    import torch
    from transformers import AutoModelForCausalLM
    t = time.time()
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    load_s = time.time() - t
    V = SHAPE["vocab"]
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, V, (1, max(args.ctx + [args.prefill]) + args.decode), generator=gen).cuda()
    res = {"load_s": load_s, "transformers": __import__("transformers").__version__, "decode": []}

    def sync_time(f):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = f()
        torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    with torch.inference_mode():
        model(ids[:, :16])  # warm-up
        T = args.prefill
        pts = []
        for _ in range(3):
            dt, _ = sync_time(lambda: model(ids[:, :T], logits_to_keep=1))
            pts.append(dt)
        pts.sort()
        res["prefill"] = {"tokens": T, "tok_s": T / pts[1]}
        for c in args.ctx:
            out = model(ids[:, :c], use_cache=True, logits_to_keep=1)
            past = out.past_key_values
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(args.decode):
                out = model(ids[:, c + i:c + i + 1], past_key_values=past, use_cache=True)
                past = out.past_key_values
                out.logits[:, -1].argmax(-1).item()  # the token comes back to the host, as in generate
            dt = time.perf_counter() - t0
            res["decode"].append({"ctx": c, "tokens": args.decode, "tok_s": args.decode / dt})
            del past, out
            torch.cuda.empty_cache()
    return res


def torch_compile_bench(d, args):
    """generate() with a static cache and torch.compile (transformers' recipe)."""
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16, device_map="cuda")
    model.eval()
    model.generation_config.cache_implementation = "static"
    # mode "reduce-overhead" (CUDA graphs) failed on 2026-11-28 with transformers 5.17 / torch 2.11
    # (the static cache's index_copy_ overwrote a graph output): the default mode compiles without graphs
    model.forward = torch.compile(model.forward, fullgraph=True)
    V = SHAPE["vocab"]
    ids = torch.randint(0, V, (1, 128), generator=torch.Generator().manual_seed(7)).cuda()
    kw = dict(do_sample=False, min_new_tokens=0, pad_token_id=0)
    res = {"decode": []}
    with torch.inference_mode():
        t = time.time()
        for _ in range(2):  # compile (prefill and decode graphs)
            model.generate(ids, max_new_tokens=args.decode + 1, min_length=0, **kw)
        res["compile_s"] = time.time() - t
        times = {}
        for n in (1, args.decode + 1):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n, **kw)
            torch.cuda.synchronize()
            times[n] = (time.perf_counter() - t0, out.shape[1] - ids.shape[1])
        (t1, n1), (tn, nn) = times[1], times[args.decode + 1]
        res["decode"].append({"ctx": 128, "tokens": nn - n1, "tok_s": (nn - n1) / (tn - t1)})
    return res


def run_torch(d, args, compile_=False):
    """In a child process (memory and a stuck compile stay contained)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-child", d, "--decode", str(args.decode),
           "--prefill", str(args.prefill), "--ctx", ",".join(map(str, args.ctx))]
    if compile_:
        cmd.append("--compile")
    log("+", " ".join(cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.torch_timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % args.torch_timeout}
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-600:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- report ------------------------------------------------------------------------------------------

def fmt(v, spec="%.1f"):
    return "—" if v is None else spec % v


def table(P, fmts, lm, pt, ptc, args):
    rows = []
    head = "| format | measure | lmcore tok/s | PyTorch tok/s | ratio | bound tok/s | % of bound | bytes/token |"
    rows += [head, "|---|---|---|---|---|---|---|---|"]
    pt_dec = {r["ctx"]: r["tok_s"] for r in pt.get("decode", [])}
    for name, d in fmts:
        r = lm.get(name, {})
        dec = {x["ctx"]: x["tok_s"] for x in r.get("decode", [])}
        for c in args.ctx:
            w, kv = decode_bytes(d, c + args.decode // 2)
            bound = P["read_bw"] / (w + kv)
            v = dec.get(c)
            ptv = pt_dec.get(c)
            rows.append("| %s | decode @%d | %s | %s | %s | %.0f | %s | %.2f GB |" % (
                name, c, fmt(v), fmt(ptv) + ("" if name.startswith("bf16") or ptv is None else " (bf16)"),
                fmt(v / ptv if v and ptv else None, "%.1f×"), bound, fmt(100 * v / bound if v else None, "%.0f%%"),
                (w + kv) / 1e9))
        fl = prefill_flops_per_token(args.prefill)
        bound = P["gemm_flops"] / fl
        v = r.get("prefill", {}).get("tok_s")
        ptv = pt.get("prefill", {}).get("tok_s")
        rows.append("| %s | prefill %d | %s | %s | %s | %.0f | %s | %.1f GFLOP |" % (
            name, args.prefill, fmt(v, "%.0f"), fmt(ptv, "%.0f") + ("" if name.startswith("bf16") or ptv is None else " (bf16)"),
            fmt(v / ptv if v and ptv else None, "%.2f×"), bound, fmt(100 * v / bound if v else None, "%.0f%%"),
            fl / 1e9))
    for c in ptc.get("decode", []):
        rows.append("| bf16 | PyTorch static cache + torch.compile, decode @%d | | %.1f | | | | |" % (c["ctx"], c["tok_s"]))
    if "error" in ptc:
        rows.append("| bf16 | PyTorch static cache + torch.compile | | failed: %s | | | | |" %
                    ptc["error"].splitlines()[-1][:120].replace("|", "/"))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build-gpu")
    ap.add_argument("--work", default="/tmp/lmbench")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--formats", default="bf16,q8,q4")
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--ctx", default="128,4096")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also PyTorch static cache + torch.compile")
    ap.add_argument("--torch-timeout", type=int, default=240)
    ap.add_argument("--lmcore-timeout", type=int, default=300)
    ap.add_argument("--tag", default="", help="a label for this run (written into the report)")
    ap.add_argument("--variants", default="",
                    help="extra lmcore runs, LABEL:VAR=VALUE;VAR=VALUE,... e.g. 'no fusion:LMCORE_CUDA_FUSE=0'")
    ap.add_argument("--variant-formats", default="bf16,q4", help="formats the variants run on")
    ap.add_argument("--torch-from", help="reuse the PyTorch results of an earlier gpu_bench.json")
    ap.add_argument("--torch-child")
    args = ap.parse_args()
    args.ctx = [int(x) for x in args.ctx.split(",")]
    if args.torch_child:
        r = torch_compile_bench(args.torch_child, args) if args.compile else torch_bench(args.torch_child, args)
        print(json.dumps(r))
        return

    os.makedirs(args.out, exist_ok=True)
    t = time.time()
    P = probes()
    log("probes: %.0f GB/s read, %.0f TFLOP/s bf16 GEMM (%.1f s)" % (P["read_bw"] / 1e9, P["gemm_flops"] / 1e12,
                                                                   time.time() - t))
    bf16 = os.path.join(args.work, "bf16")
    if not os.path.exists(os.path.join(bf16, "config.json")):
        t = time.time()
        generate_bf16(bf16)
        log("generated %s (%.1f s)" % (bf16, time.time() - t))
    fmts = []
    for f in args.formats.split(","):
        d = os.path.join(args.work, f)
        if f != "bf16" and not os.path.exists(os.path.join(d, "config.json")):
            t = time.time()
            bits = f[1:]
            p = subprocess.run([os.path.join(args.build, "lmcore"), "convert", "-m", bf16, "-o", d, "-q", "--bits", bits,
                                "--group-size", "64", "--threads", str(os.cpu_count() or 8)],
                               capture_output=True, text=True)
            if p.returncode != 0:
                log("convert %s failed: %s" % (f, p.stderr))
                continue
            log("converted %s (%.1f s)" % (d, time.time() - t))
        fmts.append((f, d))
    lm = {}
    for name, d in list(fmts):
        lm[name] = run_lmcore(args.build, d, args)
        log(name, json.dumps(lm[name]))
        for v in args.variants.split(",") if args.variants and name in args.variant_formats.split(",") else []:
            label, _, env = v.partition(":")  # the same run with the backend's switches set otherwise
            alt = "%s (%s)" % (name, label)
            lm[alt] = run_lmcore(args.build, d, args, env=dict(kv.split("=", 1) for kv in env.split(";") if kv))
            log(alt, json.dumps(lm[alt]))
            fmts.append((alt, d))
    if args.torch_from:
        with open(args.torch_from) as f:
            prev = json.load(f)
        pt, ptc0 = prev.get("pytorch", {}), prev.get("pytorch_compile", {})
        pt.setdefault("from", "%s (%s)" % (args.torch_from, prev.get("date", "?")))  # where it was measured
    else:
        pt = {} if args.no_torch else run_torch(bf16, args)
    log("pytorch", json.dumps(pt))
    ptc = run_torch(bf16, args, compile_=True) if args.compile else (ptc0 if args.torch_from else {})
    if ptc:
        log("pytorch compile", json.dumps(ptc))
    date = datetime.date.today().isoformat()
    hdr = ("GPU benchmark %s — %s (%s), torch %s, read %.0f GB/s (8 GiB bf16 sum), bf16 GEMM %.0f TFLOP/s "
           "(8192³)%s\nLlama-3.1-8B shape, random weights; decode: %d tokens after a prompt of the context, "
           "greedy token picked on the device (only its id comes back); bounds: bandwidth ÷ (weights + f32 KV "
           "cache) per token, prefill: GEMM rate ÷ FLOPs per token\n" % (date, P["gpu"], P.get("driver", "cuda"), P["torch"], P["read_bw"] / 1e9,
                                  P["gemm_flops"] / 1e12, (" — " + args.tag) if args.tag else "", args.decode))
    if pt.get("from"):
        hdr += "PyTorch %s eager numbers from %s\n" % (pt.get("transformers", ""), pt["from"])
    tab = table(P, fmts, lm, pt, ptc, args)
    print(hdr)
    print(tab)
    with open(os.path.join(args.out, "gpu_bench.md"), "w") as f:
        f.write(hdr + "\n" + tab + "\n")
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump({"date": date, "tag": args.tag, "probes": P, "lmcore": lm, "pytorch": pt, "pytorch_compile": ptc},
                  f, indent=1)


if __name__ == "__main__":
    main()
