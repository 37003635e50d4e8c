# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.pretrain_brainmae.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "pretrain_brainmae")  # noqa: F821
