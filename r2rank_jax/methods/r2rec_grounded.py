"""R2Rec's chain teacher for real data (`teacher.kind="grounded"`): Step lines over the title evidence.

It plays both roles of `r2rec_teacher.progressive_traces` on `ChainPair` requests:

- **write** (answer-conditioned, as the procedure asks): one step per shown chain (at most ``max_steps``)
  naming what the chain's two items share (platform, series key, title words; `grounded_evidence`),
  then one step on the hinted candidate, citing the chains (or, without chains, the liked items) that
  share its platform, series or title words, and stating those claims: only what links it to the shown
  items (a shared platform, a shared series, shared words), never its own title, so a claim cannot
  identify the candidate by itself. The ranking puts the hinted
  candidate first, the others by the grounded match score (`teacher.grounded.match_score`).
- **verify** (no hint; the steps possibly masked): ranks the candidates by how many of the claims of
  the last ``candidate`` step each one satisfies (platform named, same series, each claimed word in its
  title), ties by the match score; a candidate still cited by number gets first place. So at level 2,
  where the answer's number and title are masked, the trace survives only if its stated evidence picks
  the positive out of the K candidates.

The evidence of a candidate is computed against every item the prompt shows (the liked items H1..Hm and
the chains' items), with the train popularity of `grounded_evidence.EvidenceIndex`.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np

from r2rank_jax.methods.r2rec_teacher import ChainPair, ranking_text
from r2rank_jax.teacher.base import TeacherReply, TeacherRequest
from r2rank_jax.teacher.grounded import WEIGHTS, Weights, match_score
from r2rank_jax.teacher.grounded_evidence import EvidenceIndex, same_franchise

_CLAIM = re.compile(r"candidate (?:\[\d+\]|\[MASK\]) (?P<claims>.*?)(?:; fits|$)")


def _shown(pair: ChainPair) -> tuple[str, ...]:
    seen = dict.fromkeys(pair.items)
    for c in pair.chains:
        seen.update(dict.fromkeys((c.item, c.back_item)))
    return tuple(seen)


class GroundedChainTeacher:
    def __init__(self, index: EvidenceIndex, weights: Weights = WEIGHTS, max_steps: int = 2):
        self.index, self.weights, self.max_steps = index, weights, max_steps
        self.name = "grounded_chains"

    def _scores(self, pair: ChainPair) -> np.ndarray:
        shown = _shown(pair)
        return np.asarray([match_score(self.index.evidence(pair.record, shown, c), self.weights)
                           for c in pair.record.candidates], np.float64)

    def _common(self, a: str, b: str) -> tuple[list[str], str | None, list[str]]:
        """(shared platforms, the shorter series key when the series match, shared words) of two items."""
        (pa, ka, wa), (pb, kb, wb) = self.index.features(a), self.index.features(b)
        series = min((ka, kb), key=len) if same_franchise(ka, kb) else None
        return sorted(set(pa) & set(pb)), series, sorted(wa & wb)

    def write(self, pair: ChainPair) -> str:
        cands = pair.record.candidates
        target = cands.index(pair.candidate)
        plats, key, words = self.index.features(pair.candidate)
        linked = lambda its: any(any(self._common(pair.candidate, i)) for i in its)  # noqa: E731
        numbered = list(enumerate(pair.chains, start=1))
        # the chains that link to the candidate first, at most max_steps of them
        numbered.sort(key=lambda nc: not linked((nc[1].item, nc[1].back_item)))
        steps = []
        for n, c in numbered[:self.max_steps]:
            plat, series, _ = self._common(c.item, c.back_item)
            common = (["/".join(plat[:2])] if plat else []) + ([f"series '{series}'"] if series else [])
            steps.append(f"Step {len(steps) + 1}: C{n} items share {', '.join(common) or 'no platform or series'}.")
        fit_chains = [f"C{n}" for n, c in enumerate(pair.chains, start=1) if linked((c.item, c.back_item))]
        fit_items = [f"H{h}" for h, i in enumerate(pair.items, start=1) if linked((i,))]
        shown = [self.index.features(i) for i in _shown(pair)]
        shared = sorted(words & frozenset().union(*(w for _, _, w in shown)))[:3]
        plats = sorted(set(plats) & {p for ps, _, _ in shown for p in ps})
        claims = [f"on {'/'.join(plats[:2])}"] if plats else []
        if key and any(same_franchise(key, k) for _, k, _ in shown):
            claims.append(f"series '{key}'")
        if shared:
            claims.append("words " + " ".join(shared))
        if fit_chains:
            fit_text = ", ".join(fit_chains[:3])
        else:
            fit_text = ", ".join(fit_items[-3:]) or "no liked item"
            if pair.chains:
                fit_text += f", not C1-C{len(pair.chains)}"
        steps.append(f"Step {len(steps) + 1}: candidate [{target + 1}] {', '.join(claims) or 'no evidence'}; "
                     f"fits {fit_text}.")
        order = [target] + [int(k) for k in np.argsort(-self._scores(pair), kind="stable") if k != target]
        return "\n".join(steps) + "\n" + ranking_text([k + 1 for k in order])

    def verify(self, pair: ChainPair) -> str:
        cands = pair.record.candidates
        score = self._scores(pair)
        text = "\n".join(pair.steps)
        cited = [int(m) for m in re.findall(r"candidate \[(\d+)\]", text) if 1 <= int(m) <= len(cands)]
        if cited:
            score[cited[-1] - 1] += 1000.0
        claims = [m.group("claims") for m in _CLAIM.finditer(text)]
        if claims:
            score += 100.0 * np.asarray([self._satisfied(claims[-1], c) for c in cands], np.float64)
        return ranking_text([int(k) + 1 for k in np.argsort(-score, kind="stable")])

    def _satisfied(self, claims: str, item: str) -> int:
        plats, key, words = self.index.features(item)
        n = 0
        if m := re.match(r"on ([^,]+)", claims):
            n += bool(set(m.group(1).split("/")) & set(plats))
        if m := re.search(r"series '([^']+)'", claims):
            n += same_franchise(m.group(1), key)
        if m := re.search(r"words ([^,;]+)", claims):
            n += sum(w in words for w in m.group(1).split())
        return n

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        for r in requests:
            if not isinstance(r.pair, ChainPair):
                raise TypeError("GroundedChainTeacher needs ChainPair requests (r2rank_jax.methods.r2rec_teacher)")
            yield TeacherReply(request=r, text=self.write(r.pair) if r.pair.stage == "write" else self.verify(r.pair))

    def close(self) -> None:
        pass
