"""Workflow tests on one tiny real run of every branch (dry runs, lint and bad configs: test_workflow_config.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import xarray as xr
import yaml

from brainpipe.data import provenance_of, read, validate_file
from brainpipe.data.contracts import CONTRACT_ATTR

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
TINY = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
TABLE = REPO / "tests" / "data" / "spike_table.csv"
STEIN = REPO / "resources" / "spikes" / "steinmetz2019" / "session1.npz"


def tiny_config(**changes) -> dict:
    """The tiny study, with the spike table given by absolute path, plus nested changes ('a.b.c': value)."""
    cfg = yaml.safe_load(yaml.safe_dump(TINY))
    cfg["spikes"]["datasets"]["table"]["path"] = str(TABLE)
    cfg["spikes"]["datasets"]["stein"]["path"] = str(STEIN)
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return cfg


def snakemake(
    workdir: Path, cfg: dict | None, *args: str, check: bool = False
) -> subprocess.CompletedProcess:
    cmd = SNAKEMAKE + ["-d", str(workdir)]
    if cfg is not None:
        cfg_path = workdir / "study.yaml"
        workdir.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(yaml.safe_dump(cfg))
        cmd += ["--configfile", str(cfg_path)]
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, cwd=REPO, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def job_counts(text: str) -> dict[str, int]:
    """Parse snakemake's 'Job stats' table."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    if not m:
        return {}
    return {line.split()[0]: int(line.split()[1]) for line in m.group(1).splitlines() if line.strip()}


# -- dry-runs over the config matrix ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("tiny_study")
    snakemake(wd, tiny_config(), "--cores", "2", check=True)
    return wd


def test_tiny_run_outputs_validate(tiny_run):
    files = sorted((tiny_run / "results").rglob("*.nc"))
    names = {f.relative_to(tiny_run / "results").as_posix() for f in files}
    for d in ("tinysim", "tinyswitch", "table", "stein"):
        for f in ("spike_times.nc", "counts.nc", "poisson_glm/fit.nc", "poisson_glm/metrics.nc"):
            assert f"spikes/{d}/{f}" in names
    for d in ("tinyswitch", "stein"):
        for v in ("single", "none"):
            assert (
                f"spikes/{d}/switching_glm/{v}/fit.nc" in names
                and f"spikes/{d}/switching_glm/{v}/metrics.nc" in names
            )
    assert "spikes/tinysim/truth.nc" in names and "spikes/table/truth.nc" not in names
    for f in files:
        assert validate_file(f) == [], f
        ds = read(f)
        prov = provenance_of(ds)
        assert prov["version"] and prov["stage"] and "params" in prov
        for inp in prov["inputs"]:
            assert len(inp["sha256"]) == 64
        assert ds.attrs[CONTRACT_ATTR]
    sim_prov = provenance_of(read(tiny_run / "results/spikes/tinysim/spike_times.nc"))
    assert sim_prov["seed"] == 3 and sim_prov["params"]["params"]["n_neurons"] == 6
    assert (tiny_run / "results" / "report" / "index.html").stat().st_size > 10_000
    html = (tiny_run / "results" / "report" / "index.html").read_text(encoding="utf-8")
    assert '<section id="neuroformer">' in html and 'href="#neuroformer"' in html  # the branch section
    rules = (
        "simulate_spikes",
        "ingest_spikes",
        "bin_spikes",
        "fit_poisson_glm",
        "evaluate_poisson_glm",
        "fit_switching_glm",
        "evaluate_switching_glm",
        "neuroformer_pretrain",
        "neuroformer_finetune",
        "neuroformer_evaluate",
        "report",
    )
    for rule in rules:
        assert list((tiny_run / "benchmarks" / rule).rglob("*.tsv")), rule
        assert list((tiny_run / "logs" / rule).rglob("*.log")), rule
    stein = read(tiny_run / "results/spikes/stein/counts.nc", "spike_counts")
    assert stein.sizes["unit"] == 5 and int(stein["qc_kept"].sum()) == 5 and stein.sizes["qc_unit"] == 178
    assert list(stein["stimulus_var"].values) == ["contrast_left", "contrast_right", "feedback_type"]


def test_tiny_run_outputs_are_cf_compliant(tiny_run):
    """Every netCDF the tiny study wrote passes ``compliance-checker --test cf:1.10`` without errors (one checker
    process for all files); the zarr tensor, which the checker cannot open, carries the same variable attributes."""
    pytest.importorskip("compliance_checker")
    from test_cf_compliance import cf_errors, format_errors

    files = sorted((tiny_run / "results").rglob("*.nc"))
    assert len(files) > 40, files
    errors = cf_errors(files)
    assert not errors, (
        f"{len(errors)} of {len(files)} files fail compliance-checker --test cf:1.10:\n{format_errors(errors)}"
    )
    tensor = read(tiny_run / "results/calcium/tinyconn/connectome/tensor.zarr", "affinity_tensor")
    for name, var in tensor.variables.items():
        assert str(var.attrs.get("long_name", "")).strip(), name
    assert tensor["neuron"].attrs["long_name"] == "neuron identity (shared across animals)"  # the contract's


def test_tiny_run_metrics_meet_bars(tiny_run):
    m = read(tiny_run / "results/spikes/tinysim/poisson_glm/metrics.nc", "metrics")
    assert float(m["value"].sel(metric="test_bits_per_spike")) > 0
    assert int(m["passed"].sel(metric="coupling_auroc")) == 1
    # the spike table is independent Poisson noise: no held-out gain to be had, and no truth metrics
    t = read(tiny_run / "results/spikes/table/poisson_glm/metrics.nc", "metrics")
    assert list(t["metric"].values) == ["test_bits_per_spike"]
    assert float(t["value"].sel(metric="test_bits_per_spike")) < 0.05


def test_tiny_run_every_metric_is_described(tiny_run):
    """Every metric row of every branch says what it measures (the page shows the description beside the value)."""
    bare = {
        (f.parent.relative_to(tiny_run / "results").as_posix(), str(name))
        for f in (tiny_run / "results").rglob("metrics.nc")
        for name, text in zip(
            read(f, "metrics")["metric"].values, read(f, "metrics")["description"].values, strict=True
        )
        if not str(text).strip()
    }
    assert not bare, sorted(bare)


def test_tiny_run_switching_metrics(tiny_run):
    m = read(tiny_run / "results/spikes/tinyswitch/switching_glm/none/metrics.nc", "metrics")
    assert m.attrs["model"] == "switching_glm/none" and m.attrs["dataset"] == "tinyswitch"
    names = list(m["metric"].values)
    assert {"state_accuracy", "bits_vs_oracle", "bits_vs_single", "adjacency_balanced_accuracy"} <= set(names)
    assert int(m["passed"].sel(metric="state_accuracy")) == 1
    single = read(tiny_run / "results/spikes/tinyswitch/switching_glm/single/metrics.nc", "metrics")
    assert set(single["passed"].values.tolist()) == {-1}  # baselines carry no bars
    fit = read(tiny_run / "results/spikes/stein/switching_glm/none/fit.nc", "model_fit")
    assert fit.sizes["state"] == 2 and fit.sizes["covariate"] == 3  # the trial covariates entered the model


def test_tiny_run_fmri(tiny_run):
    res = tiny_run / "results" / "fmri" / "tinycohort"
    runs = sorted((res / "roi").glob("*.nc"))
    assert len(runs) == 8 and read(runs[0], "roi_timeseries").sizes["roi"] == 12
    clean = read(res / "clean.nc", "roi_segments")
    assert (
        clean.sizes["lag"] == 10
        and clean.attrs["split_by"] == "subject"
        and "label" in clean
        and "target" in clean
    )
    base = read(res / "brainmae" / "base" / "metrics.nc", "metrics")
    names = set(base["metric"].values.tolist())
    assert {
        "masked_nmse",
        "masked_nmse_vs_ridge",
        "roi_embedding_ari",
        "probe_accuracy",
        "probe_r2",
        "finetune_accuracy",
        "finetune_r2",
    } <= names
    assert int(base["passed"].sel(metric="roi_embedding_ari")) == 1
    no_mask = read(res / "brainmae" / "no_mask" / "metrics.nc", "metrics")
    assert "finetune_accuracy" not in set(no_mask["metric"].values.tolist())  # fine-tuning: base variant only
    fit = read(res / "brainmae" / "base" / "fit.nc", "model_fit")
    assert fit["roi_embedding"].shape == (12, 16) and fit.attrs["device"] == "cpu"
    assert (res / "brainmae" / "base" / "weights.pt").stat().st_size > 1000
    assert not list((tiny_run / "checkpoints").rglob("*.pt")) if (tiny_run / "checkpoints").exists() else True
    html = (tiny_run / "results" / "report" / "index.html").read_text()
    assert '<section id="fmri">' in html and "tinycohort" in html


def test_tiny_run_calcium(tiny_run):
    """Calcium branch in the tiny study: connectome bars, calcium events as spike counts, report section."""
    res = tiny_run / "results"
    for d in ("tinyca_a1", "tinyca_a2"):
        for f in ("traces.nc", "truth.nc", "processed.nc"):
            assert (res / "calcium" / d / f).exists()
    assert read(res / "calcium/tinyconn/connectome/tensor.zarr", "affinity_tensor").sizes["animal"] == 2
    m = read(res / "calcium/tinyconn/connectome/metrics.nc", "metrics")
    assert m.attrs["model"] == "connectome_ntf" and m.attrs["dataset"] == "tinyconn"
    assert int(m["passed"].sel(metric="factor_match_score")) == 1
    assert int(m["passed"].sel(metric="community_jaccard_min")) == 1
    counts = read(res / "spikes/tinyca/counts.nc", "spike_counts")
    assert provenance_of(counts)["stage"] == "calcium_counts" and int(counts["counts"].sum()) > 0
    assert (res / "spikes/tinyca/poisson_glm/metrics.nc").exists()
    html = (res / "report" / "index.html").read_text()
    assert '<section id="calcium">' in html and 'href="#calcium"' in html
    for rule in (
        "simulate_calcium",
        "preprocess_calcium",
        "build_connectome_tensor",
        "fit_connectome",
        "evaluate_connectome",
        "calcium_counts",
    ):
        assert list((tiny_run / "benchmarks" / rule).rglob("*.tsv")), rule


def test_second_run_is_noop(tiny_run):
    proc = snakemake(tiny_run, tiny_config(), "-n")
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_param_change_reruns_only_downstream(tiny_run):
    proc = snakemake(tiny_run, tiny_config(**{"spikes.poisson_glm.alpha": 0.001}), "-n")
    jobs = job_counts(proc.stdout + proc.stderr)
    assert (
        jobs.get("fit_poisson_glm") == 5 and jobs.get("evaluate_poisson_glm") == 5 and jobs.get("report") == 1
    )
    assert "simulate_spikes" not in jobs and "bin_spikes" not in jobs and "ingest_spikes" not in jobs
    assert "fit_switching_glm" not in jobs
    proc = snakemake(tiny_run, tiny_config(**{"spikes.evaluate.bars": {"coupling_auroc": 0.95}}), "-n")
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs.get("evaluate_poisson_glm") == 5 and "fit_poisson_glm" not in jobs
    # a switching hyperparameter of one dataset re-runs that dataset's switching fits only
    proc = snakemake(
        tiny_run, tiny_config(**{"spikes.switching_glm.datasets.stein.model": {"l2": 0.01}}), "-n"
    )
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs.get("fit_switching_glm") == 2 and jobs.get("evaluate_switching_glm") == 2
    assert "fit_poisson_glm" not in jobs and "bin_spikes" not in jobs
    # a fine-tuning key re-runs the fine-tunes and their evaluation, not the pretraining
    proc = snakemake(tiny_run, tiny_config(**{"neuroformer.finetune.lr": 0.002}), "-n")
    jobs = job_counts(proc.stdout + proc.stderr)
    assert jobs.get("neuroformer_finetune") == 2 and jobs.get("neuroformer_evaluate") == 2
    assert "neuroformer_pretrain" not in jobs and "fit_switching_glm" not in jobs


def test_broken_intermediate_is_named_and_leaves_nothing(tiny_run, tmp_path):
    wd = tmp_path / "copy"
    shutil.copytree(tiny_run, wd, ignore=shutil.ignore_patterns(".snakemake"))
    counts = wd / "results/spikes/tinysim/counts.nc"
    with xr.open_dataset(counts, engine="h5netcdf", decode_times=False) as ds:  # as stored (CF time units)
        broken = ds.load().drop_vars("split")
    broken.to_netcdf(counts, engine="h5netcdf")
    fit = wd / "results/spikes/tinysim/poisson_glm/fit.nc"
    fit.unlink()
    proc = snakemake(wd, tiny_config(), "--cores", "1", str(fit.relative_to(wd)))
    assert proc.returncode != 0
    log = (wd / "logs/fit_poisson_glm/tinysim.log").read_text()
    assert "counts.nc: variable 'split' is missing (rule: spike_counts has variable split('time',))" in log
    assert "brainpipe: error: " in proc.stderr and "variable 'split' is missing" in proc.stderr
    assert not fit.exists()
    assert not list(fit.parent.glob(".fit.nc*"))


class _PageFacts(HTMLParser):
    """What a report page shows: its sections, every metric of the all-metrics table, the headlines, the figures and
    the input files named in the provenance (relative to the results folder)."""

    def __init__(self):
        super().__init__()
        self.sections: list[str] = []
        self.metrics: dict[tuple[str, str, str], str] = {}
        self.headlines: list[tuple[str, str, str]] = []
        self.figures: list[str] = []
        self.files: set[str] = set()
        self._row: tuple[str, str, str] | None = None
        self._table = ""
        self._code: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "table":
            self._table = a.get("class", "")
        elif tag == "tr" and "data-metric" in a:
            key = (a["data-dataset"], a["data-model"], a["data-metric"])
            if self._table == "headline":
                self.headlines.append(key)
            elif self.sections[-1] == "summary":
                self._row = key
        elif tag == "td" and self._row and "data-value" in a:
            self.metrics[self._row] = a["data-value"]
            self._row = None
        elif tag == "img":
            self.figures.append(a.get("alt", ""))
        elif tag == "code" and self._table == "prov":
            self._code = []

    def handle_endtag(self, tag):
        if tag == "code" and self._code is not None:
            text = "".join(self._code)
            if "results/" in text:
                self.files.add(text.split("results/", 1)[1])
            self._code = None
        elif tag == "table":
            self._table = ""

    def handle_data(self, data):
        if self._code is not None:
            self._code.append(data)


def _page_facts(path: Path) -> _PageFacts:
    facts = _PageFacts()
    facts.feed(path.read_text(encoding="utf-8"))
    return facts


def test_report_rebuild_cli(tiny_run, tmp_path):
    """`brainpipe report` rebuilds the workflow's page: the same sections, metrics, headlines, figures and inputs."""
    out = tmp_path / "other.html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "brainpipe.cli",
            "report",
            "--results",
            str(tiny_run / "results"),
            "--output",
            str(out),
            "--benchmarks",
            str(tiny_run / "benchmarks"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    workflow, rebuilt = _page_facts(tiny_run / "results" / "report" / "index.html"), _page_facts(out)
    assert rebuilt.sections == workflow.sections
    assert {
        "results",
        "summary",
        "ds-tinysim",
        "ds-stein",
        "fmri",
        "calcium",
        "neuroformer",
        "provenance",
    } <= set(workflow.sections)
    assert rebuilt.metrics == workflow.metrics
    datasets = {d for d, _, _ in workflow.metrics}
    assert {"tinysim", "tinyswitch", "table", "stein", "tinyca", "tinycohort", "tinyconn"} <= datasets
    assert len(workflow.metrics) == sum(
        read(f, "metrics").sizes["metric"] for f in (tiny_run / "results").rglob("metrics.nc")
    )
    assert rebuilt.headlines == workflow.headlines and len(workflow.headlines) >= 10
    assert sorted(rebuilt.figures) == sorted(workflow.figures) and len(workflow.figures) >= 20
    assert rebuilt.files == workflow.files and "fmri/tinycohort/clean.nc" in workflow.files
    # the page's results come first: the headlines, then the table of every metric (folded), then the sections
    assert workflow.sections[:2] == ["results", "summary"]
    titles = {
        re.search(r"<title>(.*?)</title>", p.read_text(encoding="utf-8")).group(1)
        for p in (out, tiny_run / "results" / "report" / "index.html")
    }
    assert titles == {"tiny test study"}  # the rebuild keeps the study's title
    missing = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "report", "--results", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert (
        missing.returncode == 1
        and missing.stderr.count("\n") == 1
        and "no such results folder" in missing.stderr
    )


def test_layout_names_the_workflow_outputs(tiny_run):
    """Every result the tiny run wrote is a brainpipe.layout result, and what `brainpipe report` finds on disk is
    what the workflow's report rule was given (its inputs, named by the same function)."""
    from brainpipe import layout

    res = tiny_run / "results"
    files = [
        p
        for p in res.rglob("*")
        if p.is_file() and ".zarr" not in p.as_posix() and "/source/" not in p.as_posix()
    ]
    files = [p for p in files if p.parent.name != "roi"]  # one file per run inside the roi folder (a result)
    unnamed = [p for p in files if not any(layout.match(n, p) for n in layout.TEMPLATES)]
    assert unnamed == []
    found = layout.report_inputs(layout.discover(res), root=res)
    proc = snakemake(tiny_run, tiny_config(), "-n", "--forcerun", "report", "report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = re.search(r"rule report:\n\s+input: (.*)\n", proc.stdout + proc.stderr)
    assert job, proc.stdout[-2000:]
    rule_inputs = set(job.group(1).split(", "))
    assert {str(Path(p).relative_to(tiny_run)) for v in found.values() for p in v} == rule_inputs
    assert {k for k, v in found.items() if v} >= {
        "spikes__metrics",
        "spikes__switching_metrics",
        "fmri__metrics",
        "calcium__metrics",
        "neuroformer__metrics",
    }


def test_validate_and_info_cli(tiny_run, tmp_path):
    good = tiny_run / "results/spikes/tinysim/counts.nc"
    proc = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "validate", str(good)], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"{good}: ok"
    bad = tmp_path / "bad.nc"
    ds = read(good)
    ds["counts"] = ds["counts"].astype("float64")
    ds.drop_vars("split").to_netcdf(bad, engine="h5netcdf")
    proc = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "validate", str(bad), str(good)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = proc.stdout.strip().splitlines()
    assert f"{bad}: variable 'split' is missing (rule: spike_counts has variable split('time',))" in lines
    assert any(ln.startswith(f"{bad}: variable 'counts' has dtype float64") for ln in lines)
    assert f"{good}: ok" in lines
    info = subprocess.run(
        [sys.executable, "-m", "brainpipe.cli", "info", str(good)], capture_output=True, text=True
    )
    assert info.returncode == 0
    assert (
        "contract: spike_counts v1.1" in info.stdout
        and "stale: no" in info.stdout
        and "stage: bin_spikes" in info.stdout
    )
    assert "counts ('time', 'unit')" in info.stdout


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    """The tiny study's page in a real browser: every image loads, no console errors; a screenshot is kept."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    page_path = tiny_run / "results" / "report" / "index.html"
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
    ]
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.goto(page_path.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])"
            )
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert title == "tiny test study"
    assert len(images) >= 4, images
    assert all(ok and width > 0 for ok, width, _ in images), images
    assert problems == []
    assert shot.stat().st_size > 50_000
    keep = Path(os.environ.get("BRAINPIPE_SCREENSHOT_DIR", tmp_path))
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "tiny-study-report.png")


def test_metrics_table_and_snakemake_report(tiny_run):
    import pandas as pd

    table = pd.read_csv(tiny_run / "results" / "report" / "metrics.tsv", sep="\t")
    files = sorted((tiny_run / "results").rglob("metrics.nc"))
    assert sorted(set(table["file"])) == sorted(str(f.relative_to(tiny_run)) for f in files)
    for f in files:
        m = read(f, "metrics")
        rows = table[table["file"] == str(f.relative_to(tiny_run))].set_index("metric")
        for name, value in zip(m["metric"].values, m["value"].values, strict=True):
            assert rows.loc[name, "value"] == pytest.approx(float(value), rel=1e-9, nan_ok=True)
    assert set(table["status"]) <= {"pass", "miss", "no bar"}
    proc = snakemake(tiny_run, tiny_config(), "--report", "report.zip")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tiny_run / "report.zip").stat().st_size > 10_000
