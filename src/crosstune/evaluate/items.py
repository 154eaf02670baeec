"""Benchmark items and predictions: reading and checking the files the stages exchange.

Benchmark items (``results/benchmarks/{benchmark}/{lang}.jsonl``, rule
``benchmark_data``), one JSON object a line::

    {"id": "xnli/ar/0007", "benchmark": "xnli", "lang": "ar", "index": 7,
     "task": "multiple_choice" | "extractive_qa" | "open_qa" | "summarisation",
     "prompt": "...", "prompt_en": "..." | null,
     "options": [{"label": "1", "text": "..."}, ...] | null,
     "answer": "2" | "gold span" | ["answer", "alias"] | "reference summary"}

``index`` names the same item in every language of a parallel benchmark.

Predictions (``results/{model}/eval/{method}/{benchmark}/predictions/{lang}.jsonl``,
rule ``generate``), one line per item in the items' order::

    {"id": ..., "index": ..., "output": "raw decoded text", "n_tokens": 12,
     "stopped": "eos" | "length",
     "option_loglik": [..] | null, "option_greedy": [..] | null,
     "continuation": "text" | "label"}    # what option_loglik scored (multiple choice)
"""

from __future__ import annotations

from pathlib import Path

from ..io import DataError, iter_numbered_jsonl

TASKS = ("multiple_choice", "extractive_qa", "open_qa", "summarisation")


def _check_item(r: dict, where: str, benchmark: str, lang: str) -> dict:
    def bad(msg: str):
        raise DataError(f"{where}: benchmark {benchmark}, language {lang}: {msg}")

    for key in ("id", "prompt"):
        if not isinstance(r.get(key), str) or not r[key].strip():
            bad(f"field {key!r} is missing or empty")
    if not isinstance(r.get("index"), int):
        bad("field 'index' must be an integer")
    if r.get("task") not in TASKS:
        bad(f"field 'task' is {r.get('task')!r}; expected one of {', '.join(TASKS)}")
    if r.get("lang", lang) != lang:
        bad(f"item is in language {r['lang']!r}")
    answer = r.get("answer")
    if r["task"] == "multiple_choice":
        options = r.get("options")
        if not isinstance(options, list) or len(options) < 2:
            bad("a multiple-choice item needs at least two options")
        labels = [str(o.get("label", "")) if isinstance(o, dict) else "" for o in options]
        if any(not x for x in labels) or len(set(labels)) != len(labels):
            bad(f"option labels must be non-empty and distinct, got {labels}")
        if any(not str(o.get("text") or "").strip() for o in options):
            bad("every option needs a non-empty 'text'")
        if str(answer) not in labels:
            bad(f"answer {answer!r} is not one of the option labels {labels}")
    elif r["task"] == "open_qa":
        answers = [answer] if isinstance(answer, str) else answer
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            bad("answer must be a non-empty list of strings")
        if not any(a.strip() for a in answers):
            bad("every gold answer is empty")
    elif not isinstance(answer, str) or not answer.strip():
        bad("answer must be a non-empty string")
    return r


def read_items(path: str | Path, benchmark: str, lang: str) -> list[dict]:
    """The items of one benchmark and language; bad lines raise DataError naming file:line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: benchmark {benchmark} has no items for language {lang} (file not found)")
    items, seen = [], set()
    for lineno, r in iter_numbered_jsonl(path):
        items.append(_check_item(r, f"{path}:{lineno}", benchmark, lang))
        if r["id"] in seen:
            raise DataError(f"{path}:{lineno}: benchmark {benchmark}, language {lang}: duplicate id {r['id']!r}")
        seen.add(r["id"])
    if not items:
        raise DataError(f"{path}: benchmark {benchmark}, language {lang}: no items")
    return items


def read_predictions(path: str | Path, items: list[dict], benchmark: str, lang: str) -> list[dict]:
    """Predictions aligned with ``items``; a missing or unknown id is an error naming the line."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no predictions for benchmark {benchmark}, language {lang}")
    by_id = {}
    for lineno, r in iter_numbered_jsonl(path):
        if not isinstance(r.get("output"), str) or "id" not in r:
            raise DataError(f"{path}:{lineno}: benchmark {benchmark}, language {lang}: needs 'id' and 'output'")
        by_id[r["id"]] = r
    missing = [it["id"] for it in items if it["id"] not in by_id]
    if missing:
        raise DataError(
            f"{path}: benchmark {benchmark}, language {lang}: {len(missing)} items have no prediction "
            f"(first: {missing[0]!r}); rerun rule generate"
        )
    return [by_id[it["id"]] for it in items]
