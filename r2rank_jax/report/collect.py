"""Everything the report shows, read from a finished workdir (nothing is computed with a model).

- ``eval/results.json`` (required: the eval stage writes it) and ``config.json`` (the resolved config);
- ``metrics.jsonl``: the logged training records, grouped by stage;
- ``analyses/*.png``: the analyses' plots, when present;
- for the sampled users: the benchmark's history (item titles, oldest first), candidates and positive,
  every method's scores (``eval/scores/NAME.jsonl``), the recorded rationales
  (``eval/scores/NAME.rationales.jsonl``, `eval.rationale_log`) and the listwise methods' outputs
  (``eval/scores/NAME.outputs.jsonl``).

Users: `rationale_log.sample_users(evaluated users, N, config seed)`, the eval stage's seeded sample
extended: its first `rationale_log.DEFAULT_USERS` have rationales, any further ones scores only.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
from collections import defaultdict
from typing import Any

from r2rank_jax.data.answers import parse_decision
from r2rank_jax.data.textio import iter_jsonl
from r2rank_jax.eval import rationale_log
from r2rank_jax.run.workdir import MissingInputError, Workdir

CLASSIC = ("random", "popularity", "sasrec", "bert4rec", "lightgcn")


@dataclasses.dataclass(frozen=True)
class CandidateView:
    """One candidate of one user under one method."""
    item_id: str
    title: str
    positive: bool
    score: float
    rank: int                     # 1 + the number of candidates scored strictly higher (ties share a rank)
    rationale: str | None         # None: the method writes none (or it was not recorded)
    decision: str | None          # "Recommend", "Not Recommend" or None (no parsable answer)


@dataclasses.dataclass(frozen=True)
class MethodView:
    name: str
    candidates: tuple[CandidateView, ...]     # in the benchmark's candidate order
    output: str | None = None                 # listwise: the one generated ranking text
    output_status: str | None = None


@dataclasses.dataclass(frozen=True)
class UserView:
    user_id: str
    profile: str | None
    history: tuple[str, ...]                  # item titles, oldest first
    methods: tuple[MethodView, ...]


@dataclasses.dataclass(frozen=True)
class ReportData:
    workdir: pathlib.Path
    results: dict[str, Any]
    config: dict[str, Any] | None
    metrics: dict[str, list[dict[str, Any]]]  # stage -> records in file order
    analyses: dict[str, pathlib.Path]         # plot name -> PNG path
    users: tuple[UserView, ...]
    llm_methods: tuple[str, ...]


def _read_json(path: pathlib.Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def read_metrics(path: pathlib.Path) -> dict[str, list[dict[str, Any]]]:
    """metrics.jsonl -> {stage: records}; a missing file gives {}."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if path.is_file():
        for _, obj in iter_jsonl(path):
            out[str(obj.get("stage", "?"))].append(obj)
    return dict(out)


def _by_user(path: pathlib.Path) -> dict[str, dict[str, Any]]:
    return {str(obj["user_id"]): obj for _, obj in iter_jsonl(path)} if path.is_file() else {}


def ranks(scores: list[float]) -> list[int]:
    """Competition ranks `[K]` (1 = best; tied scores share the best rank they cover)."""
    return [1 + sum(t > s for t in scores) for s in scores]


def _method_view(name: str, record: dict, titles: dict[str, str], score_row: dict,
                 rationales: dict | None, output: dict | None) -> MethodView:
    cands = [str(c) for c in score_row["candidates"]]
    scores = [float(s) for s in score_row["scores"]]
    texts = dict(zip(rationales["candidates"], rationales["rationales"])) if rationales else {}
    views = []
    for item, score, rank in zip(cands, scores, ranks(scores)):
        text = texts.get(item)
        views.append(CandidateView(item, titles.get(item, item), item == str(record["positive"]), score, rank, text,
                                   parse_decision(text) if text is not None else None))
    return MethodView(name, tuple(views), output.get("text") if output else None,
                      output.get("status") if output else None)


def collect(workdir: str | pathlib.Path, num_users: int) -> ReportData:
    """Reads `workdir` (module docstring); raises MissingInputError without eval/results.json."""
    if num_users < 0:
        raise ValueError(f"--users must be >= 0, got {num_users}")
    wd = Workdir(pathlib.Path(workdir))
    results = _read_json(wd.require(wd.eval / "results.json", "report", "eval"))
    config = _read_json(wd.root / "config.json") if (wd.root / "config.json").is_file() else None
    analyses = {p.stem: p for p in sorted((wd.root / "analyses").glob("*.png"))}
    scores_dir = wd.eval / "scores"
    classic = set(CLASSIC) | set((config or {}).get("eval", {}).get("baselines", ()))
    methods = [m for m in results.get("methods", {}) if (scores_dir / f"{m}.jsonl").is_file()]
    llm = tuple(m for m in methods if m not in classic)
    score_rows = {m: _by_user(scores_dir / f"{m}.jsonl") for m in llm}
    rationales = {m: _by_user(scores_dir / f"{m}{rationale_log.SUFFIX}") for m in llm}
    outputs = {m: _by_user(scores_dir / f"{m}.outputs.jsonl") for m in llm}
    evaluated = list(next(iter(score_rows.values()), {}))
    order = rationale_log.sample_users(evaluated, num_users, seed=int((config or {}).get("seed", 0)))
    order = [u for u in order if all(u in score_rows[m] for m in llm)]
    bench = wd.benchmark if wd.benchmark.is_dir() else pathlib.Path(results.get("benchmark", {}).get("path", ""))
    split = results.get("benchmark", {}).get("split", "test")
    titles = {str(o["item_id"]): str(o.get("title", o["item_id"])) for _, o in iter_jsonl(bench / "items.jsonl")} \
        if (bench / "items.jsonl").is_file() else {}
    records = _by_user(bench / f"{split}.jsonl") if order else {}
    missing = [u for u in order if u not in records]
    if missing:
        raise MissingInputError(f"report: users {missing[:3]} of the score files are not in {bench / (split + '.jsonl')}")
    views = []
    for user in order:
        rec = records[user]
        per_method = tuple(_method_view(m, rec, titles, score_rows[m][user], rationales[m].get(user),
                                        outputs[m].get(user)) for m in llm)
        views.append(UserView(user, rec.get("profile"), tuple(titles.get(str(h), str(h)) for h in rec["history"]),
                              per_method))
    return ReportData(wd.root, results, config, read_metrics(wd.metrics), analyses, tuple(views), llm)
