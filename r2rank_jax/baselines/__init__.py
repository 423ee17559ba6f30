"""The classic (non-LLM) baselines, one module each with a ``main(argv)`` CLI, and the synthetic world's
``oracle`` ceiling. `plan` checks the eval stage's ``eval.baselines`` / ``eval.baseline_args`` before any
model runs."""
from __future__ import annotations

import shlex
from collections.abc import Sequence

KNOWN: tuple[str, ...] = ("random", "popularity", "sasrec", "bert4rec", "lightgcn", "oracle")
# Arguments the eval stage passes itself; an entry of eval.baseline_args may not set them.
_RESERVED = ("--benchmark", "--out", "--split")


def plan(names: Sequence[str], extra_args: Sequence[str] = ()) -> dict[str, list[str]]:
    """{baseline: its extra CLI arguments} for the eval stage. ``extra_args`` entries are
    ``"NAME ARG ARG ..."`` (shell words, e.g. ``"sasrec --epochs 60"``); an entry for a known baseline that
    ``names`` leaves out is checked and unused, so a config's arguments survive ``--config.eval.baselines=random``.
    Raises ValueError naming the field on an unknown or repeated name, or a reserved flag."""
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise ValueError(f"eval.baselines: unknown baseline(s) {unknown}; known: {list(KNOWN)}")
    if len(set(names)) != len(names):
        raise ValueError(f"eval.baselines: a baseline is listed twice: {list(names)}")
    out: dict[str, list[str]] = {n: [] for n in names}
    seen: set[str] = set()
    for entry in extra_args:
        words = shlex.split(entry)
        if not words or words[0] not in KNOWN:
            raise ValueError(f"eval.baseline_args: entry {entry!r} must start with a known baseline {list(KNOWN)}")
        name, args = words[0], words[1:]
        if name in seen:
            raise ValueError(f"eval.baseline_args: two entries for {name!r}")
        seen.add(name)
        reserved = [a for a in args if a.split("=")[0] in _RESERVED]
        if reserved:
            raise ValueError(f"eval.baseline_args: {name!r} may not set {reserved} (the eval stage passes them)")
        if name in out:
            out[name] = args
    return out
