# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.report.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "report")  # noqa: F821
