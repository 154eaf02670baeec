"""Scores on hand-checked cases: tokens, QA accuracy / EM / F1, ROUGE-L, chrF, language fidelity."""

from __future__ import annotations

import pytest

from crosstune.evaluate import metrics as M
from crosstune.evaluate.text import normalize, tokens


def test_tokens_are_language_aware():
    assert tokens("黑豹队丢了308分。") == ["黑", "豹", "队", "丢", "了", "308", "分"]
    assert tokens("Der Hund, die Katze!", "de") == ["hund", "katze"]
    assert tokens("The Paris Commune", "en") == ["paris", "commune"]
    assert tokens("The Paris Commune", "en", articles=False) == ["the", "paris", "commune"]
    # the Arabic article goes as a word prefix only; Arabic-Indic digits become ASCII
    assert tokens("عاصمة مصر هي القاهرة", "ar") == ["عاصمة", "مصر", "هي", "قاهرة"]
    assert tokens("سمح الدفاع بـ ٣٠٨ نقاط", "ar") == ["سمح", "دفاع", "بـ", "308", "نقاط"]
    assert normalize("（Ｂ）２") == "b 2"  # full-width forms
    assert tokens("ฉันชอบแมว") == list("ฉันชอบแมว")  # Thai is split into characters
    assert tokens("저는 고양이를 좋아해요") == ["저는", "고양이를", "좋아해요"]  # Korean keeps words


@pytest.mark.parametrize(
    "output, golds, lang, expected",
    [
        # accuracy: gold occurs; EM: nothing else; F1 = 2PR/(P+R) on tokens without articles
        ("The answer is Paris.", ["Paris"], "en", (1.0, 0.0, 0.5)),  # P = 1/3, R = 1
        ("Paris", ["paris", "Paris, France"], "en", (1.0, 1.0, 1.0)),
        ("It was 1308.", ["308"], "en", (0.0, 0.0, 0.0)),  # a token run, not a substring
        ("黑豹队丢了308分", ["308"], "zh", (1.0, 0.0, 0.25)),  # P = 1/7, R = 1 -> 2/8
        ("开罗", ["开罗"], "zh", (1.0, 1.0, 1.0)),
        ("北京是首都", ["开罗"], "zh", (0.0, 0.0, 0.0)),
        ("القاهرة", ["القاهرة"], "ar", (1.0, 1.0, 1.0)),
        ("عاصمة مصر هي القاهرة", ["القاهرة"], "ar", (1.0, 0.0, 0.4)),  # P = 1/4, R = 1
        ("الإسكندرية", ["القاهرة", "مصر"], "ar", (0.0, 0.0, 0.0)),
    ],
)
def test_qa_scores(output, golds, lang, expected):
    s = M.qa_scores(output, golds, lang)
    assert (s["accuracy"], s["exact_match"]) == expected[:2]
    assert s["f1"] == pytest.approx(expected[2])


def test_qa_scores_reject_empty_gold():
    with pytest.raises(ValueError, match="no gold answer"):
        M.qa_scores("anything", ["", "  "], "en")


@pytest.mark.parametrize(
    "output, reference, lang, expected",
    [
        ("the cat is on the mat", "the cat sat on the mat", "en", 5 / 6),  # LCS 5 of 6 and 6
        ("猫在垫子上睡觉", "猫坐在垫子上", "zh", 50 / 65),  # LCS 5; P = 5/7, R = 5/6
        ("جلس القط على الحصيرة", "القط جلس على الحصيرة", "ar", 0.75),  # LCS 3 of 4
        ("", "anything", "en", 0.0),
    ],
)
def test_rouge_l(output, reference, lang, expected):
    assert M.rouge_l(output, reference, lang) == pytest.approx(expected)


def test_rouge_l_matches_rouge_score_on_english_and_fixes_its_chinese():
    rouge_score = pytest.importorskip("rouge_score.rouge_scorer", reason="rouge-score comes with the [dev] extra")
    scorer = rouge_score.RougeScorer(["rougeL"])
    pairs = [("A storm closed the bridge on Monday.", "The bridge was closed by a storm."),
             ("Prices rose 3% in May", "In May prices rose by 3 per cent")]  # fmt: skip
    for out, ref in pairs:
        assert M.rouge_l(out, ref, "en") == pytest.approx(scorer.score(ref, out)["rougeL"].fmeasure)
    # rouge-score's default tokenizer drops Chinese entirely; ours does not
    assert scorer.score("猫坐在垫子上", "猫在垫子上睡觉")["rougeL"].fmeasure == 0.0
    assert M.rouge_l("猫在垫子上睡觉", "猫坐在垫子上", "zh") > 0.7


def test_chrf_statistics_reproduce_sacrebleu_corpus_score():
    from sacrebleu.metrics import CHRF

    outs = ["The bridge will close.", "大桥将关闭维修。", "سيغلق الجسر"]
    refs = ["The bridge closes for repairs.", "大桥将关闭维修。", "سيغلق الجسر للإصلاح."]
    stats = M.chrf_statistics(outs, refs)
    assert stats.shape[0] == 3
    assert M.chrf_from_statistics(stats) == pytest.approx(CHRF().corpus_score(outs, [refs]).score / 100)
    assert M.chrf_from_statistics(stats[1:2]) == pytest.approx(1.0)  # identical Chinese sentence
    assert M.chrf_signature().startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no")


def test_language_identification():
    assert M.identify("我认为答案是中立。") == "zh"
    assert M.identify("أعتقد أن الإجابة محايدة") == "ar"
    assert M.identify("I think the answer is neutral.") == "en"
    assert M.identify("Nadhani jibu ni la pili.") == "sw"
    assert M.identify("(2)") is None and M.identify("B.") is None  # no letters to identify
    assert M.identify("中立") == "zh"  # two letters are enough by default
    assert M.identify("中立", min_letters=3) is None
    # among all 142 py3langid languages, two characters may look like a Chinese dialect
    assert M.identify("中立", candidates=M.langid_candidates("all")) != "zh"
    assert M.langid_candidates(["en", "sw"]) == ("en", "sw")


@pytest.mark.parametrize(
    "output, golds, mode, expected",
    [
        # squad (the default) deletes punctuation as SQuAD's and MLQA's scripts do; ours makes it a space
        ("US Army", ["U.S. Army"], "squad", (1.0, 1.0, 1.0)),
        ("US Army", ["U.S. Army"], "ours", (0.0, 0.0, 0.4)),  # "us army" vs "u s army": P = 1/2, R = 1/3
        ("It was the U.S. Army.", ["US Army"], "squad", (1.0, 0.0, 2 / 3)),  # "it was us army": P = 1/2
        ("U.S. Army", ["U.S. Army"], "ours", (1.0, 1.0, 1.0)),
        ("The USArmy", ["US Army"], "squad", (0.0, 0.0, 0.0)),  # containment is by whole tokens
    ],
)
def test_qa_normalisation_modes(output, golds, mode, expected):
    s = M.qa_scores(output, golds, "en", mode)
    assert (s["accuracy"], s["exact_match"], s["f1"]) == pytest.approx(expected)


def test_qa_normalisation_on_released_gold(cc_eval):
    from crosstune.benchmarks.released import released_items

    gold = released_items("xquad", "en", cc_eval)[0][290]["answer"]
    assert gold == "E.I. du Pont"
    assert M.qa_scores("EI du Pont", [gold], "en")["exact_match"] == 1.0  # squad: "ei du pont"
    assert M.qa_scores("EI du Pont", [gold], "en", "ours")["exact_match"] == 0.0  # ours: "e i du pont"
    assert M.qa_scores("E. I. du Pont", [gold], "en", "ours")["exact_match"] == 1.0


def test_qa_normalisation_mode_is_checked():
    assert normalize("U.S. «Army»!", punctuation="squad") == "us army"
    assert normalize("U.S. «Army»!", punctuation="ours") == "u s army"
    with pytest.raises(ValueError, match="punctuation mode 'mlqa'"):
        M.qa_scores("x", ["x"], "en", "mlqa")
