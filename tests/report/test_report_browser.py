"""The debug run's report in headless Chromium (no network): not blank, the table, a rationale and a plot in
the rendered DOM, the user filter and the score sort applied by the page's own script, and injected
markup shown as text, never run."""
import re

import numpy as np
import pytest
from PIL import Image

import browser as chromium
from test_report import PAYLOAD, escaped_copy

pytestmark = pytest.mark.slow  # the session's `all` run (debug_run) takes about a minute


def test_report_renders_in_chromium(debug_run, browser, tmp_path):
    page = debug_run / "eval" / "report.html"
    png = chromium.screenshot(browser, page, tmp_path / "shot.png")
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.int32)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    ink = (pixels.sum(axis=2) < 600).mean()          # darker than near-white
    colors = len(np.unique(pixels.reshape(-1, 3)[::17], axis=0))
    assert ink > 0.01 and colors > 50, (ink, colors)
    dom = chromium.dump_dom(browser, page)
    assert '<table id="results">' in dom and '<tr data-method="r2rank">' in dom
    assert re.search(r'<pre class="rationale">[^<]+</pre>', dom)
    assert re.search(r'<img class="plot curve" alt="[^"]+" src="data:image/png;base64,', dom)


def test_filter_and_sort_from_the_link(debug_run, browser):
    page = debug_run / "eval" / "report.html"
    users = re.findall(r'<section class="user" data-user="([^"]+)"', page.read_text())
    dom = chromium.dump_dom(browser, page, f"user={users[1]}&sort=score")
    shown = re.findall(r'<section class="user" data-user="([^"]+)"( style="display: none;")?', dom)
    assert [u for u, hidden in shown if not hidden] == [users[1]] and len(shown) == len(users)
    for table in re.findall(r'<table class="candidates".*?</table>', dom, re.S):
        scores = [float(s) for s in re.findall(r'data-score="([^"]+)"', table)]
        assert scores == sorted(scores, reverse=True)


def test_injected_markup_does_not_run(debug_run, browser, tmp_path):
    from r2rank_jax.report import write_report

    page = write_report(escaped_copy(debug_run, tmp_path), out=tmp_path / "r.html")
    dom = chromium.dump_dom(browser, page)
    assert "data-pwned" not in dom.split("<body", 1)[0]          # the script in the title never ran
    assert "&lt;script&gt;document.documentElement.setAttribute('data-pwned','1')&lt;/script&gt;" in dom
    assert "<title>r2rank_jax report: debug_cpu</title>" in dom    # the rationale's onerror never ran
