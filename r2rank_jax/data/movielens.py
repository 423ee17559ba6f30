"""Reader for MovieLens ML-1M and ML-100K (latin-1 text files).

- ML-1M (``ratings.dat``, ``movies.dat``, ``users.dat``; ``::`` separated):
  ``UserID::MovieID::Rating::Timestamp``, ``MovieID::Title::Genres`` (``|`` separated genres),
  ``UserID::Gender::Age::Occupation::Zip-code`` (age and occupation are codes, decoded below).
- ML-100K (``u.data`` tab separated ``user item rating timestamp``; ``u.item`` ``|`` separated
  ``id|title|release date|video release date|IMDb URL|19 genre flags``; ``u.user``
  ``id|age|gender|occupation|zip``).

Items get the field ``genres`` ("Action, Comedy"); users get a profile text
``"Gender: female; age: 25-34; occupation: programmer"``. The layout is detected from the file names.
"""
from __future__ import annotations

import pathlib

from r2rank_jax.data.errors import DataError
from r2rank_jax.data.tables import Item, RawDataset, SequenceBuilder
from r2rank_jax.data.textio import iter_lines

ML1M_AGES = {"1": "under 18", "18": "18-24", "25": "25-34", "35": "35-44", "45": "45-49", "50": "50-55", "56": "56+"}
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_GENDERS = {"M": "male", "F": "female"}


def _rows(path: pathlib.Path, sep: str, min_fields: int, max_fields: int | None = None):
    """Yields ``(line_number, fields)`` of a latin-1 file split on ``sep``, checking the field count."""
    max_fields = min_fields if max_fields is None else max_fields
    for lineno, text in iter_lines(path, encoding="latin-1"):
        if not text.strip():
            continue
        fields = text.split(sep)
        if not min_fields <= len(fields) <= max_fields:
            want = str(min_fields) if min_fields == max_fields else f"{min_fields}-{max_fields}"
            raise DataError(path, lineno, f"expected {want} {sep!r}-separated fields, found {len(fields)}")
        yield lineno, [f.strip() for f in fields]


def _add_item(items: dict[str, Item], lines: dict[str, int], path, lineno, item_id, title, genres) -> None:
    if not item_id:
        raise DataError(path, lineno, "empty movie id")
    if item_id in items:
        raise DataError(path, lineno, f"duplicate item id {item_id!r} (first on line {lines[item_id]})")
    if not title:
        raise DataError(path, lineno, f"empty title for movie {item_id!r}")
    items[item_id] = Item(item_id, title, {"genres": ", ".join(genres)} if genres else {})
    lines[item_id] = lineno


def _read_ratings(path: pathlib.Path, sep: str, items: dict[str, Item]) -> SequenceBuilder:
    builder = SequenceBuilder()
    for lineno, (user, item, _rating, ts) in _rows(path, sep, 4):
        if item not in items:
            raise DataError(path, lineno, f"unknown item id {item!r} (not in the movie file)")
        try:
            seconds = float(ts)
        except ValueError:
            raise DataError(path, lineno, f"non-numeric timestamp {ts!r}") from None
        builder.add(user, item, seconds)
    return builder


def _profile(gender: str, age: str, occupation: str) -> str:
    return f"Gender: {_GENDERS.get(gender, gender)}; age: {age}; occupation: {occupation}"


def read_ml1m(directory: pathlib.Path) -> RawDataset:
    """ML-1M directory -> `RawDataset` with genres and user profiles."""
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    movies = directory / "movies.dat"
    for lineno, (mid, title, genres) in _rows(movies, "::", 3):
        _add_item(items, lines, movies, lineno, mid, title, [g for g in genres.split("|") if g])
    builder = _read_ratings(directory / "ratings.dat", "::", items)
    profiles: dict[str, str] = {}
    users = directory / "users.dat"
    if users.is_file():
        for lineno, (uid, gender, age, occ, _zip) in _rows(users, "::", 5):
            if not occ.isdigit() or int(occ) >= len(ML1M_OCCUPATIONS):
                raise DataError(users, lineno, f"unknown occupation code {occ!r}")
            profiles[uid] = _profile(gender, ML1M_AGES.get(age, age), ML1M_OCCUPATIONS[int(occ)])
    return RawDataset(f"movielens:{directory}", items, builder.build(), profiles)


def read_ml100k(directory: pathlib.Path) -> RawDataset:
    """ML-100K directory -> `RawDataset` with genres and user profiles."""
    items: dict[str, Item] = {}
    lines: dict[str, int] = {}
    movies = directory / "u.item"
    n_genres = len(ML100K_GENRES)
    for lineno, fields in _rows(movies, "|", 5 + n_genres):
        flags = fields[5:]
        if any(f not in ("0", "1") for f in flags):
            raise DataError(movies, lineno, "genre flags must be 0 or 1")
        genres = [g for g, f in zip(ML100K_GENRES, flags) if f == "1"]
        _add_item(items, lines, movies, lineno, fields[0], fields[1], genres)
    builder = _read_ratings(directory / "u.data", "\t", items)
    profiles: dict[str, str] = {}
    users = directory / "u.user"
    if users.is_file():
        for lineno, (uid, age, gender, occ, _zip) in _rows(users, "|", 5):
            profiles[uid] = _profile(gender, age, occ)
    return RawDataset(f"movielens:{directory}", items, builder.build(), profiles)


def read_movielens(directory: str | pathlib.Path) -> RawDataset:
    """Reads ``DIR`` (the spec ``movielens:DIR``), ML-1M or ML-100K by which files are present."""
    directory = pathlib.Path(directory)
    if (directory / "ratings.dat").is_file():
        return read_ml1m(directory)
    if (directory / "u.data").is_file():
        return read_ml100k(directory)
    raise DataError(directory, None, "not a MovieLens directory (expected ratings.dat for ML-1M or u.data for ML-100K)")
