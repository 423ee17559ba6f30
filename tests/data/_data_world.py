"""Shared, built-once test material: a small synthetic world benchmark and its tokenizer.

Several test modules import `world_benchmark()` / `world_tokenizer()`; the lru_cache makes the world
(~0.3 s) and the tokenizer (~1 s) be built once per pytest process, in a temporary directory removed
at exit.
"""
from __future__ import annotations

import atexit
import functools
import pathlib
import shutil
import tempfile

from r2rank_jax.data import synthetic, tokenizer

SMALL = synthetic.WorldConfig(num_users=150, num_items=120, seed=3)


@functools.lru_cache(maxsize=None)
def _root() -> pathlib.Path:
    root = pathlib.Path(tempfile.mkdtemp(prefix="r2rank-test-world-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.lru_cache(maxsize=None)
def world_dir() -> pathlib.Path:
    """``DIR`` with ``DIR/recbole/world.*`` and the prepared ``DIR/benchmark`` of `SMALL`."""
    out = _root() / "world"
    synthetic.build_benchmark(out, SMALL)
    return out


def world_benchmark() -> pathlib.Path:
    return world_dir() / "benchmark"


@functools.lru_cache(maxsize=None)
def world_tokenizer_dir() -> pathlib.Path:
    out = _root() / "tokenizer"
    tokenizer.train_world_tokenizer(world_benchmark(), out, vocab_size=1024)
    return out


@functools.lru_cache(maxsize=None)
def world_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(world_tokenizer_dir()))
