"""``python -m crosstune.train JOB.json``: run a job file in this process (one of N under accelerate)."""

import argparse
import atexit
import json
import logging

from ..workflow import log_peak_gpu_memory
from .engine import train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m crosstune.train",
        description="Run one training job file, as rule train writes it (crosstune.train.launch); "
        "under accelerate each process runs this with the same file.",
    )
    parser.add_argument("job", help="JSON job file: keyword arguments of crosstune.train.engine.train")
    job = parser.parse_args().job
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    atexit.register(log_peak_gpu_memory)  # each process's own devices
    with open(job, encoding="utf-8") as f:
        train(**json.load(f))
