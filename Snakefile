# crosstune: multilingual fine-tuning, reproducible end to end.
#
#   snakemake --cores 2                                   # the embedded default (config.yaml)
#   snakemake --cores 2 --configfile config/tiny.yaml     # another config *replaces* config.yaml
#
# Stages: base_model -> source_data -> translate -> pairs -> (train, evaluate, ...)
# See README.md for the DAG and workflow/schemas/config.schema.yaml for every key.

from snakemake.utils import min_version, validate

min_version("8.20")


# config.yaml is the embedded default; a --configfile replaces it rather than
# being merged into it (merging would keep the default's models). Keys a config
# leaves out get their defaults from the schema.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# common.smk validates the config against workflow/schemas/config.schema.yaml (and
# fills in its defaults) before anything else reads it.
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/cc_tuning.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/publish.smk"


# the front page of `snakemake --report report.html`
report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),


include: "workflow/rules/cluster.smk"
