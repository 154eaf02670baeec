"""The released-format source, and prompts built from hub-schema rows equal the CC-Tuning paper's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crosstune.benchmarks import (
    BENCHMARKS,
    build_items,
    hub_items,
    load_template,
    released_items,
    validate_item,
)
from crosstune.io import DataError

# items per language in the paper's release (its README)
RELEASED_COUNTS = {"xnli": 1000, "xstorycloze": 1511, "mmmlu": 1000, "xquad": 1190, "mkqa": 1000, "xlsum": 100}


def write_released(root: Path, benchmark: str, items_by_lang: dict[str, list[dict]], english: dict | None = None):
    """Write items in the release layout: <dir>/<prompts>/<lang>.json + <dir>/<answers>/<lang>.json."""
    r = load_template(benchmark).released
    for lang, items in items_by_lang.items():
        for sub, lines in ((r["prompts"], [{"instruction": i["prompt"]} for i in items]),
                           (r["answers"], [i["answer"] for i in items])):  # fmt: skip
            path = root / r["dir"] / sub / f"{lang}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    for lang, prompts in (english or {}).items():
        path = root / r["dir"] / r["prompts_en"] / f"{lang}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"instruction": p}) + "\n" for p in prompts), encoding="utf-8")


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_released_format_round_trip(tmp_path, benchmark):
    """Bundled items written in the release format read back as the same items."""
    langs = ["en", "ar"]
    bundled = {lang: build_items(benchmark, lang, {"source": "bundled"})[0] for lang in langs}
    english = {"ar": [f"English prompt {i}" for i in range(len(bundled["ar"]))]} if benchmark == "xlsum" else None
    write_released(tmp_path, benchmark, bundled, english)
    for lang in langs:
        items, info = build_items(benchmark, lang, {"source": "released"}, released_dir=str(tmp_path))
        assert info["source"] == "released" and info["n"] == len(bundled[lang])
        for got, want in zip(items, bundled[lang], strict=True):
            validate_item(got)
            expected_en = english["ar"][got["index"]] if english and lang == "ar" else want["prompt_en"]
            assert got == {**want, "prompt_en": expected_en}
    # a seeded sub-sample of the released lines, the same lines in every language
    sub = {lang: build_items(benchmark, lang, {"source": "released", "n": 3, "seed": 1}, str(tmp_path))
           for lang in langs}  # fmt: skip
    assert sub["en"][1]["sampled_rows"] == sub["ar"][1]["sampled_rows"] and len(sub["ar"][0]) == 3


def test_released_format_errors_name_benchmark_language_and_line(tmp_path):
    items = {lang: build_items("xnli", lang, {"source": "bundled"})[0] for lang in ("en", "ar")}
    write_released(tmp_path, "xnli", items)
    answers = tmp_path / "XNLI/ans_sample/ar.json"
    lines = answers.read_text().splitlines()
    with pytest.raises(DataError, match=r"released xnli hi: missing file .*XNLI/split_sample/hi\.json"):
        released_items("xnli", "hi", tmp_path)
    answers.write_text("\n".join(lines[:-2]) + "\n")
    with pytest.raises(DataError, match=r"released xnli ar: answer file .* is shorter than prompt file .*7 answers for 9 prompts \(first unmatched line 8\)"):
        released_items("xnli", "ar", tmp_path)
    answers.write_text("\n".join(lines[:2] + ['"3'] + lines[3:]) + "\n")
    with pytest.raises(DataError, match=r"released xnli ar: .*ans_sample/ar\.json line 3: unparsable answer"):
        released_items("xnli", "ar", tmp_path)
    answers.write_text("\n".join(lines[:4] + ['"entailment"'] + lines[5:]) + "\n")
    with pytest.raises(DataError, match=r"released xnli ar: .*line 5: answer 'entailment' is not one of 1, 2, 3"):
        released_items("xnli", "ar", tmp_path)
    answers.write_text("\n".join(lines) + "\n")
    (tmp_path / "XNLI/split_sample/ar.json").write_text('{"instruction": "x"}\n' * 8 + "not json\n")
    with pytest.raises(DataError, match=r"released xnli ar: .*split_sample/ar\.json line 9: malformed JSON"):
        released_items("xnli", "ar", tmp_path)
    (tmp_path / "XNLI/split_sample/ar.json").write_bytes(b'{"instruction": "x"}\n' * 5 + b'{"instruction": "\xe9"}\n')
    with pytest.raises(DataError, match=r"split_sample/ar\.json:6: not UTF-8 \(byte 0xe9 at column 18, byte offset \d+\)"):
        released_items("xnli", "ar", tmp_path)
    with pytest.raises(ValueError, match=r"benchmarks\.xnli\.source is 'released' but benchmarks\.released_dir"):
        build_items("xnli", "ar", {"source": "released"})


def test_paper_release_reads_completely(cc_eval):
    """Every language of every benchmark: the README's counts, parsable answers, English prompts."""
    for benchmark in BENCHMARKS:
        t = load_template(benchmark)
        english = released_items(benchmark, "en", cc_eval)[0]
        for lang in t.languages:
            items, _ = released_items(benchmark, lang, cc_eval)
            assert len(items) == RELEASED_COUNTS[benchmark], (benchmark, lang)
            for item in items:
                validate_item(item, f"{benchmark} {lang}")
            if t.parallel:
                assert [i["prompt_en"] for i in items] == [i["prompt"] for i in english]
            elif lang != "en":  # XL-Sum: English translations of this language's own articles
                translations = cc_eval / "XLSum/split_sample_en" / f"{lang}.json"
                assert [i["prompt_en"] for i in items] == [json.loads(x)["instruction"] for x in translations.open()]
                assert all(i["prompt_en"] != i["prompt"] for i in items)
    nli = released_items("xnli", "zh", cc_eval)[0][0]
    assert nli["options"] == [{"label": "1", "text": "蕴涵"}, {"label": "2", "text": "中立"}, {"label": "3", "text": "矛盾"}]
    assert released_items("mkqa", "en", cc_eval)[0][0]["answer"] == ["3.0"]


# --- prompts built from hub-schema rows equal the released prompts -----------------------------------
# Each test writes a small local dataset in the ORIGINAL dataset's schema and config/split names from
# the fields of released items (split off with the layout's generic separators, not with our
# template strings), loads it with the hub loader, finds each released item among ours by content and
# compares the full prompt, the English prompt and the answer.

FIRST = 12  # released lines per language used


def released(cc_eval, benchmark, lang):
    r = load_template(benchmark).released
    base = cc_eval / r["dir"]
    prompts = [json.loads(x)["instruction"] for x in (base / r["prompts"] / f"{lang}.json").open()][:FIRST]
    answers = [json.loads(x) for x in (base / r["answers"] / f"{lang}.json").open()][:FIRST]
    return prompts, answers


def after_label(line: str) -> str:
    """'Premise: text' -> 'text' (also the full-width '：' of Chinese and Japanese)."""
    return re.split(r"[:：] ?", line, maxsplit=1)[1]


def write_dataset(root: Path, configs: dict[str, list[dict]], split: str) -> Path:
    lines = ["---", "configs:"]
    for name, rows in configs.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        lines += [f"- config_name: {name}", "  data_files:", f"  - split: {split}", f"    path: {name}/{split}.jsonl"]
    (root / "README.md").write_text("\n".join(lines + ["---", ""]))
    return root


def assert_match(items, prompts, answers, key, english=None):
    """Find each released prompt's item by ``key(prompt)`` (a content string) and compare."""
    for k, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        ours = [i for i in items if key(prompt) in i["prompt"]]
        assert len(ours) >= 1, f"no item contains {key(prompt)!r}"
        item = next((i for i in ours if i["prompt"] == prompt), ours[0])
        assert item["prompt"] == prompt
        assert item["answer"] == answer
        if english is not None:
            assert item["prompt_en"] == english[k]


def test_xnli_prompts_equal_the_papers(cc_eval, tmp_path):
    langs = ["en", "ar", "zh", "sw"]
    configs, released_sets = {}, {}
    for lang in langs:
        prompts, answers = released(cc_eval, "xnli", lang)
        released_sets[lang] = prompts, answers
        configs[lang] = [{"premise": after_label(p.split("\n")[0]), "hypothesis": after_label(p.split("\n")[1]),
                          "label": int(a) - 1} for p, a in zip(prompts, answers, strict=True)]  # fmt: skip
    path = write_dataset(tmp_path / "xnli", configs, "test")
    for lang in langs:
        items, info = hub_items("xnli", lang, path=str(path))  # facebook/xnli's config names and split
        assert info["config"] == lang and len(items) == FIRST
        assert_match(items, *released_sets[lang], key=lambda p: p.split("\n")[1], english=released_sets["en"][0])


def test_xquad_prompts_equal_the_papers(cc_eval, tmp_path):
    langs = ["en", "ar", "zh", "hi"]
    configs, released_sets = {}, {}
    for lang in langs:
        prompts, answers = released(cc_eval, "xquad", lang)
        released_sets[lang] = prompts, answers
        rows = []
        for k, (p, a) in enumerate(zip(prompts, answers, strict=True)):
            block = p.split("\n\n")[1]  # "<label> <context>\n<label> <question>"
            head, question = block.rsplit("\n", 1)
            context = re.split(r"[:：] ", head, maxsplit=1)[1]
            rows.append({"id": f"q{k}", "context": context, "question": re.split(r"[:：] ", question, maxsplit=1)[1],
                         "answers": {"text": [a], "answer_start": [context.find(a)]}})  # fmt: skip
        configs[f"xquad.{lang}"] = rows
    path = write_dataset(tmp_path / "xquad", configs, "validation")
    for lang in langs:
        items, info = hub_items("xquad", lang, path=str(path))
        assert info["config"] == f"xquad.{lang}" and info["split"] == "validation"
        assert_match(items, *released_sets[lang], key=lambda p: p.rsplit("\n\n", 1)[0].rsplit("\n", 1)[1],
                     english=released_sets["en"][0])  # fmt: skip


def test_mkqa_prompts_equal_the_papers(cc_eval, tmp_path):
    keys = {"en": "en", "ar": "ar", "zh": "zh_cn", "ja": "ja"}
    released_sets = {lang: released(cc_eval, "mkqa", lang) for lang in keys}
    rows = []
    for k in range(FIRST):
        rows.append({
            "example_id": k,
            "queries": {key: released_sets[lang][0][k].split("\n\n")[1] for lang, key in keys.items()},
            # one MKQA answer per gold string; the paper's lists hold no aliases (this one must not appear)
            "answers": {key: [{"type": "entity", "entity": "", "text": text, "aliases": ["an alias"]}
                              for text in released_sets[lang][1][k]] for lang, key in keys.items()},
        })  # fmt: skip
    path = write_dataset(tmp_path / "mkqa", {"mkqa": rows}, "train")
    for lang in keys:
        items, info = hub_items("mkqa", lang, path=str(path))
        assert info["config"] == "mkqa" and len(items) == FIRST
        assert_match(items, *released_sets[lang], key=lambda p: p.split("\n\n")[1], english=released_sets["en"][0])


def test_mmmlu_prompts_equal_the_papers(cc_eval, tmp_path):
    configs = {"ar": "AR_XY", "sw": "SW_KE", "ko": "KO_KR"}
    released_sets = {lang: released(cc_eval, "mmmlu", lang) for lang in ["en", *configs]}
    pattern = re.compile(r"^.*?\n\n(.*)\n\(A\) (.*)\n\(B\) (.*)\n\(C\) (.*)\n\(D\) (.*)\n\n[^\n]*$", re.S)
    parsed = {lang: [pattern.match(p).groups() for p in prompts] for lang, (prompts, _) in released_sets.items()}
    mmmlu = {cfg: [dict(zip(["Question", "A", "B", "C", "D"], parsed[lang][k], strict=True),
                        Answer=released_sets[lang][1][k], Subject="x") for k in range(FIRST)]
             for lang, cfg in configs.items()}  # fmt: skip
    # English comes from cais/mmlu's schema: question, subject, choices, answer 0-3
    mmlu = {"all": [{"question": q[0], "subject": "x", "choices": list(q[1:]), "answer": "ABCD".index(a)}
                    for q, a in zip(parsed["en"], released_sets["en"][1], strict=True)]}  # fmt: skip
    path = write_dataset(tmp_path / "mmmlu", mmmlu, "test")
    path_en = write_dataset(tmp_path / "mmlu", mmlu, "test")
    for lang in ["en", *configs]:
        items, info = hub_items("mmmlu", lang, path=str(path), path_en=str(path_en))
        assert info["config"] == configs.get(lang, "all")
        assert_match(items, *released_sets[lang], key=lambda p: p.split("\n(A) ")[0].split("\n\n", 1)[1],
                     english=released_sets["en"][0])  # fmt: skip


def test_xlsum_prompts_equal_the_papers(cc_eval, tmp_path):
    names = {"en": "english", "ur": "urdu", "sw": "swahili"}
    configs, released_sets = {}, {}
    for lang, name in names.items():
        prompts, answers = released(cc_eval, "xlsum", lang)
        released_sets[lang] = prompts, answers
        configs[name] = [{"id": f"{lang}-{k}", "url": "", "title": p.split("\n")[1], "summary": a,
                          "text": p.split("\n", 2)[2]} for k, (p, a) in enumerate(zip(prompts, answers, strict=True))]  # fmt: skip
    path = write_dataset(tmp_path / "xlsum", configs, "test")
    for lang, name in names.items():
        items, info = hub_items("xlsum", lang, path=str(path))
        assert info["config"] == name
        assert_match(items, *released_sets[lang], key=lambda p: p.split("\n")[1])
        assert all(i["prompt_en"] is None for i in items) or lang == "en"  # no English translation on the hub
