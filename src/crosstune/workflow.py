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
