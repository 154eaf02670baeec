"""Answer extraction on items of the CC-Tuning release (issue 13 §3): each rule on a real item.

Skipped when ../shared/benchmarks/cc-tuning-eval is absent.
"""

from __future__ import annotations

from functools import cache

import pytest
import yaml

from crosstune import languages
from crosstune.benchmarks.released import released_items
from crosstune.evaluate.extract import CUE_FILE, cues, extract_choice


@cache
def _items(root, benchmark: str, lang: str) -> list[dict]:
    return released_items(benchmark, lang, root)[0]


@pytest.fixture
def options(cc_eval):
    """``options("mmmlu", "en", 8)`` -> that released item's options."""
    return lambda benchmark, lang, index: _items(cc_eval, benchmark, lang)[index]["options"]


def test_option_text_without_final_punctuation(options):
    ptosis = options("mmmlu", "en", 8)  # (B) ptosis.
    assert ptosis[1]["text"] == "ptosis."
    assert extract_choice("Ptosis", ptosis) == "B"
    assert extract_choice("The patient shows ptosis", ptosis) == "B"
    putih = options("xstorycloze", "id", 1299)  # (2) Putih tidak tidur nyenyak.
    assert extract_choice("Putih tidak tidur nyenyak", putih) == "2"


def test_longest_option_text_wins(options):
    putih = options("xstorycloze", "id", 1299)  # (1) "Putih tidak" is inside (2)
    assert [o["text"] for o in putih] == ["Putih tidak", "Putih tidak tidur nyenyak."]
    assert extract_choice("Putih tidak tidur nyenyak.", putih) == "2"
    assert extract_choice("Dia menjawab: Putih tidak tidur nyenyak.", putih) == "2"
    assert extract_choice("Putih tidak", putih) == "1"
    law = options("mmmlu", "en", 848)  # (D) contains the texts of (A) and (B)
    assert extract_choice(law[3]["text"], law) == "D"
    assert extract_choice(law[0]["text"].rstrip("."), law) == "A"


def test_options_sharing_a_text_are_no_answer(options):
    # the release's Indonesian item 521 lists "Elastisitas harga." as both (B) and (C)
    dup = options("mmmlu", "id", 521)
    assert dup[1]["text"] == dup[2]["text"]
    assert extract_choice("Elastisitas harga.", dup) is None
    assert extract_choice("(C) Elastisitas harga.", dup) == "C"  # the label still decides


def test_cue_words(options):
    mc = options("mmmlu", "pt", 0)
    assert extract_choice("Alternativa C", mc) == "C"
    assert extract_choice("A alternativa correta é a C", mc) == "C"
    assert extract_choice("C입니다.", options("mmmlu", "ko", 0)) == "C"
    assert extract_choice("정답은 B번입니다", options("mmmlu", "ko", 0)) == "B"


def test_cue_file_covers_every_language():
    data = yaml.safe_load(CUE_FILE.read_text(encoding="utf-8"))
    assert sorted(data) == sorted(languages.CODES)
    assert all(data[lang]["before"] and data[lang]["conclusion"] for lang in languages.CODES)
    assert "alternativa" in cues()["before"] and "입니다" in cues()["after"]


@pytest.mark.parametrize("lang", languages.CODES)
def test_each_language_cue_finds_a_label(options, lang):
    data = yaml.safe_load(CUE_FILE.read_text(encoding="utf-8"))
    mc = options("mmmlu", "en", 0)  # options 0 / 4 / 2 / 6
    for cue in data[lang]["before"]:
        assert extract_choice(f"{cue} B", mc) == "B", cue
    for cue in data[lang]["after"]:
        assert extract_choice(f"D {cue}", mc) == "D", cue


def test_several_options_named(options):
    nli = options("xnli", "en", 0)  # Entail / Neutral / Contradict
    assert extract_choice("Entail or contradict? I think contradict.", nli) == "3"
    assert extract_choice("Neutral? No: contradict", nli) == "3"  # no cue: the last one named
    assert extract_choice("The answer is (2) Neutral, not (1) Entail.", nli) == "2"  # after the cue
    # "(2) or (1)" is (1) in every benchmark, whatever its number of options
    assert extract_choice("(2) or (1)", nli) == "1"
    assert extract_choice("(2) or (1)", options("xstorycloze", "en", 0)) == "1"
    assert extract_choice("(B) or (A)", options("mmmlu", "en", 0)) == "A"


def test_repeated_option_list_is_no_answer(options):
    nli = options("xnli", "zh", 0)
    echo = " ".join(f"({o['label']}) {o['text']}" for o in nli)
    assert extract_choice(echo, nli) is None
    story = options("xstorycloze", "en", 0)
    assert extract_choice(f"(1) {story[0]['text']} (2) {story[1]['text']}", story) is None
