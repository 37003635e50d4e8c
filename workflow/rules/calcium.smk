# Calcium branch: simulated or recorded calcium traces (suite2p, NWB ophys, arrays) -> neuropil-corrected dF/F and
# inferred events -> dynamic functional connectome (affinity tensor, masked NTF, communities) -> metrics; and
# events as counts for the spike models (spike datasets with `from_calcium`).


include: "calcium_common.smk"


rule simulate_calcium:
    output:
        data="results/calcium/{cadataset}/traces.nc",
        truth="results/calcium/{cadataset}/truth.nc",
    log:
        "logs/simulate_calcium/{cadataset}.log",
    benchmark:
        "benchmarks/simulate_calcium/{cadataset}.tsv"
    wildcard_constraints:
        cadataset=names_regex(CA_SIMULATED),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ca_simulate_params,
        version=VERSION,
    script:
        "../scripts/simulate.py"


rule ingest_calcium:
    input:
        source=ca_source,
    output:
        traces="results/calcium/{cadataset}/traces.nc",
    log:
        "logs/ingest_calcium/{cadataset}.log",
    benchmark:
        "benchmarks/ingest_calcium/{cadataset}.tsv"
    wildcard_constraints:
        cadataset=names_regex(CA_FROM_FILE),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ca_ingest_params,
        version=VERSION,
    script:
        "../scripts/ingest_calcium.py"


rule preprocess_calcium:
    input:
        traces="results/calcium/{cadataset}/traces.nc",
    output:
        processed="results/calcium/{cadataset}/processed.nc",
    log:
        "logs/preprocess_calcium/{cadataset}.log",
    benchmark:
        "benchmarks/preprocess_calcium/{cadataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ca_preprocess_params,
        version=VERSION,
    script:
        "../scripts/preprocess_calcium.py"


rule build_connectome_tensor:
    input:
        processed=ca_study_processed,
    output:
        tensor=directory("results/calcium/{study}/connectome/tensor.zarr"),
    log:
        "logs/build_connectome_tensor/{study}.log",
    benchmark:
        "benchmarks/build_connectome_tensor/{study}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ca_tensor_params,
        version=VERSION,
    script:
        "../scripts/build_connectome_tensor.py"


rule fit_connectome:
    input:
        tensor="results/calcium/{study}/connectome/tensor.zarr",
    output:
        fit="results/calcium/{study}/connectome/fit.nc",
    log:
        "logs/fit_connectome/{study}.log",
    benchmark:
        "benchmarks/fit_connectome/{study}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1  # small tensors: one thread avoids torch spin-waits; raise with --set-threads for large ones
    resources:
        gpu=ca_fit_gpus,
    params:
        config=ca_fit_params,
        version=VERSION,
    script:
        "../scripts/fit_connectome.py"


rule evaluate_connectome:
    input:
        fit="results/calcium/{study}/connectome/fit.nc",
        tensor="results/calcium/{study}/connectome/tensor.zarr",
        truths=ca_study_truths,
    output:
        metrics="results/calcium/{study}/connectome/metrics.nc",
    log:
        "logs/evaluate_connectome/{study}.log",
    benchmark:
        "benchmarks/evaluate_connectome/{study}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ca_eval_params,
        version=VERSION,
    script:
        "../scripts/evaluate_connectome.py"


rule calcium_counts:
    input:
        processed=ca_counts_input,
    output:
        counts="results/spikes/{dataset}/counts.nc",
    log:
        "logs/calcium_counts/{dataset}.log",
    benchmark:
        "benchmarks/calcium_counts/{dataset}.tsv"
    wildcard_constraints:
        dataset=names_regex(FROM_CALCIUM),
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=bin_params,
        version=VERSION,
    script:
        "../scripts/calcium_counts.py"
