# The fMRI branch's config tables, wildcard constraints and input/params functions (its rules: fmri.smk).

FMRI = config["fmri"]
FMRI_DATASETS = FMRI["datasets"]
FMRI_SIMULATED = sorted(k for k, v in FMRI_DATASETS.items() if "simulate" in v)
BRAINMAE = FMRI["brainmae"]
BRAINMAE_VARIANTS = sorted(BRAINMAE["variants"])
# the dataset keys the fMRI readers take, and those naming files: one list, in brainpipe.config
from brainpipe.config import FMRI_FILE_KEYS, FMRI_READER_KEYS


wildcard_constraints:
    fmri_dataset=names_regex(sorted(FMRI_DATASETS)),
    fmri_variant=names_regex(BRAINMAE_VARIANTS),


def fmri_sim_params(wildcards):
    sim = dict(FMRI_DATASETS[wildcards.fmri_dataset]["simulate"])
    sim.pop("source", None)
    return sim


def fmri_source(wildcards):
    ds = FMRI_DATASETS[wildcards.fmri_dataset]
    if "simulate" in ds:
        return layout.path("fmri_source", fmri_dataset=wildcards.fmri_dataset)
    return ds["path"]


def fmri_extra_files(wildcards):
    ds = FMRI_DATASETS[wildcards.fmri_dataset]
    return [ds[k] for k in FMRI_FILE_KEYS if k in ds]


def fmri_ingest_params(wildcards):
    name = wildcards.fmri_dataset
    ds = FMRI_DATASETS[name]
    out = {k: v for k, v in ds.items() if k in FMRI_READER_KEYS}
    # the simulated tree: fMRIPrep derivatives + atlas, or the ROI tables
    if "simulate" in ds:
        root = layout.path("fmri_source", fmri_dataset=name)
        if ds["simulate"].get("source", "fmriprep") == "fmriprep":
            out.update(
                path=f"{root}/derivatives/fmriprep",
                format="fmriprep",
                atlas=f"{root}/atlas/atlas.nii.gz",
                atlas_labels=f"{root}/atlas/atlas.tsv",
            )
        else:
            tr = ds["simulate"].get("params", {}).get("tr_s", 1.0)
            out.update(
                path=f"{root}/tables",
                format="table",
                participants=f"{root}/tables/participants.tsv",
                repetition_time_s=tr,
            )
    return out


def fmri_clean_params(wildcards):
    return STUDY.fmri_clean(wildcards.fmri_dataset)


def fmri_eval_params(wildcards):
    return STUDY.fmri_evaluate(wildcards.fmri_dataset)


def brainmae_params(wildcards):
    return STUDY.brainmae(wildcards.fmri_dataset, wildcards.fmri_variant)


def brainmae_gpus(wildcards):
    """1 GPU unless the fit is pinned to the CPU (``device: cpu``)."""
    return 0 if brainmae_params(wildcards).get("device") == "cpu" else 1


def brainmae_eval_params(wildcards):
    return STUDY.brainmae_evaluate(wildcards.fmri_dataset, wildcards.fmri_variant)


def brainmae_base_metrics(wildcards):
    """An ablation's evaluation reads the base variant's metrics (it is judged against the base)."""
    d, v = wildcards.fmri_dataset, wildcards.fmri_variant
    if v == "base" or "base" not in STUDY.brainmae_variants(d):
        return []
    return layout.path("brainmae_metrics", fmri_dataset=d, fmri_variant="base")


def fmri_truth(wildcards):
    if wildcards.fmri_dataset in FMRI_SIMULATED:
        return layout.path("fmri_truth", fmri_dataset=wildcards.fmri_dataset)
    return []


def brainmae_runs():
    if not BRAINMAE["enabled"]:
        return []
    return [
        (d, v)
        for d in sorted(FMRI_DATASETS)
        for v in BRAINMAE["datasets"].get(d, {}).get("variants", BRAINMAE_VARIANTS)
    ]


def fmri_report_inputs(wildcards=None):
    return layout.fmri_report_inputs(
        sorted(FMRI_DATASETS), brainmae_runs(), FMRI_SIMULATED
    )


def fmri_metrics():
    ins = fmri_report_inputs()
    return ins["fmri__baselines"] + ins["fmri__metrics"]


def fmri_final_outputs():
    ins = fmri_report_inputs()
    return ins["fmri__clean"] + ins["fmri__baselines"] + ins["fmri__metrics"]
