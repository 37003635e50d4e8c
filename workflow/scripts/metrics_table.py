# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.metrics_table.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "metrics_table")  # noqa: F821
