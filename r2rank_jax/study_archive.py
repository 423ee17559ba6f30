"""A study's results without its checkpoints: what the results table is joined from, small enough to commit.

    python -m r2rank_jax.study_archive --workdir=W --out=DIR [--only a,b]

Copies, for every finished method unit of the study in ``W`` (`r2rank_jax.study`), the files the joined
table reads, into ``DIR/PROTOCOL/METHOD/``: each row's per-user score file (``eval/scores/STEM.jsonl``, the
evaluated users only), the run's ``eval/results.json`` (the fields the table carries over) and its
``metrics.jsonl`` (the training curves); for the ``analyses`` its ``*.json``, ``*.md`` and ``*.png``. Not
copied: checkpoints, the teacher corpus, the logged rationales, the full-split score files of the classic
baselines. ``DIR/study.json`` holds the units' entries (config hash, content hash of the benchmark, cost),
each marked ``"archived"``; units already in ``DIR`` are kept unless this study finished them too.

A unit still running (stopped at a session's end) whose eval has journaled batches (``eval/scores/
NAME.journal.jsonl``, `r2rank_jax.eval.journal`) is archived as *partial*: its journals, under
``DIR/PROTOCOL/METHOD/``, and an entry in ``DIR/study.json``'s ``"partial"`` map (config hash, the benchmark's
content hash, the batches per journal). A study that imports the archive and has not started that unit
copies the journals into its own run and continues it: the training stages run again and, where they
retrain the checkpoints bit for bit (the journal's fingerprint holds their parameter digests; the same
code on a machine with the same float rounding), the eval replays the archived batches instead of
scoring them again. The unit's later finished archive replaces its partial one.

``DIR`` is then a study workdir that ``python -m r2rank_jax.study ... --import_from DIR`` reads: a machine
that lost the study's workdirs prepares the benchmark again (seconds; its content hash must match) and
imports the archived units, so every later method is compared, user by user, with the same rows. A unit
that starts from an archived one (``no_cot`` from r2rank's SFT, the ``analyses`` of r2rank's run) refuses
to run: the archive keeps no checkpoint.

The last stdout line is one JSON object: ``{"archive": DIR/study.json, "archived": [...], "partial": [...],
"skipped": {...}, "bytes": N}``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time
from collections.abc import Sequence
from typing import Any

from r2rank_jax.eval.journal import SUFFIX as JOURNAL_SUFFIX
from r2rank_jax.study import METHODS, PREPARE, StudyState

ANALYSES_SUFFIXES = (".json", ".md", ".png")


def unit_files(unit_dir: pathlib.Path, name: str) -> list[pathlib.Path]:
    """The files of a finished unit of method `name` that the joined table reads, relative to `unit_dir`.
    Raises FileNotFoundError naming a score file the unit should have written."""
    method = METHODS[name]
    if method.analyses_of:
        return sorted(p.relative_to(unit_dir) for p in unit_dir.iterdir()
                      if p.is_file() and p.suffix in ANALYSES_SUFFIXES)
    out = []
    for stem in dict.fromkeys(method.rows.values()):
        score = pathlib.Path("eval", "scores", f"{stem}.jsonl")
        if not (unit_dir / score).is_file():
            raise FileNotFoundError(f"{unit_dir / score}: the score file of a finished unit is missing")
        out.append(score)
    out += [p for p in (pathlib.Path("eval", "results.json"), pathlib.Path("metrics.jsonl")) if (unit_dir / p).is_file()]
    return out


def journal_files(unit_dir: pathlib.Path) -> list[pathlib.Path]:
    """The eval score journals of an unfinished unit, relative to `unit_dir` (none: [])."""
    scores = unit_dir / "eval" / "scores"
    return sorted(p.relative_to(unit_dir) for p in scores.glob(f"*{JOURNAL_SUFFIX}")) if scores.is_dir() else []


def _batches(path: pathlib.Path) -> int:
    """Complete batch lines of a journal (the header and a line cut short by a kill not counted)."""
    text = path.read_text(encoding="utf-8")
    return max(0, text.count("\n") - 1)


def _copy(unit_dir: pathlib.Path, files: Sequence[pathlib.Path], dest: pathlib.Path) -> int:
    """Replaces `dest` by the `files` of `unit_dir`; their size in bytes."""
    if dest.exists():
        shutil.rmtree(dest)
    size = 0
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(unit_dir / rel, dest / rel)
        size += (dest / rel).stat().st_size
    return size


def archive(root: pathlib.Path, out: pathlib.Path, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Archives the finished units of the study in `root` (those of methods `only`, default all) into `out`,
    and the eval journals of its running ones (module docstring): {"archived": [KEY, ...], "partial": [KEY,
    ...], "skipped": {KEY: why}, "bytes": size of the files copied}. The protocols' prepare entries are
    recorded (their content hash), never their data."""
    state = StudyState(root)
    if not state.exists:
        raise FileNotFoundError(f"{state.path}: no study there")
    if out.resolve() == root.resolve():
        raise ValueError(f"--out {out} is the study's own workdir")
    target = StudyState(out)
    target.data.setdefault("units", {})
    target.data.update(archive_of=str(root), config=state.data.get("config"), overrides=state.data.get("overrides", []))
    partial_entries = target.data.setdefault("partial", {})
    archived, partial, skipped, size = [], [], {}, 0
    for key, entry in state.data["units"].items():
        protocol, _, name = key.partition("/")
        if name == PREPARE:
            if entry.get("status") == "finished":
                target.data["units"][key] = {**entry, "archived": {"from": entry.get("workdir"), "files": []}}
            continue
        if name not in METHODS:
            skipped[key] = "not a method of this version's study"
            continue
        if only is not None and name not in only:
            continue
        unit_dir = pathlib.Path(entry["workdir"])
        dest = out / protocol / name
        if entry.get("status") != "finished":
            journals = journal_files(unit_dir)
            held = target.data["units"].get(key)
            if not journals:
                skipped[key] = "not finished (no eval batch journaled yet)"
            elif held is not None and held.get("hash") == entry.get("hash"):
                skipped[key] = "not finished here; the archive holds it finished"
            else:
                size += _copy(unit_dir, journals, dest)
                target.data["units"].pop(key, None)
                prepare = state.unit(f"{protocol}/{PREPARE}") or {}
                partial_entries[key] = {"hash": entry["hash"], "config": entry.get("config"),
                                        "content_hash": prepare.get("content_hash"), "from": str(unit_dir),
                                        "archived_at": time.time(), "files": [str(p) for p in journals],
                                        "batches": {str(p): _batches(dest / p) for p in journals}}
                partial.append(key)
            continue
        files = unit_files(unit_dir, name)
        size += _copy(unit_dir, files, dest)
        partial_entries.pop(key, None)
        target.data["units"][key] = {**json.loads(json.dumps(entry)), "workdir": str(dest),
                                     "archived": {"from": str(unit_dir), "files": [str(p) for p in files]}}
        archived.append(key)
    if not partial_entries:
        target.data.pop("partial")
    target.save()
    return {"archived": archived, "partial": partial, "skipped": skipped, "bytes": size}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.study_archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", required=True, help="the study's workdir (its study.json)")
    parser.add_argument("--out", required=True, help="the archive directory (created; its other units are kept)")
    parser.add_argument("--only", default="", help=f"comma-separated methods (default: every finished one) of {list(METHODS)}")
    args = parser.parse_args(argv)
    only = [m.strip() for m in args.only.split(",") if m.strip()] or None
    unknown = [m for m in only or () if m not in METHODS]
    if unknown:
        parser.error(f"--only: unknown method(s) {unknown}; known: {list(METHODS)}")
    out = pathlib.Path(args.out)
    try:
        result = archive(pathlib.Path(args.workdir), out, only)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    for key, why in result["skipped"].items():
        print(f"# {key}: not archived ({why})", flush=True)
    for key in result["archived"]:
        print(f"# {key}: archived", flush=True)
    for key in result["partial"]:
        print(f"# {key}: not finished; its eval journals archived (partial)", flush=True)
    print(json.dumps({"archive": str(out / "study.json"), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
