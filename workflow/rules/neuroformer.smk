# Neuroformer (spike branch): pretrain by next-token prediction, fine-tune a behaviour decoder (1/10/100% labels,
# pretrained vs scratch), evaluate (decoding vs ridge/logistic, attention connectivity vs cross-correlation and a
# Poisson GLM, generation F1 vs a GLM). Separate rules: a fine-tune re-runs without re-pretraining.
from brainpipe.training.resources import training_resources


rule neuroformer_pretrain:
    input:
        counts=layout.path("counts"),
    output:
        model=layout.path("neuroformer_pretrained"),
    log:
        "logs/neuroformer_pretrain/{dataset}.log",
    benchmark:
        "benchmarks/neuroformer_pretrain/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: config["training"]["distributed"]["processes_per_node"]  # training.distributed: a core per process
    resources:
        **training_resources(config, nf_gpus("pretrain")),
    params:
        config=nf_pretrain_params,
        checkpoint="checkpoints/neuroformer_pretrain/{dataset}.pt",
        version=VERSION,
    script:
        "../scripts/neuroformer_pretrain.py"


rule neuroformer_finetune:
    input:
        counts=layout.path("counts"),
        pretrained=layout.path("neuroformer_pretrained"),
    output:
        finetune=layout.path("neuroformer_finetune"),
    log:
        "logs/neuroformer_finetune/{dataset}.log",
    benchmark:
        "benchmarks/neuroformer_finetune/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: config["training"]["distributed"]["processes_per_node"]  # training.distributed: a core per process
    resources:
        **training_resources(config, nf_gpus("finetune")),
    params:
        config=nf_finetune_params,
        checkpoint="checkpoints/neuroformer_finetune/{dataset}.pt",
        version=VERSION,
    script:
        "../scripts/neuroformer_finetune.py"


rule neuroformer_evaluate:
    input:
        counts=layout.path("counts"),
        pretrained=layout.path("neuroformer_pretrained"),
        finetune=nf_finetune_of,
        truth=truth_of,
    output:
        metrics=layout.path("neuroformer_metrics"),
        connectivity=layout.path("neuroformer_connectivity"),
    log:
        "logs/neuroformer_evaluate/{dataset}.log",
    benchmark:
        "benchmarks/neuroformer_evaluate/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    resources:
        gpu=nf_gpus("pretrain"),
    params:
        config=nf_evaluate_params,
        version=VERSION,
    script:
        "../scripts/neuroformer_evaluate.py"
