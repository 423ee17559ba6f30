"""R2Rec reasoning traces by answer-conditioned progressive masked prompting, over our `Teacher` interface.

For one train user (its R2Rec prompt, chains and positive candidate [p]):

1. **write** (answer-conditioned): the teacher gets the prompt plus a hint naming the answer [p] and
   its title, and writes ``Step <n>:`` lines over the chains, then a ranking. No step → rejected.
2. **verify**, the hint progressively masked; at each level the teacher gets the prompt (no hint)
   plus the written steps, masked as below, and only outputs a ranking:
   - level 1: the hint is gone, the steps are shown as written;
   - level 2: also every mention of the answer in the steps (its number ``[p]`` and its title) is
     replaced by ``[MASK]``.
   The trace is kept only if the positive is ranked first at every level (checked in order; the
   first failure rejects it). The SFT response is the written steps plus the level-2 ranking.

Teachers: `ScriptedChainTeacher` on the synthetic world (it knows the items' attributes and the
world's preference model, `synthetic.attribute_match_scores`); on real data the local or OpenAI
teachers of `r2rank_jax.teacher.factory` (they see only `TeacherRequest.message`).
"""
from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from r2rank_jax.data.prompt_text import ANSWER_CLOSE, ANSWER_OPEN
from r2rank_jax.data.synthetic import attribute_match_scores
from r2rank_jax.eval.listwise import parse_listwise
from r2rank_jax.methods.r2rec_chains import Chain
from r2rank_jax.methods.r2rec_prompts import R2RecPrompt
from r2rank_jax.methods.r2rec_rewards import reasoning_steps
from r2rank_jax.teacher.base import Pair, Teacher, TeacherReply, TeacherRequest

MASK = "[MASK]"
LEVELS = (1, 2)
HINT = ("\n\nHint (for writing the reasoning only): the user's next item is candidate [{p}] \"{title}\". Write "
        "Step lines that use the chains to explain why it fits, without saying that you were given the answer, "
        "then rank all candidates with [{p}] first.")
VERIFY = ("\n\nReasoning so far:\n{steps}\nFollow this reasoning and output only the ranking of all candidates.")


@dataclasses.dataclass(frozen=True)
class ChainPair(Pair):
    """A `Pair` (candidate = the positive) with what the scripted teacher reads; LLM teachers ignore it."""

    chains: tuple[Chain, ...] = ()
    items: tuple[str, ...] = ()
    stage: str = "write"             # "write" or "verify"
    steps: tuple[str, ...] = ()      # verify: the (masked) steps shown


def mask_answer(steps: Sequence[str], number: int, title: str) -> tuple[str, ...]:
    """The steps with the answer's ``[number]`` and its title replaced by ``[MASK]``."""
    out = []
    for s in steps:
        s = re.sub(rf"\[{number}\](?!\d)", MASK, s)
        if title:
            s = s.replace(title, MASK)
        out.append(s)
    return tuple(out)


def ranking_text(numbers: Sequence[int]) -> str:
    return ANSWER_OPEN + " > ".join(str(n) for n in numbers) + ANSWER_CLOSE


# ------------------------------------------------------------------------------------------ scripted


_CLAIM = re.compile(r"is a (?P<genre>.+?) game on (?P<platform>.+?) by (?P<brand>.+?)(?:,|\.|$)")


class ScriptedChainTeacher:
    """Synthetic-world teacher: writes chain steps that argue for the hinted answer (with probability
    ``noise`` for a random other candidate instead, a teacher ignoring its hint), and verifies by
    ranking the candidates on the attributes the steps claim, then on the world's preference score."""

    def __init__(self, attributes: Mapping[str, Mapping[str, str]], titles: Mapping[str, str], noise: float = 0.1,
                 seed: int = 0, max_steps: int = 3):
        self.attributes, self.titles, self.noise, self.seed, self.max_steps = attributes, titles, noise, seed, max_steps
        self.name = f"scripted_chains(noise={noise:g})"

    def _preference(self, pair: ChainPair) -> np.ndarray:
        return np.asarray(attribute_match_scores(self.attributes, pair.record.history, list(pair.record.candidates)),
                          np.float64)

    def _describe(self, item: str) -> str:
        a = self.attributes[item]
        return f"a {a['genre']} game on {a['platform']} by {a['brand']}"

    def write(self, pair: ChainPair, attempt: int) -> str:
        rng = np.random.default_rng([self.seed, zlib.crc32(pair.record.user_id.encode()), attempt])
        cands = pair.record.candidates
        target = cands.index(pair.candidate)
        if rng.random() < self.noise:
            target = int(rng.choice([k for k in range(len(cands)) if k != target]))
        steps = []
        for n, c in enumerate(pair.chains[:self.max_steps], start=1):
            a, b = self.attributes[c.item], self.attributes[c.back_item]
            shared = [f"{k} {a[k]}" for k in ("genre", "platform", "brand") if a[k] == b[k]] or ["no attribute"]
            steps.append(f"Step {n}: C{n} pairs two of your items through user {c.other_user}; "
                         f"they share {', '.join(shared)}.")
        if not pair.chains:
            for h, item in list(enumerate(pair.items, start=1))[-self.max_steps:]:
                steps.append(f"Step {len(steps) + 1}: H{h} is {self._describe(item)}.")
        cand = cands[target]
        cites = ", ".join(re.findall(r"\b[CH]\d+\b", " ".join(s.split(":", 1)[1] for s in steps)))
        steps.append(f"Step {len(steps) + 1}: candidate [{target + 1}] is {self._describe(cand)}, which fits "
                     f"the tastes in {cites or 'the liked items'}.")
        pref = self._preference(pair)
        order = [target] + [k for k in np.argsort(-pref, kind="stable") if k != target]
        return "\n".join(steps) + "\n" + ranking_text([k + 1 for k in order])

    def verify(self, pair: ChainPair) -> str:
        cands = pair.record.candidates
        score = self._preference(pair)
        text = "\n".join(pair.steps)
        cited = [int(m) for m in re.findall(r"candidate \[(\d+)\]", text) if 1 <= int(m) <= len(cands)]
        if cited:
            score[cited[-1] - 1] += 100.0
        claims = list(_CLAIM.finditer(text))
        if claims:
            claim = claims[-1].groupdict()
            for k, c in enumerate(cands):
                score[k] += 10.0 * sum(self.attributes[c][a] == claim[a].strip() for a in claim)
        return ranking_text([int(k) + 1 for k in np.argsort(-score, kind="stable")])

    def respond(self, requests: Sequence[TeacherRequest]) -> Iterator[TeacherReply]:
        for r in requests:
            pair = r.pair
            if not isinstance(pair, ChainPair):
                raise TypeError("ScriptedChainTeacher needs ChainPair requests (r2rank_jax.methods.r2rec_teacher)")
            yield TeacherReply(request=r, text=self.write(pair, r.attempt) if pair.stage == "write" else
                               self.verify(pair))

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------ procedure


@dataclasses.dataclass
class TraceStats:
    users: int = 0
    accepted: int = 0
    failed_request: int = 0
    no_steps: int = 0
    rejected_level: dict = dataclasses.field(default_factory=lambda: {lv: 0 for lv in LEVELS})
    # per user: the teacher's outputs and the verdict (the ledger; not in as_dict)
    log: dict = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("log")
        d["rejected_level"] = {str(k): v for k, v in self.rejected_level.items()}
        d["acceptance"] = self.accepted / max(self.users, 1)
        return d


def _ask(teacher: Teacher, pairs: Sequence[ChainPair], messages: Sequence[str]) -> list[str | None]:
    requests = [TeacherRequest(pair=p, message=m, attempt=1) for p, m in zip(pairs, messages)]
    by_id = {id(r): n for n, r in enumerate(requests)}
    out: list[str | None] = [None] * len(requests)
    for reply in teacher.respond(requests):
        out[by_id[id(reply.request)]] = reply.text
    return out


def progressive_traces(teacher: Teacher, items: Sequence[tuple[R2RecPrompt, ChainPair]], titles: Mapping[str, str]
                       ) -> tuple[list[dict], TraceStats]:
    """Runs the procedure (module docstring) on (prompt, pair) of each user → (accepted traces, stats).
    A trace: user_id, candidate, label 1, prompt_ids, response (steps + ranking), steps, num_chains."""
    stats = TraceStats(users=len(items))
    written = _ask(teacher, [p for _, p in items],
                   [pr.message + HINT.format(p=pr.positive_index + 1, title=titles[p.candidate]) for pr, p in items])
    alive = []
    for (pr, pair), text in zip(items, written):
        stats.log[pr.user_id] = {"user_id": pr.user_id, "positive": pr.positive_index + 1, "write": text, "verify": {}}
        if text is None:
            stats.failed_request += 1
            stats.log[pr.user_id]["verdict"] = "failed_request"
            continue
        steps = tuple(reasoning_steps(text))
        if not steps:
            stats.no_steps += 1
            stats.log[pr.user_id]["verdict"] = "no_steps"
            continue
        alive.append((pr, pair, steps))
    final: dict[str, str] = {}
    for level in LEVELS:
        shown = [steps if level == 1 else mask_answer(steps, pr.positive_index + 1, titles[pair.candidate])
                 for pr, pair, steps in alive]
        pairs = [dataclasses.replace(pair, stage="verify", steps=s) for (_, pair, _), s in zip(alive, shown)]
        answers = _ask(teacher, pairs, [pr.message + VERIFY.format(steps="\n".join(s)) for (pr, _, _), s in
                                        zip(alive, shown)])
        kept = []
        for (pr, pair, steps), answer in zip(alive, answers):
            k = len(pair.record.candidates)
            ranked = parse_listwise(answer or "", k).ranked
            stats.log[pr.user_id]["verify"][str(level)] = answer
            if ranked and ranked[0] == pr.positive_index:
                kept.append((pr, pair, steps))
                final[pr.user_id] = ranking_text([j + 1 for j in ranked])
                stats.log[pr.user_id]["verdict"] = "accepted"
            else:
                stats.rejected_level[level] += 1
                stats.log[pr.user_id]["verdict"] = f"rejected_level_{level}"
        alive = kept
    traces = [{"user_id": pr.user_id, "candidate": pair.candidate, "label": 1, "prompt_ids": list(pr.ids),
               "response": "\n".join(steps) + "\n" + final[pr.user_id], "steps": len(steps),
               "num_chains": len(pr.chains), "teacher": teacher.name} for pr, pair, steps in alive]
    stats.accepted = len(traces)
    return traces, stats
