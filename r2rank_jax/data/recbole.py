"""Reader for RecBole atomic files (``NAME.item``, ``NAME.inter``, optional ``NAME.user``).

Formats (tab separated, first line a typed header ``name:type``):

- ``NAME.item``: ``item_id:token  title:token_seq  [more text columns...]``; every other column is
  kept as an optional text field of the item.
- ``NAME.inter``, one of two shapes:
  * one row per interaction: ``user_id:token  item_id:token  [timestamp:float]  [rating:float]``;
    a user's rows are ordered by timestamp (file order when there is no timestamp column);
  * one row per user: ``user_id:token  item_id_list:token_seq  item_id:token``, the history oldest
    first (space separated) and the last item the target; the full sequence is history + [target].
  When ``NAME.inter`` is absent, ``NAME.test.inter`` is read (it holds the full sequences in the
  LLMRank layout, whose ``valid``/``train`` files are prefixes of it).
- ``NAME.user`` (optional): ``user_id:token  [attribute columns...]``; the attributes become the
  profile text ``"attr: value; attr: value"``.
"""
from __future__ import annotations

import pathlib

from r2rank_jax.data.errors import DataError
from r2rank_jax.data.tables import Item, RawDataset, SequenceBuilder, UserSequence, sorted_ids
from r2rank_jax.data.textio import iter_lines


class _Table:
    """Header-checked row iterator over one atomic file."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self._lines = iter_lines(path)
        try:
            lineno, header = next(self._lines)
        except StopIteration:
            raise DataError(path, None, "empty file (expected a typed header line)") from None
        self.header = header.split("\t")
        self.names = [h.split(":", 1)[0].strip() for h in self.header]
        dup = {n for n in self.names if self.names.count(n) > 1}
        if dup:
            raise DataError(path, lineno, f"duplicate column(s) {sorted(dup)} in header")

    def require(self, *names: str) -> list[int]:
        """Column indices of ``names``; a missing one is reported against the header line."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise DataError(self.path, 1, f"missing column(s) {missing} in header {self.header}")
        return [self.names.index(n) for n in names]

    def rows(self):
        """Yields ``(line_number, fields)``; blank lines are skipped, a wrong field count is an error."""
        n = len(self.names)
        for lineno, text in self._lines:
            if not text.strip():
                continue
            fields = text.split("\t")
            if len(fields) != n:
                raise DataError(
                    self.path, lineno,
                    f"expected {n} tab-separated fields {self.names}, found {len(fields)}",
                )
            yield lineno, fields


def read_items(path: pathlib.Path) -> dict[str, Item]:
    """``NAME.item`` -> item id -> `Item`, in file order. Duplicate ids and empty titles are errors."""
    table = _Table(path)
    id_col, title_col = table.require("item_id", "title")
    extra = [(i, name) for i, name in enumerate(table.names) if i not in (id_col, title_col)]
    items: dict[str, Item] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in table.rows():
        item_id = fields[id_col].strip()
        title = fields[title_col].strip()
        if not item_id:
            raise DataError(path, lineno, "empty item_id")
        if item_id in items:
            raise DataError(path, lineno, f"duplicate item id {item_id!r} (first on line {first_line[item_id]})")
        if not title:
            raise DataError(path, lineno, f"empty title for item {item_id!r}")
        extras = {name: fields[i].strip() for i, name in extra if fields[i].strip()}
        items[item_id] = Item(item_id, title, extras)
        first_line[item_id] = lineno
    return items


def _check_item(path: pathlib.Path, lineno: int, item_id: str, items: dict[str, Item]) -> str:
    if item_id not in items:
        raise DataError(path, lineno, f"unknown item id {item_id!r} (not in the .item file)")
    return item_id


def _parse_float(path: pathlib.Path, lineno: int, field: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise DataError(path, lineno, f"non-numeric {field} {value!r}") from None


def read_interactions(path: pathlib.Path, items: dict[str, Item]) -> dict[str, UserSequence]:
    """``NAME.inter`` (either shape, see module docstring) -> user id -> chronological sequence."""
    table = _Table(path)
    if "item_id_list" in table.names:
        return _read_per_user(table, items)
    user_col, item_col = table.require("user_id", "item_id")
    time_col = table.names.index("timestamp") if "timestamp" in table.names else None
    builder = SequenceBuilder()
    for lineno, fields in table.rows():
        user_id = fields[user_col].strip()
        if not user_id:
            raise DataError(path, lineno, "empty user_id")
        item_id = _check_item(path, lineno, fields[item_col].strip(), items)
        ts = None if time_col is None else _parse_float(path, lineno, "timestamp", fields[time_col].strip())
        builder.add(user_id, item_id, ts)
    return builder.build()


def _read_per_user(table: _Table, items: dict[str, Item]) -> dict[str, UserSequence]:
    path = table.path
    user_col, list_col, item_col = table.require("user_id", "item_id_list", "item_id")
    out: dict[str, UserSequence] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in table.rows():
        user_id = fields[user_col].strip()
        if not user_id:
            raise DataError(path, lineno, "empty user_id")
        if user_id in out:
            raise DataError(path, lineno, f"duplicate row for user {user_id!r} (first on line {first_line[user_id]})")
        history = fields[list_col].split()
        if not history:
            raise DataError(path, lineno, f"empty history (item_id_list) for user {user_id!r}")
        target = fields[item_col].strip()
        if not target:
            raise DataError(path, lineno, f"empty target item_id for user {user_id!r}")
        seq = tuple(_check_item(path, lineno, i, items) for i in [*history, target])
        out[user_id] = UserSequence(user_id, seq, None)
        first_line[user_id] = lineno
    return {uid: out[uid] for uid in sorted_ids(out)}


def read_profiles(path: pathlib.Path) -> dict[str, str]:
    """``NAME.user`` -> user id -> ``"attr: value; ..."`` (empty attributes left out)."""
    table = _Table(path)
    (user_col,) = table.require("user_id")
    out: dict[str, str] = {}
    for lineno, fields in table.rows():
        user_id = fields[user_col].strip()
        if user_id in out:
            raise DataError(path, lineno, f"duplicate user id {user_id!r}")
        parts = [f"{name}: {fields[i].strip()}" for i, name in enumerate(table.names)
                 if i != user_col and fields[i].strip()]
        out[user_id] = "; ".join(parts)
    return out


def inter_path(directory: pathlib.Path, name: str) -> pathlib.Path:
    """``NAME.inter`` if present, else ``NAME.test.inter`` (LLMRank layout)."""
    for candidate in (directory / f"{name}.inter", directory / f"{name}.test.inter"):
        if candidate.is_file():
            return candidate
    raise DataError(directory / f"{name}.inter", None, f"file not found (nor {name}.test.inter)")


def read_recbole(prefix: str | pathlib.Path) -> RawDataset:
    """Reads ``DIR/NAME`` (the spec ``recbole:DIR/NAME``) into a `RawDataset`."""
    prefix = pathlib.Path(prefix)
    directory, name = prefix.parent, prefix.name
    items = read_items(directory / f"{name}.item")
    sequences = read_interactions(inter_path(directory, name), items)
    user_file = directory / f"{name}.user"
    profiles = read_profiles(user_file) if user_file.is_file() else {}
    return RawDataset(source=f"recbole:{prefix}", items=items, sequences=sequences, profiles=profiles)
