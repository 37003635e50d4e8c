# Calcium branch: config views, wildcard constraints, and every input/params function of workflow/rules/calcium.smk.
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
    return STUDY.calcium_simulate(wildcards.cadataset)


def ca_ingest_params(wildcards):
    return STUDY.calcium_ingest(wildcards.cadataset)


def ca_preprocess_params(wildcards):
    return STUDY.calcium_preprocess(wildcards.cadataset)


def ca_source(wildcards):
    return CA_DATASETS[wildcards.cadataset]["path"]


def ca_study_processed(wildcards):
    return layout.paths(
        "calcium_processed", CONNECTOME["studies"][wildcards.study]["datasets"]
    )


def ca_study_truths(wildcards):
    names = CONNECTOME["studies"][wildcards.study]["datasets"]
    if all(d in CA_SIMULATED for d in names):
        return layout.paths("calcium_truth", names)
    return []


def ca_tensor_params(wildcards):
    return STUDY.connectome_tensor(wildcards.study)


def ca_fit_params(wildcards):
    return STUDY.connectome(wildcards.study)


def ca_fit_gpus(wildcards):
    """1 GPU unless the factorization is pinned to the CPU (``device: cpu``)."""
    return 0 if ca_fit_params(wildcards).get("device") == "cpu" else 1


def ca_eval_params(wildcards):
    return STUDY.connectome_evaluate(wildcards.study)


def ca_counts_input(wildcards):
    return layout.path(
        "calcium_processed", cadataset=SPIKE_DATASETS[wildcards.dataset]["from_calcium"]
    )


def calcium_metrics():
    return layout.paths("connectome_metrics", CA_STUDIES)


def calcium_final_outputs():
    return layout.paths("calcium_processed", sorted(CA_DATASETS)) + calcium_metrics()


def calcium_report_inputs():
    return layout.calcium_report_inputs(sorted(CA_DATASETS), CA_STUDIES)
