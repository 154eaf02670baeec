"""Rule activations: FFN outputs at p of N parallel training prompt pairs (crosstune.cc_tuning.stages)."""

from pathlib import Path

from crosstune.workflow import log_to, use_job_gpus

log_to(snakemake.log[0])
use_job_gpus(snakemake)  # this job's GPUs (resources: gpu) as CUDA_VISIBLE_DEVICES, before torch

import torch  # noqa: E402

from crosstune.cc_tuning.stages import activations_stage  # noqa: E402
from crosstune.provenance import write_provenance  # noqa: E402

torch.set_num_threads(snakemake.threads)
p = snakemake.params

info = activations_stage(
    snakemake.input.model, snakemake.input.pairs, snakemake.output.activations,
    n_pairs=p.n_pairs, seed=p.seed, languages=p.languages, batch_size=p.batch_size, device=p.device,
    position=p.connection_position, study_n_pairs=p.study_n_pairs,
)  # fmt: skip
write_provenance(
    Path(snakemake.output.meta).parent, config=snakemake.config, seed=p.seed, stage="activations",
    filename=Path(snakemake.output.meta).name,
    extra={"model": snakemake.wildcards.model, "method": snakemake.wildcards.method,
           "trained_model": snakemake.input.model, "drawn": info},
)  # fmt: skip
