"""Data sources: bundled seed data and Hugging Face datasets, normalised to one schema.

Every loader returns *source records*::

    {"id": str, "lang": str, "instruction": str, "response": str, "source": str}

``lang`` is an ISO 639-1 code from :mod:`crosstune.languages`. English records are
translated into the target languages by the ``translate`` rule; non-English
records (e.g. Aya) get English translations of their instructions.
"""

from .sources import LOADERS, load_source, load_sources

__all__ = ["LOADERS", "load_source", "load_sources"]
