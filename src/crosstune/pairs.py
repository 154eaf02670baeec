"""Parallel training records: the one data format every method trains on.

A *pair record* (one JSON object per line of ``pairs.jsonl``)::

    id              unique id; translations of one English item share the part before '#'
    lang            ISO 639-1 code of instruction/response
    instruction     the instruction in ``lang``
    response        the response in ``lang``
    instruction_en  the English instruction (== instruction for English records)
    response_en     the English response, or null when unknown (e.g. Aya)
    source          the data source name from the config

SFT variants use (instruction, response); CC-Tuning uses (instruction,
response, instruction_en); CLO and CrossIn use both languages' fields.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence

from .io import DataError

log = logging.getLogger(__name__)

FIELDS = ("id", "lang", "instruction", "response", "instruction_en", "response_en", "source")


def english_pairs(records: Iterable[dict]) -> list[dict]:
    """English source records as pair records (their own English counterparts)."""
    return [
        {"id": r["id"], "lang": "en", "instruction": r["instruction"], "response": r["response"],
         "instruction_en": r["instruction"], "response_en": r["response"], "source": r["source"]}  # fmt: skip
        for r in records
        if r["lang"] == "en"
    ]


def templated_length(tokenizer, instruction: str, response: str) -> int:
    """Tokens of the chat-templated (instruction, response) conversation."""
    messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    return len(ids)


def build_pairs(records: Sequence[dict], tokenizer, languages: Sequence[str], min_tokens: int,
                max_tokens: int, dedup: bool = True) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """Filter and deduplicate pair records; return (pairs, per-language stats rows).

    Dedup drops a record whose (lang, instruction, response) was seen before.
    The length filter counts tokens of the chat-templated conversation with the
    base model's tokenizer and keeps ``min_tokens <= n <= max_tokens``.
    """
    stats = {lang: Counter() for lang in languages}
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in records:
        lang = r["lang"]
        if lang not in stats:
            continue
        missing = [f for f in ("id", "instruction", "response") if not str(r.get(f) or "").strip()]
        if missing:
            raise DataError(f"pair record {r.get('id')!r} ({lang}): empty field(s) {', '.join(missing)}")
        s = stats[lang]
        s["input"] += 1
        key = (lang, r["instruction"].strip(), r["response"].strip())
        if dedup and key in seen:
            s["duplicate"] += 1
            continue
        seen.add(key)
        n = templated_length(tokenizer, r["instruction"], r["response"])
        if n > max_tokens:
            s["too_long"] += 1
            continue
        if n < min_tokens:
            s["too_short"] += 1
            continue
        s["kept"] += 1
        s["tokens"] += n
        out.append({f: r.get(f) for f in FIELDS})
    out.sort(key=lambda r: (r["lang"], r["id"]))
    rows = []
    for lang in languages:
        s = stats[lang]
        rows.append({
            "lang": lang, "input": s["input"], "duplicate": s["duplicate"], "too_long": s["too_long"],
            "too_short": s["too_short"], "kept": s["kept"],
            "mean_tokens": round(s["tokens"] / s["kept"], 1) if s["kept"] else 0.0,
        })  # fmt: skip
        if s["kept"] == 0:
            log.warning("no pairs kept for language %s", lang)
    return out, rows
