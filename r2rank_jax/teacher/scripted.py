"""A scripted teacher for the synthetic world: reasons over the items' known attributes.

For a (user, candidate) pair it counts how many of the shown history items share the candidate's
genre, platform and brand, scores the match with the world's taste weights
(`synthetic.attribute_match_scores`, plus a bonus when the profile's favorite platform matches) and
recommends when the score reaches ``threshold``. The rule alone is right for roughly 80% of pairs of
the default world; with probability ``noise`` the decision is flipped (the text then argues for the
flipped decision), so the correctness filter has work to do. Each response has the three sections of
the self-reflective prompt and ends with the answer tag. Deterministic in (seed, user, candidate,
attempt).

Five styles: ``full`` (sentences, ~250 tokens with the synthetic world's tokenizer), ``concise``
(the same evidence as counts, ~60 tokens: short enough for CPU-sized RL rollouts), ``graded``
(concise, plus the match score floored to a level 0..7 in the self-check and again in the conclusion,
right before the answer: a graded signal next to the last hidden state the scoring head reads) and
``stepwise`` (the counts of ``graded`` worked out in local steps: the candidate's attributes, then one
line per shown history item with its attribute values, each followed by ``same`` or ``no`` (equal to
the candidate's?), then the counts, then the level and decision as in ``graded``)::

    #Initial reasoning: candidate Racing PS5 Vortex Games.
    1: Racing same PS4 no Vortex Games same
    2: Puzzle no PS5 same Red Maple no
    genre 1/2, platform 1/2, brand 1/2, favorite platform matches.
    #Self-check: the evidence is clear, match level 4 of 7.
    #Final conclusion and suggestion: level 4, I recommend it.
    <answer>Recommend</answer>

``tally`` is ``stepwise`` turned by attribute, with running counts, so that each count is the previous count
plus the mark just written (no count has to add up marks spread over several lines), and each mark compares
the value just written with the candidate's at the start of the same line::

    #Initial reasoning:
    genre Racing: Racing same 1, Puzzle no 1.
    platform PS5: PS4 no 0, PS5 same 1.
    brand Vortex Games: Vortex Games same 1, Red Maple no 1.
    genre 1/2, platform 1/2, brand 1/2, favorite platform matches.
    #Self-check: the evidence is clear, match level 4 of 7.
    #Final conclusion and suggestion: level 4, I recommend it.
    <answer>Recommend</answer>

In ``stepwise``, each token of a history line then needs one short lookup: the item's value (copied from the
item's entry in the prompt), the mark right after it (that value against the candidate's, written at
a fixed place at the start of the rationale); the counts count the marks of one slot. Long: 123-154
tokens (mean 135) for 5-item histories with the demo world's tokenizer (an attribute value is 1-3
tokens), so the SFT response bucket and the RL/eval ``max_new_tokens`` need 160; ``tally``: 163-194 tokens
(mean 175), they need 200.
"""
from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.data.synthetic import attribute_match_scores
from r2rank_jax.teacher.base import Pair, TeacherReply, TeacherRequest
from r2rank_jax.teacher.prompts import answer_tag

PROFILE_BONUS = 0.5
_NAMES = {"genre": "genre", "platform": "platform", "brand": "brand"}
STYLES = ("full", "concise", "graded", "stepwise", "tally")
MAX_LEVEL = 7   # "graded"/"stepwise"/"tally": the match score floored to 0..MAX_LEVEL (the default world's scores reach 7.6)
SAME, DIFFERENT = "same", "no"   # "stepwise"/"tally": a history item's value equals / differs from the candidate's


def _favorite_platform(profile: str | None) -> str | None:
    for part in (profile or "").split(";"):
        name, _, value = part.partition(":")
        if name.strip() == "favorite_platform" and value.strip():
            return value.strip()
    return None


class ScriptedTeacher:
    def __init__(self, attributes: Mapping[str, Mapping[str, str]], noise: float = 0.1, threshold: float = 1.3,
                 seed: int = 0, style: str = "full"):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise}")
        if style not in STYLES:
            raise ValueError(f"scripted teacher style must be one of {STYLES}, got {style!r}")
        self.style = style
        self.attributes = attributes
        self.noise = noise
        self.threshold = threshold
        self.seed = seed
        self.name = f"scripted(noise={noise:g})" if style == "full" else f"scripted(noise={noise:g},style={style})"

    def match_score(self, pair: Pair) -> float:
        score = float(attribute_match_scores(self.attributes, pair.history, [pair.candidate])[0])
        fav = _favorite_platform(pair.record.profile)
        if fav is not None and fav == self.attributes[pair.candidate]["platform"]:
            score += PROFILE_BONUS
        return score

    def reason(self, pair: Pair, attempt: int) -> str:
        rng = np.random.default_rng([self.seed, zlib.crc32(pair.record.user_id.encode()),
                                     zlib.crc32(pair.candidate.encode()), attempt])
        score = self.match_score(pair)
        fits = score >= self.threshold
        if rng.random() < self.noise:
            fits = not fits
        if self.style in ("concise", "graded"):
            return self._concise(pair, score, fits)
        if self.style in ("stepwise", "tally"):
            return self._stepwise(pair, score, fits)
        return "\n".join([self._initial(pair), self._self_check(pair, score), self._conclusion(pair, fits),
                          answer_tag(RECOMMEND if fits else NOT_RECOMMEND)])

    # ------------------------------------------------------------------------------ sections

    def _counts(self, history: Sequence[str], attr: str) -> Counter[str]:
        return Counter(self.attributes[h][attr] for h in history)

    def _initial(self, pair: Pair) -> str:
        cand = self.attributes[pair.candidate]
        n = len(pair.history)
        lines = [f"#Initial reasoning: The candidate is a {cand['genre']} game on {cand['platform']} by "
                 f"{cand['brand']}. The user context lists {n} interacted items."]
        for attr in ("genre", "platform", "brand"):
            counts = self._counts(pair.history, attr)
            k = counts.get(cand[attr], 0)
            top, top_k = counts.most_common(1)[0] if counts else ("none", 0)
            text = f"{k} of {n} items share the candidate's {_NAMES[attr]} ({cand[attr]})"
            if top != cand[attr] and top_k:
                text += f", while the most frequent {_NAMES[attr]} is {top} ({top_k} items)"
            lines.append(f"- {_NAMES[attr].capitalize()}: {text}.")
        fav = _favorite_platform(pair.record.profile)
        if fav is not None:
            same = "matches" if fav == cand["platform"] else "differs from"
            lines.append(f"- Profile: the favorite platform is {fav}, which {same} the candidate's platform.")
        return "\n".join(lines)

    def _self_check(self, pair: Pair, score: float) -> str:
        cand = self.attributes[pair.candidate]
        notes = []
        n = len(pair.history)
        if n < 8:
            notes.append(f"The history is short ({n} items), so these shares are uncertain.")
        brand_k = self._counts(pair.history, "brand").get(cand["brand"], 0)
        if brand_k == 1:
            notes.append("A single item of the same brand is weak evidence and should not be over-weighted.")
        if pair.history:
            last = self.attributes[pair.history[-1]]
            same = "matches" if last["genre"] == cand["genre"] else "does not match"
            notes.append(f"The most recent item is a {last['genre']} game, which {same} the candidate; one recent "
                         "item matters less than the overall pattern.")
        margin = abs(score - self.threshold)
        notes.append("The overall evidence is " + ("clear." if margin > 0.5 else "close to the boundary, so the "
                                                   "decision is uncertain."))
        return "#Self-check: " + " ".join(notes)

    def _conclusion(self, pair: Pair, fits: bool) -> str:
        cand = self.attributes[pair.candidate]
        n = max(len(pair.history), 1)
        matched = [cand[a] for a in ("genre", "platform", "brand")
                   if self._counts(pair.history, a).get(cand[a], 0) / n >= 0.25]
        evidence = " and ".join(matched)
        if fits:
            text = (f"The candidate matches the user's preference for {evidence}, so it is likely to be enjoyed."
                    if matched else "The attribute overlap is modest, but nothing in the history speaks against "
                    "the candidate.")
            text += " I recommend it."
        else:
            text = (f"Although the candidate shares {evidence} with part of the history, the overall match with the "
                    "user's main preferences is too weak." if matched else
                    "The candidate does not match the user's main preferences in genre, platform or brand.")
            text += " I do not recommend it."
        return "#Final conclusion and suggestion: " + text

    def _concise(self, pair: Pair, score: float, fits: bool) -> str:
        cand = self.attributes[pair.candidate]
        n = len(pair.history)
        shares = ", ".join(f"{_NAMES[a]} {cand[a]} {self._counts(pair.history, a).get(cand[a], 0)}/{n}"
                           for a in ("genre", "platform", "brand"))
        fav = _favorite_platform(pair.record.profile)
        if fav is not None:
            shares += ", favorite platform " + ("matches" if fav == cand["platform"] else "differs")
        evidence = "clear" if abs(score - self.threshold) > 0.5 else "uncertain"
        decision = "I recommend it." if fits else "I do not recommend it."
        if self.style == "graded":
            level = min(int(np.floor(max(score, 0.0))), MAX_LEVEL)
            evidence += f", match level {level} of {MAX_LEVEL}"
            decision = f"level {level}, {decision}"
        return "\n".join([f"#Initial reasoning: {shares}.", f"#Self-check: the evidence is {evidence}.",
                          f"#Final conclusion and suggestion: {decision}",
                          answer_tag(RECOMMEND if fits else NOT_RECOMMEND)])

    def _stepwise(self, pair: Pair, score: float, fits: bool) -> str:
        attrs = ("genre", "platform", "brand")
        cand = self.attributes[pair.candidate]
        n = len(pair.history)
        if self.style == "tally":   # each line starts with the candidate's value: no candidate line
            lines = ["#Initial reasoning:", *(self._tally_line(pair.history, a, cand[a]) for a in attrs)]
        else:
            lines = ["#Initial reasoning: candidate " + " ".join(cand[a] for a in attrs) + "."]
            for i, h in enumerate(pair.history, start=1):
                item = self.attributes[h]
                lines.append(f"{i}: " + " ".join(f"{item[a]} {SAME if item[a] == cand[a] else DIFFERENT}"
                                                 for a in attrs))
        counts = ", ".join(f"{_NAMES[a]} {self._counts(pair.history, a).get(cand[a], 0)}/{n}" for a in attrs)
        fav = _favorite_platform(pair.record.profile)
        if fav is not None:
            counts += ", favorite platform " + ("matches" if fav == cand["platform"] else "differs")
        lines.append(counts + ".")
        evidence = "clear" if abs(score - self.threshold) > 0.5 else "uncertain"
        level = min(int(np.floor(max(score, 0.0))), MAX_LEVEL)
        decision = "I recommend it." if fits else "I do not recommend it."
        return "\n".join([*lines, f"#Self-check: the evidence is {evidence}, match level {level} of {MAX_LEVEL}.",
                          f"#Final conclusion and suggestion: level {level}, {decision}",
                          answer_tag(RECOMMEND if fits else NOT_RECOMMEND)])

    def _tally_line(self, history: Sequence[str], attr: str, value: str) -> str:
        """``genre Racing: Racing same 1, Puzzle no 1.``: each history item's value, its mark, the running count."""
        steps, k = [], 0
        for h in history:
            other = self.attributes[h][attr]
            k += other == value
            steps.append(f"{other} {SAME if other == value else DIFFERENT} {k}")
        return f"{_NAMES[attr]} {value}: " + (", ".join(steps) if steps else "none") + "."

    # ------------------------------------------------------------------------------ Teacher

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        for r in requests:
            yield TeacherReply(request=r, text=self.reason(r.pair, r.attempt))

    def close(self) -> None:
        pass
