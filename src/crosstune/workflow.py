"""Glue shared by the scripts in ``workflow/scripts``."""

from __future__ import annotations

import atexit
import logging
import sys

# The line a job's log ends with when it used CUDA (benchmarks/gpu_rehearsal.py reads it back).
PEAK_GPU = "peak GPU memory: {allocated:.0f} MiB allocated, {reserved:.0f} MiB reserved"


def log_to(path: str) -> None:
    """Send stderr (logging, tqdm, warnings, tracebacks) to the rule's log file."""
    sys.stderr = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    atexit.register(log_peak_gpu_memory)


def log_peak_gpu_memory() -> None:
    """Log the process's peak GPU memory (torch.cuda.max_memory_allocated / _reserved, summed
    over its visible devices) as :data:`PEAK_GPU`; nothing when the process never used CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    devices = range(torch.cuda.device_count())
    mib = 2**20
    logging.getLogger(__name__).info(PEAK_GPU.format(
        allocated=sum(torch.cuda.max_memory_allocated(d) for d in devices) / mib,
        reserved=sum(torch.cuda.max_memory_reserved(d) for d in devices) / mib,
    ))  # fmt: skip


def use_job_gpus(smk) -> list[str]:
    """Give this job its ``gpu`` resource's worth of devices (:func:`crosstune.gpus.use_gpus`).

    Call it first in a GPU rule's script, before torch initialises CUDA.
    """
    from .gpus import use_gpus

    n = getattr(smk.resources, "gpu", 0)
    what = " ".join([smk.rule, *(f"{k}={v}" for k, v in smk.wildcards.items())])
    return use_gpus(n, what=what)
