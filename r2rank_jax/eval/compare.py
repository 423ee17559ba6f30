"""Bringing other runs (the ablations) into one results table, on the identical users and candidates.

An ablation is a full run in its own workdir (its own config overrides, checkpoints and `eval`
stage, see docs/ablations.md). The main run's `eval.compare` lists them as ``NAME=WORKDIR``; for each
one, `import_run` takes WORKDIR/eval/scores/METHOD.jsonl, METHOD being that run's `method` (r2rank: the
per-user scores of its RL checkpoint; a baseline of `r2rank_jax.methods`: its own scores) after checking that

1. both workdirs hold the same prepared benchmark (manifest ``content_hash``): same users, splits and
   saved candidate lists;
2. the score file covers exactly the users this run evaluates (same `eval.split` and `eval.max_users`);
3. every user's candidate list and positive equal this run's (`score_files.align_scores`).

Any mismatch raises `CompareError` naming the run, the file and what differs.
"""
from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Sequence

from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.errors import DataError
from r2rank_jax.eval.score_files import align_scores, read_score_file

SCORED_METHOD = "r2rank"


def scored_method(workdir: pathlib.Path) -> str:
    """The method whose score file represents run `workdir` (its config's `method`, default r2rank)."""
    config = workdir / "config.json"
    if not config.is_file():
        return SCORED_METHOD
    return json.loads(config.read_text()).get("method", SCORED_METHOD)


class CompareError(ValueError):
    """An `eval.compare` entry that is malformed or whose run does not match this one."""


def parse_entries(entries: Sequence[str], taken: Sequence[str] = ()) -> dict[str, pathlib.Path]:
    """``("NAME=WORKDIR", ...)`` → {NAME: WORKDIR}; names must be new (not in `taken`) and unique."""
    out: dict[str, pathlib.Path] = {}
    for entry in entries:
        name, sep, path = entry.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise CompareError(f"eval.compare entry {entry!r}: expected NAME=WORKDIR")
        if name in out or name in taken:
            raise CompareError(f"eval.compare entry {entry!r}: method name {name!r} is already used")
        out[name] = pathlib.Path(path)
    return out


def _content_hash(benchmark_dir: pathlib.Path) -> str | None:
    return json.loads((benchmark_dir / "manifest.json").read_text()).get("content_hash")


def import_run(name: str, workdir: pathlib.Path, benchmark_dir: pathlib.Path, records: Sequence[Record], split: str,
               out_path: pathlib.Path) -> pathlib.Path:
    """Checks run `workdir` against this run (module docstring) and copies its score file to `out_path`."""
    where = f"eval.compare {name}={workdir}"
    source = workdir / "eval" / "scores" / f"{scored_method(workdir)}.jsonl"
    if not source.is_file():
        raise CompareError(f"{where}: {source} does not exist; run `python -m r2rank_jax.launch ... "
                           f"--workdir={workdir} all` (or its `eval` stage) first")
    other_manifest = workdir / "data" / "benchmark" / "manifest.json"
    if not other_manifest.is_file():
        raise CompareError(f"{where}: {other_manifest} does not exist (not a launcher workdir?)")
    ours, theirs = _content_hash(benchmark_dir), _content_hash(other_manifest.parent)
    if ours != theirs:
        raise CompareError(f"{where}: its benchmark (content hash {str(theirs)[:12]}) differs from this run's "
                           f"({str(ours)[:12]}): the users and candidate lists are not the same; prepare both runs "
                           "with the same data config and seed")
    scores = read_score_file(source)
    wanted = {r.user_id for r in records}
    if set(scores.user_ids) != wanted:
        missing, extra = sorted(wanted - set(scores.user_ids)), sorted(set(scores.user_ids) - wanted)
        raise CompareError(f"{where}: {source} scores {len(scores.user_ids)} users, this run evaluates {len(records)} "
                           f"of the {split} split (missing {missing[:3]}, extra {extra[:3]}); run both with the same "
                           "eval.split and eval.max_users")
    try:
        align_scores(scores, records, split)
    except DataError as e:
        raise CompareError(f"{where}: {e}") from e
    out_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_path)
    return out_path
