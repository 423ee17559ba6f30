"""The shared command behind the stratified analyses (cold_start, history_length): per-user score files
of every method + one number per user -> per-tier metrics (strata.py) -> NAME.{md,json,png}.

No model runs: the inputs are WORKDIR/eval/scores/METHOD.jsonl (the eval stage's score files; or
--scores-dir) and the prepared benchmark.
"""
from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from r2rank_jax.analyses import common, strata
from r2rank_jax.data.benchmark import Record, load_split
from r2rank_jax.eval.evaluate import evaluate_score_files
from r2rank_jax.eval.score_files import read_score_file
from r2rank_jax.run.workdir import MissingInputError, Workdir

# records of the split, train records -> one value per record
ValueFn = Callable[[Sequence[Record], Sequence[Record]], np.ndarray]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores-dir", type=pathlib.Path, default=None,
                   help="directory of METHOD.jsonl score files (default WORKDIR/eval/scores)")
    p.add_argument("--methods", default=None, help="comma-separated subset of the score files (default: all)")
    p.add_argument("--split", default=None, help="split the score files cover (default: the config's eval.split)")
    p.add_argument("--tiers", type=int, default=3, help="number of quantile tiers (default 3: tertiles)")
    p.add_argument("--edges", default=None, help="fixed upper-inclusive tier edges instead, e.g. 5,20")
    p.add_argument("--reference", default=None, help="method the per-tier Wilcoxon tests compare against "
                                                      "(default: the eval stage's reference)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def score_paths(scores_dir: pathlib.Path, methods: str | None) -> dict[str, pathlib.Path]:
    """METHOD -> path for the score files of a directory (files named METHOD.jsonl, no other dots)."""
    if not scores_dir.is_dir():
        raise MissingInputError(f"{scores_dir} is missing; the `eval` stage writes the per-user score files there")
    found = {p.name[:-len(".jsonl")]: p for p in sorted(scores_dir.glob("*.jsonl")) if p.name.count(".") == 1}
    if methods:
        wanted = [m.strip() for m in methods.split(",") if m.strip()]
        missing = [m for m in wanted if m not in found]
        if missing:
            raise MissingInputError(f"no score file for {missing} in {scores_dir} (found {sorted(found)})")
        found = {m: found[m] for m in wanted}
    if not found:
        raise MissingInputError(f"no METHOD.jsonl score files in {scores_dir}")
    return found


def covered_records(paths: dict[str, pathlib.Path], benchmark: pathlib.Path, split: str) -> list[Record]:
    """The split's records for the users of the first score file, in split order (the others must match)."""
    users = set(read_score_file(next(iter(paths.values()))).user_ids)
    return [r for r in load_split(benchmark, split) if r.user_id in users]


def default_reference(wd: Workdir, names: Sequence[str]) -> str | None:
    results = wd.eval / "results.json"
    if results.is_file():
        ref = json.loads(results.read_text()).get("significance", {}).get("reference")
        if ref in names:
            return ref
    return "r2rank" if "r2rank" in names else None


def run(argv: list[str] | None, name: str, doc: str, title: str, what: str, xlabel: str, value_fn: ValueFn) -> dict:
    p = common.parser(name, doc)
    add_args(p)
    args = p.parse_args(argv)
    wd = Workdir(args.workdir)
    cfg = common.load_config(wd)
    split = args.split or cfg.eval.split
    benchmark = wd.require(wd.benchmark, f"analyses.{name}", "prepare")
    paths = score_paths(args.scores_dir or wd.eval / "scores", args.methods)
    records = covered_records(paths, benchmark, split)
    per_user, _ = evaluate_score_files(paths, records, split)
    values = value_fn(records, load_split(benchmark, "train"))
    edges = strata.parse_edges(args.edges) if args.edges else strata.quantile_edges(values, args.tiers)
    reference = args.reference or default_reference(wd, list(paths))
    result = strata.stratify(per_user, values, edges, reference, seed=args.seed)
    payload = {"analysis": name, "what": what, "split": split, "num_users": len(records),
               "score_files": {m: str(p) for m, p in paths.items()},
               "tiering": {"edges": args.edges} if args.edges else {"quantile_tiers": args.tiers},
               "user_values": {r.user_id: float(v) for r, v in zip(records, values)}, **result}
    markdown = strata.render_markdown(f"{title} ({split} split, {len(records)} users)", what, result)
    common.write_outputs(common.output_dir(args), name, payload, markdown, strata.plot(result, title, xlabel))
    return payload
