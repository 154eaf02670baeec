"""Benchmark definitions kept as data: ``templates/<benchmark>.yaml``.

Each file (as an lm-evaluation-harness task file) names the original dataset
(hub path, config of each language, split), the paper's sampling, the prompt
``layout`` and, for every language of the benchmark, the strings the layout
fills in. Item fields (``{premise}``, ``{Question}``...) come from the dataset.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..io import read_yaml

BENCHMARKS = ("xnli", "xstorycloze", "mmmlu", "xquad", "mkqa", "xlsum")
TASKS = ("multiple_choice", "extractive_qa", "open_qa", "summarisation")
PACKAGE_DIR = Path(str(resources.files("crosstune") / "benchmarks"))
TEMPLATE_DIR = PACKAGE_DIR / "templates"
MINI_DIR = PACKAGE_DIR / "mini"


class UnknownLanguage(ValueError):
    """A language the benchmark does not have; the message names both."""


@dataclass(frozen=True)
class Template:
    name: str
    task: str
    parallel: bool
    languages: tuple[str, ...]
    dataset: dict
    bundled: str
    released: dict
    sample: dict
    layout: str
    strings: dict[str, dict[str, str]]
    path: Path
    fixed_options: tuple[str, ...] = ()

    def check_language(self, lang: str, where: str = "") -> str:
        if lang not in self.languages:
            raise UnknownLanguage(
                f"{where}{self.name}: no language {lang!r}; it has {', '.join(self.languages)}"
            )
        return lang

    def config_name(self, lang: str) -> str:
        """The hub config holding ``lang`` (e.g. xquad: ``xquad.ar``, MMMLU: ``AR_XY``)."""
        config = self.dataset["config"]
        if isinstance(config, dict):
            return config[lang]
        return config.format(lang=lang)

    def key(self, lang: str) -> str:
        """The dataset's key for ``lang`` inside a row (MKQA: ``zh`` -> ``zh_cn``)."""
        return self.dataset.get("keys", {}).get(lang, lang)

    @property
    def item_fields(self) -> set[str]:
        """Placeholders of the layout filled from the item (not from ``strings``)."""
        names = {f for _, f, _, _ in string.Formatter().parse(self.layout) if f}
        return names - set(next(iter(self.strings.values())))

    def render(self, lang: str, fields: dict[str, str]) -> str:
        """The prompt of one item in ``lang``: the layout with the language's strings and the item."""
        self.check_language(lang)
        missing = self.item_fields - set(fields)
        if missing:
            raise KeyError(f"{self.name}: item lacks field(s) {', '.join(sorted(missing))}")
        return self.layout.format(**self.strings[lang], **fields)

    def options(self, lang: str) -> list[dict] | None:
        """Options the template itself names (XNLI's relations, labelled 1, 2, 3...), else None."""
        if not self.fixed_options:
            return None
        s = self.strings[lang]
        return [{"label": str(i), "text": s[k].strip()} for i, k in enumerate(self.fixed_options, 1)]


@functools.cache
def load_template(name: str) -> Template:
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    path = TEMPLATE_DIR / f"{name}.yaml"
    spec = read_yaml(path)
    where = f"{path}"
    if spec.get("name") != name or spec.get("task") not in TASKS:
        raise ValueError(f"{where}: name must be {name!r} and task one of {', '.join(TASKS)}")
    languages = tuple(spec["languages"])
    strings = spec["strings"]
    if set(strings) != set(languages):
        raise ValueError(f"{where}: strings must cover exactly the languages {', '.join(languages)}")
    keys = {lang: set(s) for lang, s in strings.items()}
    if len({frozenset(k) for k in keys.values()}) != 1:
        raise ValueError(f"{where}: every language must define the same strings")
    unknown = set(spec.get("options") or ()) - next(iter(keys.values()))
    if unknown:
        raise ValueError(f"{where}: options name strings no language defines: {', '.join(sorted(unknown))}")
    return Template(
        name=name, task=spec["task"], parallel=bool(spec["parallel"]), languages=languages,
        dataset=spec["dataset"], bundled=spec["bundled"], released=spec["released"],
        sample=spec["sample"], layout=spec["layout"], strings=strings, path=path,
        fixed_options=tuple(spec.get("options") or ()),
    )  # fmt: skip
