"""Benchmark items from the original Hugging Face datasets (or local copies in their schema).

One converter per benchmark turns a dataset row into the template's item fields,
the gold answer and the options. :func:`hub_items` reads a language with
``datasets.load_dataset(path, config, split=..., revision=...)`` - the hub id, or
a local directory in the same layout such as the bundled ``mini/`` sets - draws
the paper's sample (the same rows in every language of a parallel benchmark)
and renders the prompts.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io import DataError
from .templates import MINI_DIR, Template, load_template

log = logging.getLogger(__name__)

@dataclass
class Record:
    """One dataset row as the template sees it."""

    fields: dict[str, str]
    answer: str | list[str]
    options: list[dict] | None = None


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {key!r} is missing or empty")
    return value


def xnli(row: dict, lang: str, t: Template) -> Record:
    label = row.get("label")
    if label not in (0, 1, 2):
        raise ValueError(f"label {label!r} is not 0, 1 or 2 (entailment, neutral, contradiction)")
    fields = {k: _text(row, k) for k in ("premise", "hypothesis")}
    return Record(fields, str(label + 1), t.options(lang))


def xstorycloze(row: dict, lang: str, t: Template) -> Record:
    keys = [f"input_sentence_{i}" for i in range(1, 5)] + ["sentence_quiz1", "sentence_quiz2"]
    fields = {k: _text(row, k) for k in keys}
    answer = row.get("answer_right_ending")
    if answer not in (1, 2):
        raise ValueError(f"answer_right_ending {answer!r} is not 1 or 2")
    options = [{"label": "1", "text": fields["sentence_quiz1"]}, {"label": "2", "text": fields["sentence_quiz2"]}]
    return Record(fields, str(answer), options)


def mmmlu(row: dict, lang: str, t: Template) -> Record:
    if "Question" not in row and "choices" in row:  # English: cais/mmlu (question, choices, answer 0-3)
        choices = row["choices"]
        if not isinstance(choices, list) or len(choices) != 4:
            raise ValueError(f"choices must be a list of 4 strings, got {choices!r}")
        if row.get("answer") not in (0, 1, 2, 3):
            raise ValueError(f"answer {row.get('answer')!r} is not 0-3")
        row = {"Question": row.get("question"), **dict(zip("ABCD", choices, strict=True)),
               "Answer": "ABCD"[row["answer"]]}  # fmt: skip
    fields = {"Question": _text(row, "Question")}
    for letter in "ABCD":  # options may legitimately be short ("0") but never absent
        value = row.get(letter)
        if value is None:
            raise ValueError(f"field {letter!r} is missing")
        fields[letter] = str(value)
    answer = row.get("Answer")
    if answer not in ("A", "B", "C", "D"):
        raise ValueError(f"Answer {answer!r} is not A, B, C or D")
    return Record(fields, answer, [{"label": k, "text": fields[k]} for k in "ABCD"])


def xquad(row: dict, lang: str, t: Template) -> Record:
    texts = (row.get("answers") or {}).get("text") or []
    if not texts or not isinstance(texts[0], str) or not texts[0].strip():
        raise ValueError("answers.text is empty")
    return Record({"context": _text(row, "context"), "question": _text(row, "question")}, texts[0])


def mkqa_answers(answers: list[dict] | None, aliases: bool = False) -> list[str]:
    """The gold list of one MKQA language: every answer's text, in order (the paper's lists; they
    keep repeats and hold no aliases), then with ``aliases`` each answer's aliases not yet listed."""
    answers = [a for a in answers or [] if a.get("text")]  # unanswerable / long_answer have none
    out = [a["text"] for a in answers]
    if aliases:
        for a in answers:
            out += [s for s in a.get("aliases") or [] if s and s not in out]
    return out


def mkqa(row: dict, lang: str, t: Template, aliases: bool = False) -> Record:
    key = t.key(lang)
    query = (row.get("queries") or {}).get(key)
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"queries[{key!r}] is missing or empty")
    answers = mkqa_answers((row.get("answers") or {}).get(key), aliases)
    if not answers:
        raise ValueError(f"answers[{key!r}] has no answer text")
    return Record({"query": query}, answers)


def xlsum(row: dict, lang: str, t: Template) -> Record:
    return Record({"title": _text(row, "title"), "text": _text(row, "text")}, _text(row, "summary"))


CONVERTERS: dict[str, Callable[[dict, str, Template], Record]] = {
    "xnli": xnli, "xstorycloze": xstorycloze, "mmmlu": mmmlu,
    "xquad": xquad, "mkqa": mkqa, "xlsum": xlsum,
}  # fmt: skip


def sample_rows(candidates: Sequence[int], n: int | None, seed: int) -> list[int]:
    """The paper's draw: ``random.seed(seed); random.sample(range(len), n)``, kept in dataset order."""
    if n is None or n >= len(candidates):
        return list(candidates)
    picked = random.Random(seed).sample(range(len(candidates)), n)
    return [candidates[i] for i in sorted(picked)]


def dataset_location(t: Template, lang: str, source: str, path: str | None = None,
                     path_en: str | None = None, revision: str | None = None) -> dict:  # fmt: skip
    """Where ``lang`` of benchmark ``t`` is read from: path, config, split, revision."""
    english = "english" in t.dataset and lang == "en"  # MMMLU has no English: the original MMLU
    spec = t.dataset["english"] if english else t.dataset
    config = spec["config"] if english else t.config_name(lang)
    if english:
        path = path_en
    if source == "bundled":
        path = str(MINI_DIR / spec.get("bundled", t.bundled))
        return {"path": path, "config": config, "split": spec["split"], "revision": None}
    if source != "hub":
        raise ValueError(f"{t.name}: source must be bundled or hub here, got {source!r}")
    default = spec["path"]
    path = path or default
    # the template's revision belongs to the hub repository it names, not to a mirror or a local copy
    rev = revision if revision is not None else (spec.get("revision") if path == default else None)
    if Path(path).is_dir():
        rev = None
    return {"path": path, "config": config, "split": spec["split"], "revision": rev}


def open_dataset(loc: dict, where: str):
    import datasets

    try:
        if Path(loc["path"]).is_dir():
            # datasets (5.x) keys the cache of a local directory by its path and config, not by the
            # files' contents: an edited copy would be read stale. Build it afresh, in memory.
            with tempfile.TemporaryDirectory(prefix="crosstune-datasets-") as cache:
                return datasets.load_dataset(loc["path"], loc["config"], split=loc["split"],
                                             cache_dir=cache, keep_in_memory=True)  # fmt: skip
        kwargs = {"revision": loc["revision"]} if loc["revision"] else {}
        return datasets.load_dataset(loc["path"], loc["config"], split=loc["split"], **kwargs)
    except Exception as e:  # datasets raises many types (ValueError, FileNotFoundError, ConnectionError...)
        raise DataError(
            f"{where}: cannot load {loc['path']} config {loc['config']!r} split {loc['split']!r}"
            f"{' revision ' + loc['revision'] if loc['revision'] else ''}: {type(e).__name__}: {e}"
        ) from e


def _convert(t: Template, lang: str, ds, i: int, loc: dict, **settings) -> Record:
    try:
        return CONVERTERS[t.name](ds[i], lang, t, **settings)
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{t.name} {lang}: row {i} of {loc['path']} ({loc['config']}/{loc['split']}): {e}") from None


def _mkqa_candidates(t: Template, ds) -> list[int]:
    """Rows whose English answer has a text: the paper's MKQA sample has no unanswerable item."""
    key = t.key("en")
    return [i for i, answers in enumerate(ds["answers"]) if mkqa_answers((answers or {}).get(key))]


def hub_items(benchmark: str, lang: str, *, source: str = "hub", path: str | None = None,
              path_en: str | None = None, revision: str | None = None, n: int | None = None,
              seed: int | None = None, aliases: bool = False) -> tuple[list[dict], dict]:  # fmt: skip
    """Items of ``benchmark`` in ``lang`` from the original dataset (``source`` hub) or the bundled mini set.

    ``n``/``seed`` default to the paper's sample; ``n`` larger than the data takes every item.
    ``aliases`` (MKQA) adds each answer's aliases to the gold list.
    Returns the items and a description of what was read (for provenance).
    """
    t = load_template(benchmark)
    t.check_language(lang)
    n = t.sample["n"] if n is None else n
    seed = t.sample["seed"] if seed is None else seed
    where = f"{benchmark} {lang}"
    loc = dataset_location(t, lang, source, path, path_en, revision)
    ds = open_dataset(loc, where)
    loc_en, ds_en = loc, ds
    if t.parallel and lang != "en":
        loc_en = dataset_location(t, "en", source, path, path_en, revision)
        ds_en = ds if loc_en == loc else open_dataset(loc_en, f"{benchmark} en")
        if len(ds_en) != len(ds):
            raise DataError(
                f"{where}: a parallel benchmark needs as many rows as English; "
                f"{loc['path']} ({loc['config']}) has {len(ds)}, {loc_en['path']} ({loc_en['config']}) has {len(ds_en)}"
            )
    candidates = _mkqa_candidates(t, ds_en) if benchmark == "mkqa" else list(range(len(ds)))
    rows = sample_rows(candidates, n, seed)
    settings = {"aliases": aliases} if benchmark == "mkqa" else {}
    items, skipped = [], []
    for index, row in enumerate(rows):
        try:
            rec = _convert(t, lang, ds, row, loc, **settings)
        except DataError as e:
            if benchmark != "mkqa":  # MKQA: a language may lack an answer that English has
                raise
            log.warning("%s (skipped)", e)
            skipped.append(row)
            continue
        prompt = t.render(lang, rec.fields)
        prompt_en = None
        if lang == "en":
            prompt_en = prompt
        elif t.parallel:
            prompt_en = t.render("en", _convert(t, "en", ds_en, row, loc_en, **settings).fields)
        items.append(make_item(benchmark, lang, index, t.task, prompt, prompt_en, rec.options, rec.answer))
    info = {"source": source, **loc, "rows": len(ds), "candidates": len(candidates), "n": n,
            "seed": seed, "sampled_rows": rows, "skipped_rows": skipped}  # fmt: skip
    if t.parallel and lang != "en":
        info["english"] = loc_en
    return items, info


def make_item(benchmark, lang, index, task, prompt, prompt_en, options, answer) -> dict:
    return {"id": f"{benchmark}/{lang}/{index:04d}", "benchmark": benchmark, "lang": lang,
            "index": index, "task": task, "prompt": prompt, "prompt_en": prompt_en,
            "options": options, "answer": answer}  # fmt: skip
