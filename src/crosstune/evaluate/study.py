"""The tables and curves of a study (crosstune.studies): one row per point, method and score.

Long table columns: study, model, method (the base method's evaluation row: ``clo``,
``cc_tuning@matrix``), point (``size=800``), setting (the varied path), x (its
value), also (the crossed setting's value, "" when none), benchmark, language,
metric, value, ci_low, ci_high, seeds (how many seeds were pooled).

Seeds: a point run with several training seeds has one score job per seed. Its
value is the mean over the seeds; its interval comes from a two-level bootstrap
that combines seed and item variance: replicate b draws len(seeds) seeds with
replacement and averages, over the drawn seeds, each seed's item-bootstrap
replicate b (the score stage resampled the items within each seed). With one
seed it is the score stage's item interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import aggregate as agg
from . import bootstrap as bs

COLUMNS = ["study", "model", "method", "point", "setting", "x", "also", "benchmark", "language", "metric",
           "value", "ci_low", "ci_high", "seeds"]  # fmt: skip


def pooled(values: list[float], reps: list[np.ndarray], seed: int, *key: str) -> tuple[float, np.ndarray]:
    """Mean over seeds and the two-level bootstrap replicates (seeds, then items within each)."""
    stack = np.vstack(reps)  # seeds x replicates
    if len(values) == 1:
        return float(values[0]), stack[0]
    pick = bs.rng_for(seed, "study-seeds", *key).integers(0, len(values), size=stack.shape)
    return float(np.mean(values)), np.take_along_axis(stack, pick, axis=0).mean(axis=0)


def study_table(study: str, rows: list[dict], table: pd.DataFrame, reps: dict, seed: int,
                confidence: float = 0.95) -> pd.DataFrame:  # fmt: skip
    """``rows``: one dict per evaluated variant row (row, method, point, setting, x, also);
    ``table``/``reps``: aggregate.load_scores of their score jobs."""
    by_row = {r["row"]: r for r in rows}
    scored = table[table.method.isin(by_row)].copy()
    for col in ("method_row", "point", "setting", "x", "also"):
        key = "method" if col == "method_row" else col
        scored[col] = scored.method.map(lambda m, key=key: str(by_row[m][key]))
    out = []
    # the rows pooled as seeds: one point of one crossed value (also) - its seeds' rows only
    keys = ["model", "method_row", "point", "also", "benchmark", "language", "metric"]
    for key, g in scored.groupby(keys, sort=False):
        model, method, point, also, benchmark, language, metric = key
        values = g.value.tolist()
        r = [reps[(model, row, benchmark, f"{language}|{metric}")] for row in g.method]
        where = (model, method, point, *([also] if also else []), benchmark, language, metric)
        value, pooled_reps = pooled(values, r, seed, *where)
        lo, hi = bs.interval(pooled_reps, confidence) if len(values) > 1 else (g.ci_low.iloc[0], g.ci_high.iloc[0])
        first = g.iloc[0]
        out.append({"study": study, "model": model, "method": method, "point": point, "setting": first.setting,
                    "x": first.x, "also": also, "benchmark": benchmark, "language": language,
                    "metric": metric, "value": value, "ci_low": lo, "ci_high": hi, "seeds": len(values)})  # fmt: skip
    return pd.DataFrame(out, columns=COLUMNS)


def _numeric(xs: list[str]) -> list[float] | None:
    try:
        return [float(x) for x in xs]
    except ValueError:
        return None


def curve(table: pd.DataFrame, model: str, benchmark: str, path) -> None:
    """The primary metric's target-language mean (avg_x, else avg) against the varied
    setting, one line per method (and crossed value), shaded interval; a log x-axis when
    the values are positive numbers spanning a factor of 10 or more (data sizes, N)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[(table.model == model) & (table.benchmark == benchmark)]
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(t):
        metric = agg.primary_metric(set(t.metric))
        language = agg.TARGET_AVG if (t.language == agg.TARGET_AVG).any() else "avg"
        t = t[(t.metric == metric) & (t.language == language)]
        xs = list(dict.fromkeys(t.x))
        numeric = _numeric(xs)
        for (method, also), g in t.groupby(["method", "also"], sort=False):
            g = g.set_index("x").reindex(xs).dropna(subset=["value"])
            pos = [numeric[xs.index(x)] for x in g.index] if numeric else [xs.index(x) for x in g.index]
            label = f"{method} ({also})" if also else method
            (line,) = ax.plot(pos, 100 * g.value, marker="o", label=label)
            ax.fill_between(pos, 100 * g.ci_low, 100 * g.ci_high, alpha=0.2, color=line.get_color())
        if numeric and min(numeric) > 0 and max(numeric) / min(numeric) >= 10:
            ax.set_xscale("log")
        if numeric:
            ax.set_xticks(numeric, xs)
        else:
            ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(t.setting.iloc[0] if len(t) else "")
        ax.set_ylabel(f"{agg.METRIC_NAMES.get(metric, metric)}, {agg._label(language)} (x 100)")
        ax.legend()
    ax.set_title(f"{model} - {benchmark}")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
