"""Verbalizer scoring: the log-probability of each of several answer strings after a context.

R2Rank's pointwise LLM baselines read the model's own answer instead of a scoring head:

    score(candidate) = log P("Recommend" | context) - log P("Not Recommend" | context)

where the context is the pointwise prompt, optionally followed by a generated rationale, ending with
the answer tag ``<answer>`` (`rationale_context` cuts a rationale right after its tag, or appends the
tag). Each answer string is teacher-forced token by token and its log-probs are summed, so answers
of different token lengths are scored exactly (a multi-token answer is the product of its token
probabilities). The same mechanism serves TALLRec (P("Yes")) and Prompt4NR (several answer words):
`AnswerScorer` takes any answer token sequences.

Computation (one jitted function, static shapes per (batch, prefix bucket, row bucket, answer set)):
the optional shared prefixes `[U, P]` run once and become a read-only context; the rows `[B, S]`
(B = U * K, left padded, positions continuing after their prefix) are prefilled into a small KV
cache with room for the answer tokens — or, when shorter, each user's K rows as one packed row with
segment-masked attention, as the sampler prefills suffixes; the logits at each row's last token give the
first answer token's log-prob, and one teacher-forced pass of every answer `[B, L]` over the cache gives
the rest. After a rationale decode, `logprobs_after_decode` reads on from the decode's own cache instead.

Answer token ids. Tokenizing an answer alone can differ from how it follows the tag (a sentencepiece
dummy prefix, a BPE merge across the boundary), so `encode_answers` tokenizes ``tag + answer`` and
strips the tag's tokens, checking that they are a prefix.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from r2rank_jax import buckets as buckets_
from r2rank_jax.data.prompt_text import ANSWER_OPEN, NOT_RECOMMEND, RECOMMEND
from r2rank_jax.models.decoder import Decoder, context_from_kv
from r2rank_jax.models.kv_cache import KVCache
from r2rank_jax.sampling.sampler import (DEFAULT_BUCKETS, DecodedRows, pad_left, packed_layout,
                                         prefill_packed_rows, segment_band)

DECISION_ANSWERS: tuple[str, str] = (RECOMMEND, NOT_RECOMMEND)


# ------------------------------------------------------------------------------------ token ids

def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_answers(tokenizer: Any, answers: Sequence[str], after: str = ANSWER_OPEN) -> tuple[tuple[int, ...], ...]:
    """Token ids of each answer as it follows ``after`` (see module docstring); raises when the tokens
    of ``after`` are not a prefix of those of ``after + answer`` (the answer would merge into the tag)."""
    lead = _encode(tokenizer, after)
    out = []
    for answer in answers:
        ids = _encode(tokenizer, after + answer)
        if ids[:len(lead)] != lead or len(ids) == len(lead):
            raise ValueError(f"answer {answer!r}: the tokens of {after + answer!r} ({ids}) do not start with the "
                             f"tokens of {after!r} ({lead}) followed by at least one token")
        out.append(tuple(ids[len(lead):]))
    return tuple(out)


def rationale_context(ids: Sequence[int], tokenizer: Any, tag: str = ANSWER_OPEN,
                      drop_ids: Sequence[int] = ()) -> list[int]:
    """Generated rationale ids → the ids that end right after its first ``tag`` (the model's own
    tokens up to the tag), or, when it never wrote the tag, the rationale (trailing ``drop_ids`` such
    as EOS removed) followed by the tag's tokens.

    If the tag ends inside a token (a BPE merge like ``>R``), the tokens before that token are kept
    and the rest of the tag is tokenized on its own.
    """
    ids = [int(i) for i in ids]
    text = tokenizer.decode(ids, skip_special_tokens=False)
    if tag not in text:
        drop = set(int(i) for i in drop_ids)
        while ids and ids[-1] in drop:
            ids.pop()
        return ids + _encode(tokenizer, tag)
    lo, hi = 1, len(ids)  # smallest i with the tag inside decode(ids[:i]): the tag is in decode(ids[:hi])
    while lo < hi:
        mid = (lo + hi) // 2
        if tag in tokenizer.decode(ids[:mid], skip_special_tokens=False):
            hi = mid
        else:
            lo = mid + 1
    head = tokenizer.decode(ids[:hi], skip_special_tokens=False)
    end = head.index(tag) + len(tag)
    if end == len(head):
        return ids[:hi]
    before = tokenizer.decode(ids[:hi - 1], skip_special_tokens=False)
    return ids[:hi - 1] + _encode(tokenizer, head[len(before):end])


# ------------------------------------------------------------------------------------ jitted core

def _score_answers(model, cache, context, row_tokens, row_positions, answer_tokens, answer_mask):
    """Rows `[B, S]` written into `cache` (room for S + L more slots) → `[B, A]` summed answer log-probs."""
    b, s = row_tokens.shape
    out = model(row_tokens, row_positions, cache=cache, context=context, logits_at=jnp.full((b, 1), s - 1, jnp.int32))
    return _answers_after(model, out.cache, context, out.logits[:, 0], jnp.max(row_positions, axis=1) + 1,
                          answer_tokens, answer_mask)


def _answers_after(model, cache, context, logits, next_pos, answer_tokens, answer_mask):
    """Rows whose context is in `cache` (room for L more slots), `logits` `[B, V]` after its last token and
    `next_pos` `[B]` the position after it → `[B, A]`: each answer's first token read from `logits`, the
    rest teacher-forced over the cache (one pass per answer)."""
    b = logits.shape[0]
    num_answers, length = answer_tokens.shape
    first = jax.nn.log_softmax(logits, axis=-1)                                  # [B, V]
    total = first[:, answer_tokens[:, 0]]                                        # [B, A]
    if length == 1:
        return total

    def rest(xs):
        tokens, mask = xs                                                        # [L], [L]
        positions = jnp.where(mask[None, :], next_pos[:, None] + jnp.arange(length)[None, :], -1)
        at = jnp.broadcast_to(jnp.arange(length - 1, dtype=jnp.int32), (b, length - 1))
        res = model(jnp.broadcast_to(tokens, (b, length)), positions, cache=cache, context=context, logits_at=at)
        logp = jax.nn.log_softmax(res.logits, axis=-1)                          # [B, L-1, V]: predicts tokens 1..L-1
        picked = jnp.take_along_axis(logp, jnp.broadcast_to(tokens[1:], (b, length - 1))[..., None], axis=-1)[..., 0]
        return jnp.sum(jnp.where(mask[None, 1:], picked, 0.0), axis=1)           # [B]

    return total + jax.lax.map(rest, (answer_tokens, answer_mask)).T


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _answer_logprobs(graphdef, state, prefix_tokens, prefix_positions, row_tokens, row_positions,
                     answer_tokens, answer_mask):
    """→ `[B, A]` float32: sum of log P(answer token) over each answer's real tokens, per row.

    prefix_*: `[U, P]` or None; row_*: `[B, S]` left padded (B = U * K with a prefix);
    answer_tokens / answer_mask: `[A, L]` right padded.
    """
    model = nnx.merge(graphdef, state)
    context = None
    if prefix_tokens is not None:
        context = context_from_kv(model(prefix_tokens, prefix_positions, return_kv=True).kv, prefix_positions,
                                  for_decoding=True)
    b, s = row_tokens.shape
    cache = KVCache.init(model.config, b, s + answer_tokens.shape[1])
    return _score_answers(model, cache, context, row_tokens, row_positions, answer_tokens, answer_mask)


@functools.partial(jax.jit, static_argnames=("graphdef", "band"))
def _answer_logprobs_packed(graphdef, state, prefix_tokens, prefix_positions, tokens, positions, segments, last,
                            rows_t, answer_tokens, answer_mask, *, band):
    """`_answer_logprobs` with each user's K rows prefilled as one packed row, as the sampler prefills
    suffixes (`sampling.sampler.packed_layout`: tokens / positions / segments `[U, T]`, last `[U, K]`,
    rows_t `[U * K, S]`); band: the packed attention's `segment_band` (None: dense)."""
    model = nnx.merge(graphdef, state)
    context = context_from_kv(model(prefix_tokens, prefix_positions, return_kv=True, unroll=True).kv,
                              prefix_positions, for_decoding=True)
    cache, logits = prefill_packed_rows(model, tokens, positions, segments, last, rows_t, context,
                                        cache_size=rows_t.shape[1] + answer_tokens.shape[1], band=band)
    next_pos = jnp.take_along_axis(positions, last, axis=1).reshape(-1) + 1      # [U * K]
    return _answers_after(model, cache, context, logits, next_pos, answer_tokens, answer_mask)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _answer_logprobs_after_decode(graphdef, state, cache, context, keep, fed_tokens, fed_positions, answer_tokens,
                                  answer_mask):
    """`_answer_logprobs` reading a decode's final cache `[B, C]` instead of prefilling the rows again: row b
    keeps its slots [0, keep[b]) (its suffix and the generated tokens of its context), the rest is masked out
    (tokens generated past the cut, padding written after the row stopped); then the rows' remaining context
    tokens fed `[B, W]` (left padded, at least one per row) and the answers are scored after them."""
    model = nnx.merge(graphdef, state)
    room = fed_tokens.shape[1] + answer_tokens.shape[1]
    kept = jnp.arange(cache.size)[None, :] < keep[:, None]
    cache = cache.replace(
        k=tuple(jnp.pad(k, ((0, 0), (0, 0), (0, 0), (0, room))) for k in cache.k),
        v=tuple(jnp.pad(v, ((0, 0), (0, 0), (0, room), (0, 0))) for v in cache.v),
        positions=jnp.pad(jnp.where(kept, cache.positions, -1), ((0, 0), (0, room)), constant_values=-1),
        end=jnp.asarray(cache.size, jnp.int32))
    return _score_answers(model, cache, context, fed_tokens, fed_positions, answer_tokens, answer_mask)


def kept_and_fed(generated: Sequence[int], context: Sequence[int]) -> tuple[int, list[int]]:
    """A row's generated tokens and the context to score after (`rationale_context`) → (m, fed): the first m
    generated tokens are the context's own and stay in the decode's cache; `fed` = the context's remaining
    tokens, at least one (the logits after the context's last token are needed, and the decode kept none)."""
    m = 0
    while m < min(len(generated), len(context) - 1) and generated[m] == context[m]:
        m += 1
    return m, list(context[m:])


# Widths of the tokens fed after a decode (the tag's tail and the context's last token).
FED_BUCKETS = (4, 8, 16, 32, 64)


class AnswerScorer:
    """log P(answer_a | context) for rows of contexts and a fixed set of answers (token id sequences).

    `logprobs(contexts)` takes independent contexts; `logprobs_shared(prefixes, continuations)` takes U
    shared prefixes with K continuations each (context of row u * K + k = prefix u ‖ continuation k).
    Pass `state=` to score with other parameters of the same architecture (no recompile).
    """

    def __init__(self, model: Decoder, answers: Sequence[Sequence[int]], buckets: Sequence[int] = DEFAULT_BUCKETS,
                 pad_id: int = 0, batch_size: int | None = None, row_buckets: Sequence[int] | None = None,
                 pack: bool = True):
        """buckets: padded lengths of prefixes (and of rows unless `row_buckets` is given). pack: with shared
        prefixes, prefill each user's K rows as one packed row (padded to a `DEFAULT_BUCKETS` length) when
        that is shorter than K rows padded to the longest, as the sampler does with suffixes."""
        if not answers or any(len(a) == 0 for a in answers):
            raise ValueError(f"need at least one answer and no empty answer, got {answers}")
        self.graphdef, self.state = nnx.split(model)
        self.max_positions = model.config.max_position_embeddings
        self.buckets = buckets_.check(buckets, "buckets")
        self.row_buckets = buckets_.check(row_buckets or buckets, "row_buckets")
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.pack = pack
        length = max(len(a) for a in answers)
        self.answer_tokens = np.full((len(answers), length), pad_id, np.int32)
        self.answer_mask = np.zeros((len(answers), length), bool)
        for i, a in enumerate(answers):
            self.answer_tokens[i, :len(a)] = a
            self.answer_mask[i, :len(a)] = True

    @staticmethod
    def _bucket(length: int, buckets: tuple[int, ...], what: str) -> int:
        return buckets_.choose(length, buckets, what, allow_empty=False)

    def _run(self, prefixes, rows, starts, state) -> np.ndarray:
        last = max(st + len(r) for st, r in zip(starts, rows)) + self.answer_tokens.shape[1]
        if last > self.max_positions:
            raise ValueError(f"positions up to {last} exceed max_position_embeddings={self.max_positions}")
        pre_t = pre_p = None
        if prefixes is not None:
            pre_t, pre_p = pad_left(prefixes, self._bucket(max(len(p) for p in prefixes), self.buckets, "prefix"),
                                    self.pad_id)
        width = self._bucket(max(len(r) for r in rows), self.row_buckets, "context")
        if prefixes is not None and self.pack:
            k = len(rows) // len(prefixes)
            users = [rows[u * k:(u + 1) * k] for u in range(len(prefixes))]
            packed_len = buckets_.fitting(max(sum(map(len, user)) for user in users), DEFAULT_BUCKETS)
            if packed_len is not None and packed_len < k * width:
                layout = packed_layout(users, [len(p) for p in prefixes], width, packed_len, self.pad_id)
                out = _answer_logprobs_packed(self.graphdef, self.state if state is None else state, pre_t, pre_p,
                                              *map(jnp.asarray, layout), self.answer_tokens, self.answer_mask,
                                              band=segment_band(width, packed_len))
                return np.asarray(out, np.float32)
        tokens, positions = pad_left(rows, width, self.pad_id, starts)
        out = _answer_logprobs(self.graphdef, self.state if state is None else state, pre_t, pre_p, tokens, positions,
                               self.answer_tokens, self.answer_mask)
        return np.asarray(out, np.float32)

    def logprobs(self, contexts: Sequence[Sequence[int]], state=None) -> np.ndarray:
        """B independent contexts (token id lists) → `[B, A]` float32 log-probs of the answers.

        With `batch_size`, rows go in chunks of exactly that many (the last one padded), so every call
        has the same batch shape."""
        if not contexts:
            raise ValueError("no contexts")
        n = len(contexts)
        chunk = self.batch_size or n
        out = []
        for start in range(0, n, chunk):
            part = [list(c) for c in contexts[start:start + chunk]]
            real = len(part)
            part += [part[0]] * (chunk - real)
            out.append(self._run(None, part, [0] * chunk, state)[:real])
        return np.concatenate(out)

    def logprobs_shared(self, prefixes: Sequence[Sequence[int]], continuations: Sequence[Sequence[Sequence[int]]],
                        state=None) -> np.ndarray:
        """U prefixes, U lists of K continuations → `[U * K, A]` float32 (row u * K + k)."""
        if not prefixes or len(prefixes) != len(continuations):
            raise ValueError(f"{len(prefixes)} prefixes but {len(continuations)} continuation lists")
        ks = {len(c) for c in continuations}
        if len(ks) != 1 or 0 in ks:
            raise ValueError(f"every prefix needs the same, non-zero number of continuations; got {sorted(ks)}")
        rows = [list(c) for user in continuations for c in user]
        starts = [len(prefixes[u]) for u, user in enumerate(continuations) for _ in user]
        return self._run([list(p) for p in prefixes], rows, starts, state)

    def logprobs_after_decode(self, decoded: DecodedRows, contexts: Sequence[Sequence[int]], state=None) -> np.ndarray:
        """The rows of a `Sampler.generate_shared(..., keep_cache=True)` call, each continued by its context
        after the suffix (e.g. `rationale_context` of its generated tokens) → `[B, A]` float32, equal (up to
        float rounding) to `logprobs_shared(prefixes, suffixes + contexts)` without prefilling them again."""
        out = decoded.output
        ids, valid = np.asarray(out.ids), np.asarray(out.valid)
        if len(contexts) != ids.shape[0]:
            raise ValueError(f"{len(contexts)} contexts for {ids.shape[0]} decoded rows")
        kept, fed = zip(*(kept_and_fed(ids[b][valid[b]].tolist(), c) for b, c in enumerate(contexts)))
        kept = np.asarray(kept, np.int32)
        starts = decoded.next_pos + kept
        last = int(max(st + len(f) for st, f in zip(starts, fed))) + self.answer_tokens.shape[1]
        if last > self.max_positions:
            raise ValueError(f"positions up to {last} exceed max_position_embeddings={self.max_positions}")
        width = buckets_.choose(max(map(len, fed)), FED_BUCKETS, "context continuation", allow_empty=False)
        tokens, positions = pad_left(fed, width, self.pad_id, starts)
        res = _answer_logprobs_after_decode(self.graphdef, self.state if state is None else state, decoded.cache,
                                            decoded.context, jnp.asarray(decoded.suffix_slots + kept), tokens,
                                            positions, self.answer_tokens, self.answer_mask)
        return np.asarray(res, np.float32)


def decision_scorer(model: Decoder, tokenizer: Any, buckets: Sequence[int] = DEFAULT_BUCKETS,
                    batch_size: int | None = None, row_buckets: Sequence[int] | None = None,
                    pack: bool = True) -> AnswerScorer:
    """The R2Rank verbalizer: answers ("Recommend", "Not Recommend") as they follow ``<answer>``."""
    return AnswerScorer(model, encode_answers(tokenizer, DECISION_ANSWERS), buckets,
                        pad_id=tokenizer.pad_token_id or 0, batch_size=batch_size, row_buckets=row_buckets, pack=pack)


def decision_scores(logprobs: np.ndarray) -> np.ndarray:
    """`[..., 2]` log-probs of (Recommend, Not Recommend) → `[...]` log P(Recommend) − log P(Not Recommend)."""
    return logprobs[..., 0] - logprobs[..., 1]
