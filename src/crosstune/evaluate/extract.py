"""Which option a generated answer chose (XNLI, XStoryCloze, MMMLU).

The rule, applied to the output after folding (NFKC: full-width "（２）" is "(2)";
digits of every script are ASCII digits; markdown ``*``, ``_`` and backticks
removed). Levels are tried in order; the first level that finds a label decides
(levels 2 and 3 count as one):

1. the whole output is a label, give or take brackets and punctuation ("2",
   "(B)", "**C**"), or exactly one option's text, with or without its final punctuation
   ("Ptosis" for option "ptosis.", "Putih tidak tidur nyenyak");
2. the output starts with a label followed by a delimiter: "2) neutral",
   "B. 4", "C: True, False", "1 - entailment";
3. a bracketed label anywhere: "答案是 (3) 矛盾", "I choose [A]", "【B】";
4. a label within a few characters after an answer cue, or just before a
   suffix cue, of one of the 22 languages (``data/answer_cues.yaml``):
   "The answer is B", "Alternativa C", "الإجابة هي ٢", "C입니다";
5. an option's text, with or without its final punctuation; a match inside
   a longer option's match does not count ("Putih tidak" inside "Putih tidak
   tidur nyenyak."), nor does a text two options share; texts made of
   letters or digits of spaced scripts must stand as words ("4" is not
   found in "1942");
6. numeric labels only: a label digit standing alone ("我选2", "I'd say 3").

When a level finds several different options, the first one named after the
last conclusion or answer cue that precedes any of them is chosen ("Entailment
or contradiction? I think contradiction"), else the last one named ("(2) or
(1)" is (1) in every benchmark).

Letters count as labels only in upper case unless bracketed (level 3) or the
whole output (level 1), so the article "A" in "A bird ..." is not an answer.
An output that repeats the option list is no answer: one that names every
label in brackets in the listed order, each followed by its option's text, or
in which two or more different labels start lines ("(1) 蕴涵\\n(2) 中立",
"1. entailment\\n2. neutral" - small models echo the list, often cut off at 40
tokens). No answer -> None, which the scorer counts as wrong and in the
``no_answer`` column.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

from .. import languages
from ..io import read_yaml
from .text import fold, is_no_space_char

CUE_FILE = resources.files("crosstune") / "data" / "answer_cues.yaml"
CUE_WINDOW = 16  # characters after a cue in which a label may stand ("alternativa correta é a C")
SUFFIX_WINDOW = 3  # characters between a label and a suffix cue ("C 입니다", "(B) です")
# After a label at the start of an output: letters need punctuation ("B." not "A bird"),
# digits may also be followed by a space ("2 neutral").
_LETTER_END = r"\s*[.):：、,，;\-–—]|$"
_DIGIT_END = r"[\s.):：、,，;\-–—]|$"
_OPEN, _CLOSE = r"(\[{【「<", r")\]}】」>"
# characters an option text may end with that a model may leave out ("ptosis." -> "Ptosis")
_END_PUNCT = r"[\s.。!！?？,，;；:：'\"”’»)\]]+$"


@lru_cache(maxsize=1)
def cues() -> dict[str, tuple[str, ...]]:
    """{"before", "after", "conclusion"} -> folded cues of every language, longest first."""
    data = read_yaml(CUE_FILE)  # an edit with a bad byte or bad YAML: file and line
    missing = sorted(set(languages.CODES) - set(data))
    if missing:
        raise ValueError(f"{CUE_FILE}: no answer cues for languages {missing}")
    out = {}
    for kind in ("before", "after", "conclusion"):
        words = {fold(str(w)) for lang, d in data.items() for w in (d or {}).get(kind) or []}
        out[kind] = tuple(sorted(words, key=len, reverse=True))
    return out


def _clean(output: str, lower: bool = True) -> str:
    return re.sub(r"[*_`]", "", fold(output, lower=lower)).strip()


def _label_pattern(label: str, *, bare: bool) -> str:
    """Regex of ``label`` not glued to other letters/digits; bare letters must be upper case."""
    esc = re.escape(label)
    if bare and label.isalpha():
        esc = "(?-i:" + re.escape(label.upper()) + ")"
    return rf"(?<![0-9A-Za-z]){esc}(?![0-9A-Za-z])"


def _cue_ends(text: str, words: tuple[str, ...]) -> list[int]:
    lowered = text.lower()
    return sorted({m.end() for w in words for m in re.finditer(re.escape(w), lowered)})


def _pick(found: list[tuple[int, str]], text: str) -> str | None:
    """One label of the (position, label) matches: after the last cue that precedes one, else the last."""
    if not found:
        return None
    found = sorted(found)
    if len({label for _, label in found}) == 1:
        return found[0][1]
    c = cues()
    for end in reversed(_cue_ends(text, c["conclusion"] + c["before"])):
        after = [(pos, label) for pos, label in found if pos >= end]
        if after:
            return after[0][1]
    return found[-1][1]


def _search(text: str, labels: list[str], template: str, bare: bool) -> list[tuple[int, str]]:
    found = []
    for label in labels:
        end = _LETTER_END if label.isalpha() else _DIGIT_END
        pattern = template.replace("{label}", _label_pattern(label, bare=bare)).replace("{end}", end)
        found += [(m.start(), label) for m in re.finditer(pattern, text, re.I)]
    return found


def _cue_search(text: str, labels: list[str]) -> list[tuple[int, str]]:
    found = []
    c = cues()
    for end in _cue_ends(text, c["before"]):
        window = text[end : end + CUE_WINDOW]
        for label in labels:
            lm = re.search(_label_pattern(label, bare=True), window)
            if lm:
                found.append((end + lm.start(), label))
    lowered = text.lower()
    for suffix in c["after"]:
        for m in re.finditer(re.escape(suffix), lowered):
            window = text[max(0, m.start() - SUFFIX_WINDOW - 3) : m.start()]
            for label in labels:
                pattern = rf"[{re.escape(_OPEN)}]?{_label_pattern(label, bare=True)}[{re.escape(_CLOSE)}]?\s{{0,{SUFFIX_WINDOW}}}$"
                lm = re.search(pattern, window)
                if lm:
                    found.append((m.start() - len(window) + lm.start(), label))
    return found


def _text_pattern(text: str) -> str:
    """An option text; ends in letters/digits of spaced scripts must be word boundaries."""
    head = r"(?<!\w)" if text[0].isalnum() and not is_no_space_char(text[0]) else ""
    tail = r"(?!\w)" if text[-1].isalnum() and not is_no_space_char(text[-1]) else ""
    return head + re.escape(text) + tail


def _needles(option: dict) -> set[str]:
    """The folded option text, and the same without its final punctuation."""
    full = _clean(str(option.get("text") or ""))
    return {n for n in (full, re.sub(_END_PUNCT, "", full)) if n}


def _text_search(text: str, options: list[dict]) -> list[tuple[int, str]]:
    spans = []
    for option in options:
        for needle in _needles(option):
            spans += [(m.start(), m.end(), str(option["label"])) for m in re.finditer(_text_pattern(needle), text)]
    # a match inside a longer match (of another option, or the same option's fuller text) does not
    # count; nor does one that two options share (the release has items whose options repeat a text)
    kept = [s for s in spans if not any(o[0] <= s[0] and s[1] <= o[1] and o[1] - o[0] > s[1] - s[0] for o in spans)
            and not any(o[:2] == s[:2] and o[2] != s[2] for o in spans)]  # fmt: skip
    return [(start, label) for start, _, label in kept]


def _line_labels(text: str, labels: list[str]) -> set[str]:
    """Labels that start a line as list items: "(1) ...", "2. ...", "B) ..."."""
    found = set()
    for label in labels:
        item = rf"^[ \t]*[(\[{{【「<]?[ \t]*{_label_pattern(label, bare=True)}[ \t]*[)\]}}】」>.:：]"
        if re.search(item, text, re.M):
            found.add(label)
    return found


def _echoes_list(text: str, options: list[dict]) -> bool:
    """The output repeats the option list: every "(label) text" in the listed order, or list items on lines."""
    labels = [str(o["label"]) for o in options]
    if len(_line_labels(text, labels)) > 1:
        return True
    first_words = [_clean(str(o.get("text") or "")).split()[:1] for o in options]
    if not all(first_words):
        return False
    items = [rf"[(\[{{【「<]\s*{re.escape(str(o['label']))}\s*[)\]}}】」>]\s*{re.escape(w[0][:6])}"
             for o, w in zip(options, first_words, strict=True)]  # fmt: skip
    return re.search(".*?".join(items), text, re.S | re.I) is not None


LEVELS = (
    # 2: a label at the start, followed by a delimiter or the end
    (r"^[\s(\[{【「<]*{label}[)\]}】」>]?(?={end})", True),
    # 3: a bracketed label anywhere
    (r"[(\[{【「<]\s*{label}\s*[)\]}】」>]", False),
)


def extract_choice(output: str, options: list[dict]) -> str | None:
    """The label of the option ``output`` chose, or None (see the module docstring)."""
    labels = [str(o["label"]) for o in options]
    text, cased = _clean(output), _clean(output, lower=False)
    # 1: the whole output is a label, or one option's whole text
    core = re.sub(r"^[\s(\[{【「<]+|[\s)\]}】」>.:：。!,，]+$", "", text)
    for label in labels:
        if core == label.lower():
            return label
    whole = {str(o["label"]) for o in options if re.sub(_END_PUNCT, "", text) in _needles(o)}
    if len(whole) == 1:
        return whole.pop()
    if _echoes_list(cased, options):
        return None
    for search in (
        # 2-3: the label the output starts with and bracketed labels ("(2) or (1)" names two)
        lambda: sorted(_search(cased, labels, *LEVELS[0]))[:1] + _search(cased, labels, *LEVELS[1]),
        lambda: _cue_search(cased, labels),  # 4: labels next to answer cues
        lambda: _text_search(text, options),  # 5: option texts
        # 6: a numeric label standing alone (items whose labels are all numbers)
        lambda: _search(cased, labels, "{label}", False) if all(x.isdigit() for x in labels) else [],
    ):
        hit = _pick(search(), cased)
        if hit is not None:
            return hit
    return None
