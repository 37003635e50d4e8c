# Spike branch: simulated or recorded spike times (NWB, phy, trial arrays, tables, MatClust) -> unit QC and binned
# counts -> baseline coupled Poisson GLM -> metrics. Switching GLMs: workflow/rules/switching.smk.


rule simulate_spikes:
    output:
        data="results/spikes/{dataset}/spike_times.nc",
        truth="results/spikes/{dataset}/truth.nc",
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
        spikes="results/spikes/{dataset}/spike_times.nc",
    log:
        "logs/ingest_spikes/{dataset}.log",
    benchmark:
        "benchmarks/ingest_spikes/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(FROM_FILE),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ingest_params,
        version=VERSION,
    script:
        "../scripts/ingest_spikes.py"


rule bin_spikes:
    input:
        spikes="results/spikes/{dataset}/spike_times.nc",
    output:
        counts="results/spikes/{dataset}/counts.nc",
    log:
        "logs/bin_spikes/{dataset}.log",
    benchmark:
        "benchmarks/bin_spikes/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(SIMULATED + FROM_FILE),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=bin_params,
        version=VERSION,
    script:
        "../scripts/bin_spikes.py"


rule fit_poisson_glm:
    input:
        counts="results/spikes/{dataset}/counts.nc",
    output:
        fit="results/spikes/{dataset}/poisson_glm/fit.nc",
    log:
        "logs/fit_poisson_glm/{dataset}.log",
    benchmark:
        "benchmarks/fit_poisson_glm/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    params:
        config=config["spikes"]["poisson_glm"],
        version=VERSION,
    script:
        "../scripts/fit_poisson_glm.py"


rule evaluate_poisson_glm:
    input:
        fit="results/spikes/{dataset}/poisson_glm/fit.nc",
        counts="results/spikes/{dataset}/counts.nc",
        truth=truth_of,
    output:
        metrics="results/spikes/{dataset}/poisson_glm/metrics.nc",
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
