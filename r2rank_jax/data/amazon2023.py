"""Reader for the official Amazon Reviews 2023 files of one category.

- ``DIR/{Category}.jsonl[.gz]``: one review per line with at least ``user_id``, ``parent_asin``,
  ``timestamp`` (Unix time in milliseconds) and usually ``rating``.
- ``DIR/meta_{Category}.jsonl[.gz]``: one item per line with ``parent_asin``, ``title`` and optional
  ``main_category``, ``store``, ``categories``, ``features``, ``description`` (lists are joined).

Items without a title are dropped, and so are reviews of items that are dropped or absent from the
metadata; the item table keeps only items with at least one remaining review. ``window`` keeps
reviews with ``start <= time < end`` (UTC dates); `PAPER_WINDOW` is the paper's Oct 2021 – Oct 2023.
"""
from __future__ import annotations

import datetime as dt
import numbers
import pathlib
from typing import Any

from r2rank_jax.data.errors import DataError
from r2rank_jax.data.tables import Item, RawDataset, SequenceBuilder
from r2rank_jax.data.textio import find_file, iter_jsonl

PAPER_WINDOW: tuple[str, str] = ("2021-10-01", "2023-10-01")
TEXT_FIELDS: tuple[str, ...] = ("main_category", "store", "categories", "features", "description")
_JOINERS = {"categories": " > "}


def parse_window(window: str | tuple[str, str] | None) -> tuple[float, float] | None:
    """``None``/"none" -> no window; "paper" -> `PAPER_WINDOW`; "START:END" or a pair of ISO dates ->
    ``(start_ms, end_ms)`` in UTC milliseconds, end exclusive."""
    if window is None or window == "none":
        return None
    if window == "paper":
        window = PAPER_WINDOW
    if isinstance(window, str):
        parts = window.split(":")
        if len(parts) != 2:
            raise ValueError(f"window must be 'paper', 'none' or 'START:END' (ISO dates), got {window!r}")
        window = (parts[0], parts[1])
    bounds = []
    for text in window:
        try:
            day = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"window bound {text!r} is not an ISO date (YYYY-MM-DD)") from None
        if day.tzinfo is None:
            day = day.replace(tzinfo=dt.timezone.utc)
        bounds.append(day.timestamp() * 1000.0)
    if bounds[0] >= bounds[1]:
        raise ValueError(f"empty window {window}: start must be before end")
    return bounds[0], bounds[1]


def _text(value: Any, joiner: str = " ") -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return joiner.join(str(v).strip() for v in value if v is not None and str(v).strip())
    return str(value).strip()


def _string_field(path: pathlib.Path, lineno: int, obj: dict[str, Any], key: str) -> str:
    if key not in obj:
        raise DataError(path, lineno, f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise DataError(path, lineno, f"field {key!r} must be a non-empty string, got {value!r}")
    return str(value).strip()


def read_meta(path: pathlib.Path) -> tuple[dict[str, Item], int]:
    """``meta_{Category}.jsonl`` -> (parent_asin -> `Item` for titled items, number dropped untitled)."""
    items: dict[str, Item] = {}
    first_line: dict[str, int] = {}
    untitled = 0
    for lineno, obj in iter_jsonl(path):
        asin = _string_field(path, lineno, obj, "parent_asin")
        if asin in first_line:
            raise DataError(path, lineno, f"duplicate item id (parent_asin) {asin!r} (first on line {first_line[asin]})")
        first_line[asin] = lineno
        title = _text(obj.get("title"))
        if not title:
            untitled += 1
            continue
        fields = {k: _text(obj.get(k), _JOINERS.get(k, " ")) for k in TEXT_FIELDS}
        items[asin] = Item(asin, title, {k: v for k, v in fields.items() if v})
    return items, untitled


def _timestamp_ms(path: pathlib.Path, lineno: int, obj: dict[str, Any]) -> float:
    if "timestamp" not in obj:
        raise DataError(path, lineno, "missing field 'timestamp'")
    value = obj["timestamp"]
    if isinstance(value, bool):
        raise DataError(path, lineno, f"non-numeric timestamp {value!r}")
    if isinstance(value, numbers.Real):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise DataError(path, lineno, f"non-numeric timestamp {value!r}") from None


def read_amazon2023(prefix: str | pathlib.Path, window: str | tuple[str, str] | None = None) -> RawDataset:
    """Reads ``DIR/Category`` (the spec ``amazon2023:DIR/Category``); timestamps become seconds.

    ``notes`` of the result counts ``items_without_title``, ``reviews_outside_window`` and
    ``reviews_of_unknown_items`` (no titled metadata line).
    """
    prefix = pathlib.Path(prefix)
    directory, category = prefix.parent, prefix.name
    bounds = parse_window(window)
    meta_items, untitled = read_meta(find_file(directory, f"meta_{category}.jsonl"))
    reviews = find_file(directory, f"{category}.jsonl")
    builder = SequenceBuilder()
    outside = unknown = 0
    used: set[str] = set()
    for lineno, obj in iter_jsonl(reviews):
        user_id = _string_field(reviews, lineno, obj, "user_id")
        asin = _string_field(reviews, lineno, obj, "parent_asin")
        ts = _timestamp_ms(reviews, lineno, obj)
        if bounds is not None and not (bounds[0] <= ts < bounds[1]):
            outside += 1
            continue
        if asin not in meta_items:
            unknown += 1
            continue
        used.add(asin)
        builder.add(user_id, asin, ts / 1000.0)
    items = {k: v for k, v in meta_items.items() if k in used}
    notes = {"items_without_title": untitled, "reviews_outside_window": outside, "reviews_of_unknown_items": unknown}
    return RawDataset(source=f"amazon2023:{prefix}", items=items, sequences=builder.build(), notes=notes)
