# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.neuroformer_pretrain.run (all logic lives in the package), in
# training.distributed's processes when the study asks for data-parallel training (else the ordinary entry).
from brainpipe.training.distributed import from_snakemake

from_snakemake(snakemake, "neuroformer_pretrain")  # noqa: F821
