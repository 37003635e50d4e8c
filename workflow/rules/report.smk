# The study report: one self-contained HTML page built from every branch's outputs.
#
# Partial results are results: when jobs fail (say one dataset's recording is corrupt), the onerror handler below
# still writes results/report/index.html from the results that finished, with a banner and a "failed" panel
# (dataset, rule, the one-line error from the job's log); snakemake's exit status stays that of the failed run.
# With --keep-going every result that does not depend on a failed job is finished first. The handler's helpers
# (page_after_failure) are in common.smk.
onerror:
    page_after_failure(log)


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
