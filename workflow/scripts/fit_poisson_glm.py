# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.fit_poisson_glm.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "fit_poisson_glm")  # noqa: F821
