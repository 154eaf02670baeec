"""Benchmark items from hub-schema datasets: templates, loaders on the bundled mini sets, sampling, config."""

from __future__ import annotations

import copy
import json
import random
import shutil
import string

import pytest
import yaml
from snakemake.utils import validate

from crosstune.benchmarks import (
    BENCHMARKS,
    UnknownLanguage,
    build_items,
    check_config,
    hub_items,
    load_template,
    mini_languages,
    validate_item,
)
from crosstune.benchmarks.loaders import sample_rows
from crosstune.benchmarks.templates import MINI_DIR
from crosstune.config import ConfigError
from crosstune.io import DataError

from .conftest import REPO

# the CC-Tuning paper's language lists (../shared/benchmarks/cc-tuning-eval/README.md)
PAPER_LANGUAGES = {
    "xnli": "ar el en hi ru sw th tr ur zh",
    "xstorycloze": "ar en es eu hi id ru sw te zh",
    "mmmlu": "ar bn en es hi id ko pt sw yo",
    "xquad": "ar de el en hi ru th tr vi zh",
    "mkqa": "ar de en ja ko pt ru tr vi zh",
    "xlsum": "ar en fr hi id ru sw tr ur vi",
}
DEFAULT_LANGS = {"en", "ar", "hi", "sw", "zh", "ru"}
# hub config and split names the bundled sets must use (those of the original datasets)
HUB_NAMES = {
    ("xnli", "ar"): ("ar", "test"), ("xstorycloze", "sw"): ("sw", "eval"),
    ("mmmlu", "hi"): ("HI_IN", "test"), ("mmmlu", "en"): ("all", "test"),
    ("xquad", "zh"): ("xquad.zh", "validation"), ("mkqa", "zh"): ("mkqa", "train"),
    ("xlsum", "sw"): ("swahili", "test"),
}  # fmt: skip
MINI = [(b, lang) for b in BENCHMARKS for lang in mini_languages(b)]


@pytest.fixture(scope="module")
def mini_items():
    """Every bundled item, by (benchmark, lang)."""
    return {(b, lang): build_items(b, lang, {"source": "bundled"}) for b, lang in MINI}


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_template_covers_the_papers_languages_and_renders(benchmark):
    t = load_template(benchmark)
    assert set(t.languages) == set(PAPER_LANGUAGES[benchmark].split())
    fields = {name: f"<{name}>" for name in t.item_fields}
    for lang in t.languages:
        prompt = t.render(lang, fields)
        assert all(f"<{name}>" in prompt for name in fields)  # every item field lands in the prompt
        assert not [f for _, f, _, _ in string.Formatter().parse(prompt) if f]  # nothing left unfilled
        assert all(v.strip() for v in t.strings[lang].values())
    with pytest.raises(KeyError, match="lacks field"):
        t.render("en", {})
    with pytest.raises(UnknownLanguage, match=rf"{benchmark}: no language 'xx'"):
        t.render("xx", fields)


def test_mini_sets_cover_each_benchmark_among_the_default_languages():
    for b in BENCHMARKS:
        assert set(mini_languages(b)) == set(PAPER_LANGUAGES[b].split()) & DEFAULT_LANGS, b
    readme = (MINI_DIR / "README.md").read_text()
    assert "CC BY 4.0" in readme and "AI assistant" in readme


@pytest.mark.parametrize("benchmark, lang", MINI)
def test_loader_reads_its_mini_set(mini_items, benchmark, lang):
    items, info = mini_items[benchmark, lang]
    assert len(items) >= 8
    t = load_template(benchmark)
    for i, item in enumerate(items):
        validate_item(item, f"{benchmark}/{lang}")
        assert item["index"] == i and item["lang"] == lang
        if lang == "en":
            assert item["prompt_en"] == item["prompt"]
        elif t.parallel:  # the English prompt of the same item
            assert item["prompt_en"] == mini_items[benchmark, "en"][0][i]["prompt"]
        else:
            assert item["prompt_en"] is None
    if (benchmark, lang) in HUB_NAMES:
        assert (info["config"], info["split"]) == HUB_NAMES[benchmark, lang]


def test_parallel_sets_are_parallel(mini_items):
    """Same index = same item: multiple-choice answers agree, QA answers differ only by language."""
    for b in ("xnli", "xstorycloze", "mmmlu", "mkqa", "xquad"):
        per_lang = {lang: items for (bb, lang), (items, _) in mini_items.items() if bb == b}
        sizes = {len(items) for items in per_lang.values()}
        assert len(sizes) == 1, (b, sizes)
        if b in ("xnli", "xstorycloze", "mmmlu"):
            for lang, items in per_lang.items():
                assert [i["answer"] for i in items] == [i["answer"] for i in per_lang["en"]], (b, lang)
    # numbers survive translation: the XQuAD year and the MKQA spider's legs
    for lang in mini_languages("xquad"):
        assert mini_items["xquad", lang][0][0]["answer"] == "1732"
    for lang in mini_languages("mkqa"):
        assert "8" in mini_items["mkqa", lang][0][1]["answer"]


def test_item_details(mini_items):
    xnli = mini_items["xnli", "ar"][0]
    assert sorted({i["answer"] for i in xnli}) == ["1", "2", "3"]
    assert [o["label"] for o in xnli[0]["options"]] == ["1", "2", "3"]
    assert xnli[0]["options"][0]["text"] == "يستلزم"  # the Arabic template's word for "Entail"
    en = mini_items["xnli", "en"][0][0]
    assert en["options"][0]["text"] == "Entail" and "(1) Entail \n" in en["prompt"]  # the paper's trailing space
    mmlu = mini_items["mmmlu", "en"][0][0]  # English read from cais/mmlu's schema (choices + answer 0-3)
    assert mmlu["answer"] == "B" and mmlu["options"][1]["text"] == "105 cents" and "(B) 105 cents\n" in mmlu["prompt"]
    for lang in mini_languages("xquad"):
        for item in mini_items["xquad", lang][0]:  # gold spans are spans of the context in the prompt
            assert item["answer"] in item["prompt"].split("\n\n")[1]
    raw = [json.loads(line) for line in (MINI_DIR / "xquad/xquad.zh/validation.jsonl").open()]
    for row in raw:
        start = row["answers"]["answer_start"][0]
        assert row["context"][start:].startswith(row["answers"]["text"][0])
    story = mini_items["xstorycloze", "en"][0][0]["prompt"]
    assert story.startswith("Maria wanted to bake a cake for her father's birthday.She bought")  # joined as the paper did


def test_mkqa_drops_items_without_an_english_answer(mini_items):
    items, info = mini_items["mkqa", "en"]
    assert info["rows"] == 9 and info["candidates"] == 8 and 8 not in info["sampled_rows"]
    assert items[0]["answer"] == ["Nairobi"]  # answer texts only, as the paper's gold lists
    assert items[6]["answer"] == ["100 degrees Celsius", "100"]  # a row with two answers
    zh = mini_items["mkqa", "zh"][0][0]  # zh reads MKQA's zh_cn key
    assert zh["answer"] == ["内罗毕"] and "肯尼亚" in zh["prompt"]
    with_aliases, _ = build_items("mkqa", "zh", {"source": "bundled", "aliases": True})
    assert with_aliases[0]["answer"] == ["内罗毕", "内罗毕市"] and with_aliases[6]["answer"] == ["100摄氏度", "100", "100 °C"]


def test_sampling_is_the_papers_draw_and_deterministic():
    rows = sample_rows(range(5010), 1000, 666)
    rng = random.Random(666)  # the paper's XNLI/script.py: random.seed(666); random.sample(range(5010), 1000)
    assert rows == sorted(rng.sample(range(5010), 1000))
    assert rows == sample_rows(range(5010), 1000, 666) and rows != sample_rows(range(5010), 1000, 667)
    assert len(set(rows)) == 1000 and rows == sorted(rows)
    assert sample_rows([3, 5, 9], 1000, 666) == [3, 5, 9]  # n beyond the data: every item
    assert sample_rows(range(100), None, 0) == list(range(100))


def test_sample_is_the_same_rows_in_every_language():
    drawn = {lang: hub_items("xstorycloze", lang, source="bundled", n=3, seed=5) for lang in ("en", "ar", "zh")}
    rows = {lang: info["sampled_rows"] for lang, (_, info) in drawn.items()}
    assert rows["en"] == rows["ar"] == rows["zh"] and len(rows["en"]) == 3 and rows["en"] != [0, 1, 2]
    en = [i["prompt"] for i in drawn["en"][0]]
    for lang in ("ar", "zh"):
        assert [i["prompt_en"] for i in drawn[lang][0]] == en
        assert [i["answer"] for i in drawn[lang][0]] == [i["answer"] for i in drawn["en"][0]]
        assert [i["id"] for i in drawn[lang][0]] == [f"xstorycloze/{lang}/{k:04d}" for k in range(3)]


def _copy_mini(tmp_path, name):
    dest = tmp_path / name
    shutil.copytree(MINI_DIR / name, dest)
    return dest


def test_bad_rows_name_benchmark_language_and_row(tmp_path):
    xnli = _copy_mini(tmp_path, "xnli")
    path = xnli / "ar" / "test.jsonl"
    rows = [json.loads(line) for line in path.open()]
    rows[2]["label"] = 5
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"xnli ar: row 2 of .*label 5 is not 0, 1 or 2"):
        hub_items("xnli", "ar", path=str(xnli))
    # a parallel language with fewer rows than English (the edited copy is read afresh, not from a cache)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[:4]))
    with pytest.raises(DataError, match=r"xnli ar: a parallel benchmark needs as many rows as English"):
        hub_items("xnli", "ar", path=str(xnli))
    with pytest.raises(DataError, match=r"xnli th: cannot load .* config 'th' split 'test'"):
        hub_items("xnli", "th", path=str(xnli))
    with pytest.raises(UnknownLanguage, match=r"xnli: no language 'ja'"):
        hub_items("xnli", "ja", path=str(xnli))


def default_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    return config


def test_default_config_runs_all_six_benchmarks_on_the_bundled_sets():
    plan = check_config(default_config())
    assert list(plan) == list(BENCHMARKS)
    assert {b: set(langs) for b, langs in plan.items()} == {b: set(mini_languages(b)) for b in BENCHMARKS}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"xnli": {"languages": ["en", "ja"]}}, r"benchmarks\.xnli\.languages: xnli has no language 'ja'"),
        ({"mmmlu": {"languages": ["en", "yo"]}}, r"benchmarks\.mmmlu\.languages: the bundled mmmlu mini set has no language 'yo'"),
        ({"xquad": {"source": "released"}}, r"benchmarks\.xquad\.source: 'released' needs benchmarks\.released_dir"),
        ({"xlsum": {"source": "bundled", "path": "x"}}, r"benchmarks\.xlsum\.path: path, path_en and revision are for source hub only"),
        ({"xnli": {"source": "hub", "path_en": "x"}}, r"benchmarks\.xnli\.path_en: only MMMLU"),
        ({"xnli": {"aliases": True}}, r"benchmarks\.xnli\.aliases: only for MKQA"),
    ],
)  # fmt: skip
def test_config_errors_name_benchmark_and_language(change, message):
    config = copy.deepcopy(default_config())
    for name, spec in change.items():
        config["benchmarks"][name].update(spec)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_hub_source_languages_default_to_the_papers():
    config = default_config()
    config["benchmarks"]["mkqa"] = {"source": "hub", "languages": None}
    assert check_config(config)["mkqa"] == PAPER_LANGUAGES["mkqa"].split()
