# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.fmri_baselines.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "fmri_baselines")  # noqa: F821
