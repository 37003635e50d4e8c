"""A study is the user's file; a failed run still gets its page.

* ``snakemake --configfile my-study.yaml`` (and ``brainpipe run --configfile ...``) runs exactly that study, also
  from a folder that holds the default study ``config/config.yaml``; ``--config key=value`` alone still changes the
  default study.
* After a run in which a dataset fails, ``results/report/index.html`` shows what finished, with a banner and a
  "failed" panel (dataset, rule, the one-line error from the job's log); the exit status is the failed run's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from brainpipe import layout
from brainpipe.report.page import Failure, Partial, build_report
from brainpipe.stages.report import error_line, finished_inputs

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
TABLE = REPO / "tests" / "data" / "spike_table.csv"

#: a study of one small simulated spike dataset, nothing else written (every other key takes the schema default)
ONE = {
    "spikes": {
        "datasets": {
            "good": {
                "simulate": {
                    "generator": "poisson_glm_network",
                    "seed": 3,
                    "params": {"n_neurons": 4, "duration_s": 20, "rate_min_hz": 5, "rate_max_hz": 15},
                }
            }
        }
    },
    "report": {"title": "one dataset"},
}
ONE_JOBS = {
    "all": 1,
    "simulate_spikes": 1,
    "bin_spikes": 1,
    "fit_poisson_glm": 1,
    "evaluate_poisson_glm": 1,
    "metrics_table": 1,
    "report": 1,
}


def job_counts(text: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", text, re.S)
    assert m, text[-3000:]
    return {line.split()[0]: int(line.split()[1]) for line in m.group(1).splitlines() if line.strip()}


def study_folder(tmp_path: Path) -> Path:
    """A working folder that, like the checkout, holds the default study (config/) and its recordings."""
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "config").symlink_to(REPO / "config")
    (wd / "resources").symlink_to(REPO / "resources")
    return wd


def write_study(path: Path, study: dict) -> Path:
    path.write_text(yaml.safe_dump(study))
    return path


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600)


# -- a study is the user's file -----------------------------------------------------------------------------
@pytest.mark.workflow
def test_configfile_is_the_whole_study(tmp_path):
    wd = study_folder(tmp_path)
    study = write_study(tmp_path / "my-study.yaml", ONE)
    proc = run(SNAKEMAKE + ["-n", "--configfile", str(study)], wd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout + proc.stderr) == ONE_JOBS  # no default dataset comes along
    assert "config/config.yaml" not in proc.stdout + proc.stderr


@pytest.mark.workflow
def test_config_alone_changes_the_default_study(tmp_path):
    wd = study_folder(tmp_path)
    proc = run(SNAKEMAKE + ["-n", "--config", "report={'title': 'changed'}"], wd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "config/config.yaml is extended by additional config" in out
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    jobs = job_counts(out)
    assert jobs["simulate_spikes"] == sum(
        "simulate" in d for d in default["spikes"]["datasets"].values()
    )  # the default study's datasets
    assert jobs["fit_switching_glm"] > 1 and jobs["report"] == 1


@pytest.mark.workflow
def test_brainpipe_run_configfile_is_the_whole_study(tmp_path):
    wd = study_folder(tmp_path)
    study = write_study(tmp_path / "my-study.yaml", ONE)
    cmd = [sys.executable, "-m", "brainpipe.cli", "run", "-s", str(REPO / "Snakefile"), "-n"]
    proc = run(cmd + ["--configfile", str(study)], wd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout + proc.stderr) == ONE_JOBS


@pytest.mark.parametrize("form", ["--configfile", "--configfile=", "--configfiles"])
def test_brainpipe_run_missing_configfile_is_one_line(tmp_path, form):
    missing = tmp_path / "no-such-study.yaml"
    args = [form + str(missing)] if form.endswith("=") else [form, str(missing)]
    cmd = [sys.executable, "-m", "brainpipe.cli", "run", "-s", str(REPO / "Snakefile"), "-n", *args]
    proc = run(cmd, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(missing) in lines[0] and "no such study file" in lines[0]
    assert not (tmp_path / ".snakemake").exists()  # snakemake was not started


# -- the page of a failed run -------------------------------------------------------------------------------
def _stage_log(path: Path, error: str, traceback: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "2026-01-01 10:00:00,000 INFO brainpipe: stage ingest_spikes (brainpipe 0.1.0) params={}",
        f"2026-01-01 10:00:01,000 ERROR brainpipe: stage ingest_spikes failed: {error}",
    ]
    if traceback:
        lines += ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: boom"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_error_line_reads_the_stage_error(tmp_path):
    msg = "rec.csv: column 'time' must hold finite numbers of seconds; fix those rows"
    assert error_line(_stage_log(tmp_path / "a.log", msg)) == msg
    # an unexpected error: the stage's line, not the traceback's last line
    assert (
        error_line(_stage_log(tmp_path / "b.log", "ValueError: boom", traceback=True)) == "ValueError: boom"
    )
    other = tmp_path / "c.log"
    other.write_text("some tool output\nKilled\n")
    assert error_line(other) == "Killed"
    empty = tmp_path / "d.log"
    empty.write_text("")
    assert "no error line in its log" in error_line(empty)
    assert "no log was written" in error_line(tmp_path / "missing.log")
    old = _stage_log(tmp_path / "e.log", msg)
    os.utime(old, (1000, 1000))
    assert "from an earlier run" in error_line(
        old, since=2000
    )  # an earlier run's log says nothing about this one


def test_finished_inputs_leave_out_what_did_not_finish(tmp_path):
    root = tmp_path / "results"
    runs = layout.StudyRuns(glm=["bad", "good"], spike_truths=["bad", "good"])
    inputs = layout.report_inputs(runs, root=root)
    for paths in inputs.values():
        for p in paths:
            Path(p).parent.mkdir(parents=True, exist_ok=True)
            Path(p).write_text("")  # on disk: 'bad' from an earlier run
    bad_metrics = layout.path("poisson_glm_metrics", root, dataset="bad")
    got = finished_inputs(inputs, unfinished=[bad_metrics], root=root)
    assert got["spikes__metrics"] == [layout.path("poisson_glm_metrics", root, dataset="good")]
    assert got["spikes__fits"] == [
        layout.path("poisson_glm_fit", root, dataset="good")
    ]  # parallel to metrics
    assert got["spikes__counts"] == [layout.path("counts", root, dataset="good")]
    assert all("/bad/" not in p for v in got.values() for p in v)
    Path(layout.path("counts", root, dataset="good")).unlink()  # missing on disk: left out too
    assert finished_inputs(inputs, root=root)["spikes__counts"] == [
        layout.path("counts", root, dataset="bad")
    ]


def test_partial_page_banner_failed_panel_and_missing_models():
    partial = Partial(
        failures=[
            Failure(
                "ingest_spikes",
                {"dataset": "bad"},
                "bad.csv: not a spike table <x>",
                "logs/ingest_spikes/bad.log",
            ),
            Failure("fit_switching_glm", {"dataset": "sw", "variant": "none"}, "out of memory", None),
        ],
        missing={
            "results/spikes/bad/poisson_glm/metrics.nc": "not run: ingest_spikes on bad failed",
            "results/spikes/sw/switching_glm/none/metrics.nc": "failed: fit_switching_glm on sw, none",
            "results/spikes/bad/counts.nc": "not run",  # not a model: not named in the results
        },
        keep_going=False,
    )
    assert partial.missing_models() == [
        ("bad", "poisson_glm", "not run: ingest_spikes on bad failed"),
        ("sw", "switching_glm/none", "failed: fit_switching_glm on sw, none"),
    ]
    page = build_report({}, title="t", partial=partial)
    banner = page[
        page.index('<section id="failed"') : page.index("</section>", page.index('<section id="failed"'))
    ]
    assert "Partial results: 2 job(s) failed" in banner and "This run did not finish" in banner
    assert "--keep-going" in banner  # the run stopped at the first failure: said so
    rows = re.findall(r"<tr><td>(.*?)</td><td><code>(.*?)</code></td><td>(.*?)</td>", banner)
    assert rows == [
        ("bad", "ingest_spikes", "bad.csv: not a spike table &lt;x&gt;"),
        ("sw", "fit_switching_glm (variant=none)", "out of memory"),
    ]
    results = page[page.index('<section id="results"') :]
    assert results.index("2 model result(s) missing") < results.index("</section>")
    assert "switching_glm/none" in results and "counts" not in results[: results.index("</section>")]
    assert 'href="#failed"' in page[: page.index("</header>")]
    assert 'id="failed"' not in build_report({}, title="t")  # a finished run: no banner
    stopped = build_report({}, title="t", partial=Partial(missing={}))  # interrupted: no job failed
    assert "Partial results: the run was stopped before it finished" in stopped
    assert '<table class="failed">' not in stopped


@pytest.mark.workflow
def test_failed_dataset_still_gets_the_page(tmp_path):
    """One good simulated dataset and one whose recording is corrupt (it exists, so the config check passes; it
    fails when read): with --keep-going the good one finishes and the page shows it, with the failed panel."""
    wd = tmp_path / "wd"
    wd.mkdir()
    broken = tmp_path / "broken.csv"
    broken.write_text(TABLE.read_text().splitlines()[0] + "\nb2,0.1\na1,zero point two\n")
    study = yaml.safe_load(yaml.safe_dump(ONE))
    study["spikes"]["datasets"]["broken"] = {"path": str(broken)}
    cfg = write_study(tmp_path / "study.yaml", study)
    proc = run(SNAKEMAKE + ["-d", str(wd), "--configfile", str(cfg), "--cores", "2", "--keep-going"], REPO)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]  # the run failed, and says so
    page = wd / "results" / "report" / "index.html"
    said = [ln for ln in out.splitlines() if ln.startswith("brainpipe:")]
    assert page.is_file(), "\n".join(said) + "\n" + out[-3000:]
    assert "brainpipe: partial results: results/report/index.html" in out
    html = page.read_text(encoding="utf-8")
    start = html.index('<section id="failed"')
    panel = html[start : html.index("</section>", start)]
    assert "Partial results: 1 job(s) failed" in panel
    rows = re.findall(r"<tr><td>(.*?)</td><td><code>(.*?)</code></td><td>(.*?)</td>", panel)
    assert len(rows) == 1 and rows[0][:2] == ("broken", "ingest_spikes"), rows
    assert str(broken) in rows[0][2] and "column &#x27;time&#x27; must hold finite numbers" in rows[0][2]
    results = html[html.index('<section id="results"') :]
    results = results[: results.index("</section>")]
    assert "1 model result(s) missing" in results and "broken" in results and "poisson_glm" in results
    assert '<div class="card"><h3>good</h3>' in results  # what finished is on the page
    assert '<div class="card"><h3>broken</h3>' not in results
    assert page.stat().st_mtime == 0  # dated to the epoch: the next run rebuilds it
