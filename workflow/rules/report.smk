# The study report: one self-contained HTML page built from every branch's outputs.


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
