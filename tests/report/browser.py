"""Headless Chromium for the report tests: find it, screenshot a file, dump its DOM after the scripts ran.

No network: every host name resolves to nothing (``--host-resolver-rules``), so a page that tried to
fetch anything would show it missing. .ci/run installs the Debian package `chromium` when it is missing.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MISSING = ("no headless browser: none of " + ", ".join(NAMES) + " is on PATH (and $R2RANK_CHROMIUM is unset); "
           ".ci/run installs the Debian package `chromium` with apt-get when it can")


def find() -> str | None:
    env = os.environ.get("R2RANK_CHROMIUM")
    if env:
        return env
    return next((path for path in map(shutil.which, NAMES) if path), None)


def _run(browser: str, url: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="r2rank-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
               "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
               "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=3000", *args, url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{browser} exited {out.returncode}: {out.stderr[-2000:]}")
    return out


def screenshot(browser: str, page: pathlib.Path, png: pathlib.Path, size: str = "1280,2400") -> pathlib.Path:
    _run(browser, page.resolve().as_uri(), f"--screenshot={png}", f"--window-size={size}")
    if not png.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot {png}")
    return png


def dump_dom(browser: str, page: pathlib.Path, fragment: str = "") -> str:
    """The serialized DOM after load (scripts run), of ``page`` (optionally with ``#fragment``)."""
    url = page.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    return _run(browser, url, "--dump-dom").stdout
