"""A grounded programmatic teacher for real data: reasons over title evidence and train popularity.

For a (user, candidate) pair it reads the `grounded_evidence.Evidence` of the candidate against the shown
history (platforms, franchise key, shared title words, popularity percentile), scores it

    match = w_platform * [some history item names a candidate platform] + w_share * platform_share
            + w_franchise * [some history item is of the candidate's franchise]
            + w_words * min(#shared words, WORD_CAP) + w_popularity * percentile

and recommends when ``match >= threshold``. `WEIGHTS` and `THRESHOLD` were fitted on the train split only
(`r2rank_jax.analyses.grounded_fit`: maximal balanced accuracy of the rule on train pairs, ties broken by the train pairs' AUC;
docs/study.md, "Teacher"). The reply has the three sections of the self-reflective prompt (~60-90 SmolLM2
tokens) and the answer tag. No randomness: the reply depends only on the pair and the attempt.

Attempts: attempt 1 is the rule's own decision. A later attempt whose message carries the answer-conditioned
hint (`teacher.prompts.rationalization_message`, i.e. synthesis with ``rationalize`` on and
``max_attempts`` >= 2) argues for the hinted decision from the same evidence and says in the self-check
which evidence speaks against it. The study does not use it (docs/study.md explains why).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence

from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND, clean_text
from r2rank_jax.teacher.base import Pair, TeacherReply, TeacherRequest
from r2rank_jax.teacher.grounded_evidence import Evidence, EvidenceIndex
from r2rank_jax.teacher.prompts import answer_tag, rationalization_message

WORD_CAP = 3
FEATURES = ("platform", "share", "franchise", "words", "popularity")


@dataclasses.dataclass(frozen=True)
class Weights:
    platform: float = 2.0
    share: float = 3.0
    franchise: float = 3.0
    words: float = 1.5
    popularity: float = 0.25

    def __post_init__(self) -> None:
        for f in FEATURES:
            if getattr(self, f) < 0:
                raise ValueError(f"grounded teacher weight {f} must be >= 0, got {getattr(self, f)}")


WEIGHTS = Weights()
THRESHOLD = 0.8762


def feature_vector(e: Evidence) -> tuple[float, ...]:
    """The rule's inputs in `FEATURES` order."""
    return (float(e.platform_items > 0), e.platform_share, float(e.franchise_items > 0),
            float(min(len(e.shared_words), WORD_CAP)), e.percentile)


def match_score(e: Evidence, weights: Weights = WEIGHTS) -> float:
    return sum(getattr(weights, f) * x for f, x in zip(FEATURES, feature_vector(e)))


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def signals(e: Evidence) -> int:
    """How many of the three title signals (platform, series, words) connect the candidate to the history."""
    return int(e.platform_items > 0) + int(e.franchise_items > 0) + int(bool(e.shared_words))


def platform_text(e: Evidence, cap: int = 2) -> str:
    """The candidate's platforms, those the history names first (most named first), at most ``cap`` (+ the rest's count)."""
    order = [p for p in e.history_platforms if p in e.platforms] + [p for p in e.platforms
                                                                   if p not in e.history_platforms]
    return "/".join(order[:cap]) + (f" +{len(order) - cap}" if len(order) > cap else "")


def rationale(e: Evidence, score: float, threshold: float, decision: str, argued: bool = False) -> str:
    """The three sections and the answer tag (``argued``: the decision is the hinted one, not the rule's)."""
    n = e.num_history
    if e.platforms:
        plat = f"platform {platform_text(e)} in {e.platform_items}/{n}"
        if e.top_platform and not e.platform_items:
            plat += f" (mostly {e.top_platform})"
    else:
        plat = "platform unknown"
    series = f"series '{e.franchise}' in {e.franchise_items}" if e.franchise_items else "no shared series"
    words = f"shared words {' '.join(e.shared_words[:3])}" if e.shared_words else "no shared words"
    notes = [f"only {n} items"] if n < 4 else []   # Games-6k histories have >= 4 items
    notes += ["popularity alone is weak", f"{signals(e)} of 3 signals match"]
    fits = score >= threshold
    if argued:
        notes.append("yet other tastes may differ" if fits else "yet the history may not show every taste")
    verdict = "I recommend it." if decision == RECOMMEND else "I do not recommend it."
    return "\n".join([f"#Initial reasoning: {plat}; {series}; {words}; popularity {e.bucket}.",
                      f"#Self-check: {'; '.join(notes)}.",
                      f"#Final conclusion and suggestion: match {_fmt(score)} "
                      f"{'above' if fits else 'below'} {_fmt(threshold)}, {verdict}",
                      answer_tag(decision)])


class GroundedTeacher:
    """`Teacher` over an `EvidenceIndex` (see the module docstring)."""

    def __init__(self, index: EvidenceIndex, weights: Weights = WEIGHTS, threshold: float = THRESHOLD):
        self.index, self.weights, self.threshold = index, weights, threshold
        self.name = f"grounded(threshold={threshold:g})"

    @classmethod
    def from_benchmark(cls, benchmark_dir: str | os.PathLike[str], weights: Weights = WEIGHTS,
                       threshold: float = THRESHOLD) -> GroundedTeacher:
        from r2rank_jax.data.benchmark import load_items, load_split

        return cls(EvidenceIndex.from_split(load_titles(load_items(benchmark_dir)),
                                            load_split(benchmark_dir, "train")), weights, threshold)

    def evidence(self, pair: Pair) -> Evidence:
        return self.index.evidence(pair.record, pair.history, pair.candidate)

    def score(self, pair: Pair) -> float:
        return match_score(self.evidence(pair), self.weights)

    def reason(self, request: TeacherRequest) -> str:
        pair = request.pair
        e = self.evidence(pair)
        score = match_score(e, self.weights)
        decision = RECOMMEND if score >= self.threshold else NOT_RECOMMEND
        hinted = _hinted_decision(request)
        argued = request.attempt > 1 and hinted is not None and hinted != decision
        return rationale(e, score, self.threshold, hinted if argued else decision, argued)

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        for r in requests:
            yield TeacherReply(request=r, text=self.reason(r))

    def close(self) -> None:
        pass


def load_titles(items: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """item id -> the title as prompts show it (HTML-unescaped, one line)."""
    return {i: clean_text(str(obj["title"])) for i, obj in items.items()}


def _hinted_decision(request: TeacherRequest) -> str | None:
    """The decision the answer-conditioned hint names, when the message carries it."""
    for decision in (RECOMMEND, NOT_RECOMMEND):
        if request.message == rationalization_message(request.pair.user_message, decision):
            return decision
    return None
