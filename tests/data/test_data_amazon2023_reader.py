"""Amazon Reviews 2023 reader: JSONL (plain and gzip), title filter, time window, malformed files."""
import gzip
import json
import pathlib

import pytest

from r2rank_jax.data.amazon2023 import PAPER_WINDOW, parse_window, read_amazon2023
from r2rank_jax.data.errors import DataError
from r2rank_jax.data.sources import read_source

MS_2020 = 1_590_000_000_000  # May 2020: outside the paper window
MS_2022 = 1_650_000_000_000  # April 2022: inside

META = [
    {"parent_asin": "B1", "title": "Elden Ring", "main_category": "Video Games", "store": "Bandai",
     "categories": ["Video Games", "PC"], "features": ["Open world", "RPG"], "description": [], "price": 59.9},
    {"parent_asin": "B2", "title": "Café Racer – Édition", "features": None},
    {"parent_asin": "B3", "title": "", "store": "nobody"},  # no title: dropped
    {"parent_asin": "B4", "title": "Unreviewed"},
]
REVIEWS = [
    {"user_id": "U2", "parent_asin": "B2", "timestamp": MS_2022 + 5, "rating": 4.0, "text": "x"},
    {"user_id": "U1", "parent_asin": "B2", "timestamp": MS_2022 + 10, "rating": 5.0},
    {"user_id": "U1", "parent_asin": "B1", "timestamp": MS_2020, "rating": 3.0},
    {"user_id": "U1", "parent_asin": "B3", "timestamp": MS_2022, "rating": 1.0},  # untitled item
    {"user_id": "U1", "parent_asin": "B9", "timestamp": MS_2022, "rating": 1.0},  # not in meta
    {"user_id": "U2", "parent_asin": "B1", "timestamp": str(MS_2022 + 1), "rating": 2.0},
]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def write_category(tmp_path: pathlib.Path, reviews: bytes, meta: bytes, gz_reviews: bool = False) -> pathlib.Path:
    (tmp_path / "meta_Video_Games.jsonl.gz").write_bytes(gzip.compress(meta))
    name = "Video_Games.jsonl.gz" if gz_reviews else "Video_Games.jsonl"
    (tmp_path / name).write_bytes(gzip.compress(reviews) if gz_reviews else reviews)
    return tmp_path / name


def test_reads_items_and_sequences(tmp_path):
    write_category(tmp_path, jsonl(REVIEWS), jsonl(META))
    ds = read_source(f"amazon2023:{tmp_path / 'Video_Games'}")
    assert sorted(ds.items) == ["B1", "B2"]  # B3 untitled, B4 never reviewed
    assert ds.items["B1"].to_json() == {
        "item_id": "B1", "title": "Elden Ring", "main_category": "Video Games", "store": "Bandai",
        "categories": "Video Games > PC", "features": "Open world RPG"}
    assert ds.items["B2"].title == "Café Racer – Édition"
    assert ds.sequences["U1"].item_ids == ("B1", "B2")
    assert ds.sequences["U1"].timestamps == (MS_2020 / 1000, (MS_2022 + 10) / 1000)
    assert ds.sequences["U2"].item_ids == ("B1", "B2")  # string timestamp parsed, sorted by time
    assert ds.notes == {"items_without_title": 1, "reviews_outside_window": 0, "reviews_of_unknown_items": 2}


def test_paper_window_and_gzip_reviews(tmp_path):
    write_category(tmp_path, jsonl(REVIEWS), jsonl(META), gz_reviews=True)
    ds = read_amazon2023(tmp_path / "Video_Games", window="paper")
    assert ds.sequences["U1"].item_ids == ("B2",)  # the 2020 review is outside Oct 2021 – Oct 2023
    assert ds.notes["reviews_outside_window"] == 1


def test_parse_window():
    assert parse_window(None) is None and parse_window("none") is None
    start, end = parse_window("paper")
    assert parse_window(PAPER_WINDOW) == (start, end)
    assert start == 1_633_046_400_000.0 and end == 1_696_118_400_000.0  # 2021-10-01 / 2023-10-01 UTC, in ms
    assert parse_window("2022-01-01:2022-02-01")[0] < parse_window("2022-01-01:2022-02-01")[1]
    for bad in ("2022-01-01", "soon:later", "2023-01-01:2022-01-01"):
        with pytest.raises(ValueError):
            parse_window(bad)


def _truncated_gzip() -> bytes:
    data = gzip.compress(jsonl(REVIEWS * 200))
    return data[: len(data) // 2]


MALFORMED = [
    # (which file, bytes as stored, stored as .gz?, expected line (None: any > 1), message fragment)
    ("reviews", _truncated_gzip(), True, None, "corrupt or truncated gzip"),
    ("reviews", jsonl(REVIEWS[:2]) + b'{"user_id": "U3", "parent_asin": \n', False, 3, "invalid JSON"),
    ("reviews", jsonl(REVIEWS[:1]) + b"[1, 2]\n", False, 2, "expected a JSON object"),
    ("reviews", jsonl(REVIEWS[:1] + [{"parent_asin": "B1", "timestamp": 1}]), False, 2, "missing field 'user_id'"),
    ("reviews", jsonl(REVIEWS[:1] + [{"user_id": "U", "parent_asin": "B1", "timestamp": "noon"}]), False, 2,
     "non-numeric timestamp 'noon'"),
    ("reviews", jsonl(REVIEWS[:1] + [{"user_id": "U", "parent_asin": "B1"}]), False, 2, "missing field 'timestamp'"),
    ("reviews", jsonl(REVIEWS[:2]) + b'{"user_id": "U\xc3", "parent_asin": "B1", "timestamp": 1}\n', False, 3,
     "invalid utf-8"),
    ("meta", jsonl(META + [{"parent_asin": "B1", "title": "again"}]), True, 5, "duplicate item id (parent_asin) 'B1'"),
    ("meta", jsonl(META + [{"title": "no id"}]), True, 5, "missing field 'parent_asin'"),
]


@pytest.mark.parametrize("which,content,gz,line,fragment", MALFORMED, ids=[m[4][:30] for m in MALFORMED])
def test_malformed_input_names_file_and_line(tmp_path, which, content, gz, line, fragment):
    (tmp_path / "meta_Video_Games.jsonl.gz").write_bytes(gzip.compress(jsonl(META)))
    (tmp_path / "Video_Games.jsonl").write_bytes(jsonl(REVIEWS))
    if which == "meta":  # meta content is given uncompressed and always stored gzipped
        bad = tmp_path / "meta_Video_Games.jsonl.gz"
        bad.write_bytes(gzip.compress(content))
    else:  # a .gz reviews file takes precedence only when the plain one is absent
        (tmp_path / "Video_Games.jsonl").unlink()
        bad = tmp_path / ("Video_Games.jsonl.gz" if gz else "Video_Games.jsonl")
        bad.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_amazon2023(tmp_path / "Video_Games")
    err = info.value
    assert err.path == str(bad)
    assert fragment in str(err)
    if line is not None:
        assert err.line == line and str(err).startswith(f"{bad}:{line}: ")
    else:  # truncated gzip: the line after the last complete one
        assert err.line is not None and err.line > 1 and str(err).startswith(f"{bad}:{err.line}: ")


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"meta_Video_Games\.jsonl: file not found \(also looked for \.gz\)"):
        read_amazon2023(tmp_path / "Video_Games")
