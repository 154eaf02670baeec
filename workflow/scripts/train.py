"""Rule train: train one method on one base model (crosstune.train does the work)."""

import sys

import torch

from crosstune.train.launch import run
from crosstune.workflow import log_to

log_to(snakemake.log[0])
sys.stdout = sys.stderr  # the Trainer prints its loss lines to stdout: into the log too
torch.set_num_threads(snakemake.threads)

run({
    "model_dir": snakemake.input.model,
    "pairs": snakemake.input.pairs,
    "output": snakemake.output.model,
    "checkpoint_dir": snakemake.params.checkpoints,
    "settings": snakemake.params.settings,
    "seed": snakemake.params.seed,
    "metrics": snakemake.output.metrics,
    "plot": snakemake.output.loss,
    "config": dict(snakemake.config),
})  # fmt: skip
