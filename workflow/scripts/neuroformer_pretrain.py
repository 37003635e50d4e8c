# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.neuroformer_pretrain.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "neuroformer_pretrain")  # noqa: F821
