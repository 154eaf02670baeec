"""The aggregate stage: long table, paired gains, wide Markdown tables, English retention and plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from crosstune.evaluate import aggregate as agg
from crosstune.evaluate import bootstrap as bs
from crosstune.evaluate.scoring import score_benchmark, write_scores

from .eval_items import nli_items

LANGS = ("en", "zh", "ar")
N = 40
SETTINGS = {
    "langid": {"candidates": "evaluation", "min_letters": 2},
    "qa_normalize": "squad",
    "consistency": {"k": [3]},
    "bootstrap": {"samples": 300, "confidence": 0.95, "seed": 1},
}


def many_items(lang):
    """N items: the three hand-written ones repeated under new ids (gold labels 1, 2, 3, 1, ...)."""
    base = nli_items(lang)
    return [{**base[i % 3], "id": f"xnli/{lang}/{i:04d}", "index": i} for i in range(N)]


def outputs(method, lang, items):
    """base: always "1" (right on 14 of 40); sft: right on even items; better: always right,
    except in English, where it names no option (a target-language gain bought with English)."""
    if method == "base":
        return ["1"] * len(items)
    if method == "sft":
        return [it["answer"] if i % 2 == 0 else "(9)" for i, it in enumerate(items)]
    return ["(9)" if lang == "en" else f"({it['answer']})" for it in items]


def score_jobs(root, methods, langs):
    """Score the methods' outputs on xnli in ``langs``: the aggregate stage's (table, replicates)."""
    jobs = []
    for method in methods:
        items = {lang: many_items(lang) for lang in langs}
        preds = {lang: [{"id": it["id"], "index": it["index"], "output": out}
                        for it, out in zip(items[lang], outputs(method, lang, items[lang]), strict=True)]
                 for lang in langs}  # fmt: skip
        rows, metrics, reps, info = score_benchmark("xnli", items, preds, SETTINGS)
        d = root / method
        d.mkdir()
        write_scores(d / "items.jsonl", d / "metrics.tsv", d / "replicates.npz", rows, metrics, reps)
        (d / "provenance.json").write_text(json.dumps({"score": info}))
        jobs.append({"model": "tiny", "method": method, "benchmark": "xnli", "metrics": d / "metrics.tsv",
                     "replicates": d / "replicates.npz", "provenance": d / "provenance.json"})  # fmt: skip
    return agg.load_scores(jobs)


@pytest.fixture(scope="module")
def scored_reps(tmp_path_factory):
    table, reps = score_jobs(tmp_path_factory.mktemp("scores"), ("base", "sft", "better"), LANGS)
    return table, reps, agg.paired_gains(table, reps, "sft")


@pytest.fixture(scope="module")
def scored(scored_reps):
    table, _, gains = scored_reps
    return table, gains


def accuracy_rows(md):
    """The accuracy table of a benchmark's Markdown: header and method rows, split into cells."""
    lines = md.split("## tiny: Accuracy (generated answer)")[1].split("##")[0].strip().splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]


def value(table, method, language, metric="accuracy"):
    rows = table[(table.method == method) & (table.language == language) & (table.metric == metric)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_long_table_shape(scored):
    table, _ = scored
    assert list(table.columns) == agg.COLUMNS
    # per method: 3 languages + avg + avg_x, 3 metrics (accuracy, no_answer, fidelity) + 2 consistency rows
    assert len(table) == 3 * (5 * 3 + 2)
    acc = table[(table.metric == "accuracy") & (table.language == "avg")].set_index("method").value
    assert acc.to_dict() == pytest.approx({"base": 14 / N, "sft": 0.5, "better": 2 / 3})  # gold "1" on 14 of 40
    assert set(table.language) == {*LANGS, "avg", "avg_x", "all"}


def test_non_english_average_excludes_english(scored_reps):
    table, reps, _ = scored_reps
    row = value(table, "better", "avg_x")
    assert row.value == 1.0 and row.n == 2 * N  # zh and ar only; with en (0.0) it would be 2/3
    # replicate by replicate the mean of zh's and ar's, as the score stage computes avg
    key = ("tiny", "better", "xnli")
    assert np.array_equal(reps[(*key, "avg_x|accuracy")],
                          (reps[(*key, "zh|accuracy")] + reps[(*key, "ar|accuracy")]) / 2)  # fmt: skip
    sft = value(table, "sft", "avg_x")
    lo, hi = bs.interval((reps[("tiny", "sft", "xnli", "zh|accuracy")] + reps[("tiny", "sft", "xnli", "ar|accuracy")])
                         / 2)  # fmt: skip
    assert (sft.value, sft.ci_low, sft.ci_high) == pytest.approx((0.5, lo, hi)) and lo < 0.5 < hi


def test_paired_gains(scored):
    _, gains = scored
    assert list(gains.columns) == agg.GAIN_COLUMNS and set(gains.method) == {"base", "better"}
    better = gains[(gains.method == "better") & (gains.metric == "accuracy")].set_index("language")
    assert better.gain.to_dict() == pytest.approx({"en": -0.5, "zh": 0.5, "ar": 0.5, "avg": 1 / 6, "avg_x": 0.5})
    assert better.significant.all()  # +-50 points on 40 items: every interval excludes zero
    target = better.loc[["zh", "ar", "avg_x"]]
    assert (target.ci_low > 0.3).all() and (target.ci_high <= 0.7).all()
    assert better.loc["en", "ci_high"] < -0.3


def test_unpaired_average_gain_is_left_out(scored_reps):
    table, reps, _ = scored_reps
    reps = {**reps, ("tiny", "better", "xnli", "order"): {**reps[("tiny", "better", "xnli", "order")], "ar": "x"}}
    langs = set(agg.paired_gains(table, reps, "sft").query("method == 'better'").language)
    assert langs == {"en", "zh"}  # ar was scored on other items: no paired ar, avg, avg_x or all


def test_wide_markdown_table_in_the_papers_layout(scored):
    table, gains = scored
    md = agg.benchmark_markdown(table, gains, "xnli", ["base", "sft", "better"], list(LANGS), "sft", 0.95)
    rows = accuracy_rows(md)
    assert rows[0] == ["Method", "en", "zh", "ar", "Avg (non-en)", "En"]
    assert [r[0] for r in rows[1:]] == ["base", "sft", "better"]
    assert rows[2] == ["sft"] + ["50.0"] * 5  # the baseline is never marked
    assert rows[3] == ["better", "0.0↓", "100.0↑", "100.0↑", "100.0↑", "0.0↓"]
    assert "consistency_3" in md and "ac3_3" in md and "Avg (non-en): unweighted mean" in md


def test_en_column_is_the_english_score(scored):
    table, gains = scored
    md = agg.benchmark_markdown(table, gains, "xnli", ["base", "sft", "better"], list(LANGS), "sft", 0.95)
    for row in accuracy_rows(md)[1:]:
        assert row[5] == row[1]  # the same cell, significance mark included
        assert row[5].rstrip("↑↓") == f"{100 * value(table, row[0], 'en').value:.1f}"


def test_retention_delta_is_english_minus_base_english(scored_reps):
    table, reps, _ = scored_reps
    md = agg.retention_markdown(table, reps, ["base", "sft", "better"], ["xnli"])
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]
    assert rows[0] == ["Model", "Method", "xnli Avg (non-en)", "xnli En", "xnli ΔEn"]
    by_method = {r[1]: r[2:] for r in rows[1:]}
    assert by_method["base"] == ["35.0", "35.0", "ref."]
    lo, hi = bs.interval(reps[("tiny", "better", "xnli", "en|accuracy")] - reps[("tiny", "base", "xnli", "en|accuracy")])
    # better: 100 in the target languages, 0 in English, 35 for base: English retention -35 points
    assert by_method["better"] == ["100.0", "0.0", f"-35.0↓ [{100 * lo:+.1f}, {100 * hi:+.1f}]"] and hi < 0
    assert by_method["sft"][:2] == ["50.0", "50.0"] and by_method["sft"][2].startswith("+15.0")
    assert "accuracy" in md and "was not evaluated" not in md


def test_retention_without_base_says_so(scored_reps):
    table, reps, _ = scored_reps
    md = agg.retention_markdown(table[table.method != "base"], reps, ["sft", "better"], ["xnli"])
    assert "`base` (the untrained model) was not evaluated" in md
    assert md.splitlines()[-1] == "| tiny | better | 100.0 | 0.0 | – |"


def test_benchmark_without_english(tmp_path):
    table, reps = score_jobs(tmp_path, ("base", "better"), ("zh", "ar"))
    row = value(table, "better", "avg_x")
    assert row.value == value(table, "better", "avg").value == 1.0
    gains = agg.paired_gains(table, reps, "base")
    md = agg.benchmark_markdown(table, gains, "xnli", ["base", "better"], ["zh", "ar"], "base", 0.95)
    rows = accuracy_rows(md)
    assert rows[0] == ["Method", "zh", "ar", "Avg (non-en)", "En"]
    assert rows[2] == ["better", "100.0↑", "100.0↑", "100.0↑", "–"]
    retention = agg.retention_markdown(table, reps, ["base", "better"], ["xnli"])
    assert retention.splitlines()[-1] == "| tiny | better | 100.0 | – | – |"


def test_english_only_benchmark(tmp_path):
    table, reps = score_jobs(tmp_path, ("base", "better"), ("en",))
    assert "avg_x" not in set(table.language) and table.value.dtype == float and table.n.dtype == int
    md = agg.benchmark_markdown(table, agg.paired_gains(table, reps, "base"), "xnli", ["base", "better"], ["en"],
                                "base", 0.95)  # fmt: skip
    assert accuracy_rows(md)[1] == ["base", "35.0", "–", "35.0"]


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


def test_layer_counts_and_a_prediction_without_a_layer(tmp_path):
    from crosstune.evaluate import layers
    from crosstune.io import DataError, write_jsonl

    pred = tmp_path / "predictions"
    write_jsonl(pred / "sw.jsonl", [{"id": i, "layer": x} for i, x in enumerate([2, 2, 0, 3])])
    job = {"model": "m", "method": "cc_tuning@matrix", "benchmark": "xnli", "predictions": str(pred), "num_layers": 4}
    table = layers.layer_counts([job])
    assert table["count"].tolist() == [1, 0, 2, 1] and table.share.tolist() == [0.25, 0.0, 0.5, 0.25]
    assert "| xnli | sw | 4 | L2 (50) | 1.8 | 25 | 0 | 50 | 25 |" in layers.layers_markdown(table)
    write_jsonl(pred / "zh.jsonl", [{"id": 0, "layer": 0}, {"id": 1}])
    with pytest.raises(DataError, match=r"zh.jsonl line 2: layer None is not one of the model's 4 layers"):
        layers.layer_counts([job])
