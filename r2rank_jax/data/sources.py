"""Input specs -> readers: ``recbole:DIR/NAME``, ``amazon2023:DIR/Category``, ``movielens:DIR``."""
from __future__ import annotations

from r2rank_jax.data.amazon2023 import read_amazon2023
from r2rank_jax.data.movielens import read_movielens
from r2rank_jax.data.recbole import read_recbole
from r2rank_jax.data.tables import RawDataset

KINDS = ("recbole", "amazon2023", "movielens")


def parse_spec(spec: str) -> tuple[str, str]:
    """``"kind:path"`` -> ``(kind, path)``; raises ValueError for an unknown kind or empty path."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS or not path:
        raise ValueError(f"input spec must be one of {[k + ':PATH' for k in KINDS]}, got {spec!r}")
    return kind, path


def read_source(spec: str, window: str | None = None) -> RawDataset:
    """Reads the dataset named by ``spec``. ``window`` (see `amazon2023.parse_window`) is only valid
    for ``amazon2023`` sources, whose raw files carry real timestamps over many years."""
    kind, path = parse_spec(spec)
    if window not in (None, "none") and kind != "amazon2023":
        raise ValueError(f"--window applies to amazon2023 sources only, not {kind!r}")
    if kind == "recbole":
        return read_recbole(path)
    if kind == "amazon2023":
        return read_amazon2023(path, window=window)
    return read_movielens(path)
