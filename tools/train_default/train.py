#!/usr/bin/env python3
"""Train lmcore's bundled default model (models/default/).

A small Llama-architecture causal LM (~7.6 M parameters) with a byte-level BPE
tokenizer, trained from scratch on English text that is available offline: the
docstrings of the installed Python packages and of the standard library, the
Python language reference shipped in ``pydoc_data``, package long descriptions
(``*.dist-info/METADATA``), ``.md``/``.rst``/``.txt`` files under
site-packages, and README/NEWS-style files under /usr/share/doc.

Pipeline (one command, see README.md):

  1. corpus    -- walk the sources in sorted order (a process pool parses the
                  Python files with ``ast``), clean and filter, drop repeated
                  paragraphs, split off a held-out set by a hash of each
                  document's source name.
  2. tokenizer -- byte-level BPE with Hugging Face ``tokenizers``
                  (ByteLevel pre-tokenizer with the GPT-2 regex, ByteLevel
                  decoder, ``<|endoftext|>`` = id 0 as BOS/EOS, a
                  TemplateProcessing post-processor that prepends BOS).
  3. train     -- ``LlamaForCausalLM`` with bf16 autocast, AdamW, warmup +
                  cosine schedule for a fixed number of steps; a wall-clock
                  deadline stops early (and the log says so) so the outputs are
                  always written.
  4. save      -- ``save_pretrained`` in bfloat16 + tokenizer files +
                  generation_config.json.
  5. evaluate  -- reload the SAVED (bf16-rounded) weights in float32 and compute
                  the held-out perplexity with the protocol written into
                  perplexity.json; print sample generations.

Only stage 1 runs without torch/transformers/tokenizers
(``python3 train.py --stage corpus --out DIR``), which helps to check the
corpus on a machine without a GPU. Everything is seeded; the number of steps
is fixed by ``--steps`` so two runs on the same machine image see the same
batches (GPU kernels may still add last-bit differences).
"""

import argparse
import ast
import gzip
import hashlib
import json
import math
import os
import re
import sys
import time
import warnings
from multiprocessing import Pool

T0 = time.time()
EOT = "<|endoftext|>"


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# --------------------------------------------------------------------------
# 1. corpus
# --------------------------------------------------------------------------

SKIP_DIR_NAMES = {"tests", "test", "testing", "__pycache__", "node_modules",
                  "_vendor", "vendor", "site-packages-old", "idlelib",
                  "lib2to3", "turtledemo", "ensurepip", "benchmarks"}
SKIP_TEXT_NAMES = re.compile(
    r"(^|/)(license|licence|copying|copyright|authors|contributors|notice|"
    r"record|installer|requested|wheel|top_level|entry_points|dependency_links|"
    r"requirements[^/]*|sources|not-zip-safe|namespace_packages|"
    r"changelog[^/]*|changes[^/]*|history[^/]*|third[_-]party[^/]*|cmakelists)"
    r"(\.[a-z0-9]+)*$", re.I)
TEXT_EXTS = (".md", ".rst", ".txt")


def text_ok(t, min_letters=0.55, min_ascii=0.97):
    """English-prose-ish filter: mostly ASCII, mostly letters."""
    nonspace = len(t) - sum(map(str.isspace, t))
    if nonspace == 0:
        return False
    letters = sum(map(str.isalpha, t))
    if letters / nonspace < min_letters:
        return False
    return t.isascii() or sum(map(str.isascii, t)) / len(t) >= min_ascii


def clean_text(t):
    t = t.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    # drop lines that are very long without spaces (hashes, base64, urls dumps)
    lines = []
    for ln in t.split("\n"):
        ln = ln.rstrip()
        if len(ln) > 300 and ln.count(" ") < len(ln) / 30:
            continue
        lines.append(ln)
    t = "\n".join(lines)
    t = re.sub(r"\n{3,}", "\n\n", t)
    return t.strip("\n")


def py_docstrings(path):
    """All module/class/function docstrings of one Python file, in order."""
    try:
        with open(path, "rb") as f:
            src = f.read()
        if len(src) > 3_000_000 or (b'"""' not in src and b"'''" not in src):
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(src)
    except Exception:
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                             ast.AsyncFunctionDef)):
            try:
                d = ast.get_docstring(node, clean=True)
            except Exception:
                d = None
            if d and len(d) >= 40:
                out.append(d)
    return out


def read_text_file(path):
    try:
        if os.path.getsize(path) > 1_000_000:
            return None
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read(2_000_000)
        else:
            with open(path, "rb") as f:
                raw = f.read()
        return raw.decode("utf-8")
    except Exception:
        return None


def metadata_body(t):
    """Long description of a dist-info METADATA file (after the headers)."""
    i = t.find("\n\n")
    return t[i + 2:] if i >= 0 else ""


def paragraphs(t, min_letters):
    """Cleaned paragraphs of one document that pass the prose filter."""
    return [p for p in clean_text(t).split("\n\n")
            if p.strip() and text_ok(p, min_letters)]


def load_one(job):
    """job = (kind, path, key, min_letters) -> (key, [paragraphs])."""
    kind, path, key, min_letters = job
    if kind == "py":
        t = "\n\n".join(py_docstrings(path))
    else:
        t = read_text_file(path) or ""
        if kind == "metadata":
            t = metadata_body(t)
    return key, paragraphs(t, min_letters) if t.strip() else []


def python_roots():
    import site
    import sysconfig
    roots = []
    p = sysconfig.get_paths()
    for k in ("stdlib", "purelib", "platlib"):
        if p.get(k):
            roots.append(p[k])
    try:
        roots += site.getsitepackages()
    except Exception:
        pass
    roots += [d for d in sys.path if d.endswith(("site-packages", "dist-packages"))]
    roots.append("/usr/lib/python3/dist-packages")
    seen, out = set(), []
    for r in roots:
        r = os.path.realpath(r)
        if os.path.isdir(r) and r not in seen:
            seen.add(r)
            out.append(r)
    # a root that lies inside another root is walked once (by the outer one,
    # which skips the inner one), so e.g. stdlib/site-packages is not doubled
    return out


def list_jobs(extra_doc_dirs):
    roots = python_roots()
    jobs = []
    for ri, root in enumerate(roots):
        inner = {r for r in roots if r != root and r.startswith(root + os.sep)}
        for dp, dns, fns in os.walk(root):
            dns[:] = sorted(d for d in dns
                            if d not in SKIP_DIR_NAMES
                            and os.path.join(dp, d) not in inner)
            rel_dir = os.path.relpath(dp, root)
            in_distinfo = rel_dir.endswith((".dist-info", ".egg-info"))
            for fn in sorted(fns):
                path = os.path.join(dp, fn)
                rel = os.path.normpath(os.path.join(rel_dir, fn))
                key = f"py{ri}:{rel}"
                if in_distinfo:
                    if fn in ("METADATA", "PKG-INFO"):
                        jobs.append(("metadata", path, key))
                    continue
                if fn.endswith(".py") and not fn.startswith("test_"):
                    jobs.append(("py", path, key))
                elif fn.lower().endswith(TEXT_EXTS) and not SKIP_TEXT_NAMES.search(rel):
                    jobs.append(("text", path, key))
    for d in extra_doc_dirs:
        if not os.path.isdir(d):
            continue
        for dp, dns, fns in os.walk(d):
            dns.sort()
            for fn in sorted(fns):
                path = os.path.join(dp, fn)
                rel = os.path.relpath(path, d)
                base = fn[:-3] if fn.endswith(".gz") else fn
                if SKIP_TEXT_NAMES.search(base) or os.path.islink(path):
                    continue
                low = base.lower()
                if (low.startswith(("readme", "news", "faq", "intro", "usage"))
                        or low.endswith(TEXT_EXTS)):
                    jobs.append(("text", path, f"doc:{rel}"))
    return roots, jobs


def pydoc_topics():
    try:
        from pydoc_data import topics
        return [("pydoc_data:" + k, v) for k, v in sorted(topics.topics.items())]
    except Exception:
        return []


def build_corpus(args):
    """Returns (train_docs, heldout_text, stats)."""
    roots, jobs = list_jobs(args.doc_dirs)
    log(f"corpus: {len(jobs)} source files under {len(roots)} python roots "
        f"+ {args.doc_dirs}")
    jobs = [j + (args.min_letters,) for j in jobs]
    raw = []  # (key, [paragraphs]) in deterministic order
    with Pool(args.workers) as pool:
        for key, paras in pool.imap(load_one, jobs, chunksize=8):
            if paras:
                raw.append((key, paras))
    raw += [(k, paragraphs(t, args.min_letters)) for k, t in pydoc_topics()]
    log(f"corpus: {len(raw)} documents with text, "
        f"{sum(len(p) for _, ps in raw for p in ps) / 1e6:.1f} M chars")

    # drop repeated paragraphs (first occurrence in source order wins)
    seen = set()
    docs = []
    n_dup = 0
    for key, paras in raw:
        kept = []
        for p in paras:
            h = hashlib.blake2b(p.strip().encode(), digest_size=12).digest()
            if h in seen:
                n_dup += 1
                continue
            seen.add(h)
            kept.append(p)
        t = "\n\n".join(kept)
        if len(t) < 80:
            continue
        if len(t) > args.max_doc_chars:
            t = t[: args.max_doc_chars].rsplit("\n\n", 1)[0]
        docs.append((key, t))
    log(f"corpus: {len(docs)} documents after dedup, {n_dup} repeated "
        f"paragraphs dropped, {sum(len(t) for _, t in docs) / 1e6:.1f} M chars")

    # held-out split: documents ordered by a hash of their source key
    def hk(key):
        return hashlib.sha256(f"{args.seed}:{key}".encode()).hexdigest()
    order = sorted(range(len(docs)), key=lambda i: hk(docs[i][0]))
    held, held_chars = set(), 0
    for i in order:
        if held_chars >= args.heldout_chars:
            break
        n = len(docs[i][1])
        if 600 <= n <= 12000:
            held.add(i)
            held_chars += n + 2
    held_sorted = sorted(held, key=lambda i: hk(docs[i][0]))
    heldout = "\n\n".join(docs[i][1] for i in held_sorted) + "\n"
    train = [t for i, (_, t) in enumerate(docs) if i not in held]
    if args.max_train_chars and sum(map(len, train)) > args.max_train_chars:
        acc, cut = 0, []
        for t in train:
            if acc + len(t) > args.max_train_chars:
                break
            cut.append(t)
            acc += len(t)
        train = cut
    stats = {
        "python_roots": roots,
        "source_files": len(jobs),
        "documents_train": len(train),
        "documents_heldout": len(held),
        "chars_train": sum(map(len, train)),
        "chars_heldout": len(heldout),
        "heldout_sources": [docs[i][0] for i in held_sorted],
        "train_sha256": hashlib.sha256(
            "\x00".join(train).encode()).hexdigest(),
    }
    log(f"corpus: train {stats['documents_train']} docs "
        f"{stats['chars_train'] / 1e6:.1f} M chars; held-out "
        f"{stats['documents_heldout']} docs {stats['chars_heldout']} chars")
    return train, heldout, stats


# --------------------------------------------------------------------------
# 2. tokenizer
# --------------------------------------------------------------------------

def train_tokenizer(train_docs, args):
    from tokenizers import (Tokenizer, decoders, models, pre_tokenizers,
                            processors, trainers)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                 use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab, min_frequency=2, show_progress=False,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # a deterministic subset (every k-th document) bounds the training time
    step = max(1, math.ceil(sum(map(len, train_docs)) / args.tok_train_chars))
    sub = train_docs[::step]
    tok.train_from_iterator(sub, trainer=trainer, length=len(sub))
    eot = tok.token_to_id(EOT)
    assert eot == 0, eot
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B:1",
        special_tokens=[(EOT, eot)])
    log(f"tokenizer: vocab {tok.get_vocab_size()} trained on {len(sub)} docs "
        f"(every {step}th)")
    return tok


def encode_corpus(tok, train_docs):
    import numpy as np
    eot = tok.token_to_id(EOT)
    parts = []
    B = 4096
    for i in range(0, len(train_docs), B):
        encs = tok.encode_batch(train_docs[i:i + B], add_special_tokens=False)
        for e in encs:
            parts.append(np.array([eot] + e.ids, dtype=np.uint16))
    parts.append(np.array([eot], dtype=np.uint16))
    return np.concatenate(parts)


# --------------------------------------------------------------------------
# 3-5. model
# --------------------------------------------------------------------------

def make_config(args, vocab_size):
    import transformers
    from transformers import LlamaConfig
    kw = dict(
        vocab_size=vocab_size, hidden_size=args.hidden,
        intermediate_size=args.intermediate, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        max_position_embeddings=1024, rms_norm_eps=1e-5, hidden_act="silu",
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0,
        attention_bias=False, mlp_bias=False, initializer_range=0.02)
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    else:
        kw["rope_theta"] = 10000.0
    return LlamaConfig(**kw)


def dtype_kw(dt):
    import transformers
    return ({"dtype": dt} if int(transformers.__version__.split(".")[0]) >= 5
            else {"torch_dtype": dt})


def heldout_windows(tok, text, ctx):
    ids = [tok.token_to_id(EOT)] + tok.encode(text, add_special_tokens=False).ids
    wins = [ids[s:s + ctx] for s in range(0, len(ids), ctx)]
    return ids, [w for w in wins if len(w) >= 2]


def perplexity(model, wins, device):
    """exp(sum NLL / #predicted); each window predicts tokens 1..n-1."""
    import torch
    import torch.nn.functional as F
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in wins:
            x = torch.tensor([w], device=device)
            logits = model(input_ids=x, use_cache=False).logits[0].float()
            nll += F.cross_entropy(logits[:-1], x[0, 1:],
                                   reduction="sum").double().item()
            n += len(w) - 1
    return nll, n


def train_model(args, tokens, vocab_size, wins, deadline):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import LlamaForCausalLM

    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    cfg = make_config(args, vocab_size)
    model = LlamaForCausalLM(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters (tied embeddings)")

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.wd},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)

    data = torch.from_numpy(tokens.astype(np.int32)).to(dev)
    N = data.numel()
    g = torch.Generator(device=dev)
    g.manual_seed(args.seed)
    B, T = args.batch, args.seq
    ar = torch.arange(T + 1, device=dev)

    def lr_at(s):
        if s < args.warmup:
            return args.lr * (s + 1) / args.warmup
        p = (s - args.warmup) / max(1, args.steps - args.warmup)
        return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))

    def quick_eval():
        model.eval()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            nll, n = perplexity(model, wins, dev)
        model.train()
        return nll / n

    model.train()
    t_start = time.time()
    step, stopped_early, last_loss = 0, False, float("nan")
    loss_acc = torch.zeros((), device=dev)
    auto = args.steps <= 0
    if auto:
        # Time the first steps (all inside the linear warmup, whose lr does
        # not depend on the total), then fix the largest step count that ends
        # before the deadline. Rerunning with --steps N reproduces the run.
        assert args.calib_steps < args.warmup
        args.steps = 10 ** 9
    while step < args.steps:
        if time.time() > deadline:
            stopped_early = True
            break
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        idx = torch.randint(0, N - T - 1, (B,), generator=g, device=dev)
        x = data[idx[:, None] + ar].long()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                               x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_acc += loss.detach()
        step += 1
        if auto and step == 20:
            torch.cuda.synchronize()
            t20 = time.time()
        if auto and step == args.calib_steps:
            torch.cuda.synchronize()
            per = (time.time() - t20) / (args.calib_steps - 20)
            left = deadline - time.time() - 3.0
            # quick evals cost about as much as ~5 steps each
            n = int(left / per * 0.97)
            n -= 5 * (n // args.eval_every)
            args.steps = max(args.warmup + 100, step + n) // 100 * 100
            log(f"auto steps: {per * 1e3:.1f} ms/step -> --steps {args.steps}")
        if step % args.log_every == 0:
            last_loss = loss_acc.item() / args.log_every
            loss_acc.zero_()
            el = time.time() - t_start
            msg = (f"step {step}/{args.steps} loss {last_loss:.4f} "
                   f"lr {lr_at(step - 1):.2e} "
                   f"{step * B * T / el / 1e6:.2f} Mtok/s {el:.0f}s")
            if step % args.eval_every == 0 or step == args.steps:
                msg += f" | held-out bf16 nll {quick_eval():.4f}"
            log(msg)
    if stopped_early:
        log(f"WARNING: wall-clock deadline reached, stopped after {step} of "
            f"{args.steps} steps")
    torch.cuda.synchronize()
    train_s = time.time() - t_start
    info = {"steps_done": step, "steps_planned": args.steps,
            "stopped_early": stopped_early, "train_seconds": round(train_s, 1),
            "tokens_seen": step * B * T, "parameters": n_params,
            "last_logged_train_loss": round(last_loss, 4)}
    return model, info


def save_all(model, tok, args, out):
    import torch
    from transformers import GenerationConfig
    model = model.to(torch.bfloat16)
    model.config.use_cache = True
    model.save_pretrained(out)
    GenerationConfig(bos_token_id=0, eos_token_id=0,
                     max_length=1024).save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    # No chat template (a base model); BOS is added by tokenizer.json's
    # TemplateProcessing post-processor, so no add_bos_token flag here.
    tc = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "pad_token": EOT,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": {
            "0": {"content": EOT, "lstrip": False, "normalized": False,
                  "rstrip": False, "single_word": False, "special": True}},
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
        f.write("\n")


def evaluate_saved(args, out, heldout_text, corpus_stats, train_info):
    import tokenizers
    import torch
    import transformers
    from transformers import AutoTokenizer, LlamaForCausalLM
    tok = tokenizers.Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    ids, wins = heldout_windows(tok, heldout_text, args.ctx)
    res = {}
    for dev_name in ("cpu", "cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        m = LlamaForCausalLM.from_pretrained(out, **dtype_kw(torch.float32),
                                             attn_implementation="eager")
        m = m.to(dev_name).eval()
        nll, n = perplexity(m, wins, torch.device(dev_name))
        res[dev_name] = (nll, n)
        log(f"held-out ({dev_name}, fp32, saved bf16 weights): "
            f"nll/token {nll / n:.6f} ppl {math.exp(nll / n):.4f} over {n} tokens")
    nll, n = res["cpu"]
    st = os.stat(os.path.join(out, "model.safetensors")).st_size
    pj = {
        "file": "heldout.txt",
        "perplexity": round(math.exp(nll / n), 6),
        "mean_nll": round(nll / n, 8),
        "total_nll": round(nll, 6),
        "predicted_tokens": n,
        "total_tokens": len(ids),
        "heldout_text_tokens": len(ids) - 1,
        "windows": len(wins),
        "context": args.ctx,
        "bos_token": EOT,
        "bos_token_id": 0,
        "protocol": (
            "Tokenize the whole file (UTF-8, read as is) with tokenizer.json "
            "WITHOUT special tokens; prepend one BOS (<|endoftext|>, id 0); "
            f"split the sequence into consecutive non-overlapping windows of "
            f"{args.ctx} tokens (the last partial window is included if it has "
            ">= 2 tokens); run each window from an empty KV cache (positions "
            "start at 0 in every window) and predict tokens 1..n-1 of the "
            "window from their prefix; perplexity = exp(total NLL / total "
            "predicted tokens), NLL in natural log."),
        "reference_compute": ("PyTorch float32 on CPU, weights loaded from the "
                              "saved bfloat16 model.safetensors (upcast to "
                              "float32), eager attention"),
        "cuda_fp32_check": {"perplexity": round(math.exp(res['cuda'][0] / res['cuda'][1]), 6),
                            "mean_nll": round(res["cuda"][0] / res["cuda"][1], 8)},
        "weights_dtype": "bfloat16",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": sys.version.split()[0],
        "model_safetensors_bytes": st,
        "training": {**train_info, **{k: v for k, v in vars(args).items()
                                       if k not in ("out", "doc_dirs")}},
        "corpus": {k: v for k, v in corpus_stats.items() if k != "heldout_sources"},
        "heldout_sources": corpus_stats["heldout_sources"],
    }
    with open(os.path.join(out, "perplexity.json"), "w") as f:
        json.dump(pj, f, indent=2)
        f.write("\n")

    # sample generations from the saved model (fp32, GPU)
    m = LlamaForCausalLM.from_pretrained(out, **dtype_kw(torch.float32)).cuda().eval()
    try:
        hft = AutoTokenizer.from_pretrained(out)
        log("tokenizer check (AutoTokenizer vs tokenizers):",
            hft("Once upon a time")["input_ids"],
            tok.encode("Once upon a time").ids, type(hft).__name__)
    except Exception as e:  # informative only
        log("AutoTokenizer failed:", repr(e))
    prompts = ["Once upon a time", "Return the number of",
               "Parameters\n----------\n"]
    for p in prompts:
        x = torch.tensor([tok.encode(p).ids], device="cuda")
        for mode in ("greedy", "sampled"):
            torch.manual_seed(args.seed)
            kw = (dict(do_sample=False) if mode == "greedy" else
                  dict(do_sample=True, temperature=0.8, top_p=0.95))
            with torch.no_grad():
                y = m.generate(x, max_new_tokens=80, pad_token_id=0,
                               eos_token_id=0, **kw)
            text = tok.decode(y[0, x.shape[1]:].tolist())
            print(f"\n=== {mode} ({kw}) prompt {p!r}\n{p}{text}\n", flush=True)
    return pj


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--stage", choices=["corpus", "all"], default="all")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--doc-dirs", nargs="*", default=["/usr/share/doc"])
    ap.add_argument("--min-letters", type=float, default=0.55)
    ap.add_argument("--max-doc-chars", type=int, default=200_000)
    ap.add_argument("--max-train-chars", type=int, default=0)
    ap.add_argument("--heldout-chars", type=int, default=100_000)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--tok-train-chars", type=int, default=40_000_000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=640)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--steps", type=int, default=0,
                    help="optimizer steps; 0 = as many as fit before --deadline")
    ap.add_argument("--calib-steps", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=2e-4)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--ctx", type=int, default=512, help="perplexity window")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=330,
                    help="seconds after start when training must stop")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    log("args:", vars(args))

    train_docs, heldout, stats = build_corpus(args)
    with open(os.path.join(args.out, "heldout.txt"), "w", encoding="utf-8") as f:
        f.write(heldout)
    if args.stage == "corpus":
        with open(os.path.join(args.out, "corpus_stats.json"), "w") as f:
            json.dump(stats, f, indent=2)
        with open(os.path.join(args.out, "train_sample.txt"), "w") as f:
            f.write(("\n" + EOT + "\n").join(train_docs[::max(1, len(train_docs) // 300)]))
        return

    tok = train_tokenizer(train_docs, args)
    tokens = encode_corpus(tok, train_docs)
    log(f"encoded: {len(tokens):,} training tokens "
        f"({stats['chars_train'] / len(tokens):.2f} chars/token)")
    stats["tokens_train"] = int(len(tokens))
    _, wins = heldout_windows(tok, heldout, args.ctx)

    model, info = train_model(args, tokens, tok.get_vocab_size(), wins,
                              T0 + args.deadline)
    log(f"trained: {info}")
    info["epochs"] = round(info["tokens_seen"] / len(tokens), 2)
    save_all(model, tok, args, args.out)
    del model
    log("saved:", {f: os.path.getsize(os.path.join(args.out, f))
                   for f in sorted(os.listdir(args.out))})
    pj = evaluate_saved(args, args.out, heldout, stats, info)
    log(f"FINAL: params {info['parameters']:,} steps {info['steps_done']} "
        f"tokens_seen {info['tokens_seen']:,} train_s {info['train_seconds']} "
        f"held-out ppl {pj['perplexity']} (nll {pj['mean_nll']}, "
        f"{pj['predicted_tokens']} predicted tokens, {pj['windows']} windows)")


if __name__ == "__main__":
    main()
