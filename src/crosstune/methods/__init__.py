"""Training methods by registry name (the ``type`` of a ``methods:`` entry in the config).

A new method is a :class:`~crosstune.methods.base.Method` subclass in its own
module, added to ``METHODS`` below (and to the ``type`` enum of ``methods`` in
``workflow/schemas/config.schema.yaml``, with its settings). See ``base.py`` for
the interface. Importing this package does not import torch.
"""

from __future__ import annotations

from .base import Method, TrainDataError
from .cc_tuning import CCTuning
from .clo import CLOMethod, SFTDPOMethod
from .crossin import CrossIn
from .sft import Sft, SftAll, SftEn, SftMt

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (Sft, SftEn, SftAll, SftMt, CrossIn, CLOMethod, SFTDPOMethod, CCTuning)
}


def get_method(type_name: str) -> Method:
    """An instance of the method registered as ``type_name``."""
    if type_name not in METHODS:
        raise ValueError(f"unknown method type {type_name!r}; registered: {', '.join(sorted(METHODS))}")
    return METHODS[type_name]()


__all__ = ["METHODS", "Method", "TrainDataError", "get_method"]
