"""Cross-lingual preference records (CLO, docs/methods.md section 3) from pair records.

A pair record (:mod:`crosstune.pairs`) of target language t whose English
counterpart is known (``instruction_en`` and ``response_en`` set, i.e. translated
English SFT data) gives one *item* with two preference records::

    direction "target":  prompt x_t,  chosen y_t,  rejected y_en
    direction "english": prompt x_en, chosen y_en, rejected y_t

Each preference record: ``id`` (pair id + ``|target`` / ``|english``), ``item``
(the pair id), ``lang`` (t), ``direction``, ``prompt``, ``chosen``, ``rejected``,
``prompt_lang``, ``chosen_lang``, ``rejected_lang``, ``source``.

Size (our decision, documented): ``size`` counts *items per target language*,
i.e. translated English examples, as in the paper's 3,200 / 6,400 settings
("6,400 OpenAssistant examples" translated). Each item yields both directions,
so ``size`` items give ``2 * size`` preference records per language. ``None``
takes every usable item.

Sampling (deterministic, no global RNG): the English item ids (the part of the
pair id before ``#``) are put in sorted order and shuffled once with
``random.Random(seed)``; every language takes the first ``size`` items of that
order that it has. So languages share the same English items where they can, a
smaller size is a subset of a larger one with the same seed, and the input
file's order does not matter.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict

from .io import DataError

log = logging.getLogger(__name__)

DIRECTIONS = ("target", "english")


def item_of(pair_id: str) -> str:
    """The English item a pair id belongs to (``seed/seed-001#ar`` -> ``seed/seed-001``)."""
    return pair_id.split("#", 1)[0]


def usable(record: dict) -> bool:
    """A non-English record whose English instruction and response are known."""
    return record.get("lang") != "en" and all(
        isinstance(record.get(f), str) and record[f].strip() for f in ("instruction", "response", "instruction_en", "response_en")
    )


def directions(record: dict) -> list[dict]:
    """The two preference records of one usable pair record: [target, english]."""
    t, pid = record["lang"], record["id"]
    x_t, y_t, x_en, y_en = record["instruction"], record["response"], record["instruction_en"], record["response_en"]
    common = {"item": pid, "lang": t, "source": record.get("source")}
    return [
        {"id": f"{pid}|target", "direction": "target", "prompt": x_t, "chosen": y_t, "rejected": y_en,
         "prompt_lang": t, "chosen_lang": t, "rejected_lang": "en", **common},
        {"id": f"{pid}|english", "direction": "english", "prompt": x_en, "chosen": y_en, "rejected": y_t,
         "prompt_lang": "en", "chosen_lang": "en", "rejected_lang": t, **common},
    ]  # fmt: skip


def item_order(items, seed: int) -> list[str]:
    """English item ids in sampling order: sorted, then shuffled once with ``random.Random(seed)``.

    Every sampler of items per language (CLO's preference data, ``sft``'s ``size``)
    takes the first ``size`` items of this order, so with one seed SFT-3,200 and
    CLO-3,200 train on the same items.
    """
    order = sorted(items)
    random.Random(seed).shuffle(order)
    return order


def select_items(pairs: list[dict], languages: list[str] | None, size: int | None, seed: int) -> list[dict]:
    """The sampled pair records: per language (in ``languages`` order, else first appearance), ``size`` items.

    Raises :class:`DataError` when a requested language has fewer usable records
    than ``size`` (or none), naming the counts.
    """
    if size is not None and (not isinstance(size, int) or size < 1):
        raise DataError(f"preference size must be a positive integer or null, not {size!r}")
    by_lang: dict[str, dict[str, dict]] = defaultdict(dict)
    order: list[str] = []
    for r in pairs:
        lang = r.get("lang")
        if lang == "en" or (languages is not None and lang not in languages):
            continue
        if lang not in order:
            order.append(lang)
        if usable(r):
            item = item_of(r["id"])
            if item in by_lang[lang]:
                raise DataError(f"pair records {by_lang[lang][item]['id']!r} and {r['id']!r}: two {lang} records of item {item!r}")
            by_lang[lang][item] = r
    langs = list(languages) if languages is not None else [x for x in order if by_lang[x]]
    skipped = [x for x in order if x not in langs]
    if skipped:
        log.warning("preference data: no record with a known English response in %s; skipped", ", ".join(skipped))
    if "en" in langs:
        raise DataError("preference languages are target languages; 'en' is the English side of every pair")
    items = item_order({i for recs in by_lang.values() for i in recs}, seed)
    out = []
    for lang in langs:
        have = by_lang.get(lang, {})
        if not have or (size is not None and len(have) < size):
            raise DataError(
                f"language {lang!r}: {len(have)} pair records with a known English response (response_en), "
                f"{size if size is not None else 'at least 1'} needed for the preference data"
            )
        chosen = [have[i] for i in items if i in have]
        out += chosen[: size if size is not None else len(chosen)]
    return out


def build_preference_records(pairs: list[dict], languages: list[str] | None = None, size: int | None = None,
                             seed: int = 0) -> list[dict]:  # fmt: skip
    """Both directions of every sampled item; a record's two directions are adjacent (target first)."""
    return [d for r in select_items(pairs, languages, size, seed) for d in directions(r)]


def stats(records: list[dict]) -> list[dict]:
    """Rows (lang, direction, records) of a list of preference records, sorted."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        counts[(r["lang"], r["direction"])] += 1
    return [{"lang": lang, "direction": d, "records": n} for (lang, d), n in sorted(counts.items())]
