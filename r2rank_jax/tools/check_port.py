"""Compares our decoder with transformers on the same token batch.

    python -m r2rank_jax.tools.check_port --hf_dir DIR [--gguf FILE] [--dtype float32] [--tol 1e-4]

A few chat-template prompts of different lengths, left padded (random token ids when the directory has
no tokenizer). The last line printed is one JSON object with max_abs_logit_diff, max_abs_hidden_diff
and argmax_agreement over real tokens; the exit code is 1 when the logit diff exceeds --tol.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

PROMPTS = (
    "Recommend a game for someone who loved The Legend of Zelda: Breath of the Wild.",
    "User Context: Mario Kart 8 Deluxe, Super Smash Bros. Ultimate, Splatoon 2.\nCandidate Item: Animal Crossing",
    "Hi!",
    "You are a recommendation assistant. Analyze the user's history in depth and decide whether to recommend "
    "the candidate item. Finally output: <answer>Recommend</answer> or <answer>Not Recommend</answer>.",
)
DEFAULT_TOL = {"float32": 1e-4, "bfloat16": 1.0, "float16": 1.0}


def build_batch(tokenizer, vocab_size: int, seed: int = 0) -> list[list[int]]:
    if tokenizer is None:
        rng = np.random.default_rng(seed)
        return [list(rng.integers(0, vocab_size, n)) for n in (17, 9, 3, 12)]
    seqs = []
    for text in PROMPTS:
        msgs = [{"role": "user", "content": text}]
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        else:
            ids = tokenizer(text)["input_ids"]
        seqs.append(list(ids))
    return seqs


def compare(hf_dir: str, gguf: str | None = None, dtype: str = "float32") -> dict:
    import jax.numpy as jnp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r2rank_jax.models.batching import left_pad
    from r2rank_jax.models.config import ModelConfig
    from r2rank_jax.models.gguf import load_gguf_reference, load_gguf_tokenizer, reference_logits, source_from_torch
    from r2rank_jax.models.hf_port import load_from_source, load_hf

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if gguf is not None:
        reference = load_gguf_reference(hf_dir, gguf, dtype)
        hf_config, source = source_from_torch(reference)
        cfg = ModelConfig.from_hf_dict(hf_config, source=f"{hf_dir}/{gguf}", param_dtype=dtype, compute_dtype=dtype)
        ours = load_from_source(cfg, source, origin=f"{hf_dir}/{gguf}")
        tokenizer = load_gguf_tokenizer(hf_dir, gguf)
    else:
        reference = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=getattr(torch, dtype)).eval()
        ours = load_hf(hf_dir, param_dtype=dtype, compute_dtype=dtype)
        has_tok = any((pathlib.Path(hf_dir) / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json"))
        tokenizer = AutoTokenizer.from_pretrained(hf_dir) if has_tok else None
    seqs = build_batch(tokenizer, ours.config.vocab_size)
    tokens, positions = left_pad(seqs, pad_id=ours.config.pad_token_id or 0)
    mask = (positions >= 0).astype(np.int64)
    ref_logits, ref_hidden = reference_logits(reference, tokens.astype(np.int64), mask, positions.astype(np.int64))
    from flax import nnx

    out = nnx.jit(lambda m, t, p: m(t, p, logits_at="all"))(ours, jnp.asarray(tokens), jnp.asarray(positions))
    logits = np.asarray(out.logits, np.float32)
    hidden = np.asarray(out.hidden.astype(jnp.float32))
    real = mask.astype(bool)
    return {
        "source": f"{hf_dir}/{gguf}" if gguf else hf_dir,
        "dtype": dtype,
        "batch": [len(s) for s in seqs],
        "tokens_compared": int(real.sum()),
        "max_abs_logit_diff": float(np.abs(logits - ref_logits)[real].max()),
        "max_abs_hidden_diff": float(np.abs(hidden - ref_hidden)[real].max()),
        "argmax_agreement": float((logits.argmax(-1) == ref_logits.argmax(-1))[real].mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hf_dir", required=True, help="HF checkpoint directory (or the directory holding --gguf)")
    parser.add_argument("--gguf", default=None, help="GGUF file name inside --hf_dir")
    parser.add_argument("--dtype", default="float32", choices=sorted(DEFAULT_TOL))
    parser.add_argument("--tol", type=float, default=None, help="max allowed abs logit diff (default 1e-4 for float32)")
    args = parser.parse_args(argv)
    tol = DEFAULT_TOL[args.dtype] if args.tol is None else args.tol
    report = compare(args.hf_dir, args.gguf, args.dtype)
    report["tol"] = tol
    report["ok"] = report["max_abs_logit_diff"] <= tol
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
