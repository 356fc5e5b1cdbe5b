#!/usr/bin/env python3
"""Independent re-computation of models/default/perplexity.json.

Uses only numpy and the `regex` module (no torch, transformers or tokenizers):
a from-scratch byte-level BPE tokenizer reading tokenizer.json, a safetensors
reader, and a float32 Llama forward pass. It follows the protocol written in
perplexity.json, so it doubles as an executable spec of what
`lmcore perplexity -m models/default -f models/default/heldout.txt` must do.

    python3 tools/train_default/check_ppl.py models/default
"""

import json
import math
import os
import struct
import sys

import numpy as np
import regex

GPT2_PAT = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"""
            r"""|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class ByteLevelBPE:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            tj = json.load(f)
        m = tj["model"]
        assert m["type"] == "BPE" and tj["pre_tokenizer"]["type"] == "ByteLevel"
        self.vocab = m["vocab"]
        self.ranks = {tuple(p if isinstance(p, list) else p.split(" ")): i
                      for i, p in enumerate(m["merges"])}
        self.added = {t["content"]: t["id"] for t in tj["added_tokens"]}
        self.b2u = bytes_to_unicode()
        self.pat = regex.compile(GPT2_PAT)
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, bi = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best is None or r < best):
                    best, bi = r, i
            if best is None:
                break
            parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
        ids = [self.vocab[p] for p in parts]
        self.cache[word] = ids
        return ids

    def encode(self, text):
        """Without special tokens (added tokens in the text are still matched)."""
        ids = []
        pieces = regex.split("(" + "|".join(map(regex.escape, self.added)) + ")", text)
        for piece in pieces:
            if piece in self.added:
                ids.append(self.added[piece])
                continue
            for w in self.pat.findall(piece):
                ids += self.bpe("".join(self.b2u[b] for b in w.encode("utf-8")))
        return ids


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = np.frombuffer(data[a:b], dtype={"BF16": np.uint16, "F16": np.float16,
                                              "F32": np.float32}[v["dtype"]])
        if v["dtype"] == "BF16":
            buf = (buf.astype(np.uint32) << 16).view(np.float32)
        out[k] = buf.astype(np.float32).reshape(v["shape"])
    return out


def rope_theta(cfg):
    if "rope_parameters" in cfg and cfg["rope_parameters"]:
        return float(cfg["rope_parameters"]["rope_theta"])
    return float(cfg.get("rope_theta", 10000.0))


def forward(W, cfg, ids):
    """Logits [T, V] in float32 for one window starting at position 0."""
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]
    T = len(ids)

    def rms(x, w):
        return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))

    inv = 1.0 / (rope_theta(cfg) ** (np.arange(0, D, 2, dtype=np.float64) / D))
    ang = np.outer(np.arange(T, dtype=np.float64), inv)
    cos = np.concatenate([np.cos(ang)] * 2, -1).astype(np.float32)
    sin = np.concatenate([np.sin(ang)] * 2, -1).astype(np.float32)

    def rope(x):  # [h, T, D]
        rot = np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
        return x * cos + rot * sin

    mask = np.triu(np.full((T, T), -np.inf, dtype=np.float32), 1)
    x = W["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, H, D).transpose(1, 0, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, KV, D).transpose(1, 0, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, KV, D).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k = np.repeat(k, H // KV, 0)
        v = np.repeat(v, H // KV, 0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(D) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, H * D)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "models/default"
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "perplexity.json")) as f:
        ref = json.load(f)
    tok = ByteLevelBPE(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, ref["file"]), encoding="utf-8") as f:
        text = f.read()
    ids = [ref["bos_token_id"]] + tok.encode(text)
    ctx = ref["context"]
    wins = [ids[s:s + ctx] for s in range(0, len(ids), ctx)]
    wins = [w for w in wins if len(w) >= 2]
    W = load_safetensors(os.path.join(d, "model.safetensors"))
    nll, n = 0.0, 0
    for w in wins:
        lg = forward(W, cfg, w).astype(np.float64)[:-1]
        lse = np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1)) + lg.max(-1)
        nll += float((lse - lg[np.arange(len(w) - 1), w[1:]]).sum())
        n += len(w) - 1
    ppl = math.exp(nll / n)
    rel = abs(ppl - ref["perplexity"]) / ref["perplexity"]
    print(f"tokens {len(ids)} (reference {ref['total_tokens']}), windows {len(wins)} "
          f"(reference {ref['windows']}), predicted {n}")
    print(f"perplexity {ppl:.6f} vs reference {ref['perplexity']:.6f} "
          f"(relative difference {rel:.2e})")
    ok = len(ids) == ref["total_tokens"] and rel < 0.005
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
