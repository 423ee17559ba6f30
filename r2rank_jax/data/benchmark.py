"""The prepared benchmark format: writing, hashing and loading.

A benchmark directory holds

- ``train.jsonl``, ``valid.jsonl``, ``test.jsonl``: one line per example,
  ``{"user_id": str, "history": [item ids, oldest first, <= L], "candidates": [K item ids],
  "positive": item id}`` plus ``"profile": str`` when the source has user profiles;
- ``items.jsonl``: ``{"item_id": str, "title": str, ...optional text fields}`` for every item that
  can occur in a history or candidate list;
- ``manifest.json``: source, seed, options, counts and ``files`` (sha256 per file) and
  ``content_hash``, the sha256 of the ``sha256sum``-style listing ``"<sha256>  <name>\\n"`` of the
  four JSONL files in the order above, i.e. ``sha256sum train.jsonl valid.jsonl test.jsonl
  items.jsonl | sha256sum``.

JSON is written with sorted keys, compact separators and raw UTF-8, so equal content gives equal bytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Iterable
from typing import Any

from r2rank_jax.data.errors import DataError
from r2rank_jax.data.textio import iter_jsonl

SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")
HASHED_FILES: tuple[str, ...] = ("train.jsonl", "valid.jsonl", "test.jsonl", "items.jsonl")
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Record:
    """One benchmark example: a user's context and K candidates, exactly one of them the positive."""

    user_id: str
    history: tuple[str, ...]
    candidates: tuple[str, ...]
    positive: str
    profile: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "history": list(self.history),
            "candidates": list(self.candidates),
            "positive": self.positive,
        }
        if self.profile is not None:
            out["profile"] = self.profile
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any], path: str | os.PathLike[str], lineno: int) -> Record:
        """Parses and checks one line (positive among the candidates, candidates distinct)."""
        for key in ("user_id", "history", "candidates", "positive"):
            if key not in obj:
                raise DataError(path, lineno, f"missing field {key!r}")
        candidates = tuple(obj["candidates"])
        if obj["positive"] not in candidates:
            raise DataError(path, lineno, f"positive {obj['positive']!r} is not among the candidates")
        if len(set(candidates)) != len(candidates):
            raise DataError(path, lineno, "duplicate candidates")
        return cls(obj["user_id"], tuple(obj["history"]), candidates, obj["positive"], obj.get("profile"))


def dumps(obj: Any, indent: int | None = None) -> str:
    """Canonical JSON text (sorted keys, fixed separators, UTF-8 kept as is)."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(obj, sort_keys=True, separators=separators, ensure_ascii=False, indent=indent)


def write_jsonl(path: pathlib.Path, objects: Iterable[dict[str, Any]]) -> str:
    """Writes one canonical JSON object per line; returns the file's sha256 (hex)."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for obj in objects:
            line = (dumps(obj) + "\n").encode("utf-8")
            digest.update(line)
            f.write(line)
    return digest.hexdigest()


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(file_hashes: dict[str, str]) -> str:
    """sha256 of the ``sha256sum`` listing of `HASHED_FILES` (see module docstring)."""
    listing = "".join(f"{file_hashes[name]}  {name}\n" for name in HASHED_FILES)
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def load_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``manifest.json`` of a prepared benchmark as a dict."""
    path = pathlib.Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(path, None, "not a prepared benchmark (manifest.json missing)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"invalid JSON ({e.msg})") from None


def verify(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Recomputes the file hashes and checks them against the manifest; returns the manifest."""
    directory = pathlib.Path(directory)
    manifest = load_manifest(directory)
    hashes = {name: file_sha256(directory / name) for name in HASHED_FILES}
    for name, expected in manifest.get("files", {}).items():
        if hashes.get(name) != expected:
            raise DataError(directory / name, None, f"sha256 {hashes.get(name)} differs from manifest ({expected})")
    if content_hash(hashes) != manifest.get("content_hash"):
        raise DataError(directory / MANIFEST, None, "content_hash does not match the files")
    return manifest


def load_split(directory: str | os.PathLike[str], split: str, verify_hash: bool = False) -> list[Record]:
    """Records of ``split`` ("train", "valid" or "test"), in file order."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
    directory = pathlib.Path(directory)
    if verify_hash:
        verify(directory)
    path = directory / f"{split}.jsonl"
    return [Record.from_json(obj, path, lineno) for lineno, obj in iter_jsonl(path)]


def load_items(directory: str | os.PathLike[str], verify_hash: bool = False) -> dict[str, dict[str, str]]:
    """item id -> ``{"item_id", "title", ...}`` from ``items.jsonl``."""
    directory = pathlib.Path(directory)
    if verify_hash:
        verify(directory)
    path = directory / "items.jsonl"
    items: dict[str, dict[str, str]] = {}
    for lineno, obj in iter_jsonl(path):
        if "item_id" not in obj or "title" not in obj:
            raise DataError(path, lineno, "missing field 'item_id' or 'title'")
        items[obj["item_id"]] = obj
    return items
