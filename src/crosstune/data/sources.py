"""Loaders for the data sources named in ``data.sources`` of the config."""

from __future__ import annotations

import random
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from .. import languages
from ..io import DataError, read_jsonl, require_fields

SEED_DIR = resources.files("crosstune") / "data" / "seed"
SEED_ENGINE = "human:crosstune-seed"  # translation-memory engine of the bundled translations

RECORD_FIELDS = ("id", "lang", "instruction", "response")


def load_seed(spec: dict) -> list[dict]:
    """The bundled English seed pairs (see ``src/crosstune/data/seed/README.md``)."""
    path = Path(str(SEED_DIR / "sft_en.jsonl"))
    return [
        {"id": r["id"], "lang": "en", "instruction": r["instruction"], "response": r["response"],
         "source": "seed"}  # fmt: skip
        for r in read_jsonl(path)
    ]


def seed_translations() -> list[dict]:
    """Translation-memory entries for the bundled human translations of the seed pairs."""
    english = {r["id"]: r for r in read_jsonl(Path(str(SEED_DIR / "sft_en.jsonl")))}
    entries = []
    path = Path(str(SEED_DIR / "translations.jsonl"))
    for r in read_jsonl(path):
        src = english.get(r["id"])
        if src is None:
            raise DataError(f"{path}: translation of unknown seed id {r['id']!r}")
        for field in ("instruction", "response"):
            entries.append(("en", r["lang"], src[field], r[field]))
    return entries


def seed_texts() -> list[str]:
    """Every bundled text in every language (the corpus tiny tokenizers are trained on)."""
    texts = []
    for name in ("sft_en.jsonl", "translations.jsonl"):
        for r in read_jsonl(Path(str(SEED_DIR / name))):
            texts += [r["instruction"], r["response"]]
    return texts


def load_jsonl(spec: dict) -> list[dict]:
    """A local JSON Lines file of source records (id, lang, instruction, response)."""
    path = Path(spec["path"])
    records = []
    for i, r in enumerate(read_jsonl(path), 1):
        where = f"{path}: record {i}"
        require_fields(r, ("instruction", "response"), where)
        lang = r.get("lang", spec.get("lang", "en"))
        languages.check(lang, where)
        records.append(
            {"id": str(r.get("id", f"{path.stem}-{i:06d}")), "lang": lang,
             "instruction": r["instruction"], "response": r["response"], "source": spec["name"]}  # fmt: skip
        )
    return records


LOADERS: dict[str, Callable[[dict], list[dict]]] = {
    "seed": load_seed,
    "jsonl": load_jsonl,
}


def load_source(spec: dict) -> list[dict]:
    """Load one ``data.sources`` entry, apply its language filter and sample size."""
    kind = spec["type"]
    if kind not in LOADERS:
        raise ValueError(f"data.sources: unknown source type {kind!r}; known: {', '.join(sorted(LOADERS))}")
    records = LOADERS[kind](spec)
    wanted = spec.get("languages")
    if wanted:
        records = [r for r in records if r["lang"] in wanted]
    limit = spec.get("max_per_language")
    if limit:
        rng = random.Random(spec.get("seed", 0))
        by_lang: dict[str, list[dict]] = {}
        for r in records:
            by_lang.setdefault(r["lang"], []).append(r)
        records = []
        for lang in sorted(by_lang):
            group = by_lang[lang]
            records += group if len(group) <= limit else rng.sample(group, limit)
    for r in records:
        r.setdefault("source", spec.get("name", kind))
    return records


def load_sources(specs: list[dict]) -> list[dict]:
    """Load every source; ids are prefixed by the source name so they stay unique."""
    out, seen = [], set()
    for spec in specs:
        name = spec.get("name", spec["type"])
        for r in load_source(spec):
            r = dict(r, id=f"{name}/{r['id']}", source=name)
            if r["id"] in seen:
                raise DataError(f"data.sources[{name}]: duplicate record id {r['id']!r}")
            seen.add(r["id"])
            out.append(r)
    return out
