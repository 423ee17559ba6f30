"""Download the official Amazon Reviews 2023 raw files of one category.

    python -m r2rank_jax.data.download_amazon2023 --category Video_Games --out DIR
        [--base_url URL] [--timeout 15] [--overwrite]

Fetches ``{base}/review_categories/{Category}.jsonl.gz`` and ``{base}/meta_categories/meta_{Category}.jsonl.gz``
(the McAuley lab's layout) into ``DIR``, which the reader then uses as ``amazon2023:DIR/Category``.
Each file is streamed to a ``.part`` file and renamed when complete. Without network the command
fails within ``--timeout`` seconds with a clear message (exit code 2).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

DEFAULT_BASE_URL = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
Opener = Callable[..., object]


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, HTTP error, timeout)."""


def file_urls(category: str, base_url: str = DEFAULT_BASE_URL) -> dict[str, str]:
    """Local file name -> URL for the reviews and metadata of ``category`` (e.g. "Video_Games")."""
    if not category or "/" in category or category.startswith("."):
        raise ValueError(f"invalid category {category!r} (expected a name like 'Video_Games')")
    base = base_url.rstrip("/")
    return {
        f"{category}.jsonl.gz": f"{base}/review_categories/{category}.jsonl.gz",
        f"meta_{category}.jsonl.gz": f"{base}/meta_categories/meta_{category}.jsonl.gz",
    }


def fetch(url: str, dest: pathlib.Path, timeout: float, opener: Opener = urllib.request.urlopen) -> int:
    """Streams ``url`` to ``dest`` (via ``dest.part``); returns the number of bytes written."""
    part = dest.with_name(dest.name + ".part")
    try:
        with opener(url, timeout=timeout) as response, open(part, "wb") as f:  # type: ignore[attr-defined]
            shutil.copyfileobj(response, f, length=1 << 20)
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"could not download {url}: {reason}. Are you offline? Download the file by other means and "
            f"place it at {dest} (the reader also accepts the decompressed .jsonl)."
        ) from None
    os.replace(part, dest)
    return dest.stat().st_size


def download(
    category: str,
    out: str | os.PathLike[str],
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = 15.0,
    overwrite: bool = False,
    opener: Opener = urllib.request.urlopen,
) -> list[pathlib.Path]:
    """Downloads both files of ``category`` into ``out``; existing files are kept unless ``overwrite``."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, url in file_urls(category, base_url).items():
        dest = out / name
        if dest.exists() and not overwrite:
            print(f"{dest} exists, skipping (use --overwrite to fetch again)")
        else:
            print(f"downloading {url}")
            size = fetch(url, dest, timeout, opener)
            print(f"  -> {dest} ({size / 1e6:.1f} MB)")
        paths.append(dest)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m r2rank_jax.data.download_amazon2023", description=__doc__.split("\n\n")[0])
    parser.add_argument("--category", required=True, help="e.g. Video_Games, Movies_and_TV, Books")
    parser.add_argument("--out", required=True, help="directory for the .jsonl.gz files")
    parser.add_argument("--base_url", default=DEFAULT_BASE_URL)
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per connection attempt / read")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        download(args.category, args.out, args.base_url, args.timeout, args.overwrite)
    except (DownloadError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
