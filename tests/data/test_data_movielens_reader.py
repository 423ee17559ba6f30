"""MovieLens ML-1M and ML-100K readers: items with genres, chronological sequences, user profiles."""
import pathlib

import pytest

from r2rank_jax.data.errors import DataError
from r2rank_jax.data.movielens import read_movielens
from r2rank_jax.data.sources import read_source


def write_latin1(directory: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = directory / name
    path.write_bytes(text.encode("latin-1"))
    return path


def ml1m(tmp_path: pathlib.Path) -> pathlib.Path:
    write_latin1(tmp_path, "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                 "2::Jumanji (1995)::Adventure\n3::Café au lait (1993)::Comedy\n")
    write_latin1(tmp_path, "ratings.dat", "1::2::5::978300760\n1::1::3::978300100\n2::3::4::978000000\n1::3::4::978300900\n")
    write_latin1(tmp_path, "users.dat", "1::F::1::10::48067\n2::M::25::12::70072\n")
    return tmp_path


def ml100k(tmp_path: pathlib.Path) -> pathlib.Path:
    flags = ["0"] * 19
    action = flags.copy()
    action[1] = action[5] = "1"
    write_latin1(tmp_path, "u.item", f"1|Toy Story (1995)|01-Jan-1995||http://x|{'|'.join(action)}\n"
                 f"2|GoldenEye (1995)|01-Jan-1995||http://y|{'|'.join(flags)}\n")
    write_latin1(tmp_path, "u.data", "196\t2\t3\t881250949\n196\t1\t3\t881250000\n22\t1\t1\t881250001\n")
    write_latin1(tmp_path, "u.user", "196|49|M|writer|55105\n22|25|F|programmer|40206\n")
    return tmp_path


def test_ml1m(tmp_path):
    ds = read_source(f"movielens:{ml1m(tmp_path)}")
    assert ds.items["1"].to_json() == {"item_id": "1", "title": "Toy Story (1995)", "genres": "Animation, Children's, Comedy"}
    assert ds.items["3"].title == "Café au lait (1993)"  # latin-1 decoded
    assert ds.sequences["1"].item_ids == ("1", "2", "3")
    assert ds.sequences["1"].timestamps == (978300100.0, 978300760.0, 978300900.0)
    assert ds.profiles == {"1": "Gender: female; age: under 18; occupation: K-12 student",
                           "2": "Gender: male; age: 25-34; occupation: programmer"}


def test_ml100k(tmp_path):
    ds = read_movielens(ml100k(tmp_path))
    assert ds.items["1"].fields == {"genres": "Action, Comedy"} and ds.items["2"].fields == {}
    assert list(ds.sequences) == ["22", "196"]
    assert ds.sequences["196"].item_ids == ("1", "2")
    assert ds.profiles["196"] == "Gender: male; age: 49; occupation: writer"


@pytest.mark.parametrize("name,text,line,fragment", [
    ("ratings.dat", "1::1::3::978300100\n1::9::3::978300100\n", 2, "unknown item id '9'"),
    ("ratings.dat", "1::1::3::978300100\n1::2::3\n", 2, "expected 4 '::'-separated fields, found 3"),
    ("ratings.dat", "1::1::3::978300100\n\n1::2::3::later\n", 3, "non-numeric timestamp 'later'"),
    ("movies.dat", "1::Toy Story::Comedy\n1::Toy Story 2::Comedy\n", 2, "duplicate item id '1' (first on line 1)"),
    ("users.dat", "1::F::1::99::48067\n", 1, "unknown occupation code '99'"),
])
def test_malformed_ml1m(tmp_path, name, text, line, fragment):
    ml1m(tmp_path)
    bad = write_latin1(tmp_path, name, text)
    with pytest.raises(DataError) as info:
        read_movielens(tmp_path)
    assert info.value.line == line and str(info.value).startswith(f"{bad}:{line}: ")
    assert fragment in str(info.value)


def test_malformed_ml100k_genre_flags(tmp_path):
    ml100k(tmp_path)
    bad = write_latin1(tmp_path, "u.item", "1|Toy Story|d||u|" + "|".join(["2"] * 19) + "\n")
    with pytest.raises(DataError, match=rf"^{bad}:1: genre flags must be 0 or 1"):
        read_movielens(tmp_path)


def test_not_a_movielens_dir(tmp_path):
    with pytest.raises(DataError, match="not a MovieLens directory"):
        read_movielens(tmp_path)
