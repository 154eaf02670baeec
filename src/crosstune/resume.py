"""Finished parts of a long job, kept for its rerun (generate: one per language; activations: one per shard).

Each part is a file in a resume directory with ``<name>.key`` beside it: a
fingerprint of everything that determines the part (settings, inputs, model).
A rerun finds the part with the same key, logs ``<label>: resumed from <file>``
and computes only the parts without one; a changed key recomputes the part. The
caller builds the output from the parts, moves it into place and removes the
directory, so only the output's rename says "complete".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from . import faults

log = logging.getLogger(__name__)


def model_fingerprint(model_dir: str | Path) -> list:
    """Name, size and modification time of every file of a model directory (cheap, no hashing)."""
    model_dir = Path(model_dir)
    files = [p for p in sorted(model_dir.iterdir()) if p.is_file()]
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def digest(*what) -> str:
    """SHA-256 of JSON-serialisable values (dict keys sorted): a part's key."""
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def keep_part(directory: str | Path, name: str, suffix: str, key: str, compute: Callable[[Path], None],
              fault: str, label: str) -> Path:  # fmt: skip
    """The part ``directory/<name><suffix>``: kept from an earlier run when its key is ``key``, else
    written by ``compute(path)`` (atomically: the key is written after it). Then fault point
    ``<fault>:<name>`` (crosstune.faults)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    part, keyfile = directory / f"{name}{suffix}", directory / f"{name}.key"
    if part.exists() and keyfile.exists() and keyfile.read_text() == key:
        log.info("%s: resumed from %s", label, part)
        return part
    keyfile.unlink(missing_ok=True)
    compute(part)
    keyfile.write_text(key)
    faults.point(fault, name)
    return part
