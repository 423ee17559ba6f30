"""SFT step time of the demo's tiny decoder: layers as one `lax.scan` against unrolled, and blocked causal
attention (what SFT runs) against dense `[T, T]` attention, on the same batch.

    python -m r2rank_jax.bench.sft_step [--batch 8] [--prompt 304] [--response 160] [--repeats 3] [--iters 5]

One step = the SFT loss (`train.sft.response_logprobs`: response-token NLL, logits only at response tokens),
its gradient and an AdamW update, jitted, on random tokens `[batch, prompt + response]`, for the demo's
architecture (`configs/demo.py`: hidden 128, 4 layers, 4 heads, GQA 2, vocabulary ~1030). Variants: `scan`
and `unrolled` (both with the blocked causal attention of `Decoder(causal_blocks=)`), `dense` (unrolled, dense
attention). They alternate, `--repeats` times `--iters` steps each, so that a noisy machine moves all alike;
the figures to compare are the ratios. The first step's loss of each is printed (same initialization: they
must agree). Lines: `sft_step causal blocks s: dense=<c> blocked=<b> ratio=<c/b>`, then
`sft_step shared prefix s: per_row=<b> shared=<d> ratio=<b/d> prefix=<N> rows_per_prefix=<K>`, then last
`sft_step s: scan=<a> unrolled=<b> ratio=<a/b>` (medians).

`shared`: the first `--shared_prefix` columns are the same in each group of `--rows_per_prefix` rows (default:
the whole batch shares the demo's 122-token chat header and instructions, what `sft.shared_prefix` does; 2 rows
sharing ~225 tokens is a user's context shared by its two candidates), so they run once per group and the rows
attend to their keys/values (`response_logprobs(shared_prefix=, rows_per_prefix=)`). Same math as per-row; its
first loss must agree with the others.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from r2rank_jax.models.config import ModelConfig
from r2rank_jax.models.decoder import Decoder
from r2rank_jax.train.sft import response_logprobs


def make_step(scan_layers: bool, response: int, vocab: int, blocked: bool = True, prefix: int = 0,
              rows_per_prefix: int = 1):
    cfg = ModelConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_layers=4, num_heads=4,
                      num_kv_heads=2, head_dim=32, scan_layers=scan_layers)
    graphdef, params = nnx.split(Decoder(cfg, rngs=nnx.Rngs(0)), nnx.Param)
    optimizer = optax.adamw(1e-3)

    @jax.jit
    def step(params, opt_state, tokens, positions):
        def loss(p):
            model = nnx.merge(graphdef, p)
            if prefix:
                return -jnp.mean(response_logprobs(model, tokens, positions, response, shared_prefix=prefix,
                                                   rows_per_prefix=rows_per_prefix))
            return -jnp.mean(response_logprobs(model, tokens, positions, response, blocked_attention=blocked))
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return [params, optimizer.init(params)], step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.bench.sft_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=304, help="prompt columns (the demo's bucket)")
    parser.add_argument("--response", type=int, default=160, help="response columns (the demo's bucket)")
    parser.add_argument("--vocab", type=int, default=1030)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--shared_prefix", type=int, default=122,
                        help="columns each group of rows shares (the demo's chat header and instructions: 122)")
    parser.add_argument("--rows_per_prefix", type=int, default=0, help="rows per shared prefix (0: the whole batch)")
    args = parser.parse_args(argv)
    width = args.prompt + args.response
    group = args.rows_per_prefix or args.batch
    if not 0 < args.shared_prefix < args.prompt or args.batch % group:
        parser.error(f"--shared_prefix must be in (0, --prompt) and --rows_per_prefix must divide --batch; got "
                     f"{args.shared_prefix}, {args.rows_per_prefix}")
    rows = np.random.default_rng(0).integers(5, args.vocab, (args.batch, width))
    rows[:, :args.shared_prefix] = np.repeat(rows[::group, :args.shared_prefix], group, axis=0)
    tokens = jnp.asarray(rows, jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(width, dtype=jnp.int32), (args.batch, width))
    variants = {"scan": make_step(True, args.response, args.vocab), "unrolled": make_step(False, args.response, args.vocab),
                "dense": make_step(False, args.response, args.vocab, blocked=False),
                "shared": make_step(False, args.response, args.vocab, prefix=args.shared_prefix, rows_per_prefix=group)}
    first = {}
    for name, (state, step) in variants.items():      # compile + one warm step each
        state[0], state[1], loss = step(state[0], state[1], tokens, positions)
        first[name] = float(loss)
    # Same initialization, same math: the variants differ in float rounding at most.
    print("first-step loss: " + " ".join(f"{name}={value:.6f}" for name, value in first.items()))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (state, step) in variants.items():
            start = time.perf_counter()
            for _ in range(args.iters):
                state[0], state[1], loss = step(state[0], state[1], tokens, positions)
            loss.block_until_ready()
            times[name].append((time.perf_counter() - start) / args.iters)
    for name, values in times.items():
        print(f"{name}: " + " ".join(f"{v:.3f}" for v in values) + " s/step")
    scan, unrolled, dense, shared = (statistics.median(times[name]) for name in ("scan", "unrolled", "dense", "shared"))
    print(f"sft_step causal blocks s: dense={dense:.3f} blocked={unrolled:.3f} ratio={dense / unrolled:.2f}")
    print(f"sft_step shared prefix s: per_row={unrolled:.3f} shared={shared:.3f} ratio={unrolled / shared:.2f} "
          f"prefix={args.shared_prefix} rows_per_prefix={group}")
    print(f"sft_step s: scan={scan:.3f} unrolled={unrolled:.3f} ratio={scan / unrolled:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
