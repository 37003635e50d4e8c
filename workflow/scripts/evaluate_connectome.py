# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.evaluate_connectome.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "evaluate_connectome")  # noqa: F821
