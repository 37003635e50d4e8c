# Spike branch: simulated or recorded spike times (NWB, phy, trial arrays, tables, MatClust) -> unit QC and binned
# counts -> baseline coupled Poisson GLM -> metrics. Already-binned counts (format binned) go straight to counts
# (ingest_counts: no re-binning). Switching GLMs: workflow/rules/switching.smk.
from brainpipe.io.binned import binned_datasets

# binned counts are read by ingest_counts; the other recordings by ingest_spikes + bin_spikes
BINNED = binned_datasets(SPIKE_DATASETS)
SPIKE_TIMES_FROM_FILE = [d for d in FROM_FILE if d not in BINNED]


rule simulate_spikes:
    output:
        data=layout.path("spike_times"),
        truth=layout.path("spike_truth"),
    log:
        "logs/simulate_spikes/{dataset}.log",
    benchmark:
        "benchmarks/simulate_spikes/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(SIMULATED),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=simulate_params,
        version=VERSION,
    script:
        "../scripts/simulate.py"


rule ingest_spikes:
    input:
        source=spike_source,
        extra=spike_extra_files,
    output:
        spikes=layout.path("spike_times"),
    log:
        "logs/ingest_spikes/{dataset}.log",
    benchmark:
        "benchmarks/ingest_spikes/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(SPIKE_TIMES_FROM_FILE),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ingest_params,
        version=VERSION,
    script:
        "../scripts/ingest_spikes.py"


rule bin_spikes:
    input:
        spikes=layout.path("spike_times"),
    output:
        counts=layout.path("counts"),
    log:
        "logs/bin_spikes/{dataset}.log",
    benchmark:
        "benchmarks/bin_spikes/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(SIMULATED + SPIKE_TIMES_FROM_FILE),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=bin_params,
        where=bin_where,
        version=VERSION,
    script:
        "../scripts/bin_spikes.py"


rule ingest_counts:
    input:
        source=spike_source,
    output:
        counts=layout.path("counts"),
    log:
        "logs/ingest_counts/{dataset}.log",
    benchmark:
        "benchmarks/ingest_counts/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(BINNED),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=lambda w: {**STUDY.ingest(w.dataset), **STUDY.bin(w.dataset)},  # reader keys + binning
        where=bin_where,
        version=VERSION,
    script:
        "../scripts/ingest_counts.py"


rule fit_poisson_glm:
    input:
        counts=layout.path("counts"),
    output:
        fit=layout.path("poisson_glm_fit"),
    log:
        "logs/fit_poisson_glm/{dataset}.log",
    benchmark:
        "benchmarks/fit_poisson_glm/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    params:
        config=STUDY.poisson_glm(),
        version=VERSION,
    script:
        "../scripts/fit_poisson_glm.py"


rule evaluate_poisson_glm:
    input:
        fit=layout.path("poisson_glm_fit"),
        counts=layout.path("counts"),
        truth=truth_of,
    output:
        metrics=layout.path("poisson_glm_metrics"),
    log:
        "logs/evaluate_poisson_glm/{dataset}.log",
    benchmark:
        "benchmarks/evaluate_poisson_glm/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=evaluate_params,
        version=VERSION,
    script:
        "../scripts/evaluate_poisson_glm.py"
