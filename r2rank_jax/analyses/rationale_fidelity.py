"""How faithfully a trained model's rationales restate the grounded teacher's evidence, on evaluated users.

    python -m r2rank_jax.analyses.rationale_fidelity --workdir RUN [--methods r2rank,sft_only] [--out DIR]

(The study runner runs it in its `analyses` unit, on R2Rank's run.)

The eval stage keeps the greedy rationales of a seeded sample of its users (`eval.rationale_log`,
`RUN/eval/scores/METHOD.rationales.jsonl`, 32 users x K candidates). For each of them this rebuilds what
the grounded teacher (`teacher.grounded`, the study's teacher) would have written for the same pair, from
the benchmark's titles and train popularity, and compares the two field by field:

    #Initial reasoning: platform P in n/N [(mostly Q)]; series 'S' in m | no shared series; shared words W | no shared words; popularity B.
    #Final conclusion and suggestion: match X above|below T, ...
    <answer>Recommend|Not Recommend</answer>

- `platform`, `series`, `words`, `popularity`: the model wrote exactly the teacher's text for that field (the
  platform field needs the candidate's platform read from its title and the history counted, the series
  and words fields need the history compared with the candidate; the popularity bucket is train
  popularity, which the prompt does not show); `platform_name` and `platform_count` split the platform
  field into the candidate's platforms (read from its title) and the "n/N" count over the history;
- `first_line`: all four at once; `match`: the same match number; `decision`: the same answer as the
  teacher's rule; `decision_correct`: Recommend for the positive, Not Recommend for a negative;
- `constant_agreement`: the base rate of each field, the share a model that always wrote the teacher's most
  common text for it would get (most pairs share no series and no words with the history, so high
  agreement there is cheap);
- `ndcg@10` of three rankings of the recorded users' candidates: by the teacher's match score (what the
  rationales would say if every one were right), by the match number the model wrote (unparsed: lowest),
  and by the method's own scores (its score file), ties at their expected value.

The history is the record's (the prompt budget may show fewer items; with the study's `data.history_len=10`
and 384 prompt tokens that cut is rare, as in `analyses.grounded_fit`). Only meaningful for a run whose
teacher is the grounded one: the texts are compared with that teacher's format; for a run with another
teacher (`teacher.kind`) the command writes a summary that says it was skipped, and why.
"""
from __future__ import annotations

import json
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from r2rank_jax.analyses import common
from r2rank_jax.data.benchmark import Record, load_items, load_split
from r2rank_jax.data.errors import DataError
from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.eval.per_user import per_user_metrics
from r2rank_jax.eval.rationale_log import SUFFIX
from r2rank_jax.eval.score_files import read_score_file
from r2rank_jax.run.workdir import MissingInputError, Workdir
from r2rank_jax.teacher.grounded import THRESHOLD, load_titles, match_score, rationale
from r2rank_jax.teacher.grounded_evidence import EvidenceIndex

FIELDS = ("platform", "series", "words", "popularity")
# platform_name: the candidate's platforms (read from its title); platform_count: "n/N" (the history counted)
CHECKS = ("platform_name", "platform_count", *FIELDS, "first_line", "match", "decision", "decision_correct")
_PLATFORM = re.compile(r"platform (.+?) in (\d+/\d+)")
_FIRST = re.compile(r"#Initial reasoning: (.*)")
_MATCH = re.compile(r"match (-?\d+(?:\.\d+)?) (?:above|below)")
UNPARSED = -1e9         # the written match of a rationale without one: below every real one
_ANSWER = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.S)


def fields(text: str) -> dict[str, str | None]:
    """The four first-line fields, the match number and the answer of a grounded-format rationale (None where
    the text has none)."""
    out: dict[str, str | None] = dict.fromkeys((*FIELDS, "platform_name", "platform_count", "match", "answer"))
    first = _FIRST.search(text)
    if first:
        parts = first.group(1).strip().removesuffix(".").split("; ")
        if len(parts) == 4:
            out.update(zip(FIELDS, parts))
            platform = _PLATFORM.match(parts[0])
            if platform:
                out["platform_name"], out["platform_count"] = platform.groups()
            elif parts[0] == "platform unknown":
                out["platform_name"] = "unknown"
    match = _MATCH.search(text)
    out["match"] = match.group(1) if match else None
    answer = _ANSWER.search(text)
    out["answer"] = answer.group(1) if answer else None
    return out


def _ndcg(scores: Sequence[Sequence[float]], positives: Sequence[int]) -> float:
    """Mean NDCG@10 of `[N, K]` scores, ties at their expected value."""
    return float(per_user_metrics(np.asarray(scores, dtype=np.float64), np.asarray(positives))["ndcg@10"].mean())


def compare(records: Sequence[Record], logged: Sequence[Mapping[str, Any]], index: EvidenceIndex,
            own_scores: Mapping[str, Sequence[float]] | None = None, source: str = "rationale log") -> dict[str, Any]:
    """The checks and rankings of the module docstring for one method's logged rationales (`logged[i]` is line
    i + 1 of the file `source`)."""
    by_user = {r.user_id: r for r in records}
    hits = {c: 0 for c in CHECKS}
    wanted: dict[str, Counter] = {f: Counter() for f in (*FIELDS, "platform_name", "platform_count", "match", "answer")}
    parsed = total = 0
    teacher_rows, written_rows, own_rows, positives = [], [], [], []
    for line, entry in enumerate(logged, 1):
        record = by_user.get(str(entry["user_id"]))
        if record is None:
            raise DataError(source, line, f"user {entry['user_id']!r} is not in the evaluated split")
        if list(entry["candidates"]) != list(record.candidates):
            raise DataError(source, line, f"user {record.user_id!r}'s candidates differ from the benchmark's")
        teacher_row, written_row = [], []
        for candidate, text in zip(record.candidates, entry["rationales"]):
            e = index.evidence(record, record.history, candidate)
            score = match_score(e)
            decision = RECOMMEND if score >= THRESHOLD else NOT_RECOMMEND
            want, got = fields(rationale(e, score, THRESHOLD, decision)), fields(text)
            total += 1
            for f, counts in wanted.items():
                counts[want[f]] += 1
            parsed += all(got[f] is not None for f in (*FIELDS, "match", "answer"))
            for f in (*FIELDS, "platform_name", "platform_count"):
                hits[f] += got[f] == want[f]
            hits["first_line"] += all(got[f] == want[f] for f in FIELDS)
            hits["match"] += got["match"] == want["match"]
            hits["decision"] += got["answer"] == decision
            truth = RECOMMEND if candidate == record.positive else NOT_RECOMMEND
            hits["decision_correct"] += got["answer"] == truth
            teacher_row.append(score)
            written_row.append(float(got["match"]) if got["match"] is not None else UNPARSED)
        teacher_rows.append(teacher_row)
        written_rows.append(written_row)
        positives.append(record.candidates.index(record.positive))
        if own_scores is not None:
            own_rows.append(list(own_scores[record.user_id]))
    out: dict[str, Any] = {
        "users": len(logged), "rationales": total, "parsed": parsed / total if total else None,
        "agreement": {c: hits[c] / total if total else None for c in CHECKS},
        # what writing the teacher's most common text for each field would agree (the base rate to beat)
        "constant_agreement": {f: max(wanted[f].values()) / total if total else None
                               for f in ("platform_name", "platform_count", *FIELDS, "match")},
        "ndcg@10": {"teacher_rule": _ndcg(teacher_rows, positives),
                    "written_match": _ndcg(written_rows, positives)},
    }
    if own_rows:
        out["ndcg@10"]["own_scores"] = _ndcg(own_rows, positives)
    return out


def render_markdown(summary: Mapping[str, Any]) -> str:
    if summary.get("skipped"):
        return f"# Rationale fidelity to the grounded teacher\n\nSkipped: {summary['skipped']}.\n"
    methods = summary["methods"]
    lines = [f"# Rationale fidelity to the grounded teacher ({summary['split']} split)", "",
             "Each logged greedy rationale against the text the grounded teacher writes for the same pair: the share "
             "that states each field exactly as the teacher does.", "",
             "| method | users × candidates | parsed | " + " | ".join(CHECKS) + " |",
             "|---|---:|---:|" + "---:|" * len(CHECKS)]
    for name, m in methods.items():
        lines.append(f"| {name} | {m['users']} × {m['rationales'] // max(m['users'], 1)} | {common.fmt(m['parsed'], 3)} | "
                     + " | ".join(common.fmt(m["agreement"][c], 3) for c in CHECKS) + " |")
    lines += ["", "The base rate: a model that always wrote the teacher's most common text for a field would agree on "
              "this share of the same pairs.", "",
              "| method | " + " | ".join(methods[next(iter(methods))]["constant_agreement"]) + " |",
              "|---|" + "---:|" * len(methods[next(iter(methods))]["constant_agreement"])] if methods else []
    for name, m in methods.items():
        lines.append(f"| {name} (constant) | " + " | ".join(common.fmt(v, 3) for v in m["constant_agreement"].values())
                     + " |")
    lines += ["", "NDCG@10 on the same users: ranked by the teacher's match score (every rationale right), by the "
              "match number the model wrote, and by the method's own scores.", "",
              "| method | teacher's rule | written match | own scores |", "|---|---:|---:|---:|"]
    for name, m in methods.items():
        n = m["ndcg@10"]
        lines.append(f"| {name} | {common.fmt(n['teacher_rule'])} | {common.fmt(n['written_match'])} | "
                     f"{common.fmt(n.get('own_scores'))} |")
    return "\n".join(lines) + "\n"


def plot(summary: Mapping[str, Any]):
    fig, axes = common.figure(width=6.5)
    ax = axes[0][0]
    if summary.get("skipped"):
        ax.text(0.5, 0.5, "skipped", ha="center", va="center")
        ax.set_axis_off()
        return fig
    names = list(summary["methods"])
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = [summary["methods"][name]["agreement"][c] or 0.0 for c in CHECKS]
        ax.bar(np.arange(len(CHECKS)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(CHECKS)) + width * (len(names) - 1) / 2, CHECKS, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share stated as the teacher does")
    ax.legend()
    return fig


def _read_log(path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise MissingInputError(f"{path} is missing: run the eval stage of this workdir first (it logs the "
                                "rationales of a sample of users)")
    out = []
    for line, text in enumerate(path.read_text(encoding="utf-8").rstrip("\n").split("\n"), 1):
        try:
            entry = json.loads(text)
            if not isinstance(entry, dict) or not {"user_id", "candidates", "rationales"} <= entry.keys():
                raise ValueError("needs user_id, candidates and rationales")
        except ValueError as e:
            raise DataError(path, line, f"not a rationale-log line ({e})") from None
        out.append(entry)
    return out


def main(argv: list[str] | None = None) -> int:
    p = common.parser("rationale_fidelity", __doc__)
    p.add_argument("--methods", default="r2rank,sft_only", help="comma-separated methods whose rationales to check")
    p.add_argument("--max-users", type=int, default=None,
                   help="accepted for the study runner's analyses; not used: the checked users are those the eval "
                        "stage logged")
    p.add_argument("--skip_missing_log", action="store_true",
                   help="when a method's rationale log is missing (a run trained again without its eval, e.g. the "
                        "study's --retrain_archived), write a summary that says the check was skipped, and why")
    args = p.parse_args(argv)
    wd = Workdir(args.workdir)
    cfg = common.load_config(wd)
    if cfg.teacher.kind != "grounded":
        summary = {"analysis": "rationale_fidelity", "split": cfg.eval.split, "teacher": cfg.teacher.kind,
                   "skipped": f"the run's teacher is {cfg.teacher.kind!r}; the check compares with the grounded "
                              "teacher's text", "methods": {}}
        common.write_outputs(common.output_dir(args), "rationale_fidelity", summary, render_markdown(summary),
                             plot(summary))
        return 0
    benchmark = wd.require(wd.benchmark, "the benchmark", "prepare")
    records = load_split(benchmark, cfg.eval.split)
    index = EvidenceIndex.from_split(load_titles(load_items(benchmark)), load_split(benchmark, "train"))
    summary: dict[str, Any] = {"analysis": "rationale_fidelity", "split": cfg.eval.split,
                               "teacher": cfg.teacher.kind, "methods": {}}
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    missing = [wd.eval / "scores" / f"{name}{SUFFIX}" for name in names
               if not (wd.eval / "scores" / f"{name}{SUFFIX}").is_file()]
    if missing and args.skip_missing_log:
        summary["skipped"] = (f"no rationale log in this run ({', '.join(str(m) for m in missing)}): its eval stage "
                              "did not run here (a run trained again without its eval)")
        common.write_outputs(common.output_dir(args), "rationale_fidelity", summary, render_markdown(summary),
                             plot(summary))
        return 0
    for name in names:
        scores_dir = wd.eval / "scores"
        logged = _read_log(scores_dir / f"{name}{SUFFIX}")
        own = None
        if (scores_dir / f"{name}.jsonl").is_file():
            f = read_score_file(scores_dir / f"{name}.jsonl")
            own = {u: s for u, s in zip(f.user_ids, f.scores)}
        summary["methods"][name] = compare(records, logged, index, own, source=str(scores_dir / f"{name}{SUFFIX}"))
    common.write_outputs(common.output_dir(args), "rationale_fidelity", summary, render_markdown(summary), plot(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
