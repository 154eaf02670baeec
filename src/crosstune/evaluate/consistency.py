"""Cross-lingual consistency (SeaEval, Wang et al. NAACL 2024; used by CrossIn) and AC3.

For a parallel benchmark in L languages and k <= L, SeaEval's Consistency_k is

    Consistency_k = mean over the C(L, k) combinations S of k languages of
                    (1/N) * #{items i : the answers to i in all languages of S are identical}

and AC3_k = 2 * Acc * Consistency_k / (Acc + Consistency_k), with Acc the mean
over languages of the per-language accuracy (SeaEval's code adds 1e-10 to the
denominator; we define AC3 = 0 when both are 0).

Since every combination is scored on the same N items, the mean over
combinations of the per-combination means equals the mean over items of the
share of combinations in which the item is answered identically. For one item
whose L answers fall into groups of equal answers of sizes n_1, n_2, ..., that
share is sum_g C(n_g, k) / C(L, k) - no combination has to be enumerated, and
the per-item values are what the bootstrap resamples.

An answer of None (no answer could be extracted) equals nothing, not even
another None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from math import comb


def item_consistency(answers: Sequence[Hashable | None], k: int) -> float:
    """Share of the k-subsets of one item's answers (one per language) that agree."""
    n = len(answers)
    if not 2 <= k <= n:
        raise ValueError(f"consistency: k={k} needs 2 <= k <= number of languages ({n})")
    groups = Counter(a for a in answers if a is not None)
    return sum(comb(size, k) for size in groups.values()) / comb(n, k)


def consistency(answers_by_item: Sequence[Sequence[Hashable | None]], k: int) -> float:
    """Consistency_k over items; each entry holds one item's answers in the L languages."""
    if not answers_by_item:
        raise ValueError("consistency: no items")
    return sum(item_consistency(a, k) for a in answers_by_item) / len(answers_by_item)


def ac3(accuracy: float, consistency_k: float) -> float:
    """Harmonic mean of accuracy and consistency."""
    total = accuracy + consistency_k
    return 0.0 if total == 0 else 2 * accuracy * consistency_k / total
