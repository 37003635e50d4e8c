# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.fit_switching_glm.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "fit_switching_glm")  # noqa: F821
