# Config validation, wildcard constraints and every input/params function. No rules here.
from pathlib import Path

from brainpipe import __version__ as VERSION
from brainpipe.config import validate_config
from brainpipe.errors import ConfigError
from snakemake.exceptions import WorkflowError


def _validated_config():
    sources = ", ".join(str(p) for p in workflow.configfiles) or "config"
    try:
        return validate_config(
            config,
            workflow.source_path("../schemas/config.schema.yaml"),
            source=sources,
        )
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


config.update(_validated_config())

SPIKE_DATASETS = config["spikes"]["datasets"]
SIMULATED = sorted(k for k, v in SPIKE_DATASETS.items() if "simulate" in v)
FROM_FILE = sorted(k for k, v in SPIKE_DATASETS.items() if "path" in v)
NEVER = "(?!x)x"  # a regex that matches nothing, for an empty list of names


def names_regex(names):
    return "|".join(names) if names else NEVER


wildcard_constraints:
    dataset=names_regex(sorted(SPIKE_DATASETS)),


# ---- params: each rule gets only its own config subtree ------------------------------------------
def simulate_params(wildcards):
    return SPIKE_DATASETS[wildcards.dataset]["simulate"]


def ingest_params(wildcards):
    ds = SPIKE_DATASETS[wildcards.dataset]
    return {k: v for k, v in ds.items() if k in ("path", "t_start_s", "t_stop_s")}


def evaluate_params(wildcards):
    return dict(config["spikes"]["evaluate"], dataset=wildcards.dataset)


# ---- inputs ---------------------------------------------------------------------------------------
def spike_table(wildcards):
    return SPIKE_DATASETS[wildcards.dataset]["path"]


def truth_of(wildcards):
    if wildcards.dataset in SIMULATED:
        return f"results/spikes/{wildcards.dataset}/truth.nc"
    return []


def glm_datasets():
    return sorted(SPIKE_DATASETS) if config["spikes"]["poisson_glm"]["enabled"] else []


def report_inputs(wildcards):
    names = glm_datasets()
    return {
        "metrics": expand("results/spikes/{d}/poisson_glm/metrics.nc", d=names),
        "fits": expand("results/spikes/{d}/poisson_glm/fit.nc", d=names),
        "counts": expand("results/spikes/{d}/counts.nc", d=names),
        "truths": expand(
            "results/spikes/{d}/truth.nc", d=[n for n in names if n in SIMULATED]
        ),
    }


def final_outputs():
    out = expand("results/spikes/{d}/counts.nc", d=sorted(SPIKE_DATASETS))
    out += report_inputs(None)["metrics"]
    out.append("results/report/index.html")
    return out
