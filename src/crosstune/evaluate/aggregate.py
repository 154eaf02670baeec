"""The aggregate stage: one tidy table, paired gains over the baseline, wide tables, plots.

* long table: model, method, benchmark, language, metric, value, ci_low, ci_high, n
  (every score of every score job, values in [0, 1]). Besides the score stage's
  rows (the languages, ``avg`` over all of them, ``all`` for consistency) it holds
  language ``avg_x``: the unweighted mean over the benchmark's non-English
  languages (the target languages), computed as the score stage computes ``avg``
  (mean of the values; replicate by replicate the mean of the languages'
  bootstrap replicates, so it pairs across methods like ``avg`` does);
* gains: each method minus the baseline method (``sft``) on the same items, with
  a paired-bootstrap interval (the two methods' replicates share their resamples,
  :mod:`.bootstrap`); ``significant`` when the interval excludes zero. A gain of
  an average (``avg``, ``avg_x``) or of ``all`` is paired only when every
  language was scored on the same items for both methods;
* wide Markdown tables per benchmark in the papers' layout (methods x languages,
  values x 100), gains whose interval excludes zero marked ↑ / ↓, followed by two
  summary columns: ``Avg (non-en)`` (``avg_x``) and ``En`` (the English score
  again, beside it, so a target-language gain can be read against the English
  loss that CLO-style training trades for it; "–" when the benchmark has no
  English, so every benchmark's table has the same columns). The all-language
  mean (the papers' "Avg") is left out of the wide tables: it mixes the two
  quantities the summary columns keep apart, and it follows from the language
  columns. It stays in the long table (language ``avg``) for comparisons with
  published numbers;
* a retention table over all benchmarks (:func:`retention_markdown`): per model
  and method the primary metric's ``avg_x``, ``En`` and ``ΔEn`` = En(method) -
  En(``base``, the untrained model) with a paired-bootstrap interval;
* per model and benchmark a heatmap of the primary metric (methods x languages
  + Avg (non-en)) and a bar chart of each method's gain over the baseline per language.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import bootstrap as bs

log = logging.getLogger(__name__)

COLUMNS = ["model", "method", "benchmark", "language", "metric", "value", "ci_low", "ci_high", "n"]
GAIN_COLUMNS = ["model", "method", "baseline", "benchmark", "language", "metric",
                "gain", "ci_low", "ci_high", "n", "significant"]  # fmt: skip
ENGLISH = "en"
TARGET_AVG = "avg_x"  # unweighted mean over the benchmark's non-English languages
TARGET_LABEL = "Avg (non-en)"  # its column header
SPECIAL_LANGS = ("avg", TARGET_AVG, "all")
BASE = "base"  # the untrained model, the reference of English retention
# order of the metric tables in a benchmark's Markdown file (the first present is primary)
METRIC_ORDER = ["accuracy", "rouge_l", "chrf", "exact_match", "f1", "acc_ll", "acc_norm_ll", "acc_bytes_ll",
                "no_answer", "fidelity"]  # fmt: skip
METRIC_NAMES = {
    "accuracy": "Accuracy (generated answer)", "rouge_l": "ROUGE-L (language-aware tokens)",
    "chrf": "chrF (sacrebleu)", "exact_match": "Exact match", "f1": "Token F1",
    "acc_ll": "Likelihood accuracy (acc)", "acc_norm_ll": "Likelihood accuracy, length-normalised (acc_norm)",
    "acc_bytes_ll": "Likelihood accuracy, byte-normalised (acc_bytes)",
    "no_answer": "Outputs matching no option (share)", "fidelity": "Language fidelity",
}  # fmt: skip


def primary_metric(metrics: set[str]) -> str:
    return next(m for m in METRIC_ORDER if m in metrics)


def load_scores(jobs: list[dict], confidence: float = 0.95) -> tuple[pd.DataFrame, dict]:
    """Concatenate the score jobs' metric tables and replicates, with ``avg_x`` rows added.

    ``jobs``: dicts with model, method, benchmark and the paths of the score
    stage's ``metrics`` (TSV), ``replicates`` (npz) and ``provenance`` (JSON,
    whose "score" entry holds each language's item-order hash).
    """
    frames, reps = [], {}
    for job in jobs:
        df = pd.read_csv(job["metrics"], sep="\t", keep_default_na=False, na_values=["nan", "NaN", ""])
        with np.load(job["replicates"]) as z:
            job_reps = {key: z[key] for key in z.files}
        df = pd.concat([df, target_average(df, job_reps, confidence)], ignore_index=True)
        df.insert(0, "method", job["method"])
        df.insert(0, "model", job["model"])
        frames.append(df)
        for key, r in job_reps.items():
            reps[(job["model"], job["method"], job["benchmark"], key)] = r
        info = json.loads(Path(job["provenance"]).read_text(encoding="utf-8")).get("score", {})
        reps[(job["model"], job["method"], job["benchmark"], "order")] = info.get("order", {})
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    return table, reps


def target_average(metrics: pd.DataFrame, reps: dict, confidence: float = 0.95) -> pd.DataFrame:
    """Language ``avg_x`` rows of one score job: the mean over its non-English languages.

    ``metrics``: the job's metric table; ``reps``: its replicates by "language|metric",
    to which the ``avg_x`` replicates are added. ``n`` sums the languages' n.
    """
    langs = metrics[~metrics.language.isin([*SPECIAL_LANGS, ENGLISH])]
    rows = []
    for metric, g in langs.groupby("metric", sort=False):
        with warnings.catch_warnings():  # a replicate where every language is NaN stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            r = np.nanmean(np.vstack([reps[f"{lang}|{metric}"] for lang in g.language]), axis=0)
        reps[f"{TARGET_AVG}|{metric}"] = r
        lo, hi = bs.interval(r, confidence)
        rows.append({"benchmark": g.benchmark.iloc[0], "language": TARGET_AVG, "metric": metric,
                     "value": g.value.mean(), "ci_low": lo, "ci_high": hi, "n": int(g.n.sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=metrics.columns).astype(metrics.dtypes.to_dict())


def _same_items(language: str, order_m: dict, order_b: dict) -> bool:
    """Both methods scored the language (for avg, avg_x and all: every language) on the same items."""
    if language in SPECIAL_LANGS:
        return order_m == order_b
    return order_m.get(language) == order_b.get(language)


def paired_gains(table: pd.DataFrame, reps: dict, baseline: str, confidence: float = 0.95) -> pd.DataFrame:
    """Every method's gain over ``baseline`` per (model, benchmark, language, metric)."""
    rows = []
    base = table[table.method == baseline].set_index(["model", "benchmark", "language", "metric"])
    for r in table[table.method != baseline].itertuples(index=False):
        key = (r.model, r.benchmark, r.language, r.metric)
        if key not in base.index:
            continue
        b = base.loc[key]
        mine = reps[(r.model, r.method, r.benchmark, f"{r.language}|{r.metric}")]
        theirs = reps[(r.model, baseline, r.benchmark, f"{r.language}|{r.metric}")]
        order_m = reps.get((r.model, r.method, r.benchmark, "order"), {})
        order_b = reps.get((r.model, baseline, r.benchmark, "order"), {})
        if not _same_items(r.language, order_m, order_b):
            log.warning("%s %s/%s: %s and %s were scored on different items; gain not paired",
                        r.model, r.benchmark, r.language, r.method, baseline)  # fmt: skip
            continue
        lo, hi = bs.interval(mine - theirs, confidence)
        rows.append({"model": r.model, "method": r.method, "baseline": baseline, "benchmark": r.benchmark,
                     "language": r.language, "metric": r.metric, "gain": r.value - b.value,
                     "ci_low": lo, "ci_high": hi, "n": r.n, "significant": bs.excludes_zero(lo, hi)})  # fmt: skip
    return pd.DataFrame(rows, columns=GAIN_COLUMNS)


def _ordered(values, order: list[str]) -> list[str]:
    values = list(dict.fromkeys(values))
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def _label(language: str, wrap: bool = False) -> str:
    """A column header; ``wrap`` breaks "Avg (non-en)" in two lines, so a figure's tick stays within its column."""
    label = TARGET_LABEL if language == TARGET_AVG else language
    return label.replace(" ", "\n") if wrap else label


def _pct(v) -> str:
    return "–" if v is None or pd.isna(v) else f"{100 * v:.1f}"


def wide_table(table: pd.DataFrame, gains: pd.DataFrame, model: str, benchmark: str, metric: str,
               methods: list[str], languages: list[str]) -> str:  # fmt: skip
    """One Markdown table: methods x (languages + Avg (non-en) + En), x 100, significant gains marked."""
    sub = table[(table.model == model) & (table.benchmark == benchmark) & (table.metric == metric)]
    langs = _ordered(sub.language[~sub.language.isin(SPECIAL_LANGS)], languages)
    columns = [(x, x) for x in langs] + [(TARGET_LABEL, TARGET_AVG), ("En", ENGLISH)]  # (header, language)
    g = gains[(gains.model == model) & (gains.benchmark == benchmark) & (gains.metric == metric)]
    marks = {(x.method, x.language): ("↑" if x.gain > 0 else "↓") for x in g.itertuples() if x.significant}
    value = sub.set_index(["method", "language"]).value.to_dict()
    lines = ["| Method | " + " | ".join(h for h, _ in columns) + " |", "|---|" + "---:|" * len(columns)]
    for method in _ordered(sub.method, methods):
        cells = [_pct(value.get((method, lang))) + marks.get((method, lang), "") for _, lang in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overall_table(table: pd.DataFrame, model: str, benchmark: str, methods: list[str]) -> str | None:
    """Consistency_k and AC3_k (language "all") per method, x 100."""
    sub = table[(table.model == model) & (table.benchmark == benchmark) & (table.language == "all")]
    if sub.empty:
        return None
    metrics = sorted(sub.metric.unique(), key=lambda m: (m.split("_")[-1], m))
    lines = ["| Method | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for method in _ordered(sub.method, methods):
        cells = []
        for m in metrics:
            v = sub[(sub.method == method) & (sub.metric == m)]
            cells.append("–" if v.empty else f"{100 * v.value.iloc[0]:.1f} [{100 * v.ci_low.iloc[0]:.1f}, "
                         f"{100 * v.ci_high.iloc[0]:.1f}]")  # fmt: skip
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_markdown(table: pd.DataFrame, gains: pd.DataFrame, benchmark: str, methods: list[str],
                       languages: list[str], baseline: str, confidence: float) -> str:  # fmt: skip
    """The Markdown file of one benchmark: every metric, one table per model."""
    sub = table[table.benchmark == benchmark]
    out = [f"# {benchmark}", "",
           f"Values x 100. ↑ / ↓: the gain over `{baseline}` has a {100 * confidence:.0f}% paired-bootstrap "
           "interval that excludes zero. Avg (non-en): unweighted mean over the non-English languages; En: the "
           "English score (repeated beside it: target-language gain vs English retention; – without English). "
           "The all-language mean is language `avg` in scores.tsv.", ""]  # fmt: skip
    metrics = [m for m in METRIC_ORDER if m in set(sub.metric)]
    for model in sorted(sub.model.unique()):
        for metric in metrics:
            out += [f"## {model}: {METRIC_NAMES.get(metric, metric)}", "",
                    wide_table(table, gains, model, benchmark, metric, methods, languages), ""]  # fmt: skip
        overall = overall_table(table, model, benchmark, methods)
        if overall:
            out += [f"## {model}: cross-lingual consistency and AC3 (all languages) [95% CI]", "", overall, ""]
    return "\n".join(out)


def retention_markdown(table: pd.DataFrame, reps: dict, methods: list[str], benchmarks: list[str],
                       confidence: float = 0.95, base: str = BASE) -> str:  # fmt: skip
    """English retention: per model and method, per benchmark's primary metric Avg (non-en), En, ΔEn.

    ΔEn = En(method) - En(``base``) on the same items, with a paired-bootstrap
    interval (↑ / ↓ when it excludes zero); "–" where it cannot be computed.
    """
    benchmarks = [b for b in benchmarks if b in set(table.benchmark)]
    primary = {b: primary_metric(set(table[table.benchmark == b].metric)) for b in benchmarks}
    english = table[(table.language == ENGLISH) & table.benchmark.map(primary).eq(table.metric)]
    delta = paired_gains(english, reps, base, confidence).set_index(["model", "method", "benchmark"])
    value = table.set_index(["model", "method", "benchmark", "language", "metric"]).value.to_dict()
    out = ["# English retention", "",
           f"Primary metric per benchmark ({', '.join(f'{b}: {m}' for b, m in primary.items())}), values x 100. "
           f"{TARGET_LABEL}: unweighted mean over the benchmark's non-English languages; En: the English score; "
           f"ΔEn: En minus En of `{base}` (the untrained model) on the same items, with its "
           f"{100 * confidence:.0f}% paired-bootstrap interval (↑ / ↓: it excludes zero). "
           "Negative ΔEn: English lost in training. ref.: the reference itself. –: no English in the benchmark, "
           "or no paired score.", ""]  # fmt: skip
    if base not in set(table.method):
        out += [f"Method `{base}` (the untrained model) was not evaluated, so ΔEn cannot be computed: "
                f"add `{base}` to evaluation.methods.", ""]  # fmt: skip
    head = [f"{b} {h}" for b in benchmarks for h in (TARGET_LABEL, "En", "ΔEn")]
    out += ["| Model | Method | " + " | ".join(head) + " |", "|---|---|" + "---:|" * len(head)]
    for model in sorted(table.model.unique()):
        for method in _ordered(table[table.model == model].method, methods):
            cells = []
            for b in benchmarks:
                cells += [_pct(value.get((model, method, b, lang, primary[b]))) for lang in (TARGET_AVG, ENGLISH)]
                cells.append("ref." if method == base else _delta(delta, (model, method, b)))
            out.append(f"| {model} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _delta(gains: pd.DataFrame, key: tuple) -> str:
    """A gain (indexed by model, method, benchmark) x 100 with its interval and mark, or "–"."""
    if key not in gains.index or pd.isna(gains.loc[key].gain):
        return "–"
    g = gains.loc[key]
    mark = ("↑" if g.gain > 0 else "↓") if g.significant else ""
    return f"{100 * g.gain:+.1f}{mark} [{100 * g.ci_low:+.1f}, {100 * g.ci_high:+.1f}]"


def heatmap(table: pd.DataFrame, model: str, benchmark: str, methods: list[str], languages: list[str],
            path: str | Path) -> None:  # fmt: skip
    """Methods x languages heatmap of the benchmark's primary metric (x 100, annotated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = table[(table.model == model) & (table.benchmark == benchmark)]
    fig, ax = plt.subplots(figsize=(7, 3))
    if sub.empty:
        ax.text(0.5, 0.5, f"no scores for {model} / {benchmark}", ha="center", va="center")
        ax.axis("off")
    else:
        metric = primary_metric(set(sub.metric))
        sub = sub[sub.metric == metric]
        langs = _ordered(sub.language[~sub.language.isin(SPECIAL_LANGS)], languages) + [TARGET_AVG]
        rows = _ordered(sub.method, methods)
        grid = sub.pivot_table(index="method", columns="language", values="value").reindex(index=rows, columns=langs)
        data = 100 * grid.to_numpy(dtype=float)
        fig.set_size_inches(1.0 + 0.7 * len(langs), 1.0 + 0.45 * len(rows))
        im = ax.imshow(data, cmap="viridis", aspect="auto", vmin=np.nanmin(data), vmax=np.nanmax(data))
        for (i, j), v in np.ndenumerate(data):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if v < np.nanmean(data) else "black")  # fmt: skip
        ax.set_xticks(range(len(langs)), [_label(x, wrap=True) for x in langs])
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(f"{model} - {benchmark}: {metric} (x100)")
        fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def gain_chart(gains: pd.DataFrame, table: pd.DataFrame, model: str, benchmark: str, methods: list[str],
               languages: list[str], baseline: str, path: str | Path) -> None:  # fmt: skip
    """Per-language bars of each method's gain over the baseline with paired 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = table[(table.model == model) & (table.benchmark == benchmark)]
    g = gains[(gains.model == model) & (gains.benchmark == benchmark)]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    metric = primary_metric(set(sub.metric)) if not sub.empty else None
    g = g[g.metric == metric] if metric else g
    if g.empty:
        ax.text(0.5, 0.5, f"no gains over '{baseline}' for {model} / {benchmark}\n"
                f"({baseline} was not evaluated or no other method was)", ha="center", va="center")  # fmt: skip
        ax.axis("off")
    else:
        langs = _ordered(g.language[~g.language.isin(SPECIAL_LANGS)], languages) + [TARGET_AVG]
        meths = _ordered(g.method, methods)
        width = 0.8 / len(meths)
        x = np.arange(len(langs))
        for k, method in enumerate(meths):
            m = g[g.method == method].set_index("language").reindex(langs)
            y = 100 * m.gain.to_numpy(dtype=float)
            err = 100 * np.abs(np.vstack([m.gain - m.ci_low, m.ci_high - m.gain]).astype(float))
            bars = ax.bar(x + (k - (len(meths) - 1) / 2) * width, y, width, yerr=err, capsize=2, label=method)
            for bar, sig in zip(bars, m.significant.fillna(False).astype(bool), strict=True):
                if not sig:
                    bar.set_alpha(0.45)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, [_label(x, wrap=True) for x in langs])
        ax.set_ylabel(f"{metric} gain over {baseline} (x100)")
        ax.set_title(f"{model} - {benchmark}: gain over {baseline} (faded: 95% CI includes 0)")
        ax.legend(fontsize=8, ncol=min(len(meths), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
