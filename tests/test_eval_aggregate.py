"""The aggregate stage: long table, paired gains, wide Markdown tables and plots."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from crosstune.evaluate import aggregate as agg
from crosstune.evaluate.scoring import score_benchmark, write_scores

from .eval_items import nli_items

LANGS = ("en", "zh", "ar")
N = 40
SETTINGS = {
    "langid": {"candidates": "evaluation", "min_letters": 2},
    "consistency": {"k": [3]},
    "bootstrap": {"samples": 300, "confidence": 0.95, "seed": 1},
}


def many_items(lang):
    """N items: the three hand-written ones repeated under new ids (gold labels 1, 2, 3, 1, ...)."""
    base = nli_items(lang)
    return [{**base[i % 3], "id": f"xnli/{lang}/{i:04d}", "index": i} for i in range(N)]


def outputs(method, lang, items):
    """base: always "1" (right on a third); sft: right on even items; better: always right."""
    if method == "base":
        return ["1"] * len(items)
    if method == "sft":
        return [it["answer"] if i % 2 == 0 else "(9)" for i, it in enumerate(items)]
    return [f"({it['answer']})" for it in items]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("scores")
    jobs = []
    for method in ("base", "sft", "better"):
        items = {lang: many_items(lang) for lang in LANGS}
        preds = {lang: [{"id": it["id"], "index": it["index"], "output": out}
                        for it, out in zip(items[lang], outputs(method, lang, items[lang]), strict=True)]
                 for lang in LANGS}  # fmt: skip
        rows, metrics, reps, info = score_benchmark("xnli", items, preds, SETTINGS)
        d = root / method
        d.mkdir()
        write_scores(d / "items.jsonl", d / "metrics.tsv", d / "replicates.npz", rows, metrics, reps)
        (d / "provenance.json").write_text(json.dumps({"score": info}))
        jobs.append({"model": "tiny", "method": method, "benchmark": "xnli", "metrics": d / "metrics.tsv",
                     "replicates": d / "replicates.npz", "provenance": d / "provenance.json"})  # fmt: skip
    table, reps = agg.load_scores(jobs)
    gains = agg.paired_gains(table, reps, "sft")
    return table, gains


def test_long_table_shape(scored):
    table, _ = scored
    assert list(table.columns) == agg.COLUMNS
    # per method: 3 languages + avg, 3 metrics (accuracy, no_answer, fidelity) + 2 consistency rows
    assert len(table) == 3 * (4 * 3 + 2)
    acc = table[(table.metric == "accuracy") & (table.language == "avg")].set_index("method").value
    assert acc.to_dict() == pytest.approx({"base": 14 / N, "sft": 0.5, "better": 1.0})  # gold "1" on 14 of 40
    assert set(table.language) == {*LANGS, "avg", "all"}


def test_paired_gains(scored):
    _, gains = scored
    assert list(gains.columns) == agg.GAIN_COLUMNS and set(gains.method) == {"base", "better"}
    better = gains[(gains.method == "better") & (gains.metric == "accuracy")].set_index("language")
    assert better.loc["zh", "gain"] == pytest.approx(0.5)
    assert better.significant.all()  # +50 points on 40 items: every interval excludes zero
    assert (better.ci_low > 0.3).all() and (better.ci_high <= 0.7).all()


def test_wide_markdown_table_in_the_papers_layout(scored):
    table, gains = scored
    md = agg.benchmark_markdown(table, gains, "xnli", ["base", "sft", "better"], list(LANGS), "sft", 0.95)
    accuracy = md.split("## tiny: Accuracy (generated answer)")[1].split("##")[0].strip().splitlines()
    assert accuracy[0] == "| Method | en | zh | ar | Avg |"
    assert [line.split("|")[1].strip() for line in accuracy[2:]] == ["base", "sft", "better"]
    assert accuracy[3] == "| sft | 50.0 | 50.0 | 50.0 | 50.0 |"  # the baseline is never marked
    assert accuracy[4] == "| better | 100.0↑ | 100.0↑ | 100.0↑ | 100.0↑ |"
    assert "consistency_3" in md and "ac3_3" in md


def test_plots_are_written(scored, tmp_path):
    table, gains = scored
    for name, draw in [("heat.png", lambda p: agg.heatmap(table, "tiny", "xnli", ["base", "sft"], list(LANGS), p)),
                       ("gain.png", lambda p: agg.gain_chart(gains, table, "tiny", "xnli", ["better"], list(LANGS),
                                                             "sft", p)),
                       ("none.png", lambda p: agg.gain_chart(gains.iloc[:0], table, "tiny", "xnli", [], [], "sft",
                                                             p))]:  # fmt: skip
        draw(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parquet_round_trip(scored, tmp_path):
    table, _ = scored
    table.to_parquet(tmp_path / "t.parquet", index=False)
    assert pd.read_parquet(tmp_path / "t.parquet").equals(table)
