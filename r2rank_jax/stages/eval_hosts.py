"""The eval stage over several processes: each scores its own block of users, process 0 merges.

    hosts = HostEval(ctx, records)      # one process: block = records, outputs straight to eval/scores
    inp = ScoreInput(hosts.ctx, tok, source, hosts.block, hosts.scores_dir, hosts.user_ids)
    ...                                 # every scorer on hosts.block, files under hosts.scores_dir
    merged = hosts.merge(names, extras, listwise_parse)    # None on processes other than 0

Each process holds a host-local replica of each scored model (`distributed.local_mesh`: its own
devices only, so no collective runs while scoring and each host pads its batches as it likes) and
scores the contiguous block `distributed.host_block` of the evaluated users, writing its per-user
files (``NAME.jsonl`` score files, ``NAME.outputs.jsonl``, ``NAME.rationales.jsonl``) and its extra
result fields (``extras.json``) to ``eval/scores/parts/process-I-of-N/`` in the workdir, which every
host sees (docs/multihost.md). After a barrier, process 0 concatenates the blocks in process order
(= the users' order) into ``eval/scores/``, the rationale samples in the one-process sample order
(`rationale_log.sample_users` of every evaluated user), merges the extra fields (`merge_extras`) and
removes the parts; the eval stage then writes results.json/md there as with one process. After the
barrier the other processes leave the parts alone (process 0 is removing them). Each block's score journals
live in its part directory: an interrupted multi-host eval continued with `--resume` (same process count)
replays them; a fresh start empties the part.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any

import jax

from r2rank_jax import distributed
from r2rank_jax.eval import journal, rationale_log
from r2rank_jax.run.context import RunContext

PARTS = "parts"
EXTRAS = "extras.json"
# Extra result fields that name a model or a step: equal on every process by construction.
SAME_KEYS = frozenset({"checkpoint_step", "model", "endpoint"})
PARSE_COUNTS = ("parsed", "partial", "unparsable", "with_repeats", "with_out_of_range")


def part_dir(scores_dir: pathlib.Path, index: int, count: int) -> pathlib.Path:
    return scores_dir / PARTS / f"process-{index}-of-{count}"


class HostEval:
    """This process's share of the eval stage (module docstring)."""

    def __init__(self, ctx: RunContext, records: Sequence[Any]):
        self.index, self.count = jax.process_index(), jax.process_count()
        self.final_dir = ctx.wd.eval / "scores"
        self.records = list(records)
        self.seed = ctx.cfg.seed
        if self.count == 1:
            self.block, self.scores_dir, self.ctx = self.records, self.final_dir, ctx
            return
        if len(self.records) < self.count:
            raise distributed.DistributedError(
                f"eval: {len(self.records)} users to evaluate over {self.count} processes; each needs at least one "
                "(raise eval.max_users or run fewer processes)")
        self.block = self.records[distributed.host_block(len(self.records))]
        self.scores_dir = part_dir(self.final_dir, self.index, self.count)
        _clear_part(self.scores_dir, keep_journals=ctx.resume)     # a previous attempt's files
        self.ctx = dataclasses.replace(ctx, mesh=distributed.local_mesh(ctx.mesh))

    def source(self, source: Any) -> Any:
        """The split's `SplitSource` serving this process's block only (one process: ``source``)."""
        if not self.multi:
            return source
        block = copy.copy(source)
        block.records = list(self.block)
        return block

    @property
    def multi(self) -> bool:
        return self.count > 1

    @property
    def user_ids(self) -> tuple[str, ...]:
        return tuple(r.user_id for r in self.records)

    def merge(self, names: Sequence[str], extras: dict[str, dict], listwise_parse: dict
              ) -> tuple[dict[str, dict], dict] | None:
        """(extras, listwise parse statistics) over every process; None on processes other than 0. With one
        process: the arguments unchanged."""
        if not self.multi:
            return extras, listwise_parse
        (self.scores_dir / EXTRAS).write_text(json.dumps(
            {"users": len(self.block), "extras": extras, "listwise_parse": listwise_parse}, ensure_ascii=False))
        distributed.barrier("r2rank_eval_scored")
        if not distributed.is_primary():
            return None
        parts = [part_dir(self.final_dir, p, self.count) for p in range(self.count)]
        saved = [json.loads((p / EXTRAS).read_text()) for p in parts]
        if sorted(saved[0]["extras"]) != sorted(extras):
            raise RuntimeError(f"eval: processes scored different methods: {[sorted(s['extras']) for s in saved]}")
        for name in names:
            _concatenate(parts, f"{name}.jsonl", self.final_dir, required=True)
            _concatenate(parts, f"{name}.outputs.jsonl", self.final_dir)
            _merge_rationales(parts, f"{name}{rationale_log.SUFFIX}", self.final_dir,
                              rationale_log.sample_users(self.user_ids, seed=self.seed))
        weights = [s["users"] for s in saved]
        merged = {name: merge_extras([s["extras"][name] for s in saved], weights) for name in extras}
        parse = merge_extras([s["listwise_parse"] for s in saved], weights)
        shutil.rmtree(self.final_dir / PARTS)
        return merged, parse


def _clear_part(part: pathlib.Path, keep_journals: bool) -> None:
    """Empties this process's part directory (creating it), keeping its score journals when resuming: they
    are what `--resume` replays (the parts directory, journals included, goes once process 0 has merged)."""
    part.mkdir(parents=True, exist_ok=True)
    for f in part.iterdir():
        if keep_journals and f.name.endswith(journal.SUFFIX):
            continue
        shutil.rmtree(f) if f.is_dir() else f.unlink()


def _lines(path: pathlib.Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def _concatenate(parts: Sequence[pathlib.Path], name: str, out_dir: pathlib.Path, required: bool = False) -> None:
    """The processes' NAME files (one JSON line per user of each block) → OUT/NAME, in process order."""
    present = [p / name for p in parts if (p / name).is_file()]
    if not present:
        return
    if len(present) != len(parts):
        if required:
            raise RuntimeError(f"eval: {name} is missing from some processes' outputs ({[str(p) for p in parts]})")
    lines = [line for path in present for line in _lines(path)]
    (out_dir / name).write_text("".join(line + "\n" for line in lines))


def _merge_rationales(parts: Sequence[pathlib.Path], name: str, out_dir: pathlib.Path, order: Sequence[str]) -> None:
    """The processes' recorded rationales → OUT/NAME in the one-process sample order."""
    rows = {}
    for path in (p / name for p in parts):
        if path.is_file():
            rows.update({json.loads(line)["user_id"]: line for line in _lines(path)})
    if rows:
        (out_dir / name).write_text("".join(rows[u] + "\n" for u in order if u in rows))


def merge_extras(values: Sequence[Any], weights: Sequence[int]) -> Any:
    """One extra result field from every process's value (``weights``: the users each scored).

    Dicts merge key by key (listwise parse statistics: counts summed, rates recomputed from them); ints are
    counts and are summed; floats are per-user rates or means and are averaged weighted by users; other values
    (and `SAME_KEYS`) must agree, else the per-process values are kept as ``{"per_process": [...]}``.
    """
    return _merge(values, weights, key=None)


def _merge(values: Sequence[Any], weights: Sequence[int], key: str | None) -> Any:
    first = values[0]
    if key in SAME_KEYS or isinstance(first, (str, bool)) or first is None or \
            not all(type(v) is type(first) for v in values):
        return first if all(v == first for v in values) else {"per_process": list(values)}
    if isinstance(first, dict):
        keys = list(first)
        if any(list(v) != keys for v in values):
            return {"per_process": list(values)}
        out = {k: _merge([v[k] for v in values], weights, k) for k in keys}
        if all(k in out for k in PARSE_COUNTS):
            from r2rank_jax.eval.listwise import ParseStats

            out.update(ParseStats(**{k: out[k] for k in PARSE_COUNTS}).as_dict())
        return out
    if isinstance(first, int):
        return sum(values)
    if isinstance(first, float):
        return sum(v * w for v, w in zip(values, weights)) / max(sum(weights), 1)
    return first if all(v == first for v in values) else {"per_process": list(values)}
