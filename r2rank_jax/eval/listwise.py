"""Zero-shot listwise LLM baseline: all K candidates in one prompt, one generated ranking per user.

The prompt (`PromptBuilder.listwise`, wording `prompt_text.LISTWISE_INSTRUCTIONS`) numbers the
candidates ``[1]..[K]`` and asks for ``<answer>3 > 1 > 2 ...</answer>``. Parsing (`parse_listwise`):

- only the content of the **last** answer tag counts (`answers.last_answer`; a final tag left open
  by the token limit counts too). No tag at all is *unparsable*: unlike `answers.parse_ranking` we
  do not fall back to numbers elsewhere in the text, which would read a rationale as a ranking;
- the numbers in it, in order, are the ranking; numbers outside ``1..K`` and repeats are ignored
  (and counted);
- *parsed*: every candidate ranked; *partial*: some; *unparsable*: none (no tag, no valid number).

Scores (`ranking_scores`, higher = better): the j-th ranked candidate gets ``K - j``; candidates
the answer does not rank all get 0, i.e. they come after the ranked ones, tied (evaluation counts
ties at their expected value: a random order among them). An unparsable output is the worst case:
the positive gets -1 and every other candidate 0, so the positive is ranked last.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from r2rank_jax import progress
from r2rank_jax.eval import journal
from r2rank_jax.data.answers import last_answer
from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.prompts import ListwisePrompt, PromptBuilder

PARSED, PARTIAL, UNPARSABLE = "parsed", "partial", "unparsable"
_NUMBER = re.compile(r"\d+")

# prompts (token id lists, or what `score_listwise`'s `inputs` makes of each prompt) -> generated texts, one per prompt
GenerateFn = Callable[[list[Any]], list[str]]


@dataclasses.dataclass(frozen=True)
class ListwiseParse:
    """One parsed answer: `ranked` holds candidate indices (0-based, into the record's candidates), best first."""

    ranked: tuple[int, ...]
    status: str                # PARSED, PARTIAL or UNPARSABLE
    repeats: int = 0           # numbers given more than once (ignored after the first)
    out_of_range: int = 0      # numbers outside 1..K (ignored)


def parse_listwise(text: str, num_candidates: int, order: Sequence[int] | None = None) -> ListwiseParse:
    """Parses a listwise answer (module docstring). ``order[j]`` is the candidate shown as ``[j+1]``
    (default: candidate order), so `ranked` indexes the candidates themselves."""
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be >= 1, got {num_candidates}")
    order = list(range(num_candidates)) if order is None else [int(j) for j in order]
    if sorted(order) != list(range(num_candidates)):
        raise ValueError(f"order must be a permutation of range({num_candidates}), got {order}")
    content = last_answer(text)
    if content is None:
        return ListwiseParse((), UNPARSABLE)
    shown: list[int] = []
    repeats = out_of_range = 0
    for match in _NUMBER.finditer(content):
        n = int(match.group())
        if not 1 <= n <= num_candidates:
            out_of_range += 1
        elif n in shown:
            repeats += 1
        else:
            shown.append(n)
    if not shown:
        status = UNPARSABLE
    else:
        status = PARSED if len(shown) == num_candidates else PARTIAL
    return ListwiseParse(tuple(order[n - 1] for n in shown), status, repeats, out_of_range)


def ranking_scores(parse: ListwiseParse, num_candidates: int, positive_index: int) -> np.ndarray:
    """Scores `[K]` float64 of one user from its parse (module docstring: ranked K-j, unranked 0,
    unparsable: positive -1 and the rest 0)."""
    scores = np.zeros(num_candidates)
    if parse.status == UNPARSABLE:
        scores[positive_index] = -1.0
        return scores
    for j, k in enumerate(parse.ranked):
        scores[k] = num_candidates - j
    return scores


@dataclasses.dataclass
class ParseStats:
    parsed: int = 0
    partial: int = 0
    unparsable: int = 0
    with_repeats: int = 0
    with_out_of_range: int = 0

    def add(self, parse: ListwiseParse) -> None:
        setattr(self, parse.status, getattr(self, parse.status) + 1)
        self.with_repeats += parse.repeats > 0
        self.with_out_of_range += parse.out_of_range > 0

    @property
    def total(self) -> int:
        return self.parsed + self.partial + self.unparsable

    def as_dict(self) -> dict[str, float | int]:
        """Counts plus ``parse_rate`` (fully parsed / total) and ``any_parse_rate`` ((parsed + partial) / total)."""
        n = max(self.total, 1)
        return dataclasses.asdict(self) | {"total": self.total, "parse_rate": self.parsed / n,
                                           "any_parse_rate": (self.parsed + self.partial) / n}


@dataclasses.dataclass
class ListwiseScores:
    scores: np.ndarray             # [N, K] float64 in each record's candidate order
    parses: list[ListwiseParse]
    texts: list[str]               # the generated outputs
    stats: ParseStats


def token_ids(prompt: ListwisePrompt) -> list[int]:
    return list(prompt.ids)


def score_listwise(records: Sequence[Record], builder: PromptBuilder, generate: GenerateFn,
                   orders: Sequence[Sequence[int]] | None = None, max_prompt_tokens: int | None = None,
                   batch_size: int = 8, inputs: Callable[[ListwisePrompt], Any] = token_ids,
                   pad: bool = True) -> ListwiseScores:
    """Listwise scores `[N, K]` of `records` (all with the same K).

    ``orders[i]`` is the order in which user i's candidates are listed (default: candidate order);
    ``generate`` maps a list of ``inputs(prompt)`` (default: the prompts' token ids; an endpoint client
    takes ``prompt.messages``) to their outputs and is called with exactly ``batch_size`` prompts each
    time when ``pad`` (the last batch is padded by repeating its first prompt, so a jitted generator
    compiles once per prompt-length bucket), else with the last batch as it is. Inside the eval stage's
    `journal.journaling` each batch's texts are journaled and replayed on a resume (exact for greedy
    decoding, which evaluation uses: a replayed batch does not advance a sampling `generate`'s key).
    """
    widths = {len(r.candidates) for r in records}
    if len(widths) != 1:
        raise ValueError(f"records have different numbers of candidates: {sorted(widths)}")
    (k,) = widths
    if orders is not None and len(orders) != len(records):
        raise ValueError(f"{len(orders)} orders for {len(records)} records")
    prompts = [builder.listwise(r, None if orders is None else orders[i], max_tokens=max_prompt_tokens)
               for i, r in enumerate(records)]
    texts: list[str] = []
    section = journal.section()           # inside the eval stage: batches journaled, replayed on a resume
    with progress.bar(len(prompts), "listwise", unit="user") as bar:
        for b, lo in enumerate(range(0, len(prompts), batch_size)):
            users = [r.user_id for r in records[lo:lo + batch_size]]
            payload = section.get(b, users)
            if payload is None:
                chunk = [inputs(p) for p in prompts[lo:lo + batch_size]]
                outputs = generate(chunk + [chunk[0]] * (batch_size - len(chunk)) if pad else chunk)
                payload = {"texts": list(outputs[:len(chunk)])}
                section.put(b, users, payload)
            texts.extend(payload["texts"])
            bar.update(len(users))
    stats = ParseStats()
    parses, rows = [], []
    for prompt, record, text in zip(prompts, records, texts):
        parse = parse_listwise(text, k, prompt.order)
        stats.add(parse)
        parses.append(parse)
        rows.append(ranking_scores(parse, k, record.candidates.index(record.positive)))
    return ListwiseScores(np.stack(rows), parses, texts, stats)


def sampler_generate(sampler, tokenizer, temperature: float = 0.0, seed: int = 0, state=None) -> GenerateFn:
    """A `GenerateFn` over our sampler (greedy by default): prompts -> decoded valid tokens."""
    import jax

    from r2rank_jax.sampling.params import SamplingParams

    key = jax.random.PRNGKey(seed)

    def generate(prompts: list[list[int]]) -> list[str]:
        nonlocal key
        key, sub = jax.random.split(key)
        out = sampler.generate(prompts, SamplingParams.make(len(prompts), temperature=temperature), sub, state=state)
        ids, valid = np.asarray(out.ids), np.asarray(out.valid)
        return tokenizer.batch_decode([row[ok].tolist() for row, ok in zip(ids, valid)], skip_special_tokens=True)

    return generate
