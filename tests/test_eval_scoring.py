"""The score stage on hand-written predictions: every metric, avg and consistency rows, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crosstune.evaluate.items import read_items, read_predictions
from crosstune.evaluate.scoring import score_benchmark
from crosstune.io import DataError

from .eval_items import nli_items, qa_items, summary_items, write_items

SETTINGS = {
    "langid": {"candidates": "evaluation", "min_letters": 2},
    "qa_normalize": "squad",
    "consistency": {"k": [2, 3]},
    "bootstrap": {"samples": 200, "confidence": 0.95, "seed": 42},
}
# gold labels are 1, 2, 3 in every language
NLI_OUTPUTS = {
    "en": ["(1) entailment", "The answer is 3.", "contradiction"],  # right, wrong, right
    "zh": ["(1) 蕴涵", "我不知道", "答案是(3)"],  # right, no answer, right
    "ar": ["(2) محايد", "محايد", "الإجابة: ٣"],  # wrong, right, right
}
# log-likelihoods of the options "1", "2", "3" (texts of different lengths)
NLI_LLS = [[-1.0, -2.0, -3.0], [-9.0, -5.0, -4.0], [-6.0, -6.5, -5.0]]


def preds_for(items, outputs, lls=None):
    return [{"id": it["id"], "index": it["index"], "output": out, "n_tokens": 3, "stopped": "eos",
             "option_loglik": lls[i] if lls else None, "continuation": "text"}
            for i, (it, out) in enumerate(zip(items, outputs, strict=True))]  # fmt: skip


def metric(rows, language, name):
    [row] = [r for r in rows if r["language"] == language and r["metric"] == name]
    return row


@pytest.fixture(scope="module")
def nli_scores():
    items = {lang: nli_items(lang) for lang in ("en", "zh", "ar")}
    preds = {lang: preds_for(items[lang], NLI_OUTPUTS[lang], NLI_LLS) for lang in items}
    return score_benchmark("xnli", items, preds, SETTINGS)


def test_multiple_choice_metrics(nli_scores):
    rows, metrics, reps, info = nli_scores
    assert info["task"] == "multiple_choice" and info["chrf_signature"] is None
    assert [r["choice"] for r in rows if r["lang"] == "zh"] == ["1", None, "3"]
    assert metric(metrics, "en", "accuracy")["value"] == pytest.approx(2 / 3)
    assert metric(metrics, "zh", "no_answer")["value"] == pytest.approx(1 / 3)
    assert metric(metrics, "zh", "accuracy")["value"] == pytest.approx(2 / 3)  # no answer counts wrong
    assert metric(metrics, "avg", "accuracy")["value"] == pytest.approx(2 / 3)
    assert metric(metrics, "avg", "accuracy")["n"] == 9
    # argmax of the log-likelihoods: 1, 3, 3 -> items 1 and 3 right
    assert metric(metrics, "en", "acc_ll")["value"] == pytest.approx(2 / 3)
    # per character (en: 10, 7, 13 chars): item 2 -> -9/10, -5/7, -4/13 -> option 3; item 3: -6/10, -6.5/7, -5/13 -> 3
    assert metric(metrics, "en", "acc_norm_ll")["value"] == pytest.approx(2 / 3)
    # zh texts have 2 characters each: acc_norm equals acc; bytes (6 each) too
    assert metric(metrics, "zh", "acc_norm_ll")["value"] == metric(metrics, "zh", "acc_ll")["value"]
    # fidelity: "(1) 蕴涵" and "我不知道" are Chinese; "答案是(3)" too
    assert metric(metrics, "zh", "fidelity")["value"] == 1.0
    for row in metrics:
        if not np.isnan(row["value"]) and row["language"] != "all":
            assert row["ci_low"] <= row["value"] + 1e-12 and row["value"] <= row["ci_high"] + 1e-12


def test_consistency_rows(nli_scores):
    _, metrics, reps, _ = nli_scores
    # item answers (en, zh, ar): (1, 1, 2), (3, None, 2), (3, 3, 3)
    # k=2: item 1 agrees in 1 of 3 pairs, item 2 in 0, item 3 in 3 -> (1/3 + 0 + 1) / 3
    assert metric(metrics, "all", "consistency_2")["value"] == pytest.approx(4 / 9)
    assert metric(metrics, "all", "consistency_3")["value"] == pytest.approx(1 / 3)
    acc = np.mean([2 / 3, 2 / 3, 2 / 3])
    c3 = 1 / 3
    assert metric(metrics, "all", "ac3_3")["value"] == pytest.approx(2 * acc * c3 / (acc + c3))
    assert reps["all|ac3_3"].shape == (200,)


def test_scores_are_deterministic(nli_scores):
    items = {lang: nli_items(lang) for lang in ("en", "zh", "ar")}
    preds = {lang: preds_for(items[lang], NLI_OUTPUTS[lang], NLI_LLS) for lang in items}
    again = score_benchmark("xnli", items, preds, SETTINGS)
    assert again[1] == nli_scores[1]
    assert all(np.array_equal(again[2][k], v) for k, v in nli_scores[2].items())


def test_qa_metrics():
    items = {lang: qa_items(lang, "mkqa") for lang in ("en", "zh")}
    outputs = {"en": ["They allowed 308 points.", "Cairo"], "zh": ["308", "北京"]}
    preds = {lang: preds_for(items[lang], outputs[lang]) for lang in items}
    _, metrics, _, _ = score_benchmark("mkqa", items, preds, SETTINGS)
    assert metric(metrics, "en", "accuracy")["value"] == 1.0
    assert metric(metrics, "en", "exact_match")["value"] == 0.5
    assert metric(metrics, "zh", "accuracy")["value"] == 0.5
    # item 0 is right in both languages (same answer), item 1 right in en only
    assert metric(metrics, "all", "consistency_2")["value"] == 0.5
    assert not [m for m in metrics if m["metric"] == "consistency_3"]  # needs 3 languages


def test_summarisation_metrics():
    items = {lang: summary_items(lang) for lang in ("en", "zh")}
    outputs = {"en": ["The bridge will close for repairs."], "zh": ["大桥关闭"]}
    preds = {lang: preds_for(items[lang], outputs[lang]) for lang in items}
    rows, metrics, _, info = score_benchmark("xlsum", items, preds, SETTINGS)
    assert metric(metrics, "en", "rouge_l")["value"] == 1.0
    # zh: LCS 大桥关闭 (4 chars) of 4 and 7 -> 2 * 1 * 4/7 / (1 + 4/7)
    assert metric(metrics, "zh", "rouge_l")["value"] == pytest.approx(8 / 11)
    assert 0 < metric(metrics, "zh", "chrf")["value"] < 1 and metric(metrics, "en", "chrf")["value"] == 1.0
    assert info["chrf_signature"].startswith("nrefs:1|") and not [m for m in metrics if m["language"] == "all"]


def test_bad_items_and_predictions_name_benchmark_language_and_line(tmp_path):
    path = write_items(tmp_path, "xnli", langs=("zh",))["zh"]
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["answer"] = "7"
    path.write_text("\n".join([lines[0], json.dumps(bad, ensure_ascii=False), lines[2]]) + "\n")
    with pytest.raises(DataError, match=r"zh\.jsonl:2: benchmark xnli, language zh: answer '7'"):
        read_items(path, "xnli", "zh")
    with pytest.raises(DataError, match="benchmark xnli has no items for language sw"):
        read_items(tmp_path / "sw.jsonl", "xnli", "sw")
    preds = tmp_path / "pred.jsonl"
    preds.write_text('{"id": "xnli/zh/0000", "output": "1"}\n{"id": "xnli/zh/0001", "output": 2}\n')
    with pytest.raises(DataError, match=r"pred\.jsonl:2: benchmark xnli, language zh"):
        read_predictions(preds, nli_items("zh"), "xnli", "zh")
    preds.write_text('{"id": "xnli/zh/0000", "output": "1"}\n')
    with pytest.raises(DataError, match="2 items have no prediction"):
        read_predictions(preds, nli_items("zh"), "xnli", "zh")
