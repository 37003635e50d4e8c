# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.calcium_counts.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "calcium_counts")  # noqa: F821
