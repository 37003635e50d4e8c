# Switching GLMs (HMM-GLMs with no prior, a Gaussian or a one-hot prior): one fit per dataset and variant,
# each scored on held-out data, against the reference variants and, for simulated data, against the truth.


rule fit_switching_glm:
    input:
        counts=layout.path("counts"),
    output:
        fit=layout.path("switching_fit"),
    log:
        "logs/fit_switching_glm/{dataset}/{variant}.log",
    benchmark:
        "benchmarks/fit_switching_glm/{dataset}/{variant}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 2
    resources:
        gpu=switching_gpus,
    params:
        config=switching_params,
        where=lambda w: STUDY.where("switching", w.dataset, w.variant),
        version=VERSION,
        checkpoint="checkpoints/fit_switching_glm/{dataset}/{variant}.pt",
    script:
        "../scripts/fit_switching_glm.py"


rule evaluate_switching_glm:
    input:
        fit=layout.path("switching_fit"),
        counts=layout.path("counts"),
        truth=truth_of,
        references=switching_references,
    output:
        metrics=layout.path("switching_metrics"),
    log:
        "logs/evaluate_switching_glm/{dataset}/{variant}.log",
    benchmark:
        "benchmarks/evaluate_switching_glm/{dataset}/{variant}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    params:
        config=switching_eval_params,
        version=VERSION,
    script:
        "../scripts/evaluate_switching_glm.py"
