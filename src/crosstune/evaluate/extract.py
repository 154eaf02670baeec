"""Which option a generated answer chose (XNLI, XStoryCloze, MMMLU).

The rule, applied to the output after folding (NFKC: full-width "（２）" is "(2)";
digits of every script are ASCII digits; markdown ``*``, ``_`` and backticks
removed). Levels are tried in order; the first level that finds a label decides:

1. the whole output is a label, give or take brackets and punctuation:
   "2", "(B)", "B.", "**C**";
2. the output starts with a label followed by a delimiter: "2) neutral",
   "B. 4", "C: True, False", "1 - entailment";
3. a bracketed label anywhere: "答案是 (3) 矛盾", "I choose [A]", "【B】";
4. a label within a few characters after an answer cue of one of the 22
   languages ("answer", "答案", "الإجابة", "उत्तर", "jibu", "ответ", ...):
   "The answer is B", "答案：2", "الإجابة هي ٢";
5. an option's text: the option whose (folded) text occurs earliest, the
   longest on a tie ("中立", "محايد", "the relationship is neutral");
   texts made of letters or digits of spaced scripts must stand as words
   ("4" is not found in "1942");
6. numeric labels only: a label digit standing alone ("我选2", "I'd say 3").

Letters count as labels only in upper case unless bracketed (level 3) or the
whole output (level 1), so the article "A" in "A bird ..." is not an answer.
An output that repeats the option list is no answer: one that names *every*
option in brackets, or in which two or more different labels start lines
("(1) 蕴涵\n(2) 中立", "1. entailment\n2. neutral" - small models echo the list,
often cut off at 40 tokens), or in which one level finds every label.
No answer -> None, which the scorer counts as wrong and in the ``no_answer``
column.
"""

from __future__ import annotations

import re

from .text import fold, is_no_space_char

CUES = (
    # en fr es pt de id
    "answer", "option", "choice", "réponse", "respuesta", "opción", "resposta", "opção",
    "antwort", "jawaban", "pilihan",
    # zh ja ko
    "答案", "选项", "选择", "答", "答え", "正解", "選択肢", "정답", "답", "선택",
    # ar ur hi bn te
    "الإجابة", "الاجابة", "الجواب", "إجابتي", "الخيار", "جواب", "اختیار",
    "उत्तर", "विकल्प", "উত্তর", "বিকল্প", "సమాధానం", "ఎంపిక",
    # sw ru el tr vi th eu yo
    "jibu", "chaguo", "ответ", "вариант", "απάντηση", "επιλογή", "cevap", "yanıt", "seçenek",
    "đáp án", "câu trả lời", "lựa chọn", "คำตอบ", "ตัวเลือก", "erantzuna", "aukera", "ìdáhùn", "idahun",
)  # fmt: skip
CUE_WINDOW = 12  # characters after a cue in which a label may stand ("answer would be: (B)")
# After a label at the start of an output: letters need punctuation ("B." not "A bird"),
# digits may also be followed by a space ("2 neutral").
_LETTER_END = r"\s*[.):：、,，;\-–—]|$"
_DIGIT_END = r"[\s.):：、,，;\-–—]|$"


def _clean(output: str, lower: bool = True) -> str:
    return re.sub(r"[*_`]", "", fold(output, lower=lower)).strip()


def _label_pattern(label: str, *, bare: bool) -> str:
    """Regex of ``label`` not glued to other letters/digits; bare letters must be upper case."""
    esc = re.escape(label)
    if bare and label.isalpha():
        esc = "(?-i:" + re.escape(label.upper()) + ")"
    return rf"(?<![0-9A-Za-z]){esc}(?![0-9A-Za-z])"


def _first(found: list[tuple[int, str]], labels: list[str]) -> str | None:
    """The earliest label found; "" when every label was found (ambiguous); None when none."""
    if not found:
        return None
    if len(labels) > 1 and {label for _, label in found} >= set(labels):
        return ""
    return min(found)[1]


def _search(text: str, labels: list[str], template: str, bare: bool) -> str | None:
    found = []
    for label in labels:
        end = _LETTER_END if label.isalpha() else _DIGIT_END
        pattern = template.replace("{label}", _label_pattern(label, bare=bare)).replace("{end}", end)
        found += [(m.start(), label) for m in re.finditer(pattern, text, re.I)]
    return _first(found, labels)


def _cue_search(text: str, labels: list[str]) -> str | None:
    found = []
    lowered = text.lower()
    for cue in CUES:
        for m in re.finditer(re.escape(cue), lowered):
            window = text[m.end() : m.end() + CUE_WINDOW]
            for label in labels:
                lm = re.search(_label_pattern(label, bare=True), window)
                if lm:
                    found.append((m.end() + lm.start(), label))
    return _first(found, labels)


def _text_pattern(text: str) -> str:
    """An option text; ends in letters/digits of spaced scripts must be word boundaries."""
    head = r"(?<!\w)" if text[0].isalnum() and not is_no_space_char(text[0]) else ""
    tail = r"(?!\w)" if text[-1].isalnum() and not is_no_space_char(text[-1]) else ""
    return head + re.escape(text) + tail


def _text_search(text: str, options: list[dict], labels: list[str]) -> str | None:
    found = []
    for option in options:
        needle = _clean(str(option.get("text") or ""))
        if needle:
            found += [(m.start(), -len(needle), str(option["label"]))
                      for m in re.finditer(_text_pattern(needle), text)]  # fmt: skip
    if not found:
        return None
    if len(labels) > 1 and {label for *_, label in found} >= set(labels):
        return ""
    return min(found)[2]


def _line_labels(text: str, labels: list[str]) -> set[str]:
    """Labels that start a line as list items: "(1) ...", "2. ...", "B) ..."."""
    found = set()
    for label in labels:
        item = rf"^[ \t]*[(\[{{【「<]?[ \t]*{_label_pattern(label, bare=True)}[ \t]*[)\]}}】」>.:：]"
        if re.search(item, text, re.M):
            found.add(label)
    return found


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
    # 1: the whole output is a label
    core = re.sub(r"^[\s(\[{【「<]+|[\s)\]}】」>.:：。!,，]+$", "", text)
    for label in labels:
        if core == label.lower():
            return label
    # the model repeated the option list: every label in brackets, or several labels starting lines
    if _search(cased, labels, *LEVELS[1]) == "" or len(_line_labels(cased, labels)) > 1:
        return None
    # 2-4: a label at the start, in brackets, after an answer cue
    for search in (
        lambda: _search(cased, labels, *LEVELS[0]),
        lambda: _search(cased, labels, *LEVELS[1]),
        lambda: _cue_search(cased, labels),
        lambda: _text_search(text, options, labels),  # 5: an option's text
        # 6: a numeric label standing alone (items whose labels are all numbers)
        lambda: _search(cased, labels, "{label}", False) if all(x.isdigit() for x in labels) else None,
    ):
        hit = search()
        if hit is not None:
            return hit or None
    return None
