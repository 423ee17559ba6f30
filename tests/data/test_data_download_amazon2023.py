"""Download command: URL layout, success through a fake opener, fast clear failure when offline.

No test sends traffic beyond loopback: the offline path points at a closed port on 127.0.0.1.
"""
import io
import socket
import time

import pytest

from r2rank_jax.data import download_amazon2023 as dl


def closed_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_file_urls():
    urls = dl.file_urls("Video_Games")
    assert urls == {
        "Video_Games.jsonl.gz": f"{dl.DEFAULT_BASE_URL}/review_categories/Video_Games.jsonl.gz",
        "meta_Video_Games.jsonl.gz": f"{dl.DEFAULT_BASE_URL}/meta_categories/meta_Video_Games.jsonl.gz",
    }
    with pytest.raises(ValueError):
        dl.file_urls("../etc")


def test_download_with_fake_opener(tmp_path, capsys):
    seen = []

    def opener(url, timeout):
        seen.append((url, timeout))
        return io.BytesIO(url.encode())

    paths = dl.download("Video_Games", tmp_path / "raw", base_url="http://example.invalid/raw/", timeout=3, opener=opener)
    assert [p.name for p in paths] == ["Video_Games.jsonl.gz", "meta_Video_Games.jsonl.gz"]
    assert seen[0] == ("http://example.invalid/raw/review_categories/Video_Games.jsonl.gz", 3)
    assert paths[1].read_bytes() == b"http://example.invalid/raw/meta_categories/meta_Video_Games.jsonl.gz"
    # Existing files are kept.
    dl.download("Video_Games", tmp_path / "raw", opener=lambda *a, **k: pytest.fail("should not fetch"))
    assert "exists, skipping" in capsys.readouterr().out


def test_offline_fails_fast_with_clear_message(tmp_path, capsys):
    base = f"http://127.0.0.1:{closed_local_port()}/amazon_2023/raw"
    start = time.perf_counter()
    code = dl.main(["--category", "Video_Games", "--out", str(tmp_path), "--base_url", base, "--timeout", "2"])
    assert time.perf_counter() - start < 5
    assert code == 2
    err = capsys.readouterr().err
    assert "could not download" in err and "Video_Games.jsonl.gz" in err and "offline" in err
    assert list(tmp_path.iterdir()) == []  # no partial files left


def test_offline_raises_download_error(tmp_path):
    with pytest.raises(dl.DownloadError, match="could not download"):
        dl.download("Video_Games", tmp_path, base_url=f"http://127.0.0.1:{closed_local_port()}", timeout=1)
