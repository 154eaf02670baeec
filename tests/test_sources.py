"""Data-source loaders: bundled seed data and the Hugging Face datasets Aya, Alpaca, OASST1."""

from __future__ import annotations

import importlib.util
import logging
from collections import Counter
from pathlib import Path

import pytest

from crosstune import languages
from crosstune.data import LOADERS, load_source, load_sources
from crosstune.data.sources import SEED_DIR, local_inputs, seed_translations
from crosstune.io import DataError, read_jsonl

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HUB = FIXTURES / "hub"


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """Keep the arrow cache that load_dataset builds out of the home directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))


def spec(kind: str, **kw) -> dict:
    """A data.sources entry as the schema would fill it in."""
    base = {"name": kind, "type": kind, "split": "train", "revision": None, "seed": 0, "max_per_language": None}
    if kind in ("aya", "alpaca", "platypus", "oasst"):
        base["path"] = str(HUB / kind)
    return base | kw


# --------------------------------------------------------------------------- seed
def test_seed_loader_and_its_translations():
    records = load_source(spec("seed"))
    assert len(records) == 60 and {r["lang"] for r in records} == {"en"}
    assert [r["id"] for r in records] == [f"seed-{i:03d}" for i in range(1, 61)]
    assert all(r["instruction"].strip() and r["response"].strip() and r["source"] == "seed" for r in records)
    entries = seed_translations()
    by_lang = Counter(tgt for src, tgt, _, _ in entries)
    assert set(by_lang) == {"ar", "hi", "sw", "zh", "ru"} and set(by_lang.values()) == {120}
    english = {r["instruction"] for r in records} | {r["response"] for r in records}
    assert all(src == "en" and source in english and target.strip() for src, _, source, target in entries)
    # translations align with the English pairs by id, field by field
    memory = {(tgt, source): target for _, tgt, source, target in entries}
    english_by_id = {r["id"]: r for r in records}
    rows = read_jsonl(Path(str(SEED_DIR / "translations.jsonl")))
    assert Counter(r["id"] for r in rows) == Counter({i: 5 for i in english_by_id})
    for row in rows:
        en = english_by_id[row["id"]]
        assert memory[(row["lang"], en["instruction"])] == row["instruction"]
        assert memory[(row["lang"], en["response"])] == row["response"]


# --------------------------------------------------------------------------- hub loaders
def test_aya_maps_iso639_3_codes_and_skips_other_languages(caplog):
    with caplog.at_level(logging.INFO, logger="crosstune.data.sources"):
        records = load_source(spec("aya"))
    assert [(r["id"], r["lang"]) for r in records] == [
        ("0000000", "ar"), ("0000001", "hi"), ("0000002", "sw"), ("0000003", "zh"), ("0000004", "ru"),
        ("0000005", "en"), ("0000009", "es"),
    ]  # fmt: skip  (row 6 Moroccan Arabic, 7 Amharic, 8 Traditional Chinese are skipped)
    assert records[2] == {"id": "0000002", "lang": "sw", "instruction": "Mji mkuu wa Kenya ni upi?",
                          "response": "Mji mkuu wa Kenya ni Nairobi.", "source": "aya"}  # fmt: skip
    assert "kept 7 records, skipped 3" in caplog.text and "ary (Moroccan Arabic): 1" in caplog.text
    test = load_source(spec("aya", split="test"))
    assert [(r["id"], r["lang"], r["response"]) for r in test] == [("0000000", "sw", "Dodoma."), ("0000001", "ja", "東京です。")]


def test_alpaca_joins_instruction_and_input():
    records = load_source(spec("alpaca"))
    assert [r["instruction"] for r in records] == [
        "Give three tips for staying healthy.",
        "Translate the sentence into French.\n\nI like apples.",
        "Classify the sentiment of the review.\n\nThe film was wonderful!",
        "Name the largest ocean.",  # whitespace-only input
    ]
    assert records[1]["response"] == "J'aime les pommes." and {r["lang"] for r in records} == {"en"}
    assert [r["id"] for r in records] == ["000000", "000001", "000002", "000003"]


def test_platypus_reads_the_hub_schema_like_alpaca():
    records = load_source(spec("platypus"))
    assert [r["instruction"] for r in records] == [
        "What is the sum of the first 10 positive integers?",
        "Choose A, B, C or D as your solution.\n\nWhich gas do plants absorb? A: O2 B: CO2 C: N2 D: He",
        "Write a Python function that reverses a string.",
    ]  # the rows without an instruction or an output are skipped
    assert [r["id"] for r in records] == ["000000", "000001", "000002"]
    assert records[1]["response"] == "B" and {r["lang"] for r in records} == {"en"}
    with pytest.raises(DataError, match=r"missing column\(s\) \['data_source'\] of the garage-bAInd/Open-Platypus schema"):
        load_source(spec("platypus", path=str(HUB / "alpaca")))


def test_oasst_keeps_root_prompts_with_their_rank0_reply():
    records = load_source(spec("oasst"))
    assert records == [
        {"id": "p-en", "lang": "en", "instruction": "How do I boil an egg?",
         "response": "Put it in boiling water for 9 minutes.", "source": "oasst"},
        {"id": "p-zh", "lang": "zh", "instruction": "天空为什么是蓝色的？", "response": "因为大气散射蓝光更多。",
         "source": "oasst"},
        {"id": "p-pt", "lang": "pt", "instruction": "Qual é a capital do Brasil?",
         "response": "A capital do Brasil é Brasília.", "source": "oasst"},
    ]  # fmt: skip
    # not there: the follow-up prompt (not a root), the es prompt whose rank-0 reply is deleted
    # (its rank-1 reply is not used), the Polish prompt, the prompt that failed review


def test_hub_loaders_pass_path_split_and_revision_to_load_dataset(monkeypatch):
    """A hub id goes through the same call as a local directory."""
    import datasets

    real = datasets.load_dataset
    calls = []

    def fake(path, split, revision):
        calls.append((path, split, revision))
        return real(str(HUB / "aya"), split=split)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    records = load_source(spec("aya", path="CohereForAI/aya_dataset", revision="abc123", split="test"))
    assert calls == [("CohereForAI/aya_dataset", "test", "abc123")] and len(records) == 2


def test_wrong_schema_and_missing_data_are_clear_errors():
    with pytest.raises(DataError, match=r"data.sources\[alpaca\] \(.*hub/aya\): missing column\(s\) \['instruction', 'input', 'output'\] of the tatsu-lab/alpaca schema"):
        load_source(spec("alpaca", path=str(HUB / "aya")))
    with pytest.raises(DataError, match=r"data.sources\[aya\] \(.*hub/aya\): cannot load split 'validation'"):
        load_source(spec("aya", split="validation"))
    with pytest.raises(ValueError, match="unknown source type 'dolly'; known: alpaca, aya, jsonl, oasst, platypus, seed"):
        load_source({"name": "x", "type": "dolly"})


def test_committed_fixtures_are_what_the_script_writes(tmp_path):
    script = importlib.util.spec_from_file_location("make_hub_fixtures", FIXTURES / "make_hub_fixtures.py")
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    written = module.main(tmp_path)
    assert [p.relative_to(tmp_path) for p in written] == sorted(p.relative_to(HUB) for p in HUB.rglob("*.parquet"))
    for path in written:
        assert path.read_bytes() == (HUB / path.relative_to(tmp_path)).read_bytes(), path


def test_fixture_schemas_match_the_hub_cards():
    import datasets

    oasst = datasets.load_dataset(str(HUB / "oasst"), split="train").features
    assert oasst["rank"] == datasets.Value("int32") and oasst["review_result"] == datasets.Value("bool")
    assert oasst["emojis"] == {"name": datasets.List(datasets.Value("string")), "count": datasets.List(datasets.Value("int32"))}
    assert list(oasst)[:7] == ["message_id", "parent_id", "user_id", "created_date", "text", "role", "lang"]
    aya = datasets.load_dataset(str(HUB / "aya"), split="train")
    assert aya.column_names == ["inputs", "targets", "language", "language_code", "annotation_type", "user_id"]
    assert datasets.load_dataset(str(HUB / "alpaca"), split="train").column_names == ["instruction", "input", "output", "text"]


# --------------------------------------------------------------------------- filters and merging
def test_languages_filter():
    records = load_source(spec("aya", languages=["ar", "hi"]))
    assert [r["lang"] for r in records] == ["ar", "hi"]


def test_max_per_language_is_a_seeded_sample():
    one = load_source(spec("seed", max_per_language=5, seed=1))
    assert len(one) == 5 and [r["id"] for r in one] == [r["id"] for r in load_source(spec("seed", max_per_language=5, seed=1))]
    other = load_source(spec("seed", max_per_language=5, seed=2))
    assert {r["id"] for r in one} != {r["id"] for r in other}
    everything = {r["id"] for r in load_source(spec("seed"))}
    assert {r["id"] for r in one} <= everything
    per_lang = Counter(r["lang"] for r in load_source(spec("aya", max_per_language=1)))
    assert per_lang == Counter({lang: 1 for lang in ("ar", "en", "es", "hi", "ru", "sw", "zh")})
    assert len(load_source(spec("seed", max_per_language=100))) == 60  # fewer than the limit: all


def test_load_sources_prefixes_ids_and_rejects_duplicates():
    records = load_sources([spec("seed"), spec("aya", name="aya-train"), spec("oasst")])
    ids = [r["id"] for r in records]
    assert ids[0] == "seed/seed-001" and "aya-train/0000003" in ids and ids[-1] == "oasst/p-pt"
    assert len(ids) == len(set(ids)) == 60 + 7 + 3
    assert {r["source"] for r in records} == {"seed", "aya-train", "oasst"}
    with pytest.raises(DataError, match=r"data.sources\[aya\]: duplicate record id 'aya/0000000'"):
        load_sources([spec("aya"), spec("aya", split="test")])


def test_jsonl_loader(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"instruction": "Hi", "response": "Hello"}\n{"id": "x", "lang": "sw", "instruction": "a", "response": "b"}\n')
    records = load_source({"name": "mine", "type": "jsonl", "path": str(path), "lang": "en"})
    assert [(r["id"], r["lang"]) for r in records] == [("mine-000001", "en"), ("x", "sw")]
    # errors name the file's line (blank lines count), not the record's index
    path.write_text('{"instruction": "Hi", "response": "Hello"}\n\n{"instruction": "Hi", "response": "Hello", "lang": "xx"}\n')
    with pytest.raises(ValueError, match="mine.jsonl:3: unknown language code 'xx'"):
        load_source({"name": "mine", "type": "jsonl", "path": str(path)})
    path.write_text('\n{"instruction": "Hi", "response": ""}\n')
    with pytest.raises(DataError, match="mine.jsonl:2: field 'response' is missing or empty"):
        load_source({"name": "mine", "type": "jsonl", "path": str(path)})


def test_local_inputs_are_the_files_sources_read(tmp_path):
    """Rule source_data's inputs: the seed file, jsonl files, every file of a local hub-schema
    directory (not hidden ones); a hub id reads nothing local."""
    (tmp_path / "data" / "alpaca" / ".cache").mkdir(parents=True)
    (tmp_path / "data" / "mine.jsonl").write_text("{}\n")
    for name in ("data/alpaca/train.parquet", "data/alpaca/README.md", "data/alpaca/.cache/lock"):
        (tmp_path / name).write_text("x")
    specs = [
        {"name": "seed", "type": "seed"},
        {"name": "mine", "type": "jsonl", "path": "data/mine.jsonl"},
        {"name": "alpaca", "type": "alpaca", "path": "data/alpaca"},
        {"name": "aya", "type": "aya", "path": "CohereForAI/aya_dataset"},
    ]
    assert local_inputs(specs, tmp_path) == [
        str(SEED_DIR / "sft_en.jsonl"), "data/mine.jsonl", "data/alpaca/README.md", "data/alpaca/train.parquet"
    ]


def test_language_code_maps():
    assert {languages.from_iso639_3(c) for c in ("arb", "swh", "zho", "hin", "rus", "eng")} == {"ar", "sw", "zh", "hi", "ru", "en"}
    assert set(languages.ISO639_3.values()) == set(languages.CODES)
    assert languages.from_iso639_3("ary") is None and languages.from_iso639_3(None) is None
    assert [languages.from_bcp47(t) for t in ("en", "pt-BR", "zh", "zh-Hans", "zh-TW", "zh_Hant", "pl", "")] == [
        "en", "pt", "zh", "zh", None, None, None, None]  # fmt: skip
    assert set(LOADERS) == {"seed", "jsonl", "aya", "alpaca", "platypus", "oasst"}


def test_commented_config_examples_are_valid_and_load():
    """The commented aya/alpaca/oasst examples in config.yaml pass the schema and load (from fixtures)."""
    import jsonschema
    import yaml

    repo = FIXTURES.parent.parent
    lines = (repo / "config.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("# - name: aya"))
    block = []
    for line in lines[start:]:
        if not line.strip().startswith("#"):
            break
        block.append(line.replace("# ", "", 1))
    examples = yaml.safe_load("\n".join(block))
    assert [e["type"] for e in examples] == ["aya", "alpaca", "oasst"]
    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["data"]["sources"] += examples
    jsonschema.validate(config, yaml.safe_load((repo / "workflow/schemas/config.schema.yaml").read_text()))
    for example in examples:
        records = load_source(spec(example["type"]) | example | {"path": str(HUB / example["type"])})
        assert records and {r["lang"] for r in records} <= set(example.get("languages", languages.CODES))
