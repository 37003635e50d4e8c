# Calcium branch: simulated or recorded calcium traces (suite2p, NWB ophys, arrays) -> neuropil-corrected dF/F and
# inferred events -> dynamic functional connectome (affinity tensor, masked NTF, communities) -> metrics; and
# events as counts for the spike models (spike datasets with `from_calcium`).
CALCIUM = config["calcium"]
CA_DATASETS = CALCIUM["datasets"]
CA_SIMULATED = sorted(k for k, v in CA_DATASETS.items() if "simulate" in v)
CA_FROM_FILE = sorted(k for k, v in CA_DATASETS.items() if "path" in v)
CONNECTOME = CALCIUM["connectome"]
CA_STUDIES = sorted(CONNECTOME["studies"]) if CONNECTOME["enabled"] else []
FROM_CALCIUM = sorted(k for k, v in SPIKE_DATASETS.items() if "from_calcium" in v)


wildcard_constraints:
    cadataset=names_regex(sorted(CA_DATASETS)),
    study=names_regex(CA_STUDIES),


def ca_simulate_params(wildcards):
    return CA_DATASETS[wildcards.cadataset]["simulate"]


def ca_ingest_params(wildcards):
    ds = CA_DATASETS[wildcards.cadataset]
    keys = ("path", "format", "frame_rate_hz", "options", "drop_bad_cells")
    return {k: v for k, v in ds.items() if k in keys}


def ca_preprocess_params(wildcards):
    return merged(
        CALCIUM["preprocess"], CA_DATASETS[wildcards.cadataset].get("preprocess", {})
    )


def ca_source(wildcards):
    return CA_DATASETS[wildcards.cadataset]["path"]


def ca_study_processed(wildcards):
    return expand(
        "results/calcium/{d}/processed.nc",
        d=CONNECTOME["studies"][wildcards.study]["datasets"],
    )


def ca_study_truths(wildcards):
    names = CONNECTOME["studies"][wildcards.study]["datasets"]
    if all(d in CA_SIMULATED for d in names):
        return expand("results/calcium/{d}/truth.nc", d=names)
    return []


def ca_tensor_params(wildcards):
    return {"affinity": CONNECTOME["affinity"], "memory_mb": CONNECTOME["memory_mb"]}


def ca_fit_params(wildcards):
    return merged(
        CONNECTOME["model"], CONNECTOME["studies"][wildcards.study].get("model", {})
    )


def ca_eval_params(wildcards):
    entry = CONNECTOME["studies"][wildcards.study]
    return {
        "bars": merged(CONNECTOME["bars"], entry.get("bars", {})),
        "study": wildcards.study,
    }


def ca_counts_input(wildcards):
    return f"results/calcium/{SPIKE_DATASETS[wildcards.dataset]['from_calcium']}/processed.nc"


def calcium_metrics():
    return expand("results/calcium/{s}/connectome/metrics.nc", s=CA_STUDIES)


def calcium_final_outputs():
    return (
        expand("results/calcium/{d}/processed.nc", d=sorted(CA_DATASETS))
        + calcium_metrics()
    )


def calcium_report_inputs():
    return {
        "calcium__metrics": calcium_metrics(),
        "calcium__fits": expand("results/calcium/{s}/connectome/fit.nc", s=CA_STUDIES),
        "calcium__processed": expand(
            "results/calcium/{d}/processed.nc", d=sorted(CA_DATASETS)
        ),
    }


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
    threads: 2
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
