"""Loaders for the data sources named in ``data.sources`` of the config.

Source types (``data.sources[].type``); every loader returns source records
``{id, lang, instruction, response, source}`` with ``lang`` one of our 22 codes:

* ``seed``   - the bundled English seed pairs (60, ids ``seed-001``...); their
  human translations live in the translation memory (:func:`seed_translations`).
* ``jsonl``  - a local JSON Lines file with ``instruction``, ``response`` and
  optionally ``id`` and ``lang`` (default: the source's ``lang``, else ``en``).
* ``aya``    - CohereForAI/aya_dataset (columns inputs, targets, language,
  language_code, annotation_type, user_id): inputs -> instruction, targets ->
  response; ``language_code`` is ISO 639-3 (arb, hin, swh, zho...) mapped with
  :func:`crosstune.languages.from_iso639_3`; Arabic dialects, Traditional
  Chinese and languages outside our 22 are skipped. Ids are row indices.
* ``alpaca`` - tatsu-lab/alpaca (instruction, input, output, text): instruction
  + "\n\n" + input (when input is non-empty) -> instruction, output ->
  response, lang ``en``. Ids are row indices.
* ``platypus`` - garage-bAInd/Open-Platypus (instruction, input, output,
  data_source): as ``alpaca`` (CrossIn's English data beside Alpaca), lang ``en``.
* ``oasst``  - OpenAssistant/oasst1 (a flat table of messages): the top-ranked
  single turns, i.e. each root prompter message (``parent_id`` null) paired with
  its assistant reply of ``rank`` 0; deleted messages and messages whose
  ``review_result`` is not true are skipped (no fallback to the rank-1 reply).
  ``lang`` (BCP-47) of the prompter message mapped with
  :func:`crosstune.languages.from_bcp47`. Ids are the prompter ``message_id``.

The hub loaders read ``datasets.load_dataset(path, split=split, revision=revision)``,
so ``path`` may be a hub id or a local directory of parquet/JSON files in the
same schema (tests/fixtures/hub/ holds such directories). Row-index ids are
stable for a fixed ``revision``; pin it for reproducible runs. Rows with an
empty instruction or response are skipped; skips are logged with counts.
After loading, :func:`load_source` applies ``languages`` and
``max_per_language`` (a sample drawn with ``seed``).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

from .. import languages
from ..config import looks_local
from ..io import DataError, files_under, iter_numbered_jsonl, read_jsonl, require_fields

log = logging.getLogger(__name__)

SEED_DIR = resources.files("crosstune") / "data" / "seed"
SEED_ENGINE = "human:crosstune-seed"  # translation-memory engine of the bundled translations

RECORD_FIELDS = ("id", "lang", "instruction", "response")


def seed_files() -> list[str]:
    """The bundled seed files: English pairs and their human translations."""
    return [str(SEED_DIR / name) for name in ("sft_en.jsonl", "translations.jsonl")]


def local_inputs(specs: list[dict], base: str | Path = ".") -> list[str]:
    """The local files ``data.sources`` read (rule source_data's inputs, so editing one reruns it):
    the bundled seed file, a jsonl file, and every file of a local hub-schema directory
    (hidden ones, e.g. a download's .cache/, are skipped). Paths relative to ``base``."""
    files = []
    for spec in specs:
        path = spec.get("path")
        if spec["type"] == "seed":
            files.append(seed_files()[0])
        elif spec["type"] == "jsonl" or (path and looks_local(path, base) and (Path(base) / path).is_file()):
            files.append(path)
        elif path and looks_local(path, base):
            root = Path(base) / path
            files += [str(Path(path) / f.relative_to(root)) for f in files_under(root)]
    return files


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
    for i, (lineno, r) in enumerate(iter_numbered_jsonl(path), 1):
        where = f"{path}:{lineno}"
        require_fields(r, ("instruction", "response"), where)
        lang = r.get("lang", spec.get("lang", "en"))
        languages.check(lang, where)
        records.append(
            {"id": str(r.get("id", f"{path.stem}-{i:06d}")), "lang": lang,
             "instruction": r["instruction"], "response": r["response"], "source": spec["name"]}  # fmt: skip
        )
    return records


# --------------------------------------------------------------------------- Hugging Face datasets
def _hub_columns(spec: dict, columns: Sequence[str], hub_id: str) -> dict[str, list]:
    """The named columns of ``spec``'s dataset split as lists (an error names missing ones)."""
    import datasets

    where = f"data.sources[{spec.get('name', spec['type'])}] ({spec['path']})"
    try:
        ds = datasets.load_dataset(spec["path"], split=spec.get("split", "train"), revision=spec.get("revision"))
    except Exception as e:  # datasets raises many types; keep the cause, name the source
        raise DataError(f"{where}: cannot load split {spec.get('split', 'train')!r}: {e}") from e
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {missing} of the {hub_id} schema; it has {ds.column_names}"
        )
    return ds.select_columns(list(columns)).to_dict()


def _log_skipped(spec: dict, kept: int, skipped: Counter) -> None:
    if skipped:
        top = ", ".join(f"{k}: {n}" for k, n in skipped.most_common(10))
        log.info("%s: kept %d records, skipped %d (%s)", spec.get("name", spec["type"]), kept,
                 sum(skipped.values()), top)  # fmt: skip


def _record(spec: dict, rid: str, lang: str, instruction: str, response: str) -> dict:
    return {"id": rid, "lang": lang, "instruction": instruction, "response": response,
            "source": spec.get("name", spec["type"])}  # fmt: skip


def load_aya(spec: dict) -> list[dict]:
    """CohereForAI/aya_dataset: one record per row in one of our languages."""
    cols = _hub_columns(spec, ("inputs", "targets", "language", "language_code"), "CohereForAI/aya_dataset")
    records, skipped = [], Counter()
    for i, (inp, tgt, name, code) in enumerate(
        zip(cols["inputs"], cols["targets"], cols["language"], cols["language_code"], strict=True)
    ):
        lang = languages.from_iso639_3(code)
        if lang == "zh" and "traditional" in (name or "").lower():  # our zh is Simplified
            lang = None
        if lang is None:
            skipped[f"language {code} ({name})"] += 1
        elif not (inp or "").strip() or not (tgt or "").strip():
            skipped["empty text"] += 1
        else:
            records.append(_record(spec, f"{i:07d}", lang, inp, tgt))
    _log_skipped(spec, len(records), skipped)
    return records


def load_alpaca(spec: dict, hub_id: str = "tatsu-lab/alpaca", columns=("instruction", "input", "output")) -> list[dict]:
    """tatsu-lab/alpaca: English; the optional ``input`` is appended to the instruction."""
    cols = _hub_columns(spec, columns, hub_id)
    records, skipped = [], Counter()
    for i, (ins, inp, out) in enumerate(zip(cols["instruction"], cols["input"], cols["output"], strict=True)):
        instruction = f"{ins}\n\n{inp}" if (inp or "").strip() else ins
        if not (ins or "").strip() or not (out or "").strip():
            skipped["empty text"] += 1
            continue
        records.append(_record(spec, f"{i:06d}", "en", instruction, out))
    _log_skipped(spec, len(records), skipped)
    return records


def load_platypus(spec: dict) -> list[dict]:
    """garage-bAInd/Open-Platypus: Alpaca's columns (plus data_source, the dataset a row comes from)."""
    return load_alpaca(spec, "garage-bAInd/Open-Platypus", ("instruction", "input", "output", "data_source"))


def load_oasst(spec: dict) -> list[dict]:
    """OpenAssistant/oasst1: each root prompt with its rank-0 assistant reply."""
    columns = ("message_id", "parent_id", "text", "role", "lang", "review_result", "deleted", "rank")
    cols = _hub_columns(spec, columns, "OpenAssistant/oasst1")
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*(cols[c] for c in columns), strict=True)]

    def usable(m: dict) -> bool:
        return not m["deleted"] and m["review_result"] is True and bool((m["text"] or "").strip())

    best: dict[str, dict] = {}  # root message_id -> its first rank-0 assistant reply
    for m in rows:
        if m["role"] == "assistant" and m["rank"] == 0 and m["parent_id"] is not None:
            best.setdefault(m["parent_id"], m)
    records, skipped = [], Counter()
    for m in rows:
        if m["role"] != "prompter" or m["parent_id"] is not None:
            continue
        reply = best.get(m["message_id"])
        lang = languages.from_bcp47(m["lang"])
        if lang is None:
            skipped[f"language {m['lang']}"] += 1
        elif not usable(m):
            skipped["prompt deleted or not approved"] += 1
        elif reply is None or not usable(reply):
            skipped["no usable rank-0 reply"] += 1
        else:
            records.append(_record(spec, m["message_id"], lang, m["text"], reply["text"]))
    _log_skipped(spec, len(records), skipped)
    return records


LOADERS: dict[str, Callable[[dict], list[dict]]] = {
    "seed": load_seed,
    "jsonl": load_jsonl,
    "aya": load_aya,
    "alpaca": load_alpaca,
    "platypus": load_platypus,
    "oasst": load_oasst,
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
