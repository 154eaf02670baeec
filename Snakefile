# crosstune: multilingual fine-tuning, reproducible end to end.
#
#   snakemake --cores 2                                   # the embedded default (config.yaml)
#   snakemake --cores 2 --configfile config/tiny.yaml     # another config *replaces* config.yaml
#
# Stages: base_model -> source_data -> translate -> pairs -> (train, evaluate, ...)
# See README.md for the DAG and workflow/schemas/config.schema.yaml for every key.

import os
import sys

from snakemake.utils import min_version, validate

min_version("8.20")

# Scripts import the crosstune library from src/ (also inside --sdm conda envs).
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
)

import crosstune.io  # noqa: E402

# config.yaml is the embedded default; a --configfile replaces it rather than
# being merged into it (merging would keep the default's models). Keys a config
# leaves out get their defaults from the schema.
if not workflow.overwrite_configfiles:
    # read once by crosstune first: Snakemake's loader names neither file nor line of
    # an error (a --configfile it loads before this file runs: README "Configuration reference")
    crosstune.io.read_yaml("config.yaml")

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
