"""Run one training job: in this process, or as N processes under ``accelerate launch``.

A *job* is a JSON-able dict of :func:`crosstune.train.engine.train`'s arguments
(``model_dir``, ``pairs``, ``output``, ``checkpoint_dir``, ``settings``, ``seed``,
``metrics``, ``plot``, ``config``). With ``settings.train.num_processes > 1`` it is
written to ``<checkpoint_dir>/job.json`` and started with
``accelerate launch --config_file <train.accelerate_config> --num_processes N
-m crosstune.train <job.json>``; every process then runs the same job.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from ..io import write_json

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPO = Path(__file__).resolve().parents[3]  # the checkout holding workflow/profiles/accelerate/


def accelerate_config(path: str | Path, base: str | Path | None = None) -> Path | None:
    """The accelerate config file: as given (relative to the working directory), else relative to ``base``
    (default: the repository of this crosstune); None when neither exists."""
    for candidate in (Path(path), Path(base or REPO) / path):
        if candidate.is_file():
            return candidate
    return None


def accelerate_command(job_file: str | Path, settings: dict) -> list[str]:
    t = settings["train"]
    config = accelerate_config(t["accelerate_config"])
    if config is None:
        raise FileNotFoundError(f"method {settings['name']!r}: train.accelerate_config not found: {t['accelerate_config']}")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
           "--num_processes", str(t["num_processes"]), "--main_process_port", str(free_port())]  # fmt: skip
    return [*cmd, "-m", "crosstune.train", str(job_file)]


def run(job: dict) -> None:
    settings = job["settings"]
    n = settings["train"]["num_processes"]
    if n <= 1:
        from .engine import train

        train(**job)
        return
    job_file = Path(job["checkpoint_dir"]) / "job.json"
    write_json(job_file, job)
    cmd = accelerate_command(job_file, settings)
    log.info("launching %d processes: %s", n, " ".join(cmd))
    try:  # into the job's log when stderr is a file (the rule's log), else inherited
        sys.stderr.fileno()
        out = sys.stderr
    except (AttributeError, OSError, ValueError):
        out = None
    # the processes import this very crosstune (a source checkout need not be installed)
    src = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(cmd, stdout=out, stderr=out, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"method {settings['name']!r}: accelerate launch exited with {done.returncode} (see the log)")
