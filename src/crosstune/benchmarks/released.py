"""Benchmark items from prompt/answer files in the CC-Tuning release format.

Layout (``templates/<benchmark>.yaml``, key ``released``)::

    <root>/<dir>/<prompts>/<lang>.json   JSON Lines, {"instruction": "..."} a line
    <root>/<dir>/<answers>/<lang>.json   one JSON value a line, aligned by line number

e.g. ``XNLI/split_sample/ar.json`` + ``XNLI/ans_sample/ar.json``. Line ``i`` is item
``i``; for parallel benchmarks ``prompt_en`` is line ``i`` of ``<prompts>/en.json``,
for XL-Sum line ``i`` of ``<prompts_en>/<lang>.json`` (English translations).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from ..io import DataError, iter_text_lines
from .loaders import make_item
from .templates import Template, load_template

log = logging.getLogger(__name__)

# option labels each multiple-choice benchmark's prompts and answers use
OPTION_LABELS = {"xnli": ("1", "2", "3"), "xstorycloze": ("1", "2"), "mmmlu": ("A", "B", "C", "D")}


def _lines(path: Path, where: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"{where}: missing file {path}")
    lines = [line.rstrip("\r\n") for _, line in iter_text_lines(path)]  # non-UTF-8: file and line
    while lines and not lines[-1].strip():  # a trailing newline is not an item
        lines.pop()
    return lines


def read_prompts(path: Path, where: str) -> list[str]:
    prompts = []
    for lineno, line in enumerate(_lines(path, where), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: {path} line {lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("instruction"), str):
            raise DataError(f"{where}: {path} line {lineno}: expected an object with a string 'instruction'")
        prompts.append(record["instruction"])
    return prompts


def parse_answer(t: Template, value, where: str):
    """Check one answer value against the benchmark's answer form; return it normalised."""
    labels = OPTION_LABELS.get(t.name)
    if labels:
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if value not in labels:
            raise DataError(f"{where}: answer {value!r} is not one of {', '.join(labels)}")
        return value
    if t.task == "open_qa":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise DataError(f"{where}: answer {value!r} is not a non-empty list of answer strings")
        return value
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: answer {value!r} is not a non-empty string")
    return value


def parse_options(t: Template, prompt: str, where: str) -> list[dict] | None:
    """The options a multiple-choice prompt lists as lines ``(label) text`` (the last such block)."""
    labels = OPTION_LABELS.get(t.name)
    if not labels:
        return None
    options = []
    for label in labels:
        found = re.findall(rf"^\({re.escape(label)}\) (.*)$", prompt, flags=re.MULTILINE)
        if not found:
            raise DataError(f"{where}: prompt lists no option ({label})")
        options.append({"label": label, "text": found[-1].strip()})
    return options


def released_english_file(benchmark: str, lang: str, root: str | Path) -> Path | None:
    """The file of the English prompts of ``lang``'s items (their ``prompt_en``), or None for
    English itself and for a benchmark without them (XL-Sum: ``<prompts_en>/<lang>.json``)."""
    t = load_template(benchmark)
    r = t.released
    base = Path(root) / r["dir"]
    if lang == "en":
        return None
    if r.get("prompts_en"):
        return base / r["prompts_en"] / f"{lang}.json"
    return base / r["prompts"] / "en.json" if t.parallel else None


def released_items(benchmark: str, lang: str, root: str | Path) -> tuple[list[dict], dict]:
    """Items of ``benchmark`` in ``lang`` from a directory in the CC-Tuning release layout."""
    t = load_template(benchmark)
    t.check_language(lang)
    r = t.released
    base = Path(root) / r["dir"]
    where = f"released {benchmark} {lang}"
    prompt_file = base / r["prompts"] / f"{lang}.json"
    answer_file = base / r["answers"] / f"{lang}.json"
    prompts = read_prompts(prompt_file, where)
    raw = _lines(answer_file, where)
    if len(raw) != len(prompts):
        short = "shorter" if len(raw) < len(prompts) else "longer"
        raise DataError(
            f"{where}: answer file {answer_file} is {short} than prompt file {prompt_file}: "
            f"{len(raw)} answers for {len(prompts)} prompts (first unmatched line {min(len(raw), len(prompts)) + 1})"
        )
    english = None
    if lang == "en":
        english = prompts
    else:
        en_file = released_english_file(benchmark, lang, root)
        if en_file is not None and en_file.is_file():
            english = read_prompts(en_file, where + " (English prompts)")
            if len(english) != len(prompts):
                raise DataError(f"{where}: {en_file} has {len(english)} prompts, {prompt_file} has {len(prompts)}")
        elif en_file is not None:
            log.warning("%s: no English prompts (%s); prompt_en is null", where, en_file)
    items = []
    for i, (prompt, line) in enumerate(zip(prompts, raw, strict=True)):
        at = f"{where}: {answer_file} line {i + 1}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{at}: unparsable answer ({e.msg}): {line[:80]!r}") from None
        answer = parse_answer(t, value, at)
        options = parse_options(t, prompt, f"{where}: {prompt_file} line {i + 1}")
        items.append(make_item(benchmark, lang, i, t.task, prompt, english[i] if english else None, options, answer))
    info = {"source": "released", "root": str(root), "prompts": str(prompt_file), "answers": str(answer_file),
            "n": len(items)}  # fmt: skip
    return items, info
