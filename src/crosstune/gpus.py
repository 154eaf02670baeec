"""Which GPUs a job uses: a file-lock device pool for local runs with several GPUs.

Snakemake counts GPUs as a resource (``snakemake --resources gpu=8``: the jobs
running at once ask for at most 8 together) but never says *which* devices a
job gets, and does not set ``CUDA_VISIBLE_DEVICES``. Without more, every job
would start on GPU 0. A GPU rule's script therefore calls :func:`use_gpus` with
its ``gpu`` resource before torch touches CUDA; it

* with ``gpu: 0`` hides every GPU (``CUDA_VISIBLE_DEVICES=""``), so a CPU job
  with ``device: auto`` never lands on a GPU another job holds;
* otherwise claims ``gpu`` free device ids from the pool, all or nothing, by
  taking an exclusive ``flock`` on one lock file per device, and sets
  ``CUDA_VISIBLE_DEVICES`` to them (the ``accelerate launch`` processes of a
  multi-GPU training job inherit it). The locks are held by open file
  descriptors, so the kernel releases them when the job's process exits, also
  on a crash or ``kill -9``: no stale claims.

The pool is ``$CROSSTUNE_GPU_POOL`` (comma-separated device ids), else the
``CUDA_VISIBLE_DEVICES`` Snakemake was started with, else the GPUs
``nvidia-smi -L`` lists. Lock files live in ``$CROSSTUNE_GPU_LOCK_DIR``, else a
node-local ``<tmp>/crosstune-gpus-<uid>``, per SLURM job when ``SLURM_JOB_ID``
is set: under the SLURM executor each job's allocation is its own pool (SLURM
already set ``CUDA_VISIBLE_DEVICES`` to exactly its GPUs), and several jobs
inside one ``salloc`` allocation share it. Two Snakemake runs on one machine
share the pool too. A job that finds too few free devices waits (checking every
``poll`` seconds, logging each minute) - with ``--resources gpu=N`` set to the
pool size that wait is at most the moment another job takes to exit - and gives
up after ``$CROSSTUNE_GPU_WAIT`` seconds when that is set.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

POOL_ENV = "CROSSTUNE_GPU_POOL"
LOCK_DIR_ENV = "CROSSTUNE_GPU_LOCK_DIR"
WAIT_ENV = "CROSSTUNE_GPU_WAIT"

_held: list[Claim] = []  # claims of this process, kept open until it exits


class GpuPoolError(RuntimeError):
    pass


def detect_gpus() -> list[str]:
    """Device ids ``nvidia-smi -L`` lists (empty without NVIDIA GPUs or driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(line for line in out.splitlines() if line.startswith("GPU "))]


def pool_ids(env: dict | None = None) -> list[str]:
    """The device ids jobs on this machine may claim, in order."""
    env = os.environ if env is None else env
    for key in (POOL_ENV, "CUDA_VISIBLE_DEVICES"):
        if env.get(key) is not None:
            return [d.strip() for d in env[key].split(",") if d.strip()]
    return detect_gpus()


def lock_dir(env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(LOCK_DIR_ENV):
        return Path(env[LOCK_DIR_ENV])
    root = Path(tempfile.gettempdir()) / f"crosstune-gpus-{os.getuid()}"
    return root / f"slurm-{env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else root


def _lock_name(device: str) -> str:
    return "gpu-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in device) + ".lock"


class Claim:
    """Devices held by this process; :meth:`release` (or process exit) frees them."""

    def __init__(self, devices: list[str], files: list):
        self.devices, self._files = devices, files

    def release(self) -> None:
        for f in self._files:
            f.close()  # closing the descriptor drops its flock
        self._files = []

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def try_claim(n: int, pool: list[str], directory: Path) -> Claim | None:
    """``n`` free devices of ``pool`` at once, or None (nothing held) when fewer are free."""
    directory.mkdir(parents=True, exist_ok=True)
    got, files = [], []
    for device in pool:
        f = open(directory / _lock_name(device), "a")  # noqa: SIM115 - held as the lock
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                continue
            raise
        got.append(device)
        files.append(f)
        if len(got) == n:
            return Claim(got, files)
    Claim(got, files).release()
    return None


def claim(n: int, pool: list[str] | None = None, directory: Path | None = None, *,
          timeout: float | None = None, poll: float = 2.0, what: str = "job") -> Claim:  # fmt: skip
    """Wait until ``n`` devices of the pool are free and hold them."""
    pool = pool_ids() if pool is None else pool
    directory = lock_dir() if directory is None else directory
    if n > len(pool):
        raise GpuPoolError(
            f"{what} asks for {n} GPU(s) but the pool has {len(pool)} ({','.join(pool) or 'none'}); "
            f"set ${POOL_ENV} or CUDA_VISIBLE_DEVICES, or lower the rule's resources.<rule>.gpu in the config"
        )
    start = last_note = time.monotonic()
    while True:
        got = try_claim(n, pool, directory)
        if got is not None:
            return got
        now = time.monotonic()
        if timeout is not None and now - start >= timeout:
            raise GpuPoolError(f"{what}: no {n} free GPU(s) of {','.join(pool)} within {timeout:.0f} s (locks in {directory})")
        if now - last_note >= 60:
            log.info("%s: waiting for %d free GPU(s) of %s (%.0f s so far)", what, n, ",".join(pool), now - start)
            last_note = now
        time.sleep(poll * (0.5 + random.random()))  # jitter: waiting jobs do not retry in lockstep


def use_gpus(n: int, env: dict | None = None, what: str = "job") -> list[str]:
    """Claim ``n`` GPUs for the rest of this process and expose only them (see the module doc).

    Call it before torch initialises CUDA. Returns the device ids now visible.
    """
    env = os.environ if env is None else env
    n = int(n or 0)
    if n == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        return []
    wait = env.get(WAIT_ENV)
    got = claim(n, pool_ids(env), lock_dir(env), timeout=float(wait) if wait else None, what=what)
    _held.append(got)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(got.devices)
    log.info("%s: using GPU(s) %s", what, env["CUDA_VISIBLE_DEVICES"])
    return got.devices
