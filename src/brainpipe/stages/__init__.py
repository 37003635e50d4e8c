"""Stages: one module per Snakemake rule, each with ``run(inputs, outputs, params, log)``.

Every stage is also a command: ``python -m brainpipe.stages.<name> --help``.
"""

STAGES = (
    "simulate",
    "ingest_spikes",
    "bin_spikes",
    "fit_poisson_glm",
    "evaluate_poisson_glm",
    "fit_switching_glm",
    "evaluate_switching_glm",
    "report",
    "metrics_table",
    "ingest_calcium",
    "preprocess_calcium",
    "calcium_counts",
    "build_connectome_tensor",
    "fit_connectome",
    "evaluate_connectome",
)
