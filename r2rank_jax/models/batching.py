"""Left-padded token batches with the position convention of the decoder (-1 = padding)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int = 0, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tokens `[B, T]` int32, positions `[B, T]` int32) with each row right-aligned; pads get position -1."""
    if not sequences or any(len(s) == 0 for s in sequences):
        raise ValueError("left_pad: every sequence must hold at least one token")
    longest = max(len(s) for s in sequences)
    length = longest if length is None else length
    if longest > length:
        raise ValueError(f"left_pad: a sequence of {longest} tokens does not fit length {length}")
    tokens = np.full((len(sequences), length), pad_id, np.int32)
    positions = np.full((len(sequences), length), -1, np.int32)
    for b, s in enumerate(sequences):
        tokens[b, length - len(s):] = s
        positions[b, length - len(s):] = np.arange(len(s))
    return tokens, positions
