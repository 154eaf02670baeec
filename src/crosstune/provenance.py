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
import sys
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


# CPU features that select torch's matrix-product kernels (and so the rounding of their results)
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> tuple[str | None, list[str]]:
    """The CPU's model name and which of KERNEL_FLAGS it has (Linux: /proc/cpuinfo; elsewhere the
    name platform reports and no flags)."""
    name, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name is None:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return name or platform.processor() or None, [f for f in KERNEL_FLAGS if f in flags]


def hardware() -> dict:
    """What the bits of a result can depend on beyond code and config: a CPU matrix product's
    rounding depends on the kernel the CPU selects (bfloat16 on AMX or not) and on how many
    threads split its sums, a GPU's on the GPU. torch's figures only where the stage imported it."""
    cpu, flags = cpu_info()
    record = {"machine": platform.machine(), "cpu": cpu, "cpu_flags": flags, "cpu_count": os.cpu_count(),
              "torch_threads": None, "gpus": []}  # fmt: skip
    torch = sys.modules.get("torch")
    if torch is not None:
        record["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if os.environ.get("WORLD_SIZE"):  # a process of an accelerate/torchrun launch
        record["world_size"] = int(os.environ["WORLD_SIZE"])
    return record


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
    """Write ``outdir/provenance.json``: stage, seed, versions, git commit, hardware, resolved config."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    record = {
        "stage": stage,
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(Path(__file__).resolve().parent),
        "versions": library_versions(),
        "hardware": hardware(),
        "config": config,
    }
    if extra:
        record.update(extra)
    path = outdir / filename
    write_json(path, record)
    return path
