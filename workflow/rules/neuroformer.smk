# Neuroformer (spike branch): pretrain by next-token prediction, fine-tune a behaviour decoder (1/10/100% labels,
# pretrained vs scratch), evaluate (decoding vs ridge/logistic, attention connectivity vs cross-correlation and a
# Poisson GLM, generation F1 vs a GLM). Separate rules: a fine-tune re-runs without re-pretraining.


rule neuroformer_pretrain:
    input:
        counts="results/spikes/{dataset}/counts.nc",
    output:
        model="results/spikes/{dataset}/neuroformer/pretrained.nc",
    log:
        "logs/neuroformer_pretrain/{dataset}.log",
    benchmark:
        "benchmarks/neuroformer_pretrain/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    resources:
        gpu=nf_gpus("pretrain"),
    params:
        config=nf_pretrain_params,
        checkpoint="checkpoints/neuroformer_pretrain/{dataset}.pt",
        version=VERSION,
    script:
        "../scripts/neuroformer_pretrain.py"


rule neuroformer_finetune:
    input:
        counts="results/spikes/{dataset}/counts.nc",
        pretrained="results/spikes/{dataset}/neuroformer/pretrained.nc",
    output:
        finetune="results/spikes/{dataset}/neuroformer/finetune.nc",
    log:
        "logs/neuroformer_finetune/{dataset}.log",
    benchmark:
        "benchmarks/neuroformer_finetune/{dataset}.tsv"
    conda:
        "../envs/brainpipe.yaml"
    threads: 1
    resources:
        gpu=nf_gpus("finetune"),
    params:
        config=nf_finetune_params,
        checkpoint="checkpoints/neuroformer_finetune/{dataset}.pt",
        version=VERSION,
    script:
        "../scripts/neuroformer_finetune.py"


rule neuroformer_evaluate:
    input:
        counts="results/spikes/{dataset}/counts.nc",
        pretrained="results/spikes/{dataset}/neuroformer/pretrained.nc",
        finetune=nf_finetune_of,
        truth=truth_of,
    output:
        metrics="results/spikes/{dataset}/neuroformer/metrics.nc",
        connectivity="results/spikes/{dataset}/neuroformer/connectivity.nc",
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
