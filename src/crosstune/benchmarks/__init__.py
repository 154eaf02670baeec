"""The six evaluation benchmarks as *benchmark items* (METHODS.md section 5).

An item is one prompt with its gold answer, written one JSON object a line::

    {"id": "xnli/ar/0007", "benchmark": "xnli", "lang": "ar", "index": 7,
     "task": "multiple_choice", "prompt": "...", "prompt_en": "..." | null,
     "options": [{"label": "1", "text": "..."}, ...] | null,
     "answer": "2" | "gold span" | ["answer", "alias", ...] | "reference summary"}

``index`` is the item's position in the sample; in a parallel benchmark (all but
XL-Sum) the same index is the same item in every language. ``prompt_en`` is the
English prompt of that item (CC-Tuning's oracle), null where none exists.

Three sources build the same items: ``bundled`` (the mini sets in ``mini/``),
``hub`` (the original Hugging Face datasets, or a local copy in their layout)
and ``released`` (prompt/answer files in the CC-Tuning release format).
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..io import read_yaml
from .loaders import hub_items
from .released import released_english_file, released_items
from .templates import BENCHMARKS, MINI_DIR, TASKS, Template, UnknownLanguage, load_template

__all__ = [
    "BENCHMARKS", "TASKS", "SOURCES", "Template", "UnknownLanguage", "load_template",
    "hub_items", "released_items", "released_english_file", "build_items", "mini_languages", "benchmark_languages",
    "check_config", "validate_item", "has_english_prompts",
]  # fmt: skip

SOURCES = ("bundled", "hub", "released")
ITEM_KEYS = ("id", "benchmark", "lang", "index", "task", "prompt", "prompt_en", "options", "answer")


@functools.cache
def _mini() -> dict[str, tuple[str, ...]]:
    data = read_yaml(MINI_DIR / "languages.yaml")
    return {name: tuple(langs) for name, langs in data.items()}


def mini_languages(benchmark: str) -> tuple[str, ...]:
    """Languages of the bundled mini set of ``benchmark``."""
    load_template(benchmark)
    return _mini().get(benchmark, ())


def has_english_prompts(benchmark: str, source: str) -> bool:
    """Whether items of ``benchmark`` from ``source`` carry ``prompt_en`` (what CC-Tuning's oracle mode needs).

    Parallel benchmarks do from every source (the English item of the same index);
    XL-Sum only from the release, which ships English translations of every
    language's prompts (``XLSum/split_sample_en``).
    """
    t = load_template(benchmark)
    return t.parallel or (source == "released" and bool(t.released.get("prompts_en")))


def build_items(benchmark: str, lang: str, spec: dict, released_dir: str | None = None) -> tuple[list[dict], dict]:
    """Items of one benchmark and language from a ``benchmarks.<name>`` config entry."""
    source = spec.get("source", "bundled")
    if source == "released":
        if not released_dir:
            raise ValueError(f"benchmarks.{benchmark}.source is 'released' but benchmarks.released_dir is not set")
        items, info = released_items(benchmark, lang, released_dir)
        if spec.get("n"):  # a sub-sample of the released set, drawn as the paper drew its own
            from .loaders import sample_rows

            seed = spec.get("seed") if spec.get("seed") is not None else load_template(benchmark).sample["seed"]
            keep = sample_rows(range(len(items)), spec["n"], seed)
            items = [items[i] for i in keep]
            info.update(n=len(items), seed=seed, sampled_rows=keep)
        return items, info
    if source not in SOURCES:
        raise ValueError(f"benchmarks.{benchmark}.source: {source!r} is not one of {', '.join(SOURCES)}")
    return hub_items(benchmark, lang, source=source, path=spec.get("path"), path_en=spec.get("path_en"),
                     revision=spec.get("revision"), n=spec.get("n"), seed=spec.get("seed"),
                     aliases=bool(spec.get("aliases")))  # fmt: skip


def benchmark_languages(benchmark: str, spec: dict) -> list[str]:
    """The languages a ``benchmarks.<name>`` entry evaluates (null: all its source offers)."""
    if spec.get("languages"):
        return list(spec["languages"])
    if spec.get("source", "bundled") == "bundled":
        return list(mini_languages(benchmark))
    return list(load_template(benchmark).languages)


def check_config(config: dict) -> dict[str, list[str]]:
    """Check the ``benchmarks`` section before any job runs; return {benchmark: languages}.

    Raises ``crosstune.config.ConfigError`` naming the key, benchmark and language at fault.
    """
    from ..config import ConfigError

    section = config.get("benchmarks") or {}
    out = {}
    for name in section.get("run", BENCHMARKS):
        spec = section.get(name) or {}
        key = f"benchmarks.{name}"
        t = load_template(name)
        source = spec.get("source", "bundled")
        langs = benchmark_languages(name, spec)
        for lang in langs:
            if lang not in t.languages:
                raise ConfigError(f"{key}.languages: {name} has no language {lang!r}; it has {', '.join(t.languages)}")
            if source == "bundled" and lang not in mini_languages(name):
                raise ConfigError(
                    f"{key}.languages: the bundled {name} mini set has no language {lang!r}; "
                    f"it has {', '.join(mini_languages(name))} (use source: hub or released for others)"
                )
        if source == "released":
            root = section.get("released_dir")
            if not root:
                raise ConfigError(f"{key}.source: 'released' needs benchmarks.released_dir")
            for lang in langs:
                prompts = Path(root) / t.released["dir"] / t.released["prompts"] / f"{lang}.json"
                if not prompts.is_file():
                    raise ConfigError(f"benchmarks.released_dir: {name} {lang}: missing {prompts}")
        if source != "hub" and (spec.get("path") or spec.get("path_en") or spec.get("revision")):
            raise ConfigError(f"{key}.path: path, path_en and revision are for source hub only")
        if spec.get("path_en") and name != "mmmlu":
            raise ConfigError(f"{key}.path_en: only MMMLU reads English from another dataset")
        if spec.get("aliases") and (name != "mkqa" or source == "released"):
            raise ConfigError(f"{key}.aliases: only for MKQA from the dataset (bundled or hub)")
        out[name] = langs
    return out


def validate_item(item: dict, where: str = "item") -> dict:
    """Raise ValueError unless ``item`` follows the item schema."""
    if tuple(item) != ITEM_KEYS:
        raise ValueError(f"{where}: keys must be {', '.join(ITEM_KEYS)}, got {', '.join(item)}")
    if item["benchmark"] not in BENCHMARKS or item["task"] != load_template(item["benchmark"]).task:
        raise ValueError(f"{where}: unknown benchmark {item['benchmark']!r} or wrong task {item['task']!r}")
    if item["id"] != f"{item['benchmark']}/{item['lang']}/{item['index']:04d}":
        raise ValueError(f"{where}: id {item['id']!r} is not benchmark/lang/index")
    if not isinstance(item["prompt"], str) or not item["prompt"]:
        raise ValueError(f"{where}: empty prompt")
    if item["prompt_en"] is not None and not isinstance(item["prompt_en"], str):
        raise ValueError(f"{where}: prompt_en must be a string or null")
    mc = item["task"] == "multiple_choice"
    if mc != (item["options"] is not None):
        raise ValueError(f"{where}: options must be given exactly for multiple-choice items")
    if mc and item["answer"] not in [o["label"] for o in item["options"]]:
        raise ValueError(f"{where}: answer {item['answer']!r} is not an option label")
    if item["task"] == "open_qa":
        ok = isinstance(item["answer"], list) and item["answer"] and all(isinstance(a, str) for a in item["answer"])
    else:
        ok = isinstance(item["answer"], str) and item["answer"] != ""
    if not ok:
        raise ValueError(f"{where}: answer {item['answer']!r} does not fit task {item['task']}")
    return item
