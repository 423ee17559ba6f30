"""The report's inline CSS and JS (no external file, nothing fetched)."""

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d2330; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde6; }
h3 { font-size: 15px; margin: 16px 0 6px; } h4 { font-size: 13px; margin: 12px 0 4px; color: #3a4356; }
.meta { color: #5a6478; font-size: 13px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 12px; }
th, td { border: 1px solid #d8dde6; padding: 3px 7px; vertical-align: top; text-align: left; }
th { background: #eef2f8; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.ci { color: #6b7487; font-size: 11px; } .ref { font-weight: 600; }
th.sortable { cursor: pointer; user-select: none; } th.sortable::after { content: " \\2195"; color: #8a93a6; }
tr.positive td { background: #e5f5e8; } .badge { background: #2e8b57; color: #fff; border-radius: 3px; padding: 0 4px; font-size: 11px; }
.rationale { white-space: pre-wrap; word-break: break-word; max-height: 9em; overflow: auto; margin: 0;
  font-family: ui-monospace, Menlo, monospace; font-size: 11.5px; max-width: 60em; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; } .plots figure { margin: 0; } .plots figcaption { font-size: 12px; color: #5a6478; }
.plot { border: 1px solid #d8dde6; max-width: 520px; }
.user { border: 1px solid #d8dde6; border-radius: 6px; padding: 6px 14px 10px; margin: 12px 0; }
.history { font-size: 12.5px; margin: 4px 0 8px 18px; padding: 0; } .note { color: #8a5a00; font-size: 12.5px; }
pre.config { font-size: 11.5px; background: #f6f8fb; padding: 8px; overflow: auto; max-height: 40em; }
.filter { margin: 8px 0; font-size: 13px; }
"""

JS = """
(function () {
  function sortBy(th) {
    var table = th.closest('table'), key = th.getAttribute('data-key'), body = table.tBodies[0];
    var dir = th.getAttribute('data-dir') === 'desc' ? 'asc' : 'desc';
    th.setAttribute('data-dir', dir);
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = parseFloat(a.getAttribute('data-' + key)), y = parseFloat(b.getAttribute('data-' + key));
      return dir === 'desc' ? y - x : x - y;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll('th.sortable').forEach(function (th) {
    th.addEventListener('click', function () { sortBy(th); });
  });
  var select = document.getElementById('user-filter');
  function show(user) {
    document.querySelectorAll('section.user').forEach(function (s) {
      s.style.display = (user === '' || s.getAttribute('data-user') === user) ? '' : 'none';
    });
  }
  if (select) {
    select.addEventListener('change', function () { show(select.value); });
  }
  // Links can carry a view: report.html#user=ID&sort=score (every candidate table, best first).
  var params = new URLSearchParams(window.location.hash.slice(1));
  if (select && params.has('user')) { select.value = params.get('user'); show(select.value); }
  var key = params.get('sort');
  if (key) {
    document.querySelectorAll('table.candidates th.sortable[data-key="' + key.replace(/[^a-z]/g, '') + '"]')
      .forEach(function (th) { sortBy(th); if (key === 'rank') { sortBy(th); } });
  }
})();
"""
