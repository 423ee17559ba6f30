"""SFT corpus (teacher rationales) -> statically padded Grain batches with a restorable iterator.

**Corpus format** (JSONL, one object per line; what the teacher-synthesis stage writes):

    {"user_id": "17", "candidate": "203", "label": 1,
     "prompt_ids": [151644, 872, ...],            # or "prompt": "<|im_start|>user\\n...", or neither
     "response": "#Initial reasoning: ...\\n<answer>Recommend</answer>",
     ...}                                        # other fields (teacher, score, ...) are ignored

- ``user_id``, ``candidate`` (item id): which (user, candidate) pair the rationale is about;
- ``label``: 1 if the candidate is the user's positive, else 0;
- the prompt, one of: ``prompt_ids`` (the chat-rendered pointwise prompt, prefix + suffix, as token
  ids: `prompts.UserPrompts.prompt_ids`), ``prompt`` (the chat-rendered text, ending with the
  assistant header; tokenized without special tokens), or neither, in which case ``prompt_fn`` (e.g.
  `BenchmarkPrompts` over a prepared benchmark split) builds it from (user_id, candidate);
- ``response``: the teacher's rationale, ending in ``<answer>Recommend</answer>`` or
  ``<answer>Not Recommend</answer>`` (or ``response_ids``: token ids). The tokenizer's eos token is
  appended (the end of the assistant turn) unless the ids already end with it.

By default every response must parse (`answers.parse_decision`) to the decision its label implies
(the corpus is filtered for correct decisions); ``check_labels=False`` only requires a decision.

**Batches** (numpy; B = batch_size, P/R = prompt/response bucket lengths):

- ``tokens`` `[B, P+R]` int32: the prompt left-padded into ``[:, :P]``, the response right-padded
  into ``[:, P:]`` (pad id elsewhere); ``positions`` `[B, P+R]` int32: ``0..n+m-1`` on real tokens,
  -1 on pads (the decoder's convention). So the hidden state at column ``P-1+r`` predicts response
  token ``r`` for every row: the loss slices are static. With ``shared_prefix`` N > 0 (every prompt begins
  with the same N tokens: the chat header and the instructions) those N tokens sit in columns ``[:, :N]`` of
  every row, padding rows included, and the rest of the prompt is left-padded into ``[:, N:P]``; the SFT step
  then runs them once per batch (`train.sft.response_logprobs`).
- ``loss_mask`` `[B, R]` bool: response token r is real (prompt tokens never enter the loss);
- ``labels`` `[B]` int32, ``example_mask`` `[B]` bool (False on padding rows of a short last batch),
  ``prompt_lengths``/``response_lengths`` `[B]` int32, ``user_ids``/``candidates`` `[B]` str.

Order of operations on a `grain.MapDataset` (every batch is a pure function of its index):
shuffle(seed, reseeded per epoch) -> batch + pad (with ``shard_count`` n > 1: collate the global batch
of ``batch_size * n`` examples, so its buckets, and keep host ``shard_index``'s ``batch_size`` rows,
`host_shard.HostSlice`) -> repeat(num_epochs). The iterator's
``get_state()``/``set_state()`` resumes exactly. Packing several examples into one row is **not
done**: the decoder masks attention by positions only (key visible iff 0 <= pos(key) <= pos(query)),
so packed examples would see each other without a segment-id rule in the attention.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from r2rank_jax import buckets as buckets_
from r2rank_jax.data.answers import parse_decision
from r2rank_jax.data.errors import DataError
from r2rank_jax.data.host_shard import HostSlice
from r2rank_jax.data.prompt_text import NOT_RECOMMEND, RECOMMEND
from r2rank_jax.data.textio import iter_jsonl

Batch = dict[str, np.ndarray]
DEVICE_KEYS: tuple[str, ...] = ("tokens", "positions", "loss_mask", "labels", "example_mask")
PromptFn = Callable[[str, str], Sequence[int]]


@dataclasses.dataclass(frozen=True)
class SFTExample:
    user_id: str
    candidate: str
    label: int
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    where: str = ""  # "FILE:LINE" for messages


@dataclasses.dataclass(frozen=True)
class SFTDataConfig:
    batch_size: int = 8
    prompt_buckets: tuple[int, ...] = (256, 512)
    response_buckets: tuple[int, ...] = (128, 256)
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = None   # None: repeat forever
    drop_remainder: bool = True     # False: a short last batch is padded (example_mask False)
    too_long: str = "error"         # an example over the largest buckets: "error" or "skip"
    check_labels: bool = True
    shard_index: int = 0
    shard_count: int = 1
    shared_prefix: int = 0          # leading prompt tokens every example shares (module docstring); 0: none

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"SFTDataConfig.batch_size must be >= 1, got {self.batch_size}")
        for name in ("prompt_buckets", "response_buckets"):
            buckets_.check(getattr(self, name), f"SFTDataConfig.{name}")
        if not 0 <= self.shared_prefix < self.prompt_buckets[0]:
            raise ValueError(f"SFTDataConfig.shared_prefix must be in [0, {self.prompt_buckets[0]}) (the smallest "
                             f"prompt bucket), got {self.shared_prefix}")
        if self.too_long not in ("error", "skip"):
            raise ValueError(f"SFTDataConfig.too_long={self.too_long!r}: expected 'error' or 'skip'")
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(f"need 0 <= shard_index < shard_count, got {self.shard_index}, {self.shard_count}")


class BenchmarkPrompts:
    """`PromptFn` over a prepared benchmark split: (user_id, candidate) -> the pointwise prompt ids."""

    def __init__(self, benchmark_dir: str | os.PathLike[str], split: str, builder: Any):
        from r2rank_jax.data import benchmark

        self.records = {r.user_id: r for r in benchmark.load_split(benchmark_dir, split)}
        self.builder = builder
        self.where = f"{os.fspath(benchmark_dir)}/{split}.jsonl"

    def __call__(self, user_id: str, candidate: str) -> Sequence[int]:
        record = self.records.get(user_id)
        if record is None:
            raise KeyError(f"user {user_id!r} is not in {self.where}")
        if candidate not in record.candidates:
            raise KeyError(f"item {candidate!r} is not a candidate of user {user_id!r} in {self.where}")
        return self.builder.build(record).prompt_ids(record.candidates.index(candidate))


def _int_list(obj: dict[str, Any], key: str, path: str, lineno: int) -> tuple[int, ...]:
    value = obj[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and v >= 0 for v in value):
        raise DataError(path, lineno, f"{key!r} must be a non-empty list of token ids")
    return tuple(value)


def parse_example(obj: Any, tokenizer: Any, path: str, lineno: int, prompt_fn: PromptFn | None = None,
                  check_labels: bool = True) -> SFTExample:
    """One corpus line -> `SFTExample` (token ids); raises `DataError` naming ``path:lineno``."""
    if not isinstance(obj, dict):
        raise DataError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
    for key in ("user_id", "candidate", "label"):
        if key not in obj:
            raise DataError(path, lineno, f"missing field {key!r}")
    label = obj["label"]
    if label not in (0, 1) or isinstance(label, bool):
        raise DataError(path, lineno, f"'label' must be 0 or 1, got {label!r}")
    user_id, candidate = str(obj["user_id"]), str(obj["candidate"])
    if "prompt_ids" in obj:
        prompt = _int_list(obj, "prompt_ids", path, lineno)
    elif "prompt" in obj:
        prompt = tuple(tokenizer(str(obj["prompt"]), add_special_tokens=False)["input_ids"])
    elif prompt_fn is not None:
        try:
            prompt = tuple(prompt_fn(user_id, candidate))
        except (KeyError, ValueError) as e:
            raise DataError(path, lineno, f"cannot build the prompt: {e}") from None
    else:
        raise DataError(path, lineno, "no 'prompt_ids' or 'prompt' field, and no prompt_fn to build the prompt")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token (needed to end SFT responses)")
    if "response_ids" in obj:
        response = list(_int_list(obj, "response_ids", path, lineno))
        text = tokenizer.decode(response, skip_special_tokens=True)
    elif "response" in obj:
        text = str(obj["response"])
        response = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    else:
        raise DataError(path, lineno, "missing field 'response' (or 'response_ids')")
    decision = parse_decision(text)
    if decision is None:
        raise DataError(path, lineno, "the response has no <answer>Recommend</answer> or "
                                      "<answer>Not Recommend</answer> decision")
    if check_labels and decision != (RECOMMEND if label == 1 else NOT_RECOMMEND):
        raise DataError(path, lineno, f"the response decides {decision!r} but label={label} (an unfiltered "
                                      "corpus? pass check_labels=False to train on it anyway)")
    if not response or response[-1] != eos:
        response.append(eos)
    return SFTExample(user_id, candidate, int(label), prompt, tuple(response), f"{path}:{lineno}")


def load_corpus(path: str | os.PathLike[str], tokenizer: Any, prompt_fn: PromptFn | None = None,
                check_labels: bool = True) -> list[SFTExample]:
    """Every example of a JSONL corpus, tokenized (see module docstring)."""
    path = os.fspath(path)
    out = []
    for lineno, obj in iter_jsonl(path):
        out.append(parse_example(obj, tokenizer, path, lineno, prompt_fn, check_labels))
    if not out:
        raise DataError(path, None, "the corpus holds no examples")
    return out


def bucket(length: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket >= ``length`` (None when none is)."""
    return buckets_.fitting(length, buckets)


def fit_examples(examples: Sequence[SFTExample], config: SFTDataConfig) -> list[SFTExample]:
    """The examples that fit the largest buckets; the others raise `DataError` or are dropped (``too_long``)."""
    kept = []
    p_max, r_max = config.prompt_buckets[-1], config.response_buckets[-1]
    for ex in examples:
        if len(ex.prompt_ids) <= p_max and len(ex.response_ids) <= r_max:
            kept.append(ex)
        elif config.too_long == "error":
            path, _, line = ex.where.rpartition(":")
            raise DataError(path or ex.where, int(line) if line.isdigit() else None,
                            f"prompt of {len(ex.prompt_ids)} / response of {len(ex.response_ids)} tokens exceeds "
                            f"the largest buckets ({p_max} / {r_max}); raise SFTDataConfig.prompt_buckets/"
                            "response_buckets or set too_long='skip'")
    if not kept:
        raise ValueError(f"no SFT example fits the buckets ({p_max} prompt / {r_max} response tokens)")
    return kept


def check_shared_prefix(examples: Sequence[SFTExample], shared_prefix: int) -> None:
    """Raises `DataError` naming the first example whose prompt does not begin with the first example's
    `shared_prefix` tokens, or leaves none of its own prompt after them."""
    if not shared_prefix or not examples:
        return
    head = examples[0].prompt_ids[:shared_prefix]
    for ex in examples:
        if ex.prompt_ids[:shared_prefix] != head or len(ex.prompt_ids) <= shared_prefix:
            agree = next((j for j, (a, b) in enumerate(zip(ex.prompt_ids, head)) if a != b),
                         min(len(ex.prompt_ids), len(head)))
            path, _, line = ex.where.rpartition(":")
            raise DataError(path or ex.where, int(line) if line.isdigit() else None,
                            f"sft.shared_prefix={shared_prefix}: this prompt ({len(ex.prompt_ids)} tokens) shares only "
                            f"its first {min(agree, len(ex.prompt_ids) - 1)} tokens with {examples[0].where or 'the first'}'s "
                            "(and must keep at least one of its own); lower sft.shared_prefix or set it to 0")


class Collate:
    """Pads a list of `SFTExample` into one static-shape batch (module docstring)."""

    def __init__(self, batch_size: int, prompt_buckets: Sequence[int], response_buckets: Sequence[int], pad_id: int,
                 shared_prefix: int = 0):
        self.batch_size = batch_size
        self.prompt_buckets = tuple(prompt_buckets)
        self.response_buckets = tuple(response_buckets)
        self.pad_id = pad_id
        self.shared_prefix = shared_prefix

    def __call__(self, examples: Sequence[SFTExample]) -> Batch:
        b_n = self.batch_size
        p_len = bucket(max(len(e.prompt_ids) for e in examples), self.prompt_buckets)
        r_len = bucket(max(len(e.response_ids) for e in examples), self.response_buckets)
        if p_len is None or r_len is None:
            raise ValueError(f"an example exceeds the largest buckets {self.prompt_buckets[-1]}/{self.response_buckets[-1]}")
        out: Batch = {
            "tokens": np.full((b_n, p_len + r_len), self.pad_id, np.int32),
            "positions": np.full((b_n, p_len + r_len), -1, np.int32),
            "loss_mask": np.zeros((b_n, r_len), bool),
            "labels": np.zeros((b_n,), np.int32),
            "example_mask": np.zeros((b_n,), bool),
            "prompt_lengths": np.zeros((b_n,), np.int32),
            "response_lengths": np.zeros((b_n,), np.int32),
            "user_ids": np.full((b_n,), "", dtype=object),
            "candidates": np.full((b_n,), "", dtype=object),
        }
        shared = self.shared_prefix
        if shared:
            check_shared_prefix(examples, shared)
            out["tokens"][:, :shared] = examples[0].prompt_ids[:shared]      # padding rows too: any row is the prefix
            out["positions"][:, :shared] = np.arange(shared)
        for i, ex in enumerate(examples):
            n, m = len(ex.prompt_ids), len(ex.response_ids)
            out["tokens"][i, p_len - n + shared:p_len] = ex.prompt_ids[shared:]
            out["tokens"][i, p_len:p_len + m] = ex.response_ids
            out["positions"][i, p_len - n + shared:p_len + m] = np.arange(shared, n + m)
            out["loss_mask"][i, :m] = True
            out["labels"][i] = ex.label
            out["example_mask"][i] = True
            out["prompt_lengths"][i] = n
            out["response_lengths"][i] = m
            out["user_ids"][i] = ex.user_id
            out["candidates"][i] = ex.candidate
        out["user_ids"] = out["user_ids"].astype(str)
        out["candidates"] = out["candidates"].astype(str)
        return out


def make_dataset(examples: Sequence[SFTExample], config: SFTDataConfig, pad_id: int) -> grain.MapDataset:
    """The batched `grain.MapDataset` (index = global batch number, epochs included)."""
    examples = fit_examples(examples, config)
    check_shared_prefix(examples, config.shared_prefix)
    ds = grain.MapDataset.source(examples)
    if len(ds) < config.batch_size * config.shard_count and config.drop_remainder:
        raise ValueError(f"{len(ds)} SFT examples, fewer than batch_size={config.batch_size} x {config.shard_count} "
                         "host shard(s), and drop_remainder is on: no batch at all")
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)
    global_batch = config.batch_size * config.shard_count
    batch_fn = collate = Collate(global_batch, config.prompt_buckets, config.response_buckets, pad_id,
                                 config.shared_prefix)
    if config.shard_count > 1:
        batch_fn = HostSlice(collate, global_batch, config.shard_index, config.shard_count)
    ds = ds.batch(global_batch, drop_remainder=config.drop_remainder, batch_fn=batch_fn)
    return ds.repeat(config.num_epochs)


def make_iterator(examples: Sequence[SFTExample], config: SFTDataConfig, pad_id: int) -> grain.DatasetIterator:
    """A checkpointable iterator of batches (``get_state``/``set_state``)."""
    return iter(make_dataset(examples, config, pad_id).to_iter_dataset())


def device_batch(batch: Batch) -> dict[str, np.ndarray]:
    """The numeric arrays a jitted step takes (strings and bookkeeping dropped)."""
    return {k: batch[k] for k in DEVICE_KEYS}
