"""Glue shared by the scripts in ``workflow/scripts``."""

from __future__ import annotations

import logging
import sys


def log_to(path: str) -> None:
    """Send stderr (logging, tqdm, warnings, tracebacks) to the rule's log file."""
    sys.stderr = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def use_job_gpus(smk) -> list[str]:
    """Give this job its ``gpu`` resource's worth of devices (:func:`crosstune.gpus.use_gpus`).

    Call it first in a GPU rule's script, before torch initialises CUDA.
    """
    from .gpus import use_gpus

    n = getattr(smk.resources, "gpu", 0)
    what = " ".join([smk.rule, *(f"{k}={v}" for k, v in smk.wildcards.items())])
    return use_gpus(n, what=what)
