# Thin shim: Snakemake's `snakemake` object -> brainpipe.stages.clean_fmri.run (all logic lives in the package).
from brainpipe.stages._runner import from_snakemake

from_snakemake(snakemake, "clean_fmri")  # noqa: F821
