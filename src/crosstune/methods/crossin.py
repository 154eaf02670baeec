"""CrossIn (docs/methods.md section 4): cross-lingual instruction mixing at the data level.

A *draw* is one non-English pair record (an item index i and a target language t).
``size`` draws are sampled without replacement with ``seed`` (null: every
non-English record, shuffled), and each emits examples according to ``mode``:

* ``en2x``        - English instruction tagged with ``[t]``, response in t;
* ``x2en``        - instruction in t tagged with ``[en]``, English response;
* ``x2x``         - both directions: every draw emits an en2x and an x2en example
  (the release, CrossIn's build_dataset_with_alignment.py);
* ``x2x_split``   - both directions, one example per draw (our earlier choice): the
  first ceil(size/2) draws en2x, the rest x2en - half the examples of ``x2x``;
* ``translation`` - ``translation_template`` + instruction in t -> the English instruction;
* ``x2x+translation`` - every draw emits en2x, x2en and translation: what the
  release's builder writes (its modes 1, 2 and 3; the paper's "integration of
  translation data").

Examples come grouped by kind in that order, as the release concatenates them.
The CrossIn examples are added to a base mix (``base``): ``en`` the English
records (the paper's English SFT data, default), ``all`` every record, ``none``.
The tag (``tag_template``) is the release's: ``"\n[t]"`` appended after the
input (``{instruction}\n[{lang}]``); ``[{lang}] {instruction}`` was our earlier
choice. A draw is a (record, language) pair without replacement; the release
draws an item and a language independently, with replacement.
"""

from __future__ import annotations

import math
import random

from .base import Method, TrainDataError
from .sft import english_instruction, example, require, select

# the kinds of example each draw emits, per mode (x2x_split: see build_examples)
KINDS = {"en2x": ("en2x",), "x2en": ("x2en",), "x2x": ("en2x", "x2en"), "translation": ("translation",),
         "x2x+translation": ("en2x", "x2en", "translation")}  # fmt: skip
MODES = (*KINDS, "x2x_split")


class CrossIn(Method):
    name = "crossin"
    defaults = {
        "mode": "x2x",  # en2x | x2en | x2x | x2x_split | translation | x2x+translation
        "size": None,  # number of draws (null: every non-English record)
        "seed": None,  # sampling seed (null: the global seed)
        "base": "en",  # en | all | none: the mix the CrossIn examples are added to
        "languages": None,  # target languages drawn from (null: all in the pairs)
        "tag_template": "{instruction}\n[{lang}]",  # the release's tag, after the input
        "translation_template": "Translate the following sentence into English.\n{instruction}",
    }
    supports_packing = True

    def build_examples(self, pairs, settings, seed):
        mode, size = settings["mode"], settings["size"]
        if mode not in MODES:
            raise TrainDataError(f"unknown crossin mode {mode!r}; choose one of {', '.join(MODES)}")
        candidates = [r for r in select(pairs, settings["languages"]) if r["lang"] != "en"]
        if size is None:
            size = len(candidates)
        if size > len(candidates):
            raise TrainDataError(
                f"size {size} is larger than the {len(candidates)} non-English pair records to draw from"
            )
        draws = random.Random(seed).sample(candidates, size)
        if mode == "x2x_split":
            half = math.ceil(size / 2)
            mixed = [self.emit(r, "en2x", settings) for r in draws[:half]]
            mixed += [self.emit(r, "x2en", settings) for r in draws[half:]]
        else:  # every draw emits each kind of the mode, grouped by kind
            mixed = [self.emit(r, kind, settings) for kind in KINDS[mode] for r in draws]
        base = {"en": [r for r in pairs if r["lang"] == "en"], "all": list(pairs), "none": []}.get(settings["base"])
        if base is None:
            raise TrainDataError(f"base must be en, all or none, not {settings['base']!r}")
        return [example(r, "sft") for r in base] + mixed

    def prompt(self, kind: str, lang: str, instruction: str, settings: dict) -> str:
        """A ``kind`` example's prompt around ``instruction``; ``lang`` is the target language t."""
        if kind == "en2x":
            return settings["tag_template"].format(lang=lang, instruction=instruction)
        if kind == "x2en":
            return settings["tag_template"].format(lang="en", instruction=instruction)
        return settings["translation_template"].format(instruction=instruction)

    def emit(self, r: dict, kind: str, settings: dict) -> dict:
        if kind == "en2x":
            prompt = self.prompt(kind, r["lang"], require(r, "instruction_en", "crossin en2x"), settings)
            return example(r, kind, prompt, r["response"], r["lang"])
        prompt = self.prompt(kind, r["lang"], r["instruction"], settings)
        if kind == "x2en":
            return example(r, kind, prompt, require(r, "response_en", "crossin x2en"), "en")
        return example(r, kind, prompt, require(r, "instruction_en", "crossin translation"), "en")

    def english_prompt(self, record: dict, kind: str, settings: dict) -> str:
        """The English version of an example's prompt: its instruction in English, tag kept (see Sft)."""
        if kind == "sft":
            return english_instruction(record)
        return self.prompt(kind, record["lang"], english_instruction(record), settings)
