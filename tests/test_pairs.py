"""Pair building: dedup, token-length filter, stats, schema."""

from __future__ import annotations

from crosstune.pairs import FIELDS, build_pairs, english_pairs, templated_length


def record(i, lang, instruction, response):
    return {"id": f"s/{i}#{lang}", "lang": lang, "instruction": instruction, "response": response,
            "instruction_en": f"en {i}", "response_en": None, "source": "s"}  # fmt: skip


def test_english_pairs_are_their_own_counterparts():
    src = [{"id": "s/1", "lang": "en", "instruction": "Hi?", "response": "Hello.", "source": "s"},
           {"id": "a/1", "lang": "ar", "instruction": "مرحبا؟", "response": "أهلا.", "source": "a"}]  # fmt: skip
    (p,) = english_pairs(src)
    assert p["instruction_en"] == "Hi?" and p["response_en"] == "Hello." and p["lang"] == "en"


def test_build_pairs_filters_and_counts(tiny_tokenizer):
    long_text = "word " * 400
    records = [
        record(1, "en", "What is two plus two?", "Four."),
        record(1, "en", "What is two plus two?", "Four."),  # duplicate
        record(2, "en", "Explain.", long_text),  # too long
        record(3, "sw", "Mbili jumlisha mbili ni ngapi?", "Nne."),
        record(4, "zh", "你好", "好"),
        record(5, "fr", "Bonjour", "Salut"),  # not a configured language: ignored
    ]
    short = templated_length(tiny_tokenizer, "你好", "好")
    pairs, stats = build_pairs(records, tiny_tokenizer, ["en", "sw", "zh"], min_tokens=short + 1, max_tokens=200)
    assert [p["id"] for p in pairs] == ["s/1#en", "s/3#sw"]
    assert all(tuple(p) == FIELDS for p in pairs)
    by_lang = {row["lang"]: row for row in stats}
    assert by_lang["en"] == {"lang": "en", "input": 3, "duplicate": 1, "too_long": 1, "too_short": 0,
                             "kept": 1, "mean_tokens": by_lang["en"]["mean_tokens"]}  # fmt: skip
    assert by_lang["en"]["mean_tokens"] == templated_length(tiny_tokenizer, "What is two plus two?", "Four.")
    assert by_lang["zh"]["too_short"] == 1 and by_lang["zh"]["kept"] == 0


def test_dedup_can_be_switched_off(tiny_tokenizer):
    records = [record(1, "en", "Same question here?", "Same answer."), record(1, "en", "Same question here?", "Same answer.")]
    pairs, _ = build_pairs(records, tiny_tokenizer, ["en"], 1, 512, dedup=False)
    assert len(pairs) == 2


def test_templated_length_counts_the_chat_template(tiny_tokenizer):
    plain = len(tiny_tokenizer("Hello there")["input_ids"])
    assert templated_length(tiny_tokenizer, "Hello there", "Hi") > plain + 2
