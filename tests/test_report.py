"""The study report: one self-contained HTML page built from results files of a tiny simulated study."""

from __future__ import annotations

import base64
import math
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from brainpipe.data import read
from brainpipe.errors import InputError
from brainpipe.report import build_report, collect, dataset_name, read_benchmarks
from brainpipe.stages import bin_spikes, evaluate_poisson_glm, fit_poisson_glm, report, simulate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TITLE = "Tiny <study> & report"
CONFIG = {"datasets": {"sim": {"generator": "poisson_glm_network"}}, "bars": {"coupling_auroc": 1.01}}


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
    return {"root": root, "sim": sim, "rec": rec, "bench": bench}


def _inputs(study) -> dict[str, list[Path]]:
    sim, rec = study["sim"], study["rec"]
    return {
        "metrics": [sim["metrics"], rec["metrics"]],
        "fits": [sim["fit"], rec["fit"]],
        "truths": [sim["truth"]],
        "counts": [sim["counts"], rec["counts"]],
    }


@pytest.fixture(scope="module")
def page(study) -> tuple[Path, str]:
    out = study["root"] / "results" / "report" / "index.html"
    params = {"title": TITLE, "benchmarks_dir": str(study["bench"]), "config": CONFIG}
    report.run(_inputs(study), {"html": out}, params, None)
    return out, out.read_text(encoding="utf-8")


class _Page(HTMLParser):
    """Collect metric rows (data attributes, value, status) and image sources."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.imgs: list[str] = []
        self._status: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
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


def _parse(text: str) -> _Page:
    p = _Page()
    p.feed(text)
    return p


def test_page_is_written_with_every_section(page):
    out, text = page
    assert out.is_file() and text.startswith("<!DOCTYPE html>")
    assert not [p for p in out.parent.iterdir() if p.name != "index.html"]  # no temp file left behind
    assert "Tiny &lt;study&gt; &amp; report" in text and "<study>" not in text  # title escaped
    for section in ('id="summary"', 'id="ds-sim"', 'id="ds-rec"', 'id="provenance"'):
        assert section in text
    assert "Dataset: sim" in text and "Dataset: rec" in text
    assert "brainpipe <code>" in text
    # provenance of every input file, benchmark rows, and the config as YAML
    for stage in ("simulate", "bin_spikes", "fit_poisson_glm", "evaluate_poisson_glm"):
        assert f"<td>{stage}</td>" in text
    assert "<td>fit_poisson_glm</td><td>sim</td>" in text and "321.5" in text
    assert "rec.tsv" in text  # named as skipped
    assert "<pre>datasets:\n  sim:\n    generator: poisson_glm_network" in text


def test_page_is_self_contained(page):
    _, text = page
    low = text.lower()
    assert "<script" not in low and "<link" not in low and "@import" not in low and "url(" not in low
    assert 'src="http' not in low and 'href="http' not in low


def test_metric_values_are_those_of_the_files(page, study):
    rows = _parse(page[1]).rows
    expected = {}
    for name in ("sim", "rec"):
        m = read(study[name]["metrics"], "metrics")
        for metric, value in zip(m["metric"].values, m["value"].values, strict=True):
            expected[(name, str(metric))] = float(value)
    got = {(r["dataset"], r["metric"]): float(r["value"]) for r in rows}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == value or (math.isnan(got[key]) and math.isnan(value)), key
    assert all(r["model"] == "poisson_glm" for r in rows)


def test_missed_bar_shows_miss_and_met_bar_pass(page):
    rows = {(r["dataset"], r["metric"]): r for r in _parse(page[1]).rows}
    assert rows[("sim", "coupling_auroc")]["status"] == "MISS"
    assert rows[("sim", "coupling_auroc")]["class"] == "miss"
    assert rows[("sim", "coupling_corr")]["status"] == "PASS"
    assert rows[("sim", "coupling_corr")]["class"] == "pass"
    assert rows[("rec", "test_bits_per_spike")]["status"] == "PASS"
    assert rows[("sim", "history_weight_mae")]["status"] == "no bar"
    assert rows[("sim", "history_weight_mae")]["class"] == "nobar"


def test_images_are_embedded_pngs(page):
    imgs = _parse(page[1]).imgs
    assert len(imgs) == 4  # per dataset: data QC and model figure
    for src in imgs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG_MAGIC)


def test_dataset_without_truth_still_renders(page):
    text = page[1]
    rec = text[text.index('id="ds-rec"') : text.index('id="provenance"')]
    assert "no planted ground truth" in rec and "No planted truth" in rec
    assert rec.count("<img ") == 2
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
    ins = _inputs(study)
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
    got = {(r["rule"], r["dataset"]): r for r in rows}
    assert got[("fit_poisson_glm", "sim")]["s"] == 1.5 and got[("fit_poisson_glm", "sim")]["max_rss"] == 321.5
    assert got[("simulate", "sim")]["runs"] == 2 and got[("simulate", "sim")]["s"] == 0.5
    assert math.isnan(got[("simulate", "sim")]["max_rss"])
    assert len(skipped) == 2
    assert read_benchmarks(tmp_path / "absent") == ([], [])
    assert read_benchmarks(None) == ([], [])


def test_missing_input_raises_and_removes_output(study, tmp_path):
    out = tmp_path / "report" / "index.html"
    out.parent.mkdir()
    out.write_text("stale page")
    ins = _inputs(study)
    ins["metrics"] = [ins["metrics"][0], tmp_path / "nope" / "poisson_glm" / "metrics.nc"]
    with pytest.raises(InputError, match="does not exist"):
        report.run(ins, {"html": out}, {"title": "x"}, None)
    assert not out.exists()


def test_unmatched_files_are_an_input_error(study):
    ins = _inputs(study)
    with pytest.raises(InputError, match="cannot match"):
        build_report(ins["metrics"], ins["fits"][:1], ins["counts"], ins["truths"])
    with pytest.raises(InputError, match="no metrics"):
        build_report([], [], [])


def test_cli_help():
    res = subprocess.run(
        [sys.executable, "-m", "brainpipe.stages.report", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "--metrics" in res.stdout and "--html-out" in res.stdout
