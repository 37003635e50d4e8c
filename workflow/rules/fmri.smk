# The fMRI branch: simulate or read (fMRIPrep / NIfTI + atlas / ROI tables) -> clean + segment -> baselines and
# BrainMAE (masked pretraining: one job per variant, one encoder per fold) -> metrics. Input/params functions:
# fmri_common.smk.


include: "fmri_common.smk"


rule simulate_fmri:
    output:
        source=directory("results/fmri/{fmri_dataset}/source"),
        truth="results/fmri/{fmri_dataset}/truth.nc",
    log:
        "logs/simulate_fmri/{fmri_dataset}.log",
    benchmark:
        "benchmarks/simulate_fmri/{fmri_dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=fmri_sim_params,
        version=VERSION,
    script:
        "../scripts/simulate_fmri.py"


rule ingest_fmri:
    input:
        source=fmri_source,
        extra=fmri_extra_files,
    output:
        roi=directory("results/fmri/{fmri_dataset}/roi"),
    log:
        "logs/ingest_fmri/{fmri_dataset}.log",
    benchmark:
        "benchmarks/ingest_fmri/{fmri_dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=fmri_ingest_params,
        version=VERSION,
    script:
        "../scripts/ingest_fmri.py"


rule clean_fmri:
    input:
        roi="results/fmri/{fmri_dataset}/roi",
    output:
        clean="results/fmri/{fmri_dataset}/clean.nc",
    log:
        "logs/clean_fmri/{fmri_dataset}.log",
    benchmark:
        "benchmarks/clean_fmri/{fmri_dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=fmri_clean_params,
        version=VERSION,
    script:
        "../scripts/clean_fmri.py"


rule fmri_baselines:
    input:
        clean="results/fmri/{fmri_dataset}/clean.nc",
    output:
        metrics="results/fmri/{fmri_dataset}/baselines/metrics.nc",
    log:
        "logs/fmri_baselines/{fmri_dataset}.log",
    benchmark:
        "benchmarks/fmri_baselines/{fmri_dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=fmri_eval_params,
        version=VERSION,
    script:
        "../scripts/fmri_baselines.py"


rule pretrain_brainmae:
    input:
        clean="results/fmri/{fmri_dataset}/clean.nc",
    output:
        weights="results/fmri/{fmri_dataset}/brainmae/{fmri_variant}/weights.pt",
        fit="results/fmri/{fmri_dataset}/brainmae/{fmri_variant}/fit.nc",
    log:
        "logs/pretrain_brainmae/{fmri_dataset}/{fmri_variant}.log",
    benchmark:
        "benchmarks/pretrain_brainmae/{fmri_dataset}/{fmri_variant}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    resources:
        gpu=brainmae_gpus,
    params:
        config=brainmae_params,
        version=VERSION,
        checkpoint="checkpoints/pretrain_brainmae/{fmri_dataset}/{fmri_variant}.pt",
    script:
        "../scripts/pretrain_brainmae.py"


rule evaluate_brainmae:
    input:
        clean="results/fmri/{fmri_dataset}/clean.nc",
        weights="results/fmri/{fmri_dataset}/brainmae/{fmri_variant}/weights.pt",
        fit="results/fmri/{fmri_dataset}/brainmae/{fmri_variant}/fit.nc",
        baselines="results/fmri/{fmri_dataset}/baselines/metrics.nc",
        truth=fmri_truth,
    output:
        metrics="results/fmri/{fmri_dataset}/brainmae/{fmri_variant}/metrics.nc",
    log:
        "logs/evaluate_brainmae/{fmri_dataset}/{fmri_variant}.log",
    benchmark:
        "benchmarks/evaluate_brainmae/{fmri_dataset}/{fmri_variant}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    resources:
        gpu=brainmae_gpus,
    params:
        config=brainmae_eval_params,
        version=VERSION,
        checkpoint="checkpoints/evaluate_brainmae/{fmri_dataset}/{fmri_variant}.pt",
    script:
        "../scripts/evaluate_brainmae.py"
