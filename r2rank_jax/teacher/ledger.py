"""The output directory of a synthesis run: the corpus, the ``done.jsonl`` ledger and ``stats.json``.

- ``corpus.jsonl``: one line per accepted example (format in `corpus_line`);
- ``done.jsonl``: one line per answered or failed request, ``{"user_id", "candidate", "label",
  "attempt", "outcome", "failure", "decision", "requests", "attempt_errors", "error"}`` with
  outcome one of `OUTCOMES`, plus ``"response_tail"`` (the last 200 characters) for rejected answers;
- ``stats.json``: `compute_stats` over the whole ledger plus the counters of the latest run.

Both JSONL files are appended and flushed per reply (corpus line first). On load, a torn last line
(a crash mid-write) is cut off, and a pair found in the corpus counts as accepted even if its ledger
line was lost, so a rerun never duplicates an example.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections import Counter, defaultdict
from typing import Any

from r2rank_jax.data.benchmark import dumps

CORPUS, LEDGER, STATS = "corpus.jsonl", "done.jsonl", "stats.json"
# accepted: decision == label; rejected: the other decision; parse_failure: no decision found;
# leak: the response refers to the rationalization hint; failed: no response (transport/format error).
OUTCOMES: tuple[str, ...] = ("accepted", "rejected", "parse_failure", "leak", "failed")
LABEL_NAMES = {1: "positive", 0: "negative"}

Key = tuple[str, str]


def _read_jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
    """Objects of a JSONL file written by this module; a torn final line is cut from the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    out = []
    for lineno, line in enumerate(data[:end].decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg}); remove the line to resume") from None
    return out


class RunDirectory:
    """Appends to the corpus and the ledger; answers which pairs are done."""

    def __init__(self, out_dir: str | os.PathLike[str]):
        self.dir = pathlib.Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.entries = _read_jsonl(self.dir / LEDGER)
        self.corpus_keys = {(o["user_id"], o["candidate"]) for o in _read_jsonl(self.dir / CORPUS)}
        self._asked: Counter[Key] = Counter((e["user_id"], e["candidate"]) for e in self.entries)
        self._answered: Counter[Key] = Counter(
            (e["user_id"], e["candidate"]) for e in self.entries if e["outcome"] != "failed")
        self._corpus = open(self.dir / CORPUS, "a", encoding="utf-8")
        self._ledger = open(self.dir / LEDGER, "a", encoding="utf-8")

    def is_done(self, key: Key, max_attempts: int) -> bool:
        """Accepted, or ``max_attempts`` answers already rejected. Failed requests do not count: a rerun retries them."""
        return key in self.corpus_keys or self._answered[key] >= max_attempts

    def next_attempt(self, key: Key) -> int:
        return self._asked[key] + 1

    def record(self, entry: dict[str, Any], corpus_line: dict[str, Any] | None) -> None:
        key = (entry["user_id"], entry["candidate"])
        if corpus_line is not None:
            self._corpus.write(dumps(corpus_line) + "\n")
            self._corpus.flush()
            self.corpus_keys.add(key)
        self._ledger.write(dumps(entry) + "\n")
        self._ledger.flush()
        self.entries.append(entry)
        self._asked[key] += 1
        if entry["outcome"] != "failed":
            self._answered[key] += 1

    def write_stats(self, stats: dict[str, Any]) -> None:
        tmp = self.dir / (STATS + ".tmp")
        tmp.write_text(dumps(stats, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.dir / STATS)

    def close(self) -> None:
        self._corpus.close()
        self._ledger.close()


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def compute_stats(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over ledger entries: per label, responses by outcome and the acceptance rate among
    answered requests, and pairs with an accepted example; failures by kind; requests made."""
    per_label: dict[str, dict[str, Any]] = {}
    pairs: dict[int, dict[Key, bool]] = defaultdict(dict)
    for e in entries:
        key = (e["user_id"], e["candidate"])
        pairs[e["label"]][key] = pairs[e["label"]].get(key, False) or e["outcome"] == "accepted"
    for label, name in LABEL_NAMES.items():
        outcomes = Counter(e["outcome"] for e in entries if e["label"] == label)
        answered = sum(n for o, n in outcomes.items() if o != "failed")
        accepted_pairs = sum(pairs[label].values())
        per_label[name] = {
            **{o: outcomes.get(o, 0) for o in OUTCOMES},
            "answered": answered,
            "acceptance_rate": _rate(outcomes.get("accepted", 0), answered),
            "pairs": len(pairs[label]),
            "pairs_accepted": accepted_pairs,
            "pair_acceptance_rate": _rate(accepted_pairs, len(pairs[label])),
        }
    outcomes = Counter(e["outcome"] for e in entries)
    answered = sum(n for o, n in outcomes.items() if o != "failed")
    failures: Counter[str] = Counter()
    for e in entries:
        if e["outcome"] == "failed":
            failures[e["failure"]] += 1
        elif e["outcome"] != "accepted":
            failures["wrong_decision" if e["outcome"] == "rejected" else e["outcome"]] += 1
    return {
        "requests": sum(e.get("requests", 0) for e in entries),
        "responses": len(entries),
        "answered": answered,
        "accepted": outcomes.get("accepted", 0),
        "parse_failures": outcomes.get("parse_failure", 0),
        "acceptance_rate": _rate(outcomes.get("accepted", 0), answered),
        "per_label": per_label,
        "failures_by_kind": dict(sorted(failures.items())),
        "request_errors_by_kind": dict(sorted(Counter(k for e in entries for k in e.get("attempt_errors", ())).items())),
    }
