"""The study report: one self-contained HTML page built from results files of a tiny simulated study."""

from __future__ import annotations

import base64
import math
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from brainpipe import layout
from brainpipe.data import read
from brainpipe.errors import InputError
from brainpipe.report import (
    branch_files,
    build_report,
    collect,
    collect_switching,
    dataset_name,
    read_benchmarks,
)
from brainpipe.stages import (
    bin_spikes,
    evaluate_poisson_glm,
    evaluate_switching_glm,
    fit_poisson_glm,
    fit_switching_glm,
    report,
    simulate,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TITLE = "Tiny <study> & report"
CONFIG = {"datasets": {"sim": {"generator": "poisson_glm_network"}}, "bars": {"coupling_auroc": 1.01}}
SWITCH = {"n_neurons": 5, "n_states": 2, "n_sequences": 3, "n_test_sequences": 2, "sequence_length": 200}
SWITCH_FIT = {"n_states": 2, "link": "sigmoid", "n_iter": 10, "m_step_iter": 5, "device": "cpu"}
# state_accuracy can never reach 1.01 (MISS); test bits/spike is always above -100 (PASS)
SWITCH_BARS = {"state_accuracy": 1.01, "test_bits_per_spike": -100.0}


def _dataset(root: Path, name: str, seed: int, bars: dict, with_truth: bool) -> dict[str, Path]:
    d = root / "results" / "spikes" / name
    files = {
        "counts": d / "counts.nc",
        "truth": d / "truth.nc",
        "fit": d / "poisson_glm" / "fit.nc",
        "metrics": d / "poisson_glm" / "metrics.nc",
    }
    sim_params = {
        "generator": "poisson_glm_network",
        "seed": seed,
        "params": {"n_neurons": 6, "duration_s": 60},
    }
    simulate.run({}, {"data": d / "spike_times.nc", "truth": files["truth"]}, sim_params, None)
    split = {"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}, "n_blocks": 3}
    bin_spikes.run(
        {"spikes": d / "spike_times.nc"},
        {"counts": files["counts"]},
        {"bin_width_s": 0.01, "split": split},
        None,
    )
    fit_poisson_glm.run({"counts": files["counts"]}, {"fit": files["fit"]}, {"alpha": 1e-4}, None)
    ins = {"fit": files["fit"], "counts": files["counts"]}
    if with_truth:
        ins["truth"] = files["truth"]
    else:
        files["truth"].unlink()  # like a recorded dataset: there is no planted truth
        del files["truth"]
    evaluate_poisson_glm.run(ins, {"metrics": files["metrics"]}, {"bars": bars, "dataset": name}, None)
    return files


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    # coupling_auroc can never reach 1.01 (MISS); a correlation is always >= -1 (PASS).
    sim = _dataset(root, "sim", 1, {"coupling_auroc": 1.01, "coupling_corr": -1.0}, with_truth=True)
    rec = _dataset(root, "rec", 2, {"test_bits_per_spike": -100.0}, with_truth=False)
    bench = root / "benchmarks"
    (bench / "fit_poisson_glm").mkdir(parents=True)
    (bench / "fit_poisson_glm" / "sim.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\n1.5\t0:00:01\t321.5\t900\n"
    )
    (bench / "simulate").mkdir()
    (bench / "simulate" / "sim.tsv").write_text("s\th:m:s\tmax_rss\n0.25\t0:00:00\t-\n0.75\t0:00:00\t-\n")
    (bench / "simulate" / "rec.tsv").write_text("")  # empty: must be skipped, not break the report
    (bench / "simulate" / "odd.tsv").write_text("not a benchmark\n")
    # rules with a variant wildcard write <rule>/<dataset>/<variant>.tsv
    (bench / "fit_switching_glm" / "sw").mkdir(parents=True)
    (bench / "fit_switching_glm" / "sw" / "none.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t456.25\n")
    (bench / "fit_switching_glm" / "sw" / "single.tsv").write_text("s\th:m:s\tmax_rss\n2.0\t0:00:02\t111.0\n")
    sw = _switching_dataset(root, "sw", seed=3)
    return {"root": root, "sim": sim, "rec": rec, "sw": sw, "bench": bench}


def _switching_dataset(root: Path, name: str, seed: int) -> dict:
    """A tiny simulated switching study: counts, truth, a Poisson GLM and the switching variants single and none."""
    d = root / "results" / "spikes" / name
    files: dict = {"counts": d / "counts.nc", "truth": d / "truth.nc"}
    sim_params = {"generator": "switching_glm_network", "seed": seed, "params": SWITCH}
    simulate.run({}, {"data": d / "spike_times.nc", "truth": files["truth"]}, sim_params, None)
    bin_spikes.run({"spikes": d / "spike_times.nc"}, {"counts": files["counts"]}, {"bin_width_s": 0.02}, None)
    # the Poisson GLM too, as in the workflow (its figure must not compare against the switching truth)
    files["glm_fit"], files["glm_metrics"] = d / "poisson_glm" / "fit.nc", d / "poisson_glm" / "metrics.nc"
    fit_poisson_glm.run(
        {"counts": files["counts"]}, {"fit": files["glm_fit"]}, {"alpha": 1e-3, "max_iter": 50}, None
    )
    evaluate_poisson_glm.run(
        {"fit": files["glm_fit"], "counts": files["counts"]},
        {"metrics": files["glm_metrics"]},
        {"dataset": name},
        None,
    )
    files["variants"] = {}
    for variant, extra in (("single", {"n_states": 1}), ("none", {})):
        fit = d / "switching_glm" / variant / "fit.nc"
        fit_switching_glm.run({"counts": files["counts"]}, {"fit": fit}, {**SWITCH_FIT, **extra}, None)
        files["variants"][variant] = {"fit": fit, "metrics": fit.parent / "metrics.nc"}
    for variant, f in files["variants"].items():
        refs = [g["fit"] for v, g in files["variants"].items() if v != variant]
        evaluate_switching_glm.run(
            {"fit": f["fit"], "counts": files["counts"], "truth": files["truth"], "references": refs},
            {"metrics": f["metrics"]},
            {"bars": SWITCH_BARS, "dataset": name, "variant": variant},
            None,
        )
    # deliberately in folder order (none, single), not the page's order (single first)
    files["switching_metrics"] = [files["variants"][v]["metrics"] for v in ("none", "single")]
    files["switching_fits"] = [files["variants"][v]["fit"] for v in ("none", "single")]
    return files


def _spikes(study, switching: bool = True) -> dict[str, list[Path]]:
    """The spike branch's files of the test study (keys of brainpipe.report.spikes.sections)."""
    sim, rec, sw = study["sim"], study["rec"], study["sw"]
    ins = {
        "metrics": [sim["metrics"], rec["metrics"]],
        "fits": [sim["fit"], rec["fit"]],
        "truths": [sim["truth"]],
        "counts": [sim["counts"], rec["counts"]],
    }
    if switching:
        ins["metrics"].append(sw["glm_metrics"])
        ins["fits"].append(sw["glm_fit"])
        ins["truths"].append(sw["truth"])
        ins["counts"].append(sw["counts"])
        ins["switching_metrics"] = sw["switching_metrics"]
        ins["switching_fits"] = sw["switching_fits"]
    return ins


def _inputs(study, switching: bool = True) -> dict[str, list[Path]]:
    """The report stage's inputs (``spikes__<key>``)."""
    return {f"spikes__{k}": v for k, v in _spikes(study, switching).items()}


@pytest.fixture(scope="module")
def page(study) -> tuple[Path, str]:
    out = study["root"] / "results" / "report" / "index.html"
    params = {"title": TITLE, "benchmarks_dir": str(study["bench"]), "study": CONFIG}
    report.run(_inputs(study), {"html": out}, params, None)
    return out, out.read_text(encoding="utf-8")


def _section(text: str, slug: str) -> str:
    """The HTML of one dataset section."""
    start = text.index(f'<section id="{slug}"')
    return text[start : text.index("</section>", start)]


class _Page(HTMLParser):
    """Collect metric rows (data attributes, value, status) and image sources."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.imgs: list[str] = []
        self._status: dict | None = None
        self._table = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("class", "")
        if tag in ("tr", "td") and self._table != "metrics":
            return
        if tag == "tr" and "data-metric" in a:
            self.rows.append(
                {"dataset": a["data-dataset"], "model": a["data-model"], "metric": a["data-metric"]}
            )
        elif tag == "td" and self.rows and "data-value" in a:
            self.rows[-1]["value"] = a["data-value"]
        elif tag == "td" and self.rows and a.get("class") in ("pass", "miss", "nobar"):
            self.rows[-1]["class"] = a["class"]
            self.rows[-1]["status"] = ""
            self._status = self.rows[-1]
        elif tag == "img":
            self.imgs.append(a.get("src", ""))

    def handle_data(self, data):
        if self._status is not None:
            self._status["status"] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._status = None
        elif tag == "table":
            self._table = ""


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def test_page_is_written_with_every_section(page):
    out, text = page
    assert out.is_file() and text.startswith("<!DOCTYPE html>")
    assert not [p for p in out.parent.iterdir() if p.name != "index.html"]  # no temp file left behind
    assert "Tiny &lt;study&gt; &amp; report" in text and "<study>" not in text  # title escaped
    for section in ('id="summary"', 'id="ds-sim"', 'id="ds-rec"', 'id="ds-sw"', 'id="provenance"'):
        assert section in text
    assert "Dataset: sim" in text and "Dataset: rec" in text
    assert "brainpipe <code>" in text
    # provenance of every input file, benchmark rows, and the config as YAML
    for stage in ("simulate", "bin_spikes", "fit_poisson_glm", "evaluate_poisson_glm"):
        assert f"<td>{stage}</td>" in text
    assert "<td>fit_poisson_glm</td><td>sim</td>" in text and "321.5" in text
    assert "rec.tsv" in text  # named as skipped
    assert "<pre>datasets:\n  sim:\n    generator: poisson_glm_network" in text
    # software versions from the files' provenance
    import numpy

    assert "<h3>Software</h3>" in text and f"<td>numpy</td><td><code>{numpy.__version__}</code></td>" in text


def test_page_is_self_contained(page):
    _, text = page
    low = text.lower()
    assert low.count("<script") == 1 and "<script>" in low  # one inline script (the table filter), no src
    assert "<link" not in low and "@import" not in low and "url(" not in low
    assert 'src="http' not in low and 'href="http' not in low
    # brainpipe.data.atomic.owner() recognises the page by its generator tag in the first 4,096 bytes
    assert b'<meta name="generator" content="brainpipe' in text.encode("utf-8")[:4096]


def _metrics_files(study) -> list[Path]:
    sw = study["sw"]
    return [study["sim"]["metrics"], study["rec"]["metrics"], sw["glm_metrics"], *sw["switching_metrics"]]


def test_metric_values_are_those_of_the_files(page, study):
    rows = _parse(page[1]).rows
    expected = {}
    for path in _metrics_files(study):
        m = read(path, "metrics")
        for metric, value in zip(m["metric"].values, m["value"].values, strict=True):
            expected[(m.attrs["dataset"], m.attrs["model"], str(metric))] = float(value)
    got = {(r["dataset"], r["model"], r["metric"]): float(r["value"]) for r in rows}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key
    assert {r["model"] for r in rows if r["dataset"] in ("sim", "rec")} == {"poisson_glm"}
    assert {r["model"] for r in rows if r["dataset"] == "sw"} == {
        "poisson_glm",
        "switching_glm/single",
        "switching_glm/none",
    }


def test_summary_rows_are_grouped_by_dataset_then_model(page):
    order = [(r["dataset"], r["model"]) for r in _parse(page[1]).rows]
    blocks = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert len(blocks) == len(set(blocks))  # every (dataset, model) is one contiguous block
    datasets = [d for i, (d, _) in enumerate(blocks) if i == 0 or blocks[i - 1][0] != d]
    assert datasets == ["sim", "rec", "sw"]
    assert [m for d, m in blocks if d == "sw"] == [
        "poisson_glm",
        "switching_glm/single",
        "switching_glm/none",
    ]


def test_switching_rows_show_pass_miss_and_no_bar(page):
    rows = {(r["dataset"], r["model"], r["metric"]): r for r in _parse(page[1]).rows}
    none, single = "switching_glm/none", "switching_glm/single"
    assert rows[("sw", none, "state_accuracy")]["status"] == "MISS"
    assert rows[("sw", none, "state_accuracy")]["class"] == "miss"
    assert rows[("sw", none, "test_bits_per_spike")]["status"] == "PASS"
    assert rows[("sw", single, "test_bits_per_spike")]["status"] == "no bar"  # a single-state fit has no bars
    assert rows[("sw", none, "bits_vs_single")]["class"] == "nobar"


def test_missed_bar_shows_miss_and_met_bar_pass(page):
    rows = {(r["dataset"], r["metric"]): r for r in _parse(page[1]).rows}
    assert rows[("sim", "coupling_auroc")]["status"] == "MISS"
    assert rows[("sim", "coupling_auroc")]["class"] == "miss"
    assert rows[("sim", "coupling_corr")]["status"] == "PASS"
    assert rows[("sim", "coupling_corr")]["class"] == "pass"
    assert rows[("rec", "test_bits_per_spike")]["status"] == "PASS"
    assert rows[("sim", "history_weight_mae")]["status"] == "no bar"
    assert rows[("sim", "history_weight_mae")]["class"] == "nobar"


def _decodes_as_png(src: str) -> bool:
    return src.startswith("data:image/png;base64,") and base64.b64decode(
        src.split(",", 1)[1], validate=True
    ).startswith(PNG_MAGIC)


def test_images_are_embedded_pngs(page):
    imgs = _parse(page[1]).imgs
    # sim, rec: raster, unit QC, model; sw: raster, unit QC, model + switching: states, couplings, summary,
    # decoded states against the task variables (the simulated trials' epochs)
    assert len(imgs) == 3 + 3 + 7
    assert all(_decodes_as_png(src) for src in imgs)


def test_dataset_without_truth_still_renders(page):
    rec = _section(page[1], "ds-rec")
    assert "no planted ground truth" in rec
    assert (
        rec.count("<img ") == 2
    )  # raster and unit QC; the coupling figure is its key figure, shown at the top
    assert rec.count('class="note keyref"') == 1
    results = _section(page[1], "results")
    assert 'alt="coupling of poisson_glm on rec"' in results and "No planted truth" in results
    metrics = {r["metric"] for r in _parse(page[1]).rows if r["dataset"] == "rec"}
    assert metrics == {"test_bits_per_spike"}


def test_figures_are_closed(page):
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_dataset_name_from_paths():
    assert dataset_name("results/spikes/a1/counts.nc", "counts") == "a1"
    assert dataset_name("results/spikes/a1/truth.nc", "truth") == "a1"
    assert dataset_name("results/spikes/a1/poisson_glm/fit.nc", "fit") == "a1"
    assert dataset_name("results/spikes/a1/poisson_glm/metrics.nc", "metrics") == "a1"
    assert dataset_name("results/spikes/a1/poisson_glm/metrics.nc") == "a1"
    assert dataset_name("results/spikes/a1/counts.nc") == "a1"


def test_files_are_matched_by_dataset_folder(study):
    ins = _spikes(study, switching=False)
    entries = collect(ins["metrics"], ins["fits"][::-1], ins["counts"][::-1], ins["truths"])
    by_name = {e.dataset: e for e in entries}
    assert (
        by_name["sim"].fit_path == study["sim"]["fit"]
        and by_name["sim"].counts_path == study["sim"]["counts"]
    )
    assert (
        by_name["rec"].fit_path == study["rec"]["fit"]
        and by_name["rec"].counts_path == study["rec"]["counts"]
    )
    assert by_name["sim"].truth_path == study["sim"]["truth"] and by_name["rec"].truth_path is None


def test_read_benchmarks_tolerates_odd_files(study, tmp_path):
    rows, skipped = read_benchmarks(study["bench"])
    got = {(r["rule"], r["dataset"]): r for r in rows if not r["variant"]}
    assert got[("fit_poisson_glm", "sim")]["s"] == 1.5 and got[("fit_poisson_glm", "sim")]["max_rss"] == 321.5
    assert got[("simulate", "sim")]["runs"] == 2 and got[("simulate", "sim")]["s"] == 0.5
    assert math.isnan(got[("simulate", "sim")]["max_rss"])
    assert len(skipped) == 2
    assert read_benchmarks(tmp_path / "absent") == ([], [])
    assert read_benchmarks(None) == ([], [])


def test_read_benchmarks_reads_nested_folders(study, page):
    rows, _ = read_benchmarks(study["bench"])
    got = {(r["rule"], r["dataset"], r["variant"]): r for r in rows}
    assert got[("fit_switching_glm", "sw", "none")]["s"] == 12.5
    assert got[("fit_switching_glm", "sw", "none")]["max_rss"] == 456.25
    assert got[("fit_switching_glm", "sw", "single")]["runs"] == 1
    assert got[("fit_poisson_glm", "sim", "")]["s"] == 1.5
    prov = page[1][page[1].index('id="provenance"') :]
    assert "<td>fit_switching_glm</td><td>sw</td><td>none</td>" in prov and "456.2" in prov


def test_switching_subsection(page, study):
    sw = _section(page[1], "ds-sw")
    assert 'id="ds-sw-switching"' in sw and "Switching GLM" in sw
    part = sw[sw.index('id="ds-sw-switching"') :]
    imgs = _parse(part).imgs
    # couplings, bits + EM, states against task variables
    assert len(imgs) == 3 and all(_decodes_as_png(src) for src in imgs)
    assert 'alt="per-state couplings of none on sw"' in part
    assert 'alt="decoded states against task variables on sw"' in part
    # the decoded states are the key figure of the best variant: at the top, linked from here
    assert 'alt="decoded states of sw"' in _section(page[1], "results") and 'class="note keyref"' in part
    # the variant table: baseline first, the multi-state fit marked best, numbers those of the files
    table = part[
        part.index('<table class="variants"') : part.index("</table>", part.index('<table class="variants"'))
    ]
    assert table.index('data-variant="single"') < table.index('data-variant="none"')
    none_row = table[table.index('data-variant="none"') :]
    assert 'class="best"' in table[table.index('data-variant="none"') - 20 :] and "best</span>" in none_row
    m = read(study["sw"]["variants"]["none"]["metrics"], "metrics")
    values = dict(zip(m["metric"].values.tolist(), m["value"].values.tolist(), strict=True))
    for metric in ("test_bits_per_spike", "bits_vs_single", "state_accuracy", "weight_corr"):
        assert f'data-metric="{metric}" data-value="{values[metric]!r}"' in none_row, metric
    cell = none_row[none_row.index('data-metric="state_accuracy"') - 30 :]
    assert '<td class="num miss" data-metric="state_accuracy"' in cell  # the bar of the file: missed
    # the Poisson GLM's figure (its key figure, at the top) is not compared with a switching truth
    assert "planted switching_glm_network" in sw
    assert "not compared here" in _section(page[1], "results")


def test_datasets_without_switching_fits_have_no_switching_subsection(page):
    for slug in ("ds-sim", "ds-rec"):
        sec = _section(page[1], slug)
        assert "Switching GLM" not in sec and f'id="{slug}-switching"' not in sec


def test_unit_qc_part(page, study):
    sim = _section(page[1], "ds-sim")
    assert "<h3>Unit QC</h3>" in sim and 'alt="unit QC of sim"' in sim
    counts = read(study["sim"]["counts"], "spike_counts")
    n = counts.sizes["qc_unit"]
    assert f"{int(counts['qc_kept'].sum())} of {n}" in sim


def test_switching_only_study_and_cli(study, tmp_path):
    """Switching metrics alone make a page (no Poisson GLM metrics); `brainpipe report` globs both kinds."""
    from brainpipe.cli import main

    sw = study["sw"]
    spikes = {
        "counts": [sw["counts"]],
        "truths": [sw["truth"]],
        "switching_metrics": sw["switching_metrics"],
        "switching_fits": sw["switching_fits"],
    }
    text = build_report({"spikes": spikes})
    rows = _parse(text).rows
    assert {r["model"] for r in rows} == {"switching_glm/single", "switching_glm/none"}
    assert 'id="ds-sw-switching"' in text
    entries = collect_switching(
        sw["switching_metrics"], sw["switching_fits"][::-1], [sw["counts"]], [sw["truth"]]
    )
    assert [e.fit_path for e in entries] == sw["switching_fits"]  # matched by folder, not position
    with pytest.raises(InputError, match="cannot match a counts file"):
        build_report({"spikes": {k: v for k, v in spikes.items() if k.startswith("switching")}})

    out = tmp_path / "cli" / "index.html"
    results = study["root"] / "results"
    assert (
        main(["report", "--results", str(results), "--output", str(out), "--benchmarks", str(study["bench"])])
        == 0
    )
    cli_rows = _parse(out.read_text(encoding="utf-8")).rows
    assert {(r["dataset"], r["model"]) for r in cli_rows} >= {
        ("sw", "switching_glm/none"),
        ("sim", "poisson_glm"),
    }


def test_decoded_states_figure_without_truth(study):
    from brainpipe.report import figures

    counts = read(study["sw"]["counts"], "spike_counts")
    fit = read(study["sw"]["variants"]["none"]["fit"], "model_fit")
    png = figures.switching_states_figure(counts, [("none", fit)], None, reference="none")
    assert png.startswith(PNG_MAGIC)


def test_missing_input_raises_and_removes_output(study, tmp_path):
    out = tmp_path / "report" / "index.html"
    out.parent.mkdir()
    out.write_text("stale page")
    ins = _inputs(study)
    ins["spikes__metrics"] = [ins["spikes__metrics"][0], tmp_path / "nope" / "poisson_glm" / "metrics.nc"]
    with pytest.raises(InputError, match="does not exist"):
        report.run(ins, {"html": out}, {"title": "x"}, None)
    assert out.read_text() == "stale page"  # not written by this run (nor by brainpipe): never removed


def test_unmatched_files_are_an_input_error(study):
    ins = _spikes(study)
    with pytest.raises(InputError, match="cannot match"):
        build_report({"spikes": {**ins, "fits": ins["fits"][:1]}})
    empty = build_report({})  # a study with no model enabled still gets a page that says so
    assert "no model results yet" in empty and "<img" not in empty
    with pytest.raises(InputError, match="input 'metrics' names no branch"):
        branch_files({"metrics": []})


def test_cli_help():
    res = subprocess.run(
        [sys.executable, "-m", "brainpipe.stages.report", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "--spikes.metrics" in res.stdout and "--html-out" in res.stdout
    for branch in ("fmri", "calcium", "neuroformer"):
        assert f"--{branch}.metrics" in res.stdout


def test_branch_sections_are_added_with_their_metrics(study, tmp_path, monkeypatch):
    """A branch module ``brainpipe.report.<branch>`` adds its own section; its metrics join the summary table."""
    import types

    from brainpipe.data import make_provenance, write
    from brainpipe.evaluate.metrics import metrics_dataset
    from brainpipe.report.base import BranchSection
    from brainpipe.report.tables import metrics_table

    m = metrics_dataset(
        {"test_bits_per_spike": 0.5}, {"test_bits_per_spike": 0.1}, model="thing", dataset="ext"
    )
    path = write(m, tmp_path / "ext" / "thing" / "metrics.nc", "metrics", make_provenance("test", {}))
    seen = {}

    def sections(files):
        seen.update(files)
        body = f'<section id="br-ext"><h2>Extra branch</h2>{metrics_table(files["metrics"])}</section>'
        return [BranchSection("br-ext", "Extra", body, metrics=list(files["metrics"]))]

    monkeypatch.setitem(sys.modules, "brainpipe.report.extbranch", types.SimpleNamespace(sections=sections))
    out = tmp_path / "index.html"
    ins = _inputs(study, switching=False) | {"extbranch__metrics": [path]}
    report.run(ins, {"html": out}, {"title": TITLE}, None)
    text = out.read_text(encoding="utf-8")
    assert seen == {"metrics": [path]}
    assert '<section id="br-ext"><h2>Extra branch</h2>' in text and 'href="#br-ext"' in text
    summary = _section(text, "summary")
    assert 'data-dataset="ext" data-model="thing"' in summary


def test_unknown_branch_is_one_line(study, tmp_path):
    with pytest.raises(InputError, match="no report module for branch 'nosuchbranch'"):
        build_report({"nosuchbranch": {"metrics": [tmp_path / "x.nc"]}})


def test_layout_paths_round_trip(tmp_path):
    """Every result path of brainpipe.layout reads back to its fields; patterns keep the rules' wildcards."""
    assert layout.path("counts") == "results/spikes/{dataset}/counts.nc"
    assert layout.path("switching_fit", dataset="a") == "results/spikes/a/switching_glm/{variant}/fit.nc"
    assert layout.path("report_page", root=tmp_path) == f"{tmp_path.as_posix()}/report/index.html"
    for name in layout.TEMPLATES:
        values = {f: f"x{i}" for i, f in enumerate(layout.fields(name))}
        p = layout.path(name, root=tmp_path / "res", **values)
        assert layout.match(name, p) == (tmp_path / "res", values), name
    assert layout.match("counts", "results/spikes/a/poisson_glm/fit.nc") is None
    assert layout.paths("switching_metrics", [("a", "none")]) == [
        "results/spikes/a/switching_glm/none/metrics.nc"
    ]
    with pytest.raises(TypeError, match="no field"):
        layout.path("counts", variant="none")


def test_layout_discovers_the_study(study):
    """What a study ran, read back from the results folder, names the files the page is built from."""
    res = study["root"] / "results"
    runs = layout.discover(res)
    assert runs.glm == ["rec", "sim", "sw"] and runs.switching == [("sw", "none"), ("sw", "single")]
    assert runs.spike_truths == ["sim", "sw"] and runs.fmri == [] and runs.neuroformer == []
    ins = layout.report_inputs(runs, root=res)
    assert [Path(p) for p in ins["spikes__fits"]] == [
        study["rec"]["fit"],
        study["sim"]["fit"],
        study["sw"]["glm_fit"],
    ]
    assert [Path(p) for p in ins["spikes__truths"]] == [study["sim"]["truth"], study["sw"]["truth"]]
    assert ins["fmri__metrics"] == [] and ins["calcium__metrics"] == []


def test_headlines_lead_the_page(page, study):
    """Results first: a headline per dataset and model (main metric, best baseline, difference, bar), then every
    metric in a folded table; the numbers are the files'."""
    text = page[1]
    assert text.index('id="results"') < text.index('id="summary"') < text.index('id="ds-sim"')
    summary = _section(text, "summary")
    assert '<details id="all-metrics">' in summary and 'id="metric-filter"' in summary
    results = _section(text, "results")
    rows = re.findall(
        r'<tr data-dataset="([^"]+)" data-model="([^"]+)" data-metric="([^"]+)">(.*?)</tr>', results
    )
    assert [(d, m) for d, m, _, _ in rows] == [
        ("sim", "poisson_glm"),
        ("rec", "poisson_glm"),
        ("sw", "poisson_glm"),
        ("sw", "switching_glm/single"),
        ("sw", "switching_glm/none"),
    ]
    assert {metric for _, _, metric, _ in rows} == {"test_bits_per_spike"}

    def value(path, metric):
        m = read(path, "metrics")
        return float(m["value"].sel(metric=metric))

    sw = study["sw"]
    none = sw["variants"]["none"]["metrics"]
    bits = value(none, "test_bits_per_spike")
    candidates = {
        "single-state GLM": bits - value(none, "bits_vs_single"),
        "Poisson GLM": value(sw["glm_metrics"], "test_bits_per_spike"),
        "homogeneous Poisson": 0.0,
    }
    label, base = max(candidates.items(), key=lambda kv: kv[1])
    cells = re.findall(r"<td[^>]*>(.*?)</td>", rows[-1][3])
    assert cells[2] == f"{bits:.4g}" and cells[3] == label and cells[4] == f"{base:.4g}"
    assert cells[5].startswith(f"{bits - base:+.4g}")
    assert cells[5].endswith("better" if bits > base else "worse")
    assert cells[6].startswith("PASS")  # test_bits_per_spike >= -100
    sim = re.findall(r"<td[^>]*>(.*?)</td>", rows[0][3])
    rec = re.findall(r"<td[^>]*>(.*?)</td>", rows[1][3])
    assert (
        sim[3] == "homogeneous Poisson" and sim[6] == "no bar"
    )  # the sim dataset's file: no bar on bits/spike
    assert rec[6] == "PASS (&gt;= -100)"  # the rec dataset's file: a bar, met
    # each key figure is shown once, at the top, and linked from its section
    assert text.count('alt="coupling of poisson_glm on sim"') == 1 and 'href="#key-figure-1"' in text


def test_two_datasets_under_one_name_are_an_input_error(study, tmp_path):
    from brainpipe.data import write

    m = read(study["rec"]["metrics"], "metrics")
    m.attrs["dataset"] = "sim"  # another folder claiming to be 'sim'
    other = tmp_path / "results" / "spikes" / "other" / "poisson_glm" / "metrics.nc"
    write(m, other, "metrics")
    ins = _spikes(study, switching=False)
    ins["metrics"] = [study["sim"]["metrics"], other]
    ins["counts"] = [study["sim"]["counts"], study["rec"]["counts"]]
    with pytest.raises(InputError, match="both name dataset 'sim'"):
        build_report({"spikes": ins})


def test_stale_results_are_flagged_on_the_page(tmp_path):
    """After an upstream rerun (the counts replaced), the page warns that the older fit and metrics are stale."""
    import time

    from brainpipe.data import make_provenance, write
    from brainpipe.report.page import stale_section
    from brainpipe.simulate import simulate
    from brainpipe.stages import bin_spikes as bin_stage
    from brainpipe.stages import fit_poisson_glm as fit_stage

    sim = simulate("poisson_glm_network", {"n_neurons": 3, "duration_s": 5.0}, seed=0)
    spikes = write(sim.data, tmp_path / "spikes.nc", "spike_times", make_provenance("simulate"))
    counts, fit = tmp_path / "counts.nc", tmp_path / "fit.nc"
    bin_stage.run({"spikes": spikes}, {"counts": counts}, {"bin_width_s": 0.01})
    fit_stage.run({"counts": counts}, {"fit": fit}, {"max_iter": 20})
    assert stale_section([fit, counts]) == ""
    time.sleep(0.05)
    bin_stage.run({"spikes": spikes}, {"counts": counts}, {"bin_width_s": 0.02})  # a rerun, then stopped
    html = stale_section([fit, counts])
    assert 'id="stale"' in html and str(fit) in html and f"input {counts} changed" in html
    assert str(counts) + "</code>" not in html  # the new counts are fresh
