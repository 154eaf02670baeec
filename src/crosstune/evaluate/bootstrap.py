"""Seeded percentile bootstrap over items, shared by every method so gains are paired.

The resampled item indices of a (benchmark, language) depend only on the seed,
the benchmark, the language and the number of items - never on the method. Two
methods scored on the same items (same ids, same order) therefore see the same
resamples, and the difference of their replicate statistics is the paired
bootstrap distribution of the gain (Koehn 2004; Efron & Tibshirani 1993).
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable

import numpy as np


def rng_for(seed: int, *key: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and the strings in ``key`` (stable across runs)."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode("utf-8")) for k in key)])


def resample_indices(n_items: int, n_samples: int, seed: int, *key: str) -> np.ndarray:
    """(n_samples, n_items) item indices drawn with replacement."""
    if n_items < 1:
        raise ValueError("bootstrap: no items")
    return rng_for(seed, *key, str(n_items)).integers(0, n_items, size=(n_samples, n_items))


def replicates(values: np.ndarray, indices: np.ndarray, stat: Callable | None = None) -> np.ndarray:
    """The statistic on every resample: the mean by default (vectorised).

    ``values`` has one row per item (a scalar score, or a vector of sufficient
    statistics); ``stat`` maps the (n_items, ...) rows of one resample to a float.
    NaN values (items the metric does not apply to) are left out of each mean.
    """
    values = np.asarray(values, dtype=float)
    if stat is None:
        sample = values[indices]
        if not np.isnan(values).any():
            return sample.mean(axis=1)
        with warnings.catch_warnings():  # a resample of only NaN items has a NaN mean
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(sample, axis=1)
    return np.array([stat(values[idx]) for idx in indices])


def interval(reps: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the replicates (NaN replicates ignored)."""
    reps = np.asarray(reps, dtype=float)
    reps = reps[~np.isnan(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return float(lo), float(hi)


def excludes_zero(lo: float, hi: float) -> bool:
    return bool(lo > 0 or hi < 0)
