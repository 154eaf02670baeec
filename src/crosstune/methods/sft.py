"""The SFT family (docs/methods.md section 1): plain next-token loss, four data mixes.

* ``sft``     - joint multilingual: every pair record (of ``languages``, default all);
  ``size`` takes that many items per language (CLO's SFT-3,200 / SFT-6,400), drawn
  as CLO draws its items (:func:`crosstune.preference.item_order`, same seed: same items).
* ``sft_en``  - English records only.
* ``sft_all`` - "all parallel": every non-English record plus the English copy of its
  item (``instruction_en``, ``response_en``). ``english_copies: per_record`` (default)
  adds one copy per non-English record, so English and non-English are 1:1;
  ``per_item`` adds each English item once.
* ``sft_mt``  - ``sft`` plus a translation task per non-English record: prompt
  ``mt_template`` filled with the non-English instruction, response its English
  translation ``instruction_en``.

Every example carries ``id`` (pair id + ``|kind`` for derived ones), ``prompt``,
``response``, ``lang`` (language of the response) and ``kind`` (part of the mix).
"""

from __future__ import annotations

from ..preference import item_of, item_order
from .base import Method, TrainDataError


def example(record: dict, kind: str, prompt: str | None = None, response: str | None = None,
            lang: str | None = None) -> dict:  # fmt: skip
    """A training example derived from a pair record (the record's own fields by default)."""
    return {
        "id": record["id"] if kind == "sft" else f"{record['id']}|{kind}",
        "prompt": record["instruction"] if prompt is None else prompt,
        "response": record["response"] if response is None else response,
        "lang": lang or record["lang"],
        "kind": kind,
    }


def require(record: dict, field: str, why: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise TrainDataError(f"pair record {record.get('id')!r} ({record.get('lang')}) has no {field}, needed for {why}")
    return value


def english_instruction(record: dict) -> str:
    """The record's instruction in English: its own (English records) or ``instruction_en``."""
    if record["lang"] == "en":
        return record["instruction"]
    return require(record, "instruction_en", "the English prompt of its example")


def select(pairs: list[dict], languages: list[str] | None) -> list[dict]:
    """Pair records in ``languages`` (all when None), in file order."""
    return [r for r in pairs if languages is None or r["lang"] in languages]


def sample_per_language(records: list[dict], size: int, seed: int) -> list[dict]:
    """The records of the first ``size`` items (in :func:`item_order`) of each language, in file order."""
    order = {item: rank for rank, item in enumerate(item_order({item_of(r["id"]) for r in records}, seed))}
    by_lang: dict[str, list[dict]] = {}
    for r in records:
        by_lang.setdefault(r["lang"], []).append(r)
    keep = set()
    for lang, recs in by_lang.items():
        if len(recs) < size:
            raise TrainDataError(f"size {size}: language {lang!r} has only {len(recs)} pair records")
        keep |= {id(r) for r in sorted(recs, key=lambda r: order[item_of(r["id"])])[:size]}
    return [r for r in records if id(r) in keep]


class Sft(Method):
    """Also the default :meth:`english_prompt` of every data-level mix (kinds ``sft``, ``en_copy``)."""

    name = "sft"
    defaults = {
        "languages": None,  # restrict the mix to these languages (null: every language in the pairs)
        "size": None,  # items per language (null: all)
        "seed": None,  # sampling seed of size (null: the global seed)
    }
    supports_packing = True

    def build_examples(self, pairs, settings, seed):
        records = select(pairs, settings["languages"])
        if settings["size"] is not None:
            records = sample_per_language(records, settings["size"], seed)  # seed: the engine applies settings["seed"]
        return [example(r, "sft") for r in records]

    def english_prompt(self, record: dict, kind: str, settings: dict) -> str:
        """The English version of the prompt this mix built from ``record`` as a ``kind`` example.

        CC-Tuning on a data-level mix (``cc_tuning`` with ``mix``) feeds it to its
        English pass: the same request, asked in English.
        """
        if kind in ("sft", "en_copy"):
            return english_instruction(record)
        raise TrainDataError(f"method {self.name!r} has no English version of a {kind!r} example")


class SftEn(Sft):
    name = "sft_en"
    defaults = {}

    def build_examples(self, pairs, settings, seed):
        return [example(r, "sft") for r in pairs if r["lang"] == "en"]


class SftAll(Sft):
    name = "sft_all"
    defaults = {"languages": None, "english_copies": "per_record"}

    def build_examples(self, pairs, settings, seed):
        if settings["english_copies"] not in ("per_record", "per_item"):
            raise TrainDataError(f"english_copies must be per_record or per_item, not {settings['english_copies']!r}")
        out, copies, seen = [], [], set()
        for r in select(pairs, settings["languages"]):
            if r["lang"] == "en":
                continue
            out.append(example(r, "sft"))
            item = r["id"].split("#")[0]
            if settings["english_copies"] == "per_item" and item in seen:
                continue
            seen.add(item)
            prompt = require(r, "instruction_en", "its English copy")
            response = require(r, "response_en", "its English copy")
            copies.append(example(r, "en_copy", prompt, response, "en"))
        return out + copies


class SftMt(Sft):
    name = "sft_mt"
    defaults = {"languages": None, "mt_template": "Translate the following into English.\n{instruction}"}

    def english_prompt(self, record, kind, settings):
        if kind == "mt":  # the same task on the English instruction
            return settings["mt_template"].format(instruction=english_instruction(record))
        return super().english_prompt(record, kind, settings)

    def build_examples(self, pairs, settings, seed):
        records = select(pairs, settings["languages"])
        mt = [
            example(r, "mt", settings["mt_template"].format(instruction=r["instruction"]),
                    require(r, "instruction_en", "the translation task"), "en")  # fmt: skip
            for r in records
            if r["lang"] != "en"
        ]
        return [example(r, "sft") for r in records] + mt
