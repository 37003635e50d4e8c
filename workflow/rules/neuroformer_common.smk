# Neuroformer: config subtree, params and input functions for workflow/rules/neuroformer.smk (no rules here).
NEUROFORMER = config["neuroformer"]
NF_DATASETS = sorted(NEUROFORMER["datasets"]) if NEUROFORMER["enabled"] else []
NF_DECODED = [d for d in NF_DATASETS if NEUROFORMER["datasets"][d].get("target")]


def nf_params(wildcards):
    """The dataset's resolved neuroformer config (global keys merged with its own)."""
    return STUDY.neuroformer(wildcards.dataset)


def nf_pretrain_params(wildcards):
    return STUDY.neuroformer_pretrain(wildcards.dataset)


def nf_finetune_params(wildcards):
    return STUDY.neuroformer_finetune(wildcards.dataset)


def nf_evaluate_params(wildcards):
    return STUDY.neuroformer_evaluate(wildcards.dataset)


def nf_gpus(which):
    """1 GPU for a training rule unless its device is pinned to the CPU."""

    def gpus(wildcards):
        return 0 if nf_params(wildcards)[which].get("device") == "cpu" else 1

    return gpus


def nf_finetune_of(wildcards):
    if wildcards.dataset in NF_DECODED:
        return layout.path("neuroformer_finetune", dataset=wildcards.dataset)
    return []


def nf_outputs():
    return layout.paths("neuroformer_metrics", NF_DATASETS) + layout.paths(
        "neuroformer_connectivity", NF_DATASETS
    )


def nf_report_inputs():
    return layout.neuroformer_report_inputs(NF_DATASETS, NF_DECODED, SIMULATED)
