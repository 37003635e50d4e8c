"""The page's look and its one behaviour, inline so the page stays one self-contained file: the style sheet and a
tiny script that filters the table of all metrics (the page is complete without it)."""

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --zebra:#f6f8fa; --accent:#0969da;
        --pass:#1a7f37; --pass-bg:#dafbe1; --miss:#cf222e; --miss-bg:#ffebe9; --nobar:#59636e; --nobar-bg:#eff2f5; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 24px 28px 64px; color: var(--fg); line-height: 1.45;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 26px; margin: 0 0 6px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.meta { color: var(--muted); font-size: 13px; margin: 0 0 8px; }
.meta code { color: var(--fg); }
nav { font-size: 14px; margin: 10px 0 0; }
nav a { margin-right: 14px; }
.note { color: var(--muted); font-size: 13px; margin: 6px 0; }
.summary { font-size: 14px; margin: 4px 0 12px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 6px 0 12px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #fff; border-bottom: 2px solid var(--line); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.desc { color: var(--muted); font-size: 13px; }
td.pass, td.miss, td.nobar { font-weight: 600; text-align: center; white-space: nowrap; font-size: 13px; }
td.pass { color: var(--pass); background: var(--pass-bg); }
section.stale { border: 2px solid var(--miss); background: var(--miss-bg); padding: 4px 16px; }
td.miss { color: var(--miss); background: var(--miss-bg); }
td.nobar { color: var(--nobar); background: var(--nobar-bg); font-weight: 400; }
table.prov { font-size: 12px; }
table.prov td { white-space: nowrap; }
table.prov td.wrap { white-space: normal; overflow-wrap: anywhere; }
table.prov td.file { white-space: normal; }
table.prov tbody tr { background: none; }
table.prov tbody:nth-of-type(even) tr { background: var(--zebra); }
table.prov tr:first-child td { border-bottom: none; padding-bottom: 0; }
table.prov tr.params td { padding-top: 2px; color: var(--muted); }
table.prov span.label { color: var(--muted); font-size: 11px; margin-right: 4px; }
table.prov details { margin: 0; font-size: 12px; }
table.prov details > code { display: block; margin: 4px 0 0 16px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12px; }
pre { background: var(--zebra); border: 1px solid var(--line); padding: 10px 12px; overflow-x: auto; }
figure { margin: 10px 0 18px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; font-size: 14px; margin: 6px 0 12px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
h3.sub { font-size: 15px; color: var(--fg); margin-top: 26px; }
table.variants { width: auto; min-width: 55%; }
table.variants th { white-space: normal; vertical-align: bottom; }
table.metrics td.rep { color: #afb8c1; }
table.metrics tr.group td { border-top: 2px solid var(--line); }
table.variants td.num.pass, table.variants td.num.miss { text-align: right; font-weight: 600; font-size: 14px; }
table.variants tr.best td:first-child { font-weight: 600; }
span.tag { font-size: 11px; color: var(--pass); border: 1px solid var(--pass); border-radius: 8px; padding: 0 6px;
           margin-left: 6px; font-weight: 600; white-space: nowrap; }
.missed { font-size: 14px; margin: 4px 0 12px; color: var(--miss); }
details { font-size: 13px; margin: 4px 0 10px; }
details summary { cursor: pointer; color: var(--muted); }
details p { margin: 4px 0 0 16px; overflow-wrap: anywhere; }
table.headline { width: auto; min-width: 70%; }
table.headline td.better { color: var(--pass); font-weight: 600; }
table.headline td.worse { color: var(--miss); font-weight: 600; }
div.card { border: 1px solid var(--line); border-radius: 6px; padding: 4px 16px 8px; margin: 12px 0 18px; }
div.card h3 { margin-top: 12px; }
div.keyfigs { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 4px 18px; }
div.keyfigs figure { margin: 8px 0 12px; }
details#all-metrics > summary { font-size: 14px; color: var(--accent); margin: 6px 0; }
p.filter input { font: inherit; font-size: 14px; padding: 3px 8px; width: 22em; max-width: 100%;
                 border: 1px solid var(--line); border-radius: 4px; }
p.filter span { color: var(--muted); font-size: 13px; margin-left: 8px; }
""".strip()
# Filters the rows of the all-metrics table by the text typed in #metric-filter and counts the rows shown.
SCRIPT = """
(function () {
  var box = document.getElementById("metric-filter");
  var count = document.getElementById("metric-count");
  if (!box) { return; }
  var rows = Array.prototype.slice.call(document.querySelectorAll("#all-metrics tbody tr"));
  function apply() {
    var q = box.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (r) {
      var hit = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
      r.hidden = !hit;
      if (hit) { shown += 1; }
    });
    count.textContent = q ? shown + " of " + rows.length + " rows" : rows.length + " rows";
  }
  box.addEventListener("input", apply);
  apply();
})();
""".strip()
