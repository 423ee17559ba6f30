"""Benchmark records -> chat-rendered prompts as token ids, split into a shared prefix and K suffixes.

For one user, the K pointwise prompts (wording: `prompt_text`) differ only in the candidate, which
comes last, so each rendered prompt is ``prefix_text + suffix_text[k]`` with

- ``prefix_text`` = the chat template's opening (system turn, user turn header), the instructions and
  the ``User Context: ...`` line, **up to and including its final newline**;
- ``suffix_text[k]`` = ``Candidate Item: {item_text}`` plus the template's closing (end of the user
  turn and the assistant header of ``add_generation_prompt=True``).

**Where the split is and why it is exact.** We render the full text through
``tokenizer.apply_chat_template`` once per candidate, cut it at the character offset where
``Candidate Item:`` begins, and tokenize the two parts separately. The cut sits between a newline and
a letter, which is a pre-tokenization boundary for both tokenizer families we use: byte-level BPE
(GPT-2/Qwen2/SmolLM2 regex: ``\\s+`` never joins a following letter) and our sentencepiece tokenizer
(``\\n`` has no piece of its own and is encoded by byte fallback, so no piece can span it). Hence
``prefix_ids + suffix_ids[k]`` equals the tokenization of the full prompt, which the tests check
with the real SmolLM2 tokenizer and the synthetic one; ``PromptConfig.check_split`` checks it on
every prompt (3x the tokenization work; meant for new tokenizers).

**Token budget.** ``max_prompt_tokens`` bounds prefix + longest suffix, ``max_prefix_tokens`` and
``max_suffix_tokens`` bound the parts (static pad shapes). When a prefix does not fit, the oldest
history items are dropped (fewest that suffice, found by bisection); the candidate is never cut.
`BudgetStats` counts the cut prompts. A prompt that cannot fit even with an empty history raises
`PromptTooLongError` naming the user and the candidate.

Answer parsers (`parse_decision`, `parse_ranking`) live in `answers` and are re-exported here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from r2rank_jax.data import prompt_text as pt
from r2rank_jax.data.answers import parse_decision, parse_ranking  # noqa: F401  (re-exported)
from r2rank_jax.data.benchmark import Record


class PromptTooLongError(ValueError):
    """A prompt exceeds the token budget even with an empty history."""


class PromptSplitError(ValueError):
    """prefix ids + suffix ids differ from the tokenization of the full prompt (see module docstring)."""


@dataclasses.dataclass(frozen=True)
class PromptConfig:
    """How records become prompts. Token limits count tokens of the rendered chat text."""

    variant: str = "cot"  # "cot" (self-reflective) or "no_cot" (decision only)
    use_profile: bool = True
    title_max_tokens: int = 48
    item_fields: tuple[str, ...] = ()  # optional items.jsonl fields shown after the title
    field_max_tokens: int = 32  # cap per optional field
    max_prompt_tokens: int | None = None  # prefix + longest suffix
    max_prefix_tokens: int | None = None
    max_suffix_tokens: int | None = None
    system_prompt: str | None = None  # None: no system turn (the template may add its default)
    check_split: bool = False

    def __post_init__(self) -> None:
        if self.variant not in pt.VARIANTS:
            raise ValueError(f"variant must be one of {pt.VARIANTS}, got {self.variant!r}")
        for name in ("title_max_tokens", "field_max_tokens", "max_prompt_tokens", "max_prefix_tokens",
                     "max_suffix_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


@dataclasses.dataclass
class BudgetStats:
    """Counts of budget cuts: examples (users) seen and cut, prompts cut (K per cut example), and
    history items dropped in total."""

    examples: int = 0
    cut_examples: int = 0
    cut_prompts: int = 0
    dropped_history_items: int = 0

    def record(self, num_prompts: int, dropped: int) -> None:
        self.examples += 1
        if dropped:
            self.cut_examples += 1
            self.cut_prompts += num_prompts
            self.dropped_history_items += dropped

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class UserPrompts:
    """The K pointwise prompts of one user. ``labels[k]`` is 1 for the positive, else 0."""

    user_id: str
    candidates: tuple[str, ...]
    labels: tuple[int, ...]
    history: tuple[str, ...]  # the history items shown (after the budget cut), oldest first
    dropped: int  # oldest history items dropped by the budget
    prefix_text: str
    suffix_texts: tuple[str, ...]
    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[tuple[int, ...], ...]

    def prompt_ids(self, k: int) -> list[int]:
        """Token ids of the full prompt for candidate ``k``."""
        return [*self.prefix_ids, *self.suffix_ids[k]]


@dataclasses.dataclass(frozen=True)
class ListwisePrompt:
    """One prompt listing all K candidates; position ``j`` (shown as ``[j+1]``) is candidate ``order[j]``."""

    user_id: str
    candidates: tuple[str, ...]
    labels: tuple[int, ...]
    order: tuple[int, ...]
    history: tuple[str, ...]
    dropped: int
    text: str
    ids: tuple[int, ...]
    messages: tuple[dict[str, str], ...] = ()   # the chat messages `text` renders (for a chat-completions endpoint)


class PromptBuilder:
    """Renders and tokenizes prompts for records of one prepared benchmark.

    ``tokenizer`` is a transformers tokenizer with a chat template; ``items`` maps item id -> the
    ``items.jsonl`` object (``benchmark.load_items``). Picklable, so it can run in Grain workers.
    """

    def __init__(self, tokenizer: Any, items: Mapping[str, Mapping[str, str]], config: PromptConfig = PromptConfig()):
        self.tokenizer = tokenizer
        self.items = items
        self.config = config
        self.stats = BudgetStats()
        self._item_text: dict[str, str] = {}
        if config.item_fields and items:
            unknown = [f for f in config.item_fields if not any(f in it for it in items.values())]
            if unknown:
                known = sorted({k for it in items.values() for k in it} - {"item_id", "title"})
                raise ValueError(f"item_fields {unknown} are in no item of items.jsonl (its optional fields: {known})")

    # ------------------------------------------------------------------------------ text pieces

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens added (the chat text already holds them)."""
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def cap_tokens(self, text: str, max_tokens: int) -> str:
        """``text`` cut after its first ``max_tokens`` tokens (tokenized on its own), at a character
        boundary from the offsets mapping."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) <= max_tokens:
            return text
        return text[: enc["offset_mapping"][max_tokens - 1][1]].rstrip()

    def item_text(self, item_id: str, who: str = "") -> str:
        """Title (HTML-unescaped, capped) plus the configured optional fields: ``Title (field: text; ...)``."""
        cached = self._item_text.get(item_id)
        if cached is not None:
            return cached
        item = self.items.get(item_id)
        if item is None:
            raise KeyError(f"{who}item {item_id!r} is not in items.jsonl")
        text = self.cap_tokens(pt.clean_text(item["title"]), self.config.title_max_tokens)
        extras = []
        for name in self.config.item_fields:
            value = pt.clean_text(str(item.get(name, "")))
            if value:
                extras.append(f"{name}: {self.cap_tokens(value, self.config.field_max_tokens)}")
        if extras:
            text = f"{text} ({'; '.join(extras)})"
        self._item_text[item_id] = text
        return text

    def profile(self, record: Record) -> str | None:
        if not self.config.use_profile or not record.profile:
            return None
        return pt.clean_text(record.profile) or None

    def messages(self, content: str) -> list[dict[str, str]]:
        """The chat messages of one user message (the system prompt first, when configured)."""
        messages = [] if self.config.system_prompt is None else [{"role": "system", "content": self.config.system_prompt}]
        return messages + [{"role": "user", "content": content}]

    def render(self, content: str) -> str:
        """The chat text of one user message, ending with the assistant header."""
        return self.tokenizer.apply_chat_template(self.messages(content), add_generation_prompt=True, tokenize=False)

    def split_rendered(self, profile: str | None, history: Sequence[str], candidate: str) -> tuple[str, str]:
        """(prefix text, suffix text) of one rendered pointwise prompt (item *texts* as inputs)."""
        rendered = self.render(pt.pointwise_message(self.config.variant, profile, history, candidate))
        cut = rendered.rfind(pt.candidate_part(candidate))
        if cut <= 0 or rendered[cut - 1] != "\n":
            raise PromptSplitError("the chat template altered the user message: cannot find the candidate "
                                   f"line after a newline in {rendered!r}")
        return rendered[:cut], rendered[cut:]

    # ---------------------------------------------------------------------------- pointwise

    def build(self, record: Record) -> UserPrompts:
        """The K prompts of ``record`` within the budget (see module docstring); updates ``stats``."""
        who = f"user {record.user_id!r}: "
        profile = self.profile(record)
        history_texts = [self.item_text(i, who) for i in record.history]
        cand_texts = [self.item_text(c, who) for c in record.candidates]
        splits = [self.split_rendered(profile, history_texts, c) for c in cand_texts]
        if any(p != splits[0][0] for p, _ in splits):
            raise PromptSplitError(f"{who}the chat template renders a candidate-dependent prefix")
        suffix_texts = [s for _, s in splits]
        suffix_ids = self.encode(suffix_texts)
        longest = max(range(len(suffix_ids)), key=lambda k: len(suffix_ids[k]))
        max_suffix = self.config.max_suffix_tokens
        for k, ids in enumerate(suffix_ids):
            if max_suffix is not None and len(ids) > max_suffix:
                raise PromptTooLongError(
                    f"{who}the suffix for candidate {record.candidates[k]!r} has {len(ids)} tokens, over "
                    f"max_suffix_tokens={max_suffix}; lower title_max_tokens/field_max_tokens or raise the limit")
        limit = self._prefix_limit(len(suffix_ids[longest]))

        def prefix(history: Sequence[str]) -> tuple[str, list[int]]:
            text = self.split_rendered(profile, history, cand_texts[0])[0]
            return text, self.encode([text])[0]

        dropped, (prefix_text, prefix_ids) = fit_oldest_first(
            history_texts, prefix, limit,
            on_fail=lambda n: PromptTooLongError(
                f"{who}the prompt for candidate {record.candidates[longest]!r} needs {n + len(suffix_ids[longest])} "
                f"tokens even with an empty history ({n} prefix + {len(suffix_ids[longest])} suffix); budget "
                f"{self._budget_text()}"))
        self.stats.record(len(record.candidates), dropped)
        out = UserPrompts(
            user_id=record.user_id,
            candidates=record.candidates,
            labels=tuple(int(c == record.positive) for c in record.candidates),
            history=record.history[dropped:],
            dropped=dropped,
            prefix_text=prefix_text,
            suffix_texts=tuple(suffix_texts),
            prefix_ids=tuple(prefix_ids),
            suffix_ids=tuple(tuple(s) for s in suffix_ids),
        )
        if self.config.check_split:
            self.check_split(out)
        return out

    def check_split(self, prompts: UserPrompts) -> None:
        """Raises `PromptSplitError` unless prefix + suffix ids equal the full text's ids, per candidate."""
        full = self.encode([prompts.prefix_text + s for s in prompts.suffix_texts])
        for k, ids in enumerate(full):
            if ids != prompts.prompt_ids(k):
                raise PromptSplitError(
                    f"user {prompts.user_id!r}, candidate {prompts.candidates[k]!r}: prefix + suffix ids differ "
                    "from the ids of the full prompt (a token merges across the split)")

    def _prefix_limit(self, suffix_len: int) -> int | None:
        limits = [self.config.max_prefix_tokens]
        if self.config.max_prompt_tokens is not None:
            limits.append(self.config.max_prompt_tokens - suffix_len)
        limits = [x for x in limits if x is not None]
        return min(limits) if limits else None

    def _budget_text(self) -> str:
        c = self.config
        return f"max_prompt_tokens={c.max_prompt_tokens}, max_prefix_tokens={c.max_prefix_tokens}"

    # ----------------------------------------------------------------------------- listwise

    def listwise(self, record: Record, order: Sequence[int] | None = None, max_tokens: int | None = None) -> ListwisePrompt:
        """The listwise prompt of ``record`` with candidate ``order[j]`` shown at position ``j`` (default:
        candidate order). ``max_tokens`` (default ``config.max_prompt_tokens``) bounds the whole prompt;
        oldest history items go first."""
        k = len(record.candidates)
        order = tuple(range(k)) if order is None else tuple(int(j) for j in order)
        if sorted(order) != list(range(k)):
            raise ValueError(f"order must be a permutation of range({k}), got {order}")
        who = f"user {record.user_id!r}: "
        profile = self.profile(record)
        history_texts = [self.item_text(i, who) for i in record.history]
        listed = [self.item_text(record.candidates[j], who) for j in order]

        def prompt(history: Sequence[str]) -> tuple[str, list[int]]:
            text = self.render(pt.listwise_message(profile, history, listed))
            return text, self.encode([text])[0]

        limit = self.config.max_prompt_tokens if max_tokens is None else max_tokens
        dropped, (text, ids) = fit_oldest_first(
            history_texts, prompt, limit,
            on_fail=lambda n: PromptTooLongError(
                f"{who}the listwise prompt of {k} candidates needs {n} tokens even with an empty history, "
                f"over the budget of {limit}"))
        return ListwisePrompt(
            user_id=record.user_id,
            candidates=record.candidates,
            labels=tuple(int(c == record.positive) for c in record.candidates),
            order=order,
            history=record.history[dropped:],
            dropped=dropped,
            text=text,
            ids=tuple(ids),
            messages=tuple(self.messages(pt.listwise_message(profile, history_texts[dropped:], listed))),
        )


def fit_oldest_first(
    history: Sequence[str],
    make: Callable[[Sequence[str]], tuple[str, list[int]]],
    limit: int | None,
    on_fail: Callable[[int], Exception],
) -> tuple[int, tuple[str, list[int]]]:
    """(number of oldest items dropped, ``make(history[dropped:])``) for the fewest drops whose ids fit
    ``limit``. Token counts shrink as items are dropped, so the fewest drops are found by bisection
    (about log2(L) tokenizations). Raises ``on_fail(tokens with empty history)`` if nothing fits."""
    n = len(history)
    tried: dict[int, tuple[str, list[int]]] = {0: make(history)}
    if limit is None or len(tried[0][1]) <= limit:
        return 0, tried[0]
    tried[n] = make(history[n:])
    if len(tried[n][1]) > limit:
        raise on_fail(len(tried[n][1]))
    lo, hi = 1, n  # dropping hi items fits; dropping lo - 1 does not
    while lo < hi:
        mid = (lo + hi) // 2
        tried[mid] = make(history[mid:])
        if len(tried[mid][1]) <= limit:
            hi = mid
        else:
            lo = mid + 1
    return hi, tried[hi]
