# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.evaluate_poisson_glm.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "evaluate_poisson_glm")  # noqa: F821
