# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.ingest_counts.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "ingest_counts")  # noqa: F821
