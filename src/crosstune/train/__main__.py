"""``python -m crosstune.train JOB.json``: run a job file in this process (one of N under accelerate)."""

import atexit
import json
import logging
import sys

from ..workflow import log_peak_gpu_memory
from .engine import train

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    atexit.register(log_peak_gpu_memory)  # each process's own devices
    with open(sys.argv[1], encoding="utf-8") as f:
        train(**json.load(f))
