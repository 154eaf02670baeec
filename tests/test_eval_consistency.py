"""Cross-lingual consistency and AC3 on a small hand-computed example, and the bootstrap."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from crosstune.evaluate import bootstrap as bs
from crosstune.evaluate.consistency import ac3, consistency, item_consistency

# 4 items answered in 3 languages (None: no answer could be extracted)
ANSWERS = [["A", "A", "A"], ["A", "A", "B"], ["A", "B", "C"], [None, None, "A"]]


def seaeval_loop(answers, k):
    """SeaEval's definition written out: enumerate the language combinations."""
    per_combination = []
    for combo in itertools.combinations(range(len(answers[0])), k):
        same = [len({a[i] for i in combo}) == 1 and None not in {a[i] for i in combo} for a in answers]
        per_combination.append(sum(same) / len(answers))
    return sum(per_combination) / len(per_combination)


def test_consistency_hand_computed():
    # k = 2: item 1 agrees in 3/3 pairs, item 2 in 1/3, items 3 and 4 in none -> (1 + 1/3) / 4
    assert consistency(ANSWERS, 2) == pytest.approx(1 / 3)
    # k = 3: only item 1 agrees in all three languages
    assert consistency(ANSWERS, 3) == pytest.approx(1 / 4)
    assert item_consistency(["x", "x", "x", "y"], 2) == pytest.approx(3 / 6)  # C(3,2) of C(4,2)
    for k in (2, 3):
        assert consistency(ANSWERS, k) == pytest.approx(seaeval_loop(ANSWERS, k))


def test_two_missing_answers_do_not_agree():
    assert item_consistency([None, None], 2) == 0.0


def test_ac3_is_the_harmonic_mean():
    assert ac3(0.5, 1 / 3) == pytest.approx(0.4)  # 2 * 0.5 * (1/3) / (5/6)
    assert ac3(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="k=4"):
        item_consistency(["a", "b", "c"], 4)


def test_bootstrap_is_seeded_and_shared_across_methods():
    a = bs.resample_indices(50, 200, 42, "xnli", "zh")
    assert np.array_equal(a, bs.resample_indices(50, 200, 42, "xnli", "zh"))
    assert not np.array_equal(a, bs.resample_indices(50, 200, 42, "xnli", "ar"))
    assert not np.array_equal(a, bs.resample_indices(50, 200, 7, "xnli", "zh"))
    rng = np.random.default_rng(0)
    x = (rng.random(50) < 0.6).astype(float)
    reps = bs.replicates(x, a)
    lo, hi = bs.interval(reps)
    assert lo < x.mean() < hi and hi - lo < 0.4
    assert bs.interval(bs.replicates(x, a)) == (lo, hi)  # same seed, same interval
    # paired: a method equal to the baseline has a gain interval of exactly [0, 0]
    assert bs.interval(reps - bs.replicates(x.copy(), a)) == (0.0, 0.0)
    # a method better on every item: the paired interval excludes zero
    y = np.minimum(x + 1, 1)
    assert bs.excludes_zero(*bs.interval(bs.replicates(y, a) - reps))


def test_bootstrap_ignores_items_a_metric_does_not_apply_to():
    values = np.array([1.0, np.nan, 0.0, 1.0])
    reps = bs.replicates(values, bs.resample_indices(4, 100, 1, "t"))
    assert np.nanmin(reps) >= 0 and np.nanmax(reps) <= 1
    custom = bs.replicates(values, np.array([[0, 3], [2, 2]]), stat=lambda rows: float(np.nansum(rows)))
    assert custom.tolist() == [2.0, 0.0]
