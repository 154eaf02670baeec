"""What is recorded beside every model and score: seed, versions, commit, config.

``write_provenance(outdir, ...)`` writes ``provenance.json`` so any result can be
traced back to the exact code, libraries and settings that made it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import random
import subprocess
from pathlib import Path

from . import __version__
from .io import write_json

LIBRARIES = (
    "torch", "transformers", "datasets", "accelerate", "peft", "tokenizers",
    "safetensors", "gguf", "sacrebleu", "snakemake", "numpy",
)  # fmt: skip


def library_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version(), "crosstune": __version__}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return versions


def git_commit(path: str | os.PathLike = ".") -> str | None:
    """Commit of the checkout the workflow runs from, with ``-dirty`` if modified."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty else "")


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def write_provenance(
    outdir: str | os.PathLike,
    *,
    config: dict,
    seed: int | None,
    stage: str,
    extra: dict | None = None,
    filename: str = "provenance.json",
) -> Path:
    """Write ``outdir/provenance.json``: stage, seed, versions, git commit, resolved config."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    record = {
        "stage": stage,
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "versions": library_versions(),
        "config": config,
    }
    if extra:
        record.update(extra)
    path = outdir / filename
    write_json(path, record)
    return path
