"""`ReportData` -> one HTML page. Every string that comes from data, a model or a file is escaped with
`esc` (a title holding ``<script>`` shows as text); the only markup is the page's own."""
from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import Any

from r2rank_jax.eval.per_user import METRICS
from r2rank_jax.report import assets
from r2rank_jax.report.collect import MethodView, ReportData, UserView

_HEADERS = {m: m.replace("ndcg", "NDCG").replace("hr", "HR").replace("mrr", "MRR") for m in METRICS}


def esc(value: Any) -> str:
    """Text for an HTML text node or a quoted attribute."""
    return html.escape(str(value), quote=True)


def _num(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else esc(x)


def results_table(results: dict[str, Any]) -> str:
    """Metrics with their CI under them, the Wilcoxon marker against the reference, tie counts."""
    methods = results.get("methods", {})
    sig = results.get("significance", {})
    ref = sig.get("reference")
    comparisons = sig.get("comparisons", {})
    head = "".join(f"<th>{esc(_HEADERS[m])}</th>" for m in METRICS)
    rows = []
    for name, entry in methods.items():
        cells = []
        for m in METRICS:
            mark = comparisons.get(name, {}).get(m, {}).get("marker", "")
            ci = entry.get(f"{m}_ci")
            ci_text = f"<br><span class=\"ci\">[{_num(ci[0], 3)}, {_num(ci[1], 3)}]</span>" if ci else ""
            cells.append(f"<td class=\"num\">{_num(entry.get(m))}{esc(mark)}{ci_text}</td>")
        ties = entry.get("ties", {})
        extra = []
        if "parse" in entry:
            p = entry["parse"]
            extra.append(f"parsed {esc(p.get('parsed'))}, partial {esc(p.get('partial'))}, "
                         f"unparsable {esc(p.get('unparsable'))} of {esc(p.get('total'))}")
        if "answer_tag_rate" in entry:
            extra.append(f"answer tag rate {_num(entry['answer_tag_rate'], 3)}")
        label = f"<span class=\"ref\">{esc(name)} (ref)</span>" if name == ref else esc(name)
        rows.append(f"<tr data-method=\"{esc(name)}\"><td>{label}</td>{''.join(cells)}"
                    f"<td class=\"num\">{esc(ties.get('users_with_ties', ''))}</td>"
                    f"<td class=\"num\">{esc(ties.get('users_with_tied_positive', ''))}</td>"
                    f"<td>{esc('; '.join(extra))}</td></tr>")
    rnd = results.get("random_expectation")
    if rnd:
        rows.append("<tr><td><i>random (expected)</i></td>" + "".join(f"<td class=\"num\">{_num(rnd.get(m))}</td>"
                                                                      for m in METRICS) + "<td></td><td></td><td></td></tr>")
    markers = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sig.get("markers", {}).items())
    ci = results.get("ci", {})
    bench = results.get("benchmark", {})
    return (f"<p class=\"meta\">{esc(results.get('num_users', '?'))} users of the {esc(bench.get('split', '?'))} split, "
            f"benchmark {esc(str(bench.get('content_hash', '?'))[:12])}. Markers: {esc(sig.get('test', ''))} against "
            f"<b>{esc(ref)}</b>: {markers}. Under each mean its {esc(int(ci.get('level', 0.95) * 100))}% CI "
            f"({esc(ci.get('method', ''))}). Ties: {esc(results.get('ties', ''))}.</p>"
            f"<table id=\"results\"><thead><tr><th>Method</th>{head}<th>users with ties</th>"
            f"<th>users with a tied positive</th><th>notes</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def figures(items: Iterable[tuple[str, str]], kind: str) -> str:
    parts = [f"<figure><img class=\"plot {esc(kind)}\" alt=\"{esc(title)}\" src=\"{esc(uri)}\">"
             f"<figcaption>{esc(title)}</figcaption></figure>" for title, uri in items]
    return f"<div class=\"plots\">{''.join(parts)}</div>" if parts else "<p class=\"note\">none logged</p>"


def method_table(view: MethodView, user_index: int) -> str:
    has_text = any(c.rationale is not None for c in view.candidates)
    rows = []
    for k, c in enumerate(view.candidates):
        badge = " <span class=\"badge\">positive</span>" if c.positive else ""
        text = (f"<pre class=\"rationale\">{esc(c.rationale)}</pre>" if c.rationale is not None else "")
        rows.append(f"<tr class=\"{'positive' if c.positive else ''}\" data-score=\"{c.score!r}\" data-rank=\"{c.rank}\" "
                    f"data-order=\"{k}\"><td class=\"num\">{c.rank}</td><td>{esc(c.title)}{badge}</td>"
                    f"<td class=\"num\">{c.score:.4g}</td><td>{esc(c.decision or '—')}</td>"
                    + (f"<td>{text}</td>" if has_text else "") + "</tr>")
    head = ("<th class=\"sortable\" data-key=\"rank\">rank</th><th class=\"sortable\" data-key=\"order\">candidate</th>"
            "<th class=\"sortable\" data-key=\"score\">score</th><th>decision</th>" + ("<th>rationale</th>" if has_text else ""))
    output = ""
    if view.output is not None:
        output = (f"<p class=\"meta\">generated ranking ({esc(view.output_status or '?')}):</p>"
                  f"<pre class=\"rationale\">{esc(view.output)}</pre>")
    note = "" if has_text or view.output is not None else "<p class=\"note\">no rationale recorded for this method</p>"
    return (f"<h4>{esc(view.name)}</h4>{note}{output}<table class=\"candidates\" id=\"u{user_index}-{esc(view.name)}\">"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def user_section(user: UserView, index: int) -> str:
    history = "".join(f"<li>{esc(h)}</li>" for h in user.history)
    profile = f"<p class=\"meta\">profile: {esc(user.profile)}</p>" if user.profile else ""
    return (f"<section class=\"user\" data-user=\"{esc(user.user_id)}\"><h3>user {esc(user.user_id)}</h3>{profile}"
            f"<details><summary>history ({len(user.history)} items, oldest first)</summary><ol class=\"history\">{history}"
            f"</ol></details>{''.join(method_table(m, index) for m in user.methods)}</section>")


def users_part(users: Sequence[UserView], llm_methods: Sequence[str]) -> str:
    if not users:
        return "<p class=\"note\">no scored users to show</p>"
    options = "".join(f"<option value=\"{esc(u.user_id)}\">{esc(u.user_id)}</option>" for u in users)
    return (f"<p class=\"meta\">{len(users)} sampled users; LLM methods: {esc(', '.join(llm_methods))}. Click a "
            f"column header to sort by it; the positive is marked.</p><div class=\"filter\"><label>user: <select "
            f"id=\"user-filter\"><option value=\"\">all</option>{options}</select></label></div>"
            + "".join(user_section(u, i) for i, u in enumerate(users)))


def render(data: ReportData, curves: Sequence[tuple[str, str]], analyses: Sequence[tuple[str, str]]) -> str:
    cfg = data.config or {}
    title = f"r2rank_jax report: {cfg.get('name', data.workdir.name)}"
    config = (f"<pre class=\"config\">{esc(json.dumps(data.config, indent=2, ensure_ascii=False))}</pre>"
              if data.config is not None else "<p class=\"note\">no config.json in the workdir</p>")
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{esc(title)}</title><style>{assets.CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1><p class=\"meta\">workdir {esc(data.workdir)}; method {esc(cfg.get('method', '?'))}, "
        f"seed {esc(cfg.get('seed', '?'))}</p>",
        "<h2 id=\"results-section\">Results</h2>", results_table(data.results),
        "<h2>Training curves</h2>", figures(curves, "curve"),
        "<h2>Analyses</h2>", figures(analyses, "analysis"),
        "<h2>Users</h2>", users_part(data.users, data.llm_methods),
        "<h2>Resolved config</h2>", config,
        f"<script>{assets.JS}</script></body></html>\n",
    ])
