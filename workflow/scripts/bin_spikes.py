# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.bin_spikes.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "bin_spikes")  # noqa: F821
