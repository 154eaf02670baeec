"""Shared helpers of the training tests: pair records from the seed data, validated configs."""

from __future__ import annotations

from pathlib import Path

import yaml

from crosstune.data.sources import SEED_DIR
from crosstune.io import read_jsonl, write_jsonl

from .conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def seed_pairs(items: int | None = None, langs=("ar", "hi", "sw", "zh", "ru")) -> list[dict]:
    """Pair records (crosstune.pairs schema) built straight from the bundled seed data."""
    english = read_jsonl(Path(str(SEED_DIR / "sft_en.jsonl")))[:items]
    by_id = {r["id"]: r for r in english}
    pairs = [{"id": f"seed/{r['id']}", "lang": "en", "instruction": r["instruction"], "response": r["response"],
              "instruction_en": r["instruction"], "response_en": r["response"], "source": "seed"}
             for r in english]  # fmt: skip
    for r in read_jsonl(Path(str(SEED_DIR / "translations.jsonl"))):
        en = by_id.get(r["id"])
        if en is not None and r["lang"] in langs:
            pairs.append({"id": f"seed/{r['id']}#{r['lang']}", "lang": r["lang"], "instruction": r["instruction"],
                          "response": r["response"], "instruction_en": en["instruction"],
                          "response_en": en["response"], "source": "seed"})  # fmt: skip
    return sorted(pairs, key=lambda p: (p["lang"], p["id"]))


def write_pairs(path: Path, pairs: list[dict]) -> Path:
    write_jsonl(path, pairs)
    return path


def config(methods: dict, train: dict | None = None) -> dict:
    """A schema-validated config (defaults filled) with the given methods and train settings."""
    from snakemake.utils import validate

    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    cfg["methods"] = methods
    cfg["train"] = {**cfg.get("train", {}), **(train or {})}
    validate(cfg, str(SCHEMA), set_default=True)
    return cfg


def settings(spec: dict | None = None, name: str = "m", **train) -> dict:
    """Resolved settings of one method ``name`` = ``spec`` (default plain sft) under tiny.yaml's train."""
    from crosstune.train.settings import resolve

    return resolve(config({name: spec or {"type": "sft"}}, train), name)
