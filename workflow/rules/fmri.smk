# The fMRI branch: simulate or read (fMRIPrep / NIfTI + atlas / ROI tables) -> clean + segment -> baselines and
# BrainMAE (masked pretraining: one job per variant, one encoder per fold) -> metrics. Input/params functions:
# fmri_common.smk.
from brainpipe.training.resources import training_resources


include: "fmri_common.smk"


rule simulate_fmri:
    output:
        source=directory(layout.path("fmri_source")),
        truth=layout.path("fmri_truth"),
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
        roi=directory(layout.path("fmri_roi")),
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
        roi=layout.path("fmri_roi"),
    output:
        clean=layout.path("fmri_clean"),
    log:
        "logs/clean_fmri/{fmri_dataset}.log",
    benchmark:
        "benchmarks/clean_fmri/{fmri_dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=fmri_clean_params,
        where=lambda w: STUDY.where("fmri_clean", w.fmri_dataset),
        version=VERSION,
    script:
        "../scripts/clean_fmri.py"


rule fmri_baselines:
    input:
        clean=layout.path("fmri_clean"),
        truth=fmri_truth,
    output:
        metrics=layout.path("fmri_baselines"),
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
        clean=layout.path("fmri_clean"),
    output:
        weights=layout.path("brainmae_weights"),
        fit=layout.path("brainmae_fit"),
    log:
        "logs/pretrain_brainmae/{fmri_dataset}/{fmri_variant}.log",
    benchmark:
        "benchmarks/pretrain_brainmae/{fmri_dataset}/{fmri_variant}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    # training.distributed (default off: 1 process, these are 1 and brainmae_gpus): a core and a GPU per process;
    # under SLURM one task per process, GPUs counted over every node (training_resources)
    threads: config["training"]["distributed"]["processes_per_node"]
    resources:
        **training_resources(config, brainmae_gpus),
    params:
        config=brainmae_params,
        where=lambda w: STUDY.where("brainmae", w.fmri_dataset, w.fmri_variant),
        version=VERSION,
        checkpoint="checkpoints/pretrain_brainmae/{fmri_dataset}/{fmri_variant}.pt",
    script:
        "../scripts/pretrain_brainmae.py"


rule evaluate_brainmae:
    input:
        clean=layout.path("fmri_clean"),
        weights=layout.path("brainmae_weights"),
        fit=layout.path("brainmae_fit"),
        baselines=layout.path("fmri_baselines"),
        truth=fmri_truth,
        base=brainmae_base_metrics,
    output:
        metrics=layout.path("brainmae_metrics"),
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
