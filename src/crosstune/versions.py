"""Version gates for the libraries whose private functions crosstune calls.

Three modules reach past a library's public interface, because the public one
cannot do what they need:

* ``evaluate/decode.py`` (the ``exact`` decoder) subclasses transformers'
  ``cache_utils.DynamicLayer`` and writes its attributes, registers an attention
  and a mask function (``integrations.sdpa_attention.sdpa_attention_forward``,
  ``masking_utils.sdpa_mask``) and switches ``config._attn_implementation``;
* ``evaluate/metrics.py`` resamples chrF from per-item statistics with
  sacrebleu's ``CHRF._extract_corpus_statistics`` and ``_compute_score_from_stats``;
* ``train/engine.py`` (the LoRA merge under DeepSpeed ZeRO-3) reads the DeepSpeed
  config transformers registered (``integrations.deepspeed._hf_deepspeed_config_weak_ref``)
  to hide it while one process loads the base model, and registers it again after.

Such functions change without notice, and the failure would be a wrong number or
an obscure error deep in a job, so :func:`require` refuses an untested version
with a message naming the fix. ``TESTED`` is the one place the ranges live;
pyproject.toml's dependencies and envs/*.yaml repeat them (tests/test_readme_commands.py
checks that they agree).
"""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

# the ranges the private functions were tested with: tests/test_eval_decode.py passes with
# transformers 4.57.6 and 5.25.0, the chrF tests with sacrebleu 2.6.0; the upper bound is the
# next minor release, not yet tried
TESTED = {
    "transformers": ">=4.57,<5.26",
    "sacrebleu": ">=2.4,<2.7",
}


class UntestedVersion(ImportError):
    """An installed library outside the range crosstune's use of its private functions was tested with."""


def require(package: str, user: str) -> str:
    """The installed version of ``package``; :class:`UntestedVersion` naming ``user`` when outside ``TESTED``."""
    found = importlib.metadata.version(package)
    spec = TESTED[package]
    if Version(found) not in SpecifierSet(spec):
        raise UntestedVersion(
            f"{user} calls private functions of {package} that were tested with {package}{spec}, "
            f"but {package} {found} is installed: pip install '{package}{spec}'"
        )
    return found
