# Calcium branch: simulated or recorded calcium traces (suite2p, NWB ophys, arrays) -> neuropil-corrected dF/F and
# inferred events -> dynamic functional connectome (affinity tensor, masked NTF, communities) -> metrics; and
# events as counts for the spike models (spike datasets with `from_calcium`).


include: "calcium_common.smk"


rule simulate_calcium:
    output:
        data=layout.path("calcium_traces"),
        truth=layout.path("calcium_truth"),
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
        traces=layout.path("calcium_traces"),
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
        traces=layout.path("calcium_traces"),
    output:
        processed=layout.path("calcium_processed"),
    log:
        "logs/preprocess_calcium/{cadataset}.log",
    benchmark:
        "benchmarks/preprocess_calcium/{cadataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=ca_preprocess_params,
        where=lambda w: STUDY.where("calcium_preprocess", w.cadataset),
        version=VERSION,
    script:
        "../scripts/preprocess_calcium.py"


rule build_connectome_tensor:
    input:
        processed=ca_study_processed,
    output:
        tensor=directory(layout.path("connectome_tensor")),
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
        tensor=layout.path("connectome_tensor"),
    output:
        fit=layout.path("connectome_fit"),
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
        where=lambda w: STUDY.where("connectome", w.study),
        version=VERSION,
    script:
        "../scripts/fit_connectome.py"


rule evaluate_connectome:
    input:
        fit=layout.path("connectome_fit"),
        tensor=layout.path("connectome_tensor"),
        truths=ca_study_truths,
        processed=ca_study_processed,
    output:
        metrics=layout.path("connectome_metrics"),
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
        counts=layout.path("counts"),
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
        where=bin_where,
        version=VERSION,
    script:
        "../scripts/calcium_counts.py"
