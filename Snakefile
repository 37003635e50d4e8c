# brainpipe: the study workflow. The default study is config/config.yaml (keys documented in config/README.md);
# runtime settings are in workflow/profiles/. Run `snakemake` (or `brainpipe run`) from this folder.
#
# A study is one file. `snakemake --configfile my-study.yaml` runs exactly my-study.yaml: the default study is read
# only when no --configfile is given (snakemake would otherwise merge the user's file into it, and every default
# dataset would run too). `--config key=value` alone still changes the default study. Jobs that snakemake spawns
# (cluster, groups) get the same --configfiles, so they see the same study.
from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

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
