# Neuroformer: config subtree, params and input functions for workflow/rules/neuroformer.smk (no rules here).
NEUROFORMER = config["neuroformer"]
NF_DATASETS = sorted(NEUROFORMER["datasets"]) if NEUROFORMER["enabled"] else []
NF_DECODED = [d for d in NF_DATASETS if NEUROFORMER["datasets"][d].get("target")]


def nf_params(wildcards):
    """The dataset's resolved neuroformer config (global keys merged with its own)."""
    entry = NEUROFORMER["datasets"][wildcards.dataset]
    out = {
        k: merged(NEUROFORMER[k], entry.get(k, {}))
        for k in ("tokenizer", "model", "pretrain", "finetune", "evaluate", "bars")
    }
    out["modalities"] = {m: NEUROFORMER["modalities"][m] for m in entry["modalities"]}
    out["target"] = entry.get("target")
    out["seed"] = NEUROFORMER["seed"]
    out["dataset"] = wildcards.dataset
    return out


def nf_pretrain_params(wildcards):
    p = nf_params(wildcards)
    return {k: p[k] for k in ("tokenizer", "model", "pretrain", "modalities", "seed")}


def nf_finetune_params(wildcards):
    p = nf_params(wildcards)
    return {k: p[k] for k in ("finetune", "target", "seed", "dataset")}


def nf_evaluate_params(wildcards):
    p = nf_params(wildcards)
    return {k: p[k] for k in ("evaluate", "bars", "seed", "dataset", "pretrain")}


def nf_gpus(which):
    """1 GPU for a training rule unless its device is pinned to the CPU."""

    def gpus(wildcards):
        return 0 if nf_params(wildcards)[which].get("device") == "cpu" else 1

    return gpus


def nf_finetune_of(wildcards):
    if wildcards.dataset in NF_DECODED:
        return f"results/spikes/{wildcards.dataset}/neuroformer/finetune.nc"
    return []


def nf_outputs():
    return expand(
        "results/spikes/{d}/neuroformer/{f}.nc",
        d=NF_DATASETS,
        f=["metrics", "connectivity"],
    )


def nf_report_inputs():
    return {
        "neuroformer__metrics": expand(
            "results/spikes/{d}/neuroformer/metrics.nc", d=NF_DATASETS
        ),
        "neuroformer__connectivity": expand(
            "results/spikes/{d}/neuroformer/connectivity.nc", d=NF_DATASETS
        ),
        "neuroformer__pretrained": expand(
            "results/spikes/{d}/neuroformer/pretrained.nc", d=NF_DATASETS
        ),
        "neuroformer__finetune": expand(
            "results/spikes/{d}/neuroformer/finetune.nc", d=NF_DECODED
        ),
        "neuroformer__truths": expand(
            "results/spikes/{d}/truth.nc", d=[d for d in NF_DATASETS if d in SIMULATED]
        ),
    }
