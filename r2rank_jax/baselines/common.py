"""What every non-LLM baseline shares: item indexing, train sequences, the CLI and the score file.

Baselines learn from the **train split only**: each train user's history followed by their
positive (``history + [positive]``, oldest first). Valid/test users are other users (user split);
their histories are model inputs at scoring time and their positives are never seen.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import numpy as np

from r2rank_jax.data.benchmark import Record, load_items, load_manifest, load_split
from r2rank_jax.eval.evaluate import mean_metrics
from r2rank_jax.eval.score_files import write_score_file

PAD = 0  # item index 0 is padding; real items are 1..num_items


@dataclasses.dataclass(frozen=True)
class ItemIndex:
    """item id <-> dense index 1..num_items (0 = padding), over every item of ``items.jsonl``."""

    ids: tuple[str, ...]

    @classmethod
    def from_benchmark(cls, directory: str | pathlib.Path) -> ItemIndex:
        return cls(tuple(sorted(load_items(directory))))

    @property
    def num_items(self) -> int:
        return len(self.ids)

    def lookup(self) -> dict[str, int]:
        return {item: i + 1 for i, item in enumerate(self.ids)}

    def encode(self, items: Sequence[str], lookup: dict[str, int] | None = None) -> list[int]:
        lookup = lookup or self.lookup()
        try:
            return [lookup[x] for x in items]
        except KeyError as e:
            raise KeyError(f"item {e.args[0]!r} is not in the benchmark's items.jsonl") from None


def train_sequences(records: Sequence[Record], index: ItemIndex) -> list[list[int]]:
    """Per train user: item indices of history + [positive], oldest first."""
    lookup = index.lookup()
    return [index.encode(r.history + (r.positive,), lookup) for r in records]


def left_pad(seqs: Sequence[Sequence[int]], length: int) -> np.ndarray:
    """`[N, length]` int32, the last `length` items of each sequence right-aligned, PAD on the left."""
    out = np.full((len(seqs), length), PAD, dtype=np.int32)
    for i, s in enumerate(seqs):
        tail = list(s)[-length:]
        if tail:
            out[i, length - len(tail):] = tail
    return out


def candidate_matrix(records: Sequence[Record], index: ItemIndex) -> np.ndarray:
    """`[N, K]` int32 item indices of the candidates (all records must have the same K)."""
    lookup = index.lookup()
    widths = {len(r.candidates) for r in records}
    if len(widths) != 1:
        raise ValueError(f"records have different numbers of candidates: {sorted(widths)}")
    return np.array([index.encode(r.candidates, lookup) for r in records], dtype=np.int32)


def item_counts(sequences: Sequence[Sequence[int]], num_items: int) -> np.ndarray:
    """`[num_items + 1]` interaction counts per item index (index 0 = PAD stays 0)."""
    flat = np.fromiter((x for s in sequences for x in s), dtype=np.int64)
    counts = np.bincount(flat, minlength=num_items + 1)
    counts[PAD] = 0
    return counts


def base_parser(name: str, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m r2rank_jax.baselines.{name}", description=doc.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, type=pathlib.Path, help="prepared benchmark directory")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="per-user score file (JSONL) to write")
    parser.add_argument("--split", default="test", choices=("valid", "test", "train"), help="split to score")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(
    name: str,
    args: argparse.Namespace,
    score: Callable[[list[Record], list[Record], ItemIndex], np.ndarray],
) -> dict[str, float]:
    """Loads the benchmark, calls ``score(train_records, eval_records, index) -> [N, K]``, writes the
    score file and ``OUT.meta.json`` (method, args, benchmark hash, seconds, mean metrics); prints a summary."""
    start = time.perf_counter()
    manifest = load_manifest(args.benchmark)
    index = ItemIndex.from_benchmark(args.benchmark)
    train = load_split(args.benchmark, "train")
    evaluated = load_split(args.benchmark, args.split)
    scores = score(train, evaluated, index)
    write_score_file(args.out, evaluated, scores)
    summary = mean_metrics(evaluated, scores)
    seconds = time.perf_counter() - start
    meta = {"method": name, "args": {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items()},
            "benchmark": {"content_hash": manifest.get("content_hash"), "split": args.split},
            "num_users": len(evaluated), "seconds": round(seconds, 2), "metrics": summary}
    pathlib.Path(f"{args.out}.meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"{name} on {args.split} ({len(evaluated)} users, {seconds:.1f} s): "
          + " ".join(f"{k}={v:.4f}" for k, v in summary.items()))
    return summary
