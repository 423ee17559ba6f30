"""Reproducible benchmark preparation: raw data -> train/valid/test candidate lists.

    python -m r2rank_jax.data.prepare --input recbole:DIR/NAME --out DIR [--seed 0] [--history_len 20]
        [--num_candidates 20] [--split user|loo] [--negatives uniform|popularity] [--min_history 1]
        [--window none|paper|START:END] [--overwrite]

For every example (see `splits`): the history (last ``history_len`` items before the positive, oldest
first), the positive, and ``num_candidates - 1`` distinct negatives drawn once with the seed from the
interacted items outside the user's *full* sequence (uniformly, or proportionally to the items'
interaction counts over the whole source, all splits included), shuffled together with the positive. One ``np.random.default_rng(seed)`` drives everything
in a fixed order (user permutation, then splits train/valid/test, users in canonical id order), so the
same inputs and options give byte-identical files. Output format: `benchmark`.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from r2rank_jax.data import benchmark, splits
from r2rank_jax.data.errors import DataError
from r2rank_jax.data.negatives import STRATEGIES, NegativeSampler
from r2rank_jax.data.sources import read_source
from r2rank_jax.data.staging import check_target, staged_directory
from r2rank_jax.data.tables import RawDataset


def _check_options(history_len: int, num_candidates: int, split: str, negatives: str, min_history: int) -> None:
    if history_len < 1:
        raise ValueError(f"history_len must be >= 1, got {history_len}")
    if num_candidates < 2:
        raise ValueError(f"num_candidates must be >= 2 (one positive, at least one negative), got {num_candidates}")
    if split not in splits.PROTOCOLS:
        raise ValueError(f"split must be one of {splits.PROTOCOLS}, got {split!r}")
    if negatives not in STRATEGIES:
        raise ValueError(f"negatives must be one of {STRATEGIES}, got {negatives!r}")
    if min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {min_history}")


def build_records(
    dataset: RawDataset,
    rng: np.random.Generator,
    *,
    history_len: int,
    num_candidates: int,
    split: str,
    negatives: str,
    min_history: int,
) -> tuple[dict[str, list[benchmark.Record]], list[str]]:
    """Split name -> records, and the item pool (canonical order) negatives were drawn from."""
    pool = dataset.interacted_items()
    weights = None
    if negatives == "popularity":
        counts = Counter(i for seq in dataset.sequences.values() for i in seq.item_ids)
        weights = np.array([counts[i] for i in pool], dtype=np.float64)
    sampler = NegativeSampler(pool, weights)
    examples = splits.make_examples(dataset.sequences, split, rng, history_len, min_history)
    records: dict[str, list[benchmark.Record]] = {}
    for name in splits.SPLITS:
        out = []
        for ex in examples[name]:
            full = dataset.sequences[ex.user_id].item_ids
            negs = sampler.sample(rng, full, num_candidates - 1, who=f"user {ex.user_id!r}")
            cands = [ex.positive, *negs]
            order = rng.permutation(num_candidates)
            out.append(benchmark.Record(
                user_id=ex.user_id,
                history=ex.history,
                candidates=tuple(cands[j] for j in order),
                positive=ex.positive,
                profile=dataset.profiles.get(ex.user_id) if dataset.profiles else None,
            ))
        records[name] = out
    return records, pool


def summarize(records: dict[str, list[benchmark.Record]], history_len: int) -> dict[str, Any]:
    """History-length distribution over all records and the cold-start share of test positives
    (positives of test records that occur nowhere in the train records, neither history nor positive)."""
    lengths = np.array([len(r.history) for recs in records.values() for r in recs], dtype=np.int64)
    seen_in_train = {i for r in records["train"] for i in (*r.history, r.positive)}
    test = records["test"]
    cold = sum(r.positive not in seen_in_train for r in test)
    hist = (
        {"min": int(lengths.min()), "median": float(np.median(lengths)), "mean": round(float(lengths.mean()), 4),
         "max": int(lengths.max()), "share_full": round(float((lengths == history_len).mean()), 4)}
        if lengths.size else {}
    )
    return {
        "history_length": hist,
        "cold_start_test_positives": cold,
        "cold_start_test_share": round(cold / len(test), 4) if test else 0.0,
    }


def prepare(
    input: str,
    out: str,
    *,
    seed: int = 0,
    history_len: int = 20,
    num_candidates: int = 20,
    split: str = "user",
    negatives: str = "uniform",
    min_history: int = 1,
    window: str | None = None,
    overwrite: bool = False,
    verbose: bool = True,
) -> dict[str, Any]:
    """Prepares the benchmark for ``input`` (a source spec) into directory ``out``; returns the manifest.

    Raises `DataError` for malformed input, ValueError for bad options, FileExistsError when ``out``
    is not empty and ``overwrite`` is False. Nothing is written to ``out`` unless everything succeeds.
    """
    _check_options(history_len, num_candidates, split, negatives, min_history)
    check_target(out, overwrite)  # fail before the (possibly long) read
    start = time.perf_counter()
    dataset = read_source(input, window=window)
    rng = np.random.default_rng(seed)
    records, pool = build_records(
        dataset, rng, history_len=history_len, num_candidates=num_candidates, split=split,
        negatives=negatives, min_history=min_history,
    )
    options = {"seed": seed, "history_len": history_len, "num_candidates": num_candidates, "split": split,
               "negatives": negatives, "min_history": min_history, "window": window or "none"}
    with staged_directory(out, overwrite) as tmp:
        files = {f"{name}.jsonl": benchmark.write_jsonl(tmp / f"{name}.jsonl", (r.to_json() for r in records[name]))
                 for name in splits.SPLITS}
        files["items.jsonl"] = benchmark.write_jsonl(tmp / "items.jsonl", (dataset.items[i].to_json() for i in pool))
        manifest = {
            "format_version": benchmark.FORMAT_VERSION,
            "source": input,
            "seed": seed,
            "options": options,
            "counts": {name: len(records[name]) for name in splits.SPLITS},
            "num_users": dataset.num_users,
            "num_items": dataset.num_items,
            "num_interactions": dataset.num_interactions,
            "num_candidate_pool_items": len(pool),
            "has_profiles": bool(dataset.profiles),
            "source_notes": dict(sorted(dataset.notes.items())),
            "summary": summarize(records, history_len),
            "files": files,
            "content_hash": benchmark.content_hash(files),
        }
        (tmp / benchmark.MANIFEST).write_text(benchmark.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if verbose:
        print(format_summary(manifest, out, time.perf_counter() - start))
    return manifest


def format_summary(manifest: dict[str, Any], out: str, seconds: float) -> str:
    """Human-readable summary of a manifest (printed by `prepare`)."""
    h = manifest["summary"]["history_length"]
    c = manifest["counts"]
    lines = [
        f"prepared {manifest['source']} -> {out} in {seconds:.1f} s",
        f"  users {manifest['num_users']:,}  items {manifest['num_items']:,}  "
        f"interactions {manifest['num_interactions']:,}  (candidate pool {manifest['num_candidate_pool_items']:,})",
        f"  examples train {c['train']:,} / valid {c['valid']:,} / test {c['test']:,}  "
        f"(split={manifest['options']['split']}, K={manifest['options']['num_candidates']}, "
        f"negatives={manifest['options']['negatives']}, seed={manifest['seed']})",
    ]
    if h:
        lines.append(f"  history length min {h['min']} / median {h['median']:g} / mean {h['mean']:.2f} / max {h['max']}; "
                     f"{100 * h['share_full']:.1f}% at the full L={manifest['options']['history_len']}")
    s = manifest["summary"]
    lines.append(f"  cold-start test positives (never in train): {s['cold_start_test_positives']:,} "
                 f"({100 * s['cold_start_test_share']:.1f}%)")
    if manifest["source_notes"]:
        lines.append("  source notes: " + ", ".join(f"{k} {v:,}" for k, v in manifest["source_notes"].items()))
    lines.append(f"  content hash {manifest['content_hash']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.data.prepare", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="recbole:DIR/NAME | amazon2023:DIR/Category | movielens:DIR")
    parser.add_argument("--out", required=True, help="output directory (must be empty or absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--history_len", type=int, default=20)
    parser.add_argument("--num_candidates", type=int, default=20)
    parser.add_argument("--split", choices=splits.PROTOCOLS, default="user")
    parser.add_argument("--negatives", choices=STRATEGIES, default="uniform")
    parser.add_argument("--min_history", type=int, default=1)
    parser.add_argument("--window", default=None, help="amazon2023 only: none | paper (2021-10-01:2023-10-01) | START:END")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        prepare(args.input, args.out, seed=args.seed, history_len=args.history_len,
                num_candidates=args.num_candidates, split=args.split, negatives=args.negatives,
                min_history=args.min_history, window=args.window, overwrite=args.overwrite, verbose=not args.quiet)
    except (DataError, ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
