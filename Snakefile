# brainpipe: the study workflow. Study content is in config/config.yaml (documented in config/README.md);
# runtime settings are in workflow/profiles/. Run `snakemake` (or `brainpipe run`) from this folder.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/spikes.smk"
include: "workflow/rules/switching.smk"
include: "workflow/rules/fmri.smk"
include: "workflow/rules/calcium.smk"
include: "workflow/rules/neuroformer_common.smk"
include: "workflow/rules/neuroformer.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
