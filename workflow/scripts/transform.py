"""Rule transform: the least-squares Transform Matrix from the activations (crosstune.cc_tuning.stages)."""

from pathlib import Path

from crosstune.workflow import log_to, use_job_gpus

log_to(snakemake.log[0])
use_job_gpus(snakemake)  # this job's GPUs (resources: gpu) as CUDA_VISIBLE_DEVICES, before torch

import torch  # noqa: E402

from crosstune.cc_tuning.stages import transform_stage  # noqa: E402
from crosstune.provenance import write_provenance  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params

report = transform_stage(
    snakemake.input.activations, snakemake.output.transform, snakemake.output.fit,
    ridge=p.ridge, per_language=p.per_language, driver=p.driver, device=p.device, n_pairs=p.n_pairs,
)  # fmt: skip
write_provenance(
    Path(snakemake.output.meta).parent, config=snakemake.config, seed=snakemake.config["seed"], stage="transform",
    extra={"model": snakemake.wildcards.model, "method": snakemake.wildcards.method,
           "matrix": snakemake.wildcards.get("matrix"),  # a matrix study's point: rule transform_point
           "activations": snakemake.input.activations,
           "fit": {k: v for k, v in report.items() if k != "matrices"}},
)  # fmt: skip
