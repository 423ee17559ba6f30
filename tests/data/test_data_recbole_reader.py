"""RecBole atomic-file reader: both .inter shapes, profiles, and malformed input with file:line errors."""
import pathlib

import pytest

from r2rank_jax.data.errors import DataError
from r2rank_jax.data.recbole import read_recbole
from r2rank_jax.data.sources import read_source

ITEMS = "item_id:token\ttitle:token_seq\tbrand:token\n1\tZelda\tNintendo\n2\tMario\t\n3\tHalo\tMicrosoft\n10\tTetris\tX\n"


def write(tmp_path: pathlib.Path, name: str, content: str | bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_per_interaction_shape_sorted_by_timestamp(tmp_path):
    write(tmp_path, "D.item", ITEMS)
    write(tmp_path, "D.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "u1\t3\t5\t300\nu1\t1\t4\t100\nu2\t2\t3\t50\nu1\t10\t1\t100\nu1\t2\t2\t200\n")
    ds = read_recbole(tmp_path / "D")
    assert ds.source == f"recbole:{tmp_path / 'D'}"
    # Ties (100) keep file order: item 1 before item 10.
    assert ds.sequences["u1"].item_ids == ("1", "10", "2", "3")
    assert ds.sequences["u1"].timestamps == (100.0, 100.0, 200.0, 300.0)
    assert ds.sequences["u2"].item_ids == ("2",)
    assert ds.num_users == 2 and ds.num_items == 4 and ds.num_interactions == 5
    assert ds.items["1"].title == "Zelda" and dict(ds.items["1"].fields) == {"brand": "Nintendo"}
    assert dict(ds.items["2"].fields) == {}  # empty optional fields are left out
    assert ds.items["1"].to_json() == {"item_id": "1", "title": "Zelda", "brand": "Nintendo"}
    users, items, order = ds.interaction_table()
    assert users.tolist() == ["u1"] * 4 + ["u2"] and items.tolist() == ["1", "10", "2", "3", "2"]
    assert order.shape == (5,)


def test_per_interaction_without_timestamp_keeps_file_order(tmp_path):
    write(tmp_path, "D.item", ITEMS)
    write(tmp_path, "D.inter", "user_id:token\titem_id:token\nu\t3\nu\t1\nu\t2\n")
    ds = read_recbole(tmp_path / "D")
    assert ds.sequences["u"].item_ids == ("3", "1", "2") and ds.sequences["u"].timestamps is None


def test_per_user_shape_from_test_inter_and_profiles(tmp_path):
    write(tmp_path, "D.item", ITEMS)
    write(tmp_path, "D.test.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n7\t1 2\t3\n12\t10\t1\n")
    write(tmp_path, "D.user", "user_id:token\tage:token\tgender:token\n7\t30\tF\n12\t\tM\n")
    ds = read_source(f"recbole:{tmp_path / 'D'}")
    assert list(ds.sequences) == ["7", "12"]  # canonical (numeric) order
    assert ds.sequences["7"].item_ids == ("1", "2", "3")
    assert ds.sequences["12"].item_ids == ("10", "1")
    assert ds.profiles == {"7": "age: 30; gender: F", "12": "gender: M"}


def test_plain_inter_preferred_over_test_inter(tmp_path):
    write(tmp_path, "D.item", ITEMS)
    write(tmp_path, "D.inter", "user_id:token\titem_id:token\nu\t1\n")
    write(tmp_path, "D.test.inter", "garbage\n")
    assert read_recbole(tmp_path / "D").num_interactions == 1


PER_USER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
PER_ROW = "user_id:token\titem_id:token\ttimestamp:float\n"

MALFORMED = [
    # (file name, content, expected line, message fragment)
    ("D.item", "item_id:token\tname:token_seq\n1\tZelda\n", 1, "missing column(s) ['title']"),
    ("D.item", ITEMS + "4\n", 6, "expected 3 tab-separated fields"),
    ("D.item", ITEMS + "3\tHalo 2\tMicrosoft\n", 6, "duplicate item id '3' (first on line 4)"),
    ("D.item", ITEMS + "5\t \tX\n", 6, "empty title"),
    ("D.item", ITEMS.encode() + b"5\tPok\xe9mon\tX\n", 6, "invalid utf-8"),
    ("D.inter", PER_ROW + "u\t1\t5\nu\t99\t6\n", 3, "unknown item id '99'"),
    ("D.inter", PER_ROW + "u\t1\t5\nu\t2\tyesterday\n", 3, "non-numeric timestamp 'yesterday'"),
    ("D.inter", PER_ROW + "u\t1\n", 2, "expected 3 tab-separated fields"),
    ("D.inter", "user_id:token\ttimestamp:float\nu\t1\n", 1, "missing column(s) ['item_id']"),
    ("D.inter", PER_USER + "a\t1 2\t3\nb\t\t3\n", 3, "empty history"),
    ("D.inter", PER_USER + "a\t1 2\t3\na\t1\t2\n", 3, "duplicate row for user 'a'"),
    ("D.inter", PER_USER + "a\t1 77\t3\n", 2, "unknown item id '77'"),
    ("D.inter", PER_USER.encode() + b"a\t1 2\t3\n\xff\xfe\t1\t2\n", 3, "invalid utf-8"),
]


@pytest.mark.parametrize("name,content,line,fragment", MALFORMED, ids=[f"{m[0]}-{m[3][:25]}" for m in MALFORMED])
def test_malformed_input_names_file_and_line(tmp_path, name, content, line, fragment):
    write(tmp_path, "D.item", ITEMS)
    write(tmp_path, "D.inter", PER_ROW + "u\t1\t1\n")
    bad = write(tmp_path, name, content)
    with pytest.raises(DataError) as info:
        read_recbole(tmp_path / "D")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == str(bad) and err.line == line
    assert str(err).startswith(f"{bad}:{line}: ")
    assert fragment in str(err)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"D\.item: file not found"):
        read_recbole(tmp_path / "D")
    write(tmp_path, "D.item", ITEMS)
    with pytest.raises(DataError, match=r"D\.inter: file not found \(nor D\.test\.inter\)"):
        read_recbole(tmp_path / "D")
    write(tmp_path, "D.inter", "")
    with pytest.raises(DataError, match="empty file"):
        read_recbole(tmp_path / "D")


def test_bad_spec():
    with pytest.raises(ValueError, match="input spec must be one of"):
        read_source("parquet:/x")
    with pytest.raises(ValueError, match="amazon2023 sources only"):
        read_source("recbole:/x/Y", window="paper")
