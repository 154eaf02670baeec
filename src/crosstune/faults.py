"""Fault injection for the reliability tests: die like ``kill -9`` at a named point.

``CROSSTUNE_FAULT=<point>:<n>`` makes the process SIGKILL itself when it reaches
``point`` for item ``n`` (``<point>`` alone: the first time it is reached).
Unset - always, outside the tests - :func:`point` does nothing. Points:

- ``train.step:<step>``        at the end of that step, before its checkpoint
- ``train.checkpoint:<step>``  right after checkpoint-<step> is saved
- ``train.before_move``         the model is saved, not yet moved into place
- ``translate.shard:<k>``       right after the k-th shard (from 1) is in the memory
- ``generate.language:<lang>``  right after that language's predictions are kept
- ``activations.shard:<k>``     right after the k-th shard (from 1) of activations is kept
- ``write:<file name>``         right after a file of that name is moved into place
                                (crosstune.io.atomic_path: every output), e.g. ``write:scores.tsv``
"""

from __future__ import annotations

import os
import signal

ENV = "CROSSTUNE_FAULT"


def point(name: str, item=None) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    want, _, which = spec.partition(":")
    if want == name and (not which or which == str(item)):
        os.kill(os.getpid(), signal.SIGKILL)
