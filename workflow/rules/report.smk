# The study report: one self-contained HTML page built from every branch's outputs.
#
# Partial results are results: when jobs fail (say one dataset's recording is corrupt), the onerror handler below
# still writes results/report/index.html from the results that finished, with a banner and a "failed" panel
# (dataset, rule, the one-line error from the job's log); snakemake's exit status stays that of the failed run.
# With --keep-going every result that does not depend on a failed job is finished first.
import os
import sys
import time

RUN_STARTED = time.time()  # a job log older than this is from an earlier run


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
    wc = ", ".join(f"{v}" for v in job.wildcards_dict.values())
    return f"{job.rule.name}" + (f" on {wc}" if wc else "")


def page_after_failure(snakemake_log):
    """Write the page of what finished, with the failed jobs, when this run was to (re)build it."""
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
        why = "failed: " + _job_name(job) if job in failed else None
        if why is None:
            ups = _failed_upstream(job, failed)
            why = (
                "not run: " + "; ".join(sorted(f"{_job_name(j)} failed" for j in ups))
                if ups
                else "not run (the run stopped)"
            )
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


onerror:
    try:
        page_after_failure(log)
    except Exception as err:  # the run's own failure stays what snakemake reports
        print(
            f"brainpipe: the page of what finished could not be built: {type(err).__name__}: {err}",
            file=sys.stderr,
        )


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            layout.path("report_page"),
            caption="../report/index.rst",
            category="Study report",
            labels={"page": "index"},
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=config["report"],
        study=config,
        version=VERSION,
    script:
        "../scripts/report.py"


rule metrics_table:
    input:
        metrics=all_metrics,
    output:
        table=report(
            layout.path("metrics_table"),
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"table": "all metrics"},
        ),
    log:
        "logs/metrics_table/metrics_table.log",
    benchmark:
        "benchmarks/metrics_table/metrics_table.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=config["report"],
        version=VERSION,
    script:
        "../scripts/metrics_table.py"
