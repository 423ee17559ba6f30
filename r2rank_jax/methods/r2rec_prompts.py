"""R2Rec prompts: the user's recent liked items, its sampled interaction chains, the K candidates
numbered ``[1]..[K]`` (record order), and the request to reason in ``Step <n>:`` lines citing the
chains, then rank every candidate as ``<answer>3 > 1 > ...</answer>`` (the format
`r2rank_jax.eval.listwise.parse_listwise` reads).

Labels: liked items ``H1..Hm`` (oldest of the shown ones first), chains ``C1..Cn``; the rewards
(`r2rec_rewards`) check citations against them. Over the token budget, the oldest liked items are
dropped first, then the last chains.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from r2rank_jax.data.benchmark import Record
from r2rank_jax.data.prompt_text import ANSWER_CLOSE, ANSWER_OPEN
from r2rank_jax.data.prompts import PromptBuilder, PromptTooLongError
from r2rank_jax.methods.r2rec_chains import Chain

INSTRUCTIONS = (
    "You are a recommendation assistant. Reason step by step over the user's interaction chains, then rank "
    "the candidate items by how likely the user is to interact with each of them next.\n")
REQUIREMENTS = (
    "Requirements: Write your reasoning as lines \"Step 1: ...\", \"Step 2: ...\", each citing the chains "
    "(C1, C2, ...) or liked items (H1, H2, ...) it uses. Finally output the numbers of all {k} candidates, most "
    "likely first, separated by \" > \", for example: {open}2 > 1 > 3{close}.")
NO_CHAINS = "none (no similar user shares two of the liked items)"


@dataclasses.dataclass(frozen=True)
class R2RecPrompt:
    user_id: str
    message: str               # the plain user message (what a teacher is shown, plus its hint)
    text: str                  # the chat-rendered prompt, ending with the assistant header
    ids: tuple[int, ...]
    chains: tuple[Chain, ...]  # the chains shown, C1..Cn
    items: tuple[str, ...]     # the liked items shown, H1..Hm
    positive_index: int        # index of the positive in record.candidates (= its number - 1)


def chain_text(n: int, chain: Chain, title) -> str:
    return (f"C{n}: you liked \"{title(chain.item)}\" -> user {chain.other_user} also liked it and "
            f"\"{title(chain.back_item)}\" -> which you liked too")


def message(builder: PromptBuilder, record: Record, chains: Sequence[Chain], items: Sequence[str]) -> str:
    title = lambda i: builder.item_text(i, f"user {record.user_id!r}: ")  # noqa: E731
    liked = "; ".join(f"H{n}. {title(i)}" for n, i in enumerate(items, start=1)) or "none"
    chain_lines = "\n".join(chain_text(n, c, title) for n, c in enumerate(chains, start=1)) or NO_CHAINS
    listed = "\n".join(f"[{n}] {title(c)}" for n, c in enumerate(record.candidates, start=1))
    k = len(record.candidates)
    return (INSTRUCTIONS + f"Liked items (most recent last): {liked}\n"
            + f"Interaction chains (you -> item -> similar user -> item you liked):\n{chain_lines}\n"
            + f"Candidate Items:\n{listed}\n" + REQUIREMENTS.format(k=k, open=ANSWER_OPEN, close=ANSWER_CLOSE))


def build(builder: PromptBuilder, record: Record, chains: Sequence[Chain], recent: int,
          max_tokens: int | None) -> R2RecPrompt:
    """The prompt of `record` with at most `recent` liked items (the latest) and `chains`, fitted to
    `max_tokens` (None: no limit) by dropping the oldest liked items, then the last chains."""
    items = list(record.history[-recent:]) if recent > 0 else []
    chains = list(chains)
    while True:
        msg = message(builder, record, chains, items)
        text = builder.render(msg)
        ids = builder.encode([text])[0]
        if max_tokens is None or len(ids) <= max_tokens:
            break
        if items:
            items.pop(0)
        elif chains:
            chains.pop()
        else:
            raise PromptTooLongError(f"user {record.user_id!r}: the R2Rec prompt of {len(record.candidates)} "
                                     f"candidates needs {len(ids)} tokens with no liked item and no chain, over "
                                     f"the budget of {max_tokens}")
    return R2RecPrompt(record.user_id, msg, text, tuple(ids), tuple(chains), tuple(items),
                       record.candidates.index(record.positive))
