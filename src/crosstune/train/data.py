"""From pair records to the tokenized training dataset of one method, with the input checks.

Everything here runs before the first optimiser step, so bad input stops the job
with a :class:`TrainDataError` naming the method and the cause: an empty data
mix, an empty response, every sequence truncated away.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict

from tqdm.auto import tqdm

from ..methods import Method, TrainDataError

log = logging.getLogger(__name__)


def who(settings: dict) -> str:
    name, kind = settings["name"], settings["type"]
    return f"method {name!r}" + (f" (type {kind!r})" if kind != name else "")


def label(settings: dict) -> str:
    """The method as a figure title shows it: ``sft_lora (sft)``, or ``sft`` when name and type agree."""
    name, kind = settings["name"], settings["type"]
    return name + (f" ({kind})" if kind != name else "")


def build_examples(method: Method, pairs: list[dict], settings: dict, seed: int) -> list[dict]:
    """The method's data mix; ``seed`` is the global seed, replaced by the method's own ``seed`` setting if set."""
    if settings.get("seed") is not None:
        seed = settings["seed"]
    try:
        examples = method.build_examples(pairs, settings, seed)
    except TrainDataError as e:
        raise TrainDataError(f"{who(settings)}: {e}") from None
    if not examples:
        raise TrainDataError(f"{who(settings)}: the data mix is empty ({len(pairs)} pair records in, 0 examples out)")
    ids = Counter(ex["id"] for ex in examples)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise TrainDataError(f"{who(settings)}: duplicate example id {dup[0]!r} in the data mix")
    return examples


def composition(examples: list[dict]) -> dict[str, dict[str, int]]:
    """Counts of the mix: kind -> response language -> examples."""
    out: dict[str, Counter] = defaultdict(Counter)
    for ex in examples:
        out[ex.get("kind", "example")][ex.get("lang", "?")] += 1
    return {kind: dict(sorted(c.items())) for kind, c in sorted(out.items())}


def distinct(examples: list[dict]) -> dict[str, int]:
    """Distinct (prompt, response) examples per kind: with ``composition``, how often the mix repeats one
    (sft_all's per_record English copies: one item translated into 21 languages is copied 21 times)."""
    out: dict[str, set] = defaultdict(set)
    for ex in examples:
        out[ex.get("kind", "example")].add((ex["prompt"], ex["response"]))
    return {kind: len(s) for kind, s in sorted(out.items())}


def item(example: dict) -> str:
    """The English item an example comes from: its id without ``|kind`` and ``#lang``."""
    from ..preference import item_of

    return item_of(example["id"].split("|", 1)[0])


def hold_out(examples: list[dict], fraction: float, seed: int, settings: dict) -> tuple[list[dict], list[dict]]:
    """(training examples, held-out examples): ``round(fraction x items)`` English items, drawn with
    ``seed`` (:func:`crosstune.preference.item_order`), with every example of theirs, are held out.

    Splitting by item keeps each translation of a held-out item - and its English copy, its
    translation task - out of training, so the eval loss measures unseen requests. Both
    lists keep the mix's order. ``fraction`` 0: nothing is held out.
    """
    if not fraction:
        return examples, []
    from ..preference import item_order

    items = item_order({item(ex) for ex in examples}, seed)
    n = round(fraction * len(items))
    if not 0 < n < len(items):
        raise TrainDataError(f"{who(settings)}: train.eval_fraction {fraction} of {len(items)} items holds out "
                             f"{n}; it must leave at least one item on each side")  # fmt: skip
    held = set(items[:n])
    return [ex for ex in examples if item(ex) not in held], [ex for ex in examples if item(ex) in held]


def tokenize(method: Method, examples: list[dict], tokenizer, settings: dict) -> tuple[list[dict], list[str]]:
    """Features of every example; also the ids dropped because truncation removed their response."""
    t = settings["train"]
    if not getattr(tokenizer, "chat_template", None):
        raise TrainDataError(f"{who(settings)}: the base model's tokenizer has no chat template")
    features, dropped = [], []
    for ex in tqdm(examples, desc=f"tokenize {settings['name']}", mininterval=5):
        try:
            f = method.tokenize(ex, tokenizer, t["max_length"], t["truncation_side"])
        except TrainDataError as e:
            raise TrainDataError(f"{who(settings)}: {e}") from None
        if f is None:
            dropped.append(ex["id"])
        else:
            features.append(f)
    if not features:
        raise TrainDataError(
            f"{who(settings)}: all {len(examples)} sequences lost every response token to truncation "
            f"(train.max_length={t['max_length']}, train.truncation_side={t['truncation_side']})"
        )
    if dropped:
        log.warning("%s: %d of %d sequences dropped, truncation removed their whole response (first: %s)",
                    who(settings), len(dropped), len(examples), dropped[0])  # fmt: skip
    return features, dropped


def pack(features: list[dict], max_length: int, seed: int) -> list[dict]:
    """Concatenate shuffled sequences into rows of at most ``max_length`` tokens.

    Each segment keeps its own positions (``position_ids`` restart at 0), which
    makes transformers mask attention block-diagonally, and the label of its
    first token is -100: no token is predicted across a boundary, so the loss of
    a packed row equals the summed losses of its sequences unpacked.
    """
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    rows: list[dict] = []
    row = {"input_ids": [], "labels": [], "position_ids": []}
    for i in order:
        ids, labels = features[i]["input_ids"], features[i]["labels"]
        if row["input_ids"] and len(row["input_ids"]) + len(ids) > max_length:
            rows.append(row)
            row = {"input_ids": [], "labels": [], "position_ids": []}
        row["input_ids"] += ids
        row["labels"] += [-100] + labels[1:]
        row["position_ids"] += list(range(len(ids)))
    rows.append(row)
    return rows


def to_dataset(features: list[dict]):
    import datasets

    return datasets.Dataset.from_list(features)
