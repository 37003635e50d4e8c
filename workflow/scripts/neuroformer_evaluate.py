# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.neuroformer_evaluate.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "neuroformer_evaluate")  # noqa: F821
