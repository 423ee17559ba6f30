"""Compare methods on one benchmark split from their per-user score files.

    python -m r2rank_jax.eval --benchmark DIR --split test --scores NAME=PATH.jsonl [NAME=PATH ...] \
        --reference NAME --out DIR [--resamples 10000] [--seed 0] [--level 0.95]

writes OUT/results.json and OUT/results.md. Every score file must cover exactly the split's users with
the benchmark's candidate lists (the error names the file, line and user otherwise).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from r2rank_jax.data.benchmark import load_manifest, load_split
from r2rank_jax.eval import confidence
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.report import build_results, render_markdown


def _named_path(text: str) -> tuple[str, pathlib.Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, pathlib.Path(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--benchmark", required=True, type=pathlib.Path, help="prepared benchmark directory")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--scores", required=True, nargs="+", type=_named_path, metavar="NAME=PATH")
    parser.add_argument("--reference", required=True, help="method the significance markers compare against")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--resamples", type=int, default=confidence.DEFAULT_RESAMPLES)
    parser.add_argument("--level", type=float, default=confidence.DEFAULT_LEVEL)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)

    names = [n for n, _ in args.scores]
    if len(set(names)) != len(names):
        parser.error(f"method names must be unique, got {names}")
    if args.reference not in names:
        parser.error(f"--reference {args.reference!r} is not one of the --scores names {names}")
    manifest = load_manifest(args.benchmark)
    records = load_split(args.benchmark, args.split)
    per_user, ties = evaluate_score_files(dict(args.scores), records, args.split)
    bench = {"content_hash": manifest.get("content_hash"), "split": args.split,
             "path": str(args.benchmark), "num_candidates": manifest.get("options", {}).get("num_candidates")}
    results = build_results(per_user, args.reference, bench, ties, args.level, args.resamples, args.seed,
                            num_candidates=max(len(r.candidates) for r in records))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = render_markdown(results)
    (args.out / "results.md").write_text(markdown, encoding="utf-8")
    print(markdown, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
