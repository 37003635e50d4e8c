# Config validation, wildcard constraints and every input/params function. No rules here.
import os
import sys
import time
from pathlib import Path

from brainpipe import __version__ as VERSION
from brainpipe import layout
from brainpipe.config import PATH_OPTIONS, Study, validate_config
from brainpipe.errors import ConfigError
from snakemake.exceptions import WorkflowError


def _schema_path():
    """The study schema in place, so the branch schemas beside it are merged in (workflow.source_path gives a
    cached copy of the one file, without them); the cached copy only for a remote workflow.
    """
    p = Path(str(workflow.current_basedir)) / ".." / "schemas" / "config.schema.yaml"
    return p if p.exists() else workflow.source_path("../schemas/config.schema.yaml")


def _validated_config():
    sources = ", ".join(str(p) for p in workflow.configfiles) or "config"
    try:
        return validate_config(
            config,
            _schema_path(),
            source=sources,
        )
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


config.update(_validated_config())
# every rule's parameters are resolved here, in Python (validate_config ran every cross-check on them)
STUDY = Study(
    config,
    source=", ".join(str(p) for p in workflow.configfiles) or "config",
    check=False,
)

SPIKE_DATASETS = config["spikes"]["datasets"]
SIMULATED = sorted(k for k, v in SPIKE_DATASETS.items() if "simulate" in v)
FROM_FILE = sorted(k for k, v in SPIKE_DATASETS.items() if "path" in v)
NEVER = "(?!x)x"  # a regex that matches nothing, for an empty list of names
# when this run started: a job log older than this is from an earlier run (page_after_failure)
RUN_STARTED = time.time()


def names_regex(names):
    return "|".join(names) if names else NEVER


SWITCHING = config["spikes"]["switching_glm"]
SWITCHING_VARIANTS = sorted(SWITCHING["variants"])


wildcard_constraints:
    dataset=names_regex(sorted(SPIKE_DATASETS)),
    variant=names_regex(SWITCHING_VARIANTS),


# ---- params: each rule gets only its own config subtree ------------------------------------------
def simulate_params(wildcards):
    return STUDY.simulate(wildcards.dataset)


def ingest_params(wildcards):
    return STUDY.ingest(wildcards.dataset)


def bin_params(wildcards):
    return STUDY.bin(wildcards.dataset)


def bin_where(wildcards):
    """Each binning parameter -> the config key that set it (named in the stage's errors)."""
    return STUDY.where("bin", wildcards.dataset)


def switching_params(wildcards):
    return STUDY.switching(wildcards.dataset, wildcards.variant)


def switching_gpus(wildcards):
    """1 GPU unless the fit is pinned to the CPU (``device: cpu``)."""
    return 0 if switching_params(wildcards).get("device") == "cpu" else 1


def switching_eval_params(wildcards):
    return STUDY.switching_evaluate(wildcards.dataset, wildcards.variant)


def evaluate_params(wildcards):
    return STUDY.evaluate(wildcards.dataset)


# ---- inputs ---------------------------------------------------------------------------------------
def spike_source(wildcards):
    return SPIKE_DATASETS[wildcards.dataset]["path"]


def spike_extra_files(wildcards):
    opts = SPIKE_DATASETS[wildcards.dataset].get("options", {})
    return [opts[k] for k in PATH_OPTIONS if k in opts]


def switching_variants(dataset):
    return STUDY.switching_variants(dataset)


def switching_runs():
    if not SWITCHING["enabled"]:
        return []
    return [
        (d, v) for d in sorted(SWITCHING["datasets"]) for v in switching_variants(d)
    ]


def switching_references(wildcards):
    names = [
        r
        for r in SWITCHING["references"]
        if r != wildcards.variant and r in switching_variants(wildcards.dataset)
    ]
    return layout.paths("switching_fit", [(wildcards.dataset, v) for v in names])


def truth_of(wildcards):
    if wildcards.dataset in SIMULATED:
        return layout.path("spike_truth", dataset=wildcards.dataset)
    return []


def glm_datasets():
    return sorted(SPIKE_DATASETS) if config["spikes"]["poisson_glm"]["enabled"] else []


def spike_report_inputs():
    return layout.spike_report_inputs(glm_datasets(), switching_runs(), SIMULATED)


def report_inputs(wildcards):
    """Every input of the report page, named <branch>__<key> (paths: brainpipe.layout)."""
    return {
        **spike_report_inputs(),
        **fmri_report_inputs(wildcards),
        **calcium_report_inputs(),
        **nf_report_inputs(),
    }


def all_metrics(wildcards):
    ins = report_inputs(wildcards)
    return (
        ins["spikes__metrics"]
        + ins["spikes__switching_metrics"]
        + calcium_metrics()
        + fmri_metrics()
        + ins["neuroformer__metrics"]
    )


def final_outputs():
    out = layout.paths("counts", sorted(SPIKE_DATASETS))
    ins = report_inputs(None)
    out += ins["spikes__metrics"] + ins["spikes__switching_metrics"]
    out += fmri_final_outputs()
    out += calcium_final_outputs()
    out += nf_outputs()
    out += [layout.path("report_page"), layout.path("metrics_table")]
    return out


# ---- after a failed run: the page of what finished (report.smk's onerror) --------------------------------


def _failed_upstream(job, failed):
    """The failed jobs among ``job``'s ancestors in this run's DAG."""
    seen, todo, out = set(), [job], []
    while todo:
        for dep in workflow.dag.dependencies[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
                if dep in failed:
                    out.append(dep)
    return out


def _as_list(x):
    return [] if x is None else [x] if isinstance(x, (str, os.PathLike)) else list(x)


def _job_name(job):
    """The rule and what it ran on, e.g. ``fit_switching_glm on sim, none``."""
    wc = ", ".join(str(v) for v in job.wildcards_dict.values())
    return f"{job.rule.name} on {wc}" if wc else job.rule.name


def page_after_failure(snakemake_log):
    """onerror: write the page of what finished, with the failed jobs, when this run was to (re)build it.

    Never raises: the run's own failure (and exit status) stays what snakemake reports.
    """
    try:
        _page_after_failure(snakemake_log)
    except Exception as err:
        print(
            f"brainpipe: the page of what finished could not be built: {type(err).__name__}: {err}",
            file=sys.stderr,
        )


def _page_after_failure(snakemake_log):
    from brainpipe.report.page import Failure, Partial
    from brainpipe.stages.report import error_line, write_partial

    dag = workflow.dag
    page_job = next((j for j in dag.jobs if j.rule.name == "report"), None)
    if page_job is None or dag.noneedrun_finished(page_job):
        return  # the page was not a target of this run, or it was built
    failed = {
        j
        for g in workflow.scheduler.failed
        for j in getattr(g, "jobs", [g])
        if not dag.finished(j)
    }
    unfinished = list(dag.needrun_jobs())  # finished jobs excluded
    inputs = report_inputs(None)
    wanted = {p for v in inputs.values() for p in v}
    missing = {}
    for job in unfinished:
        ups = [] if job in failed else _failed_upstream(job, failed)
        if job in failed:
            why = f"failed: {_job_name(job)}"
        elif ups:
            why = "not run: {}".format(
                "; ".join(sorted(f"{_job_name(j)} failed" for j in ups))
            )
        else:
            why = "not run (the run stopped)"
        missing.update({str(f): why for f in job.output if str(f) in wanted})
    failures = []
    for j in failed:
        job_log = str(j.log[0]) if j.log else None
        error = error_line(job_log, since=RUN_STARTED)
        failures.append(Failure(j.rule.name, dict(j.wildcards_dict), error, job_log))
    partial = Partial(
        failures=failures,
        missing=missing,
        keep_going=bool(workflow.execution_settings.keep_going),
        snakemake_log=", ".join(map(str, _as_list(snakemake_log))) or None,
    )
    page = write_partial(
        layout.path("report_page"),
        inputs,
        partial,
        unfinished=[str(f) for j in unfinished for f in j.output],
        params={**config["report"], "study": config},
    )
    print(
        f"brainpipe: partial results: {page} shows what finished; {len(failures)} job(s) failed "
        "(listed on the page with their errors)",
        file=sys.stderr,
    )
