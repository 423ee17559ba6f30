"""A study's results without its checkpoints: what the results table is joined from, small enough to commit.

    python -m r2rank_jax.study_archive --workdir=W --out=DIR [--only a,b]

Copies, for every finished method unit of the study in ``W`` (`r2rank_jax.study`), the files the joined
table reads, into ``DIR/PROTOCOL/METHOD/``: each row's per-user score file (``eval/scores/STEM.jsonl``, the
evaluated users only), the run's ``eval/results.json`` (the fields the table carries over) and its
``metrics.jsonl`` (the training curves); for the ``analyses`` its ``*.json``, ``*.md`` and ``*.png``. Not
copied: checkpoints, the teacher corpus, the logged rationales, the full-split score files of the classic
baselines. ``DIR/study.json`` holds the units' entries (config hash, content hash of the benchmark, cost),
each marked ``"archived"``; units already in ``DIR`` are kept unless this study finished them too.

``DIR`` is then a study workdir that ``python -m r2rank_jax.study ... --import_from DIR`` reads: a machine
that lost the study's workdirs prepares the benchmark again (seconds; its content hash must match) and
imports the archived units, so every later method is compared, user by user, with the same rows. A unit
that starts from an archived one (``no_cot`` from r2rank's SFT, the ``analyses`` of r2rank's run) refuses
to run: the archive keeps no checkpoint.

The last stdout line is one JSON object: ``{"archive": DIR/study.json, "archived": [...], "bytes": N}``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
from collections.abc import Sequence
from typing import Any

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


def archive(root: pathlib.Path, out: pathlib.Path, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Archives the finished units of the study in `root` (those of methods `only`, default all) into `out`:
    {"archived": [KEY, ...], "skipped": {KEY: why}, "bytes": size of the files copied}. The protocols'
    prepare entries are recorded (their content hash), never their data."""
    state = StudyState(root)
    if not state.exists:
        raise FileNotFoundError(f"{state.path}: no study there")
    if out.resolve() == root.resolve():
        raise ValueError(f"--out {out} is the study's own workdir")
    target = StudyState(out)
    target.data.setdefault("units", {})
    target.data.update(archive_of=str(root), config=state.data.get("config"), overrides=state.data.get("overrides", []))
    archived, skipped, size = [], {}, 0
    for key, entry in state.data["units"].items():
        protocol, _, name = key.partition("/")
        if entry.get("status") != "finished":
            skipped[key] = "not finished"
            continue
        if name == PREPARE:
            target.data["units"][key] = {**entry, "archived": {"from": entry.get("workdir"), "files": []}}
            continue
        if name not in METHODS:
            skipped[key] = "not a method of this version's study"
            continue
        if only is not None and name not in only:
            continue
        unit_dir = pathlib.Path(entry["workdir"])
        files = unit_files(unit_dir, name)
        dest = out / protocol / name
        if dest.exists():
            shutil.rmtree(dest)
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(unit_dir / rel, dest / rel)
            size += (dest / rel).stat().st_size
        target.data["units"][key] = {**json.loads(json.dumps(entry)), "workdir": str(dest),
                                     "archived": {"from": str(unit_dir), "files": [str(p) for p in files]}}
        archived.append(key)
    target.save()
    return {"archived": archived, "skipped": skipped, "bytes": size}


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
    print(json.dumps({"archive": str(out / "study.json"), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
