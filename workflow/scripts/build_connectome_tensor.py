# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.build_connectome_tensor.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "build_connectome_tensor")  # noqa: F821
