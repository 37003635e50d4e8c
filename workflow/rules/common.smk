# Config validation, wildcard constraints and every input/params function. No rules here.
from pathlib import Path

from brainpipe import __version__ as VERSION
from brainpipe import layout
from brainpipe.config import PATH_OPTIONS, Study, validate_config
from brainpipe.errors import ConfigError
from snakemake.exceptions import WorkflowError


def _schema_path():
    """The study schema in place, so the branch schemas beside it are merged in (workflow.source_path gives a
    cached copy of the one file, without them); the cached copy only for a remote workflow.
    """
    p = Path(str(workflow.current_basedir)) / ".." / "schemas" / "config.schema.yaml"
    return p if p.exists() else workflow.source_path("../schemas/config.schema.yaml")


def _validated_config():
    sources = ", ".join(str(p) for p in workflow.configfiles) or "config"
    try:
        return validate_config(
            config,
            _schema_path(),
            source=sources,
        )
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


config.update(_validated_config())
# every rule's parameters are resolved here, in Python (validate_config ran every cross-check on them)
STUDY = Study(
    config,
    source=", ".join(str(p) for p in workflow.configfiles) or "config",
    check=False,
)

SPIKE_DATASETS = config["spikes"]["datasets"]
SIMULATED = sorted(k for k, v in SPIKE_DATASETS.items() if "simulate" in v)
FROM_FILE = sorted(k for k, v in SPIKE_DATASETS.items() if "path" in v)
NEVER = "(?!x)x"  # a regex that matches nothing, for an empty list of names


def names_regex(names):
    return "|".join(names) if names else NEVER


SWITCHING = config["spikes"]["switching_glm"]
SWITCHING_VARIANTS = sorted(SWITCHING["variants"])


wildcard_constraints:
    dataset=names_regex(sorted(SPIKE_DATASETS)),
    variant=names_regex(SWITCHING_VARIANTS),


# ---- params: each rule gets only its own config subtree ------------------------------------------
def simulate_params(wildcards):
    return STUDY.simulate(wildcards.dataset)


def ingest_params(wildcards):
    return STUDY.ingest(wildcards.dataset)


def bin_params(wildcards):
    return STUDY.bin(wildcards.dataset)


def bin_where(wildcards):
    """Each binning parameter -> the config key that set it (named in the stage's errors)."""
    return STUDY.where("bin", wildcards.dataset)


def switching_params(wildcards):
    return STUDY.switching(wildcards.dataset, wildcards.variant)


def switching_gpus(wildcards):
    """1 GPU unless the fit is pinned to the CPU (``device: cpu``)."""
    return 0 if switching_params(wildcards).get("device") == "cpu" else 1


def switching_eval_params(wildcards):
    return STUDY.switching_evaluate(wildcards.dataset, wildcards.variant)


def evaluate_params(wildcards):
    return STUDY.evaluate(wildcards.dataset)


# ---- inputs ---------------------------------------------------------------------------------------
def spike_source(wildcards):
    return SPIKE_DATASETS[wildcards.dataset]["path"]


def spike_extra_files(wildcards):
    opts = SPIKE_DATASETS[wildcards.dataset].get("options", {})
    return [opts[k] for k in PATH_OPTIONS if k in opts]


def switching_variants(dataset):
    return STUDY.switching_variants(dataset)


def switching_runs():
    if not SWITCHING["enabled"]:
        return []
    return [
        (d, v) for d in sorted(SWITCHING["datasets"]) for v in switching_variants(d)
    ]


def switching_references(wildcards):
    names = [
        r
        for r in SWITCHING["references"]
        if r != wildcards.variant and r in switching_variants(wildcards.dataset)
    ]
    return layout.paths("switching_fit", [(wildcards.dataset, v) for v in names])


def truth_of(wildcards):
    if wildcards.dataset in SIMULATED:
        return layout.path("spike_truth", dataset=wildcards.dataset)
    return []


def glm_datasets():
    return sorted(SPIKE_DATASETS) if config["spikes"]["poisson_glm"]["enabled"] else []


def spike_report_inputs():
    return layout.spike_report_inputs(glm_datasets(), switching_runs(), SIMULATED)


def report_inputs(wildcards):
    """Every input of the report page, named <branch>__<key> (paths: brainpipe.layout)."""
    return {
        **spike_report_inputs(),
        **fmri_report_inputs(wildcards),
        **calcium_report_inputs(),
        **nf_report_inputs(),
    }


def all_metrics(wildcards):
    ins = report_inputs(wildcards)
    return (
        ins["spikes__metrics"]
        + ins["spikes__switching_metrics"]
        + calcium_metrics()
        + fmri_metrics()
        + ins["neuroformer__metrics"]
    )


def final_outputs():
    out = layout.paths("counts", sorted(SPIKE_DATASETS))
    ins = report_inputs(None)
    out += ins["spikes__metrics"] + ins["spikes__switching_metrics"]
    out += fmri_final_outputs()
    out += calcium_final_outputs()
    out += nf_outputs()
    out += [layout.path("report_page"), layout.path("metrics_table")]
    return out
