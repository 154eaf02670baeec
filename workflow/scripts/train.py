"""Rule train: train one method on one base model (crosstune.train does the work)."""

import sys

from crosstune.workflow import log_to, use_job_gpus

log_to(snakemake.log[0])
use_job_gpus(snakemake)  # this job's GPUs (resources: gpu) as CUDA_VISIBLE_DEVICES, before torch

import torch  # noqa: E402

from crosstune.train.launch import run  # noqa: E402
from crosstune.train.settings import resolve  # noqa: E402

sys.stdout = sys.stderr  # the Trainer prints its loss lines to stdout: into the log too
torch.set_num_threads(snakemake.threads)

run({
    "model_dir": snakemake.input.model,
    "pairs": snakemake.input.pairs,
    "output": snakemake.output.model,
    "checkpoint_dir": snakemake.params.checkpoints,
    # params.settings plus the settings that cannot change the weights (save_steps...)
    "settings": {**resolve(snakemake.config, snakemake.wildcards.method),
                 **({"connection_position": snakemake.params.connection_position}
                    if snakemake.params.connection_position else {})},
    "seed": snakemake.params.seed,
    "metrics": snakemake.output.metrics,
    "plot": snakemake.output.loss,
    "config": dict(snakemake.config),
    "run_name": f"{snakemake.wildcards.model}/{snakemake.wildcards.method}",  # the trackers' run name
})  # fmt: skip
