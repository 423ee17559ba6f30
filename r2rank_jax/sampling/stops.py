"""Stop strings (e.g. `</answer>`) detected on token ids inside the jitted decode loop.

Each stop string is a KMP automaton over characters. For every (automaton state, token) pair we
precompute, on the host, the state after reading the token's text, or -1 when the string completes
anywhere inside it. The decode loop then advances one `[B, num_strings]` state per step with a
gather: the match is exact on the decoded text (token boundaries do not matter), at no per-step cost
beyond the gather.

Token texts come from decoding each id alone; for byte-level BPE this concatenates to the decoded
text, except for characters split across tokens (multi-byte UTF-8), so stop strings should be ASCII.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _kmp_delta(s: str) -> tuple[np.ndarray, dict[str, int]]:
    """delta `[len(s), alphabet + 1]`: next state for (state, char class); state len(s) = matched.

    Char class `alphabet` (the last) stands for every character not in s.
    """
    alphabet = {ch: i for i, ch in enumerate(dict.fromkeys(s))}
    n = len(s)
    delta = np.zeros((n, len(alphabet) + 1), np.int32)
    fail = 0  # state of the longest proper border of s[:state]
    for state in range(n):
        for ch, c in alphabet.items():
            if s[state] == ch:
                delta[state, c] = state + 1
            else:
                delta[state, c] = delta[fail, c] if state else 0
        if state:
            fail = delta[fail, alphabet[s[state]]]
    return delta, alphabet


def _transition_table(s: str, token_texts: Sequence[str]) -> np.ndarray:
    """`[len(s), V]` int32: state after reading each token from each state, -1 if s completed."""
    delta, alphabet = _kmp_delta(s)
    n, v = len(s), len(token_texts)
    width = max((len(t) for t in token_texts), default=0)
    classes = np.full((v, width), -1, np.int32)  # -1 = past the end of the token
    other = len(alphabet)
    for i, text in enumerate(token_texts):
        classes[i, :len(text)] = [alphabet.get(ch, other) for ch in text]
    state = np.repeat(np.arange(n, dtype=np.int32)[:, None], v, axis=1)  # [n, V]
    done = np.zeros((n, v), bool)
    for j in range(width):
        c = classes[:, j][None, :]
        active = (c >= 0) & ~done
        nxt = delta[np.minimum(state, n - 1), np.maximum(c, 0)]
        state = np.where(active, nxt, state)
        done |= state == n
    return np.where(done, -1, state).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class StopStrings:
    """Transition tables `[num_strings, max_len, V]` int32 (-1 = stop) for the given strings."""

    strings: tuple[str, ...]
    table: np.ndarray

    @classmethod
    def from_token_texts(cls, strings: Sequence[str], token_texts: Sequence[str]) -> "StopStrings":
        strings = tuple(strings)
        if any(not s for s in strings):
            raise ValueError("stop strings must be non-empty")
        width = max((len(s) for s in strings), default=1)
        table = np.zeros((len(strings), width, len(token_texts)), np.int32)
        for i, s in enumerate(strings):
            table[i, :len(s)] = _transition_table(s, token_texts)
        return cls(strings, table)

    @classmethod
    def from_tokenizer(cls, strings: Sequence[str], tokenizer: Any, vocab_size: int) -> "StopStrings":
        """Tables for a transformers tokenizer; ids >= len(tokenizer) (padded vocab rows) never match."""
        n = min(vocab_size, len(tokenizer))
        texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        return cls.from_token_texts(strings, list(texts) + [""] * (vocab_size - n))

    @classmethod
    def none(cls, vocab_size: int) -> "StopStrings":
        return cls((), np.zeros((0, 1, vocab_size), np.int32))

    @property
    def vocab_size(self) -> int:
        return self.table.shape[2]

    def device_table(self) -> jax.Array:
        return jnp.asarray(self.table)


def init_state(table: jax.Array, batch: int) -> jax.Array:
    """Automaton states `[B, num_strings]` at the start of generation."""
    return jnp.zeros((batch, table.shape[0]), jnp.int32)


def advance(table: jax.Array, state: jax.Array, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reads tokens `[B]`: (new states `[B, num_strings]`, stopped `[B]` bool)."""
    if table.shape[0] == 0:
        return state, jnp.zeros(tokens.shape, bool)
    idx = jnp.arange(table.shape[0])[None, :]
    nxt = table[idx, jnp.maximum(state, 0), tokens[:, None]]
    return nxt, jnp.any(nxt < 0, axis=1)
