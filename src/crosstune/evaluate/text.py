"""Language-aware normalisation and tokenisation of answers and summaries.

Every score that compares a model output with a reference goes through
:func:`tokens`, so the same text always gives the same tokens:

1. Unicode NFKC (full-width "Ｂ" and "２" become "B" and "2") and lower case;
2. every decimal digit of any script (Arabic-Indic "٢", Devanagari "२", Thai "๒")
   becomes its ASCII digit;
3. punctuation (Unicode categories P*) and symbols (S*) become spaces; or, for
   QA answers under ``qa_normalize: squad`` (the default), punctuation is deleted
   as SQuAD's and MLQA's evaluation scripts delete it (Unicode P* and ASCII
   punctuation; other symbols are kept), so "U.S. Army" and "US Army" are equal;
4. for answers (not summaries), articles are removed for the languages MLQA's evaluation script removes them
   from (en, es, de, ar, vi), plus fr and pt; the Arabic article is removed only
   as a word prefix ("الكتاب" -> "كتاب"), not wherever the letters occur;
5. the text is split on whitespace, and every character of a script written
   without spaces (CJK ideographs, kana, Thai, Lao, Khmer, Myanmar) becomes a
   token of its own - the mixed segmentation of MLQA's script. Korean is
   written with spaces and keeps word tokens.

Step 5 depends on the characters, not on the declared language, so an English
name inside a Chinese answer is one token and a Chinese answer to an English
prompt is split into characters.
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache

# Unicode blocks of scripts written without spaces between words.
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3100, 0x312F),  # Bopomofo
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3134F),  # CJK extensions B-G
)

# Articles removed before comparing answers (MLQA's list, plus French and Portuguese).
ARTICLES = {
    "en": r"\b(?:a|an|the)\b",
    "es": r"\b(?:un|una|unos|unas|el|la|los|las)\b",
    "de": r"\b(?:ein|eine|einem|einen|einer|eines|der|die|das|den|dem|des)\b",
    "vi": r"\b(?:của|là|cái|chiếc|những)\b",
    "fr": r"\b(?:le|la|les|l|un|une|des)\b",
    "pt": r"\b(?:o|a|os|as|um|uma|uns|umas)\b",
    "ar": r"(?<!\w)ال(?=\w)",
}
_ARTICLE_RE = {lang: re.compile(pattern) for lang, pattern in ARTICLES.items()}


def is_no_space_char(ch: str) -> bool:
    """True for a character of a script written without spaces (CJK, kana, Thai...)."""
    code = ord(ch)
    return any(lo <= code <= hi for lo, hi in _NO_SPACE_RANGES)


# How punctuation is treated: "ours" (P* and S* become spaces) or "squad" (deleted as SQuAD/MLQA do).
PUNCTUATION_MODES = ("squad", "ours")


@lru_cache(maxsize=4096)
def _squad_deletes(ch: str) -> bool:
    """MLQA's ``remove_punc`` set: Unicode punctuation (P*) and ``string.punctuation``."""
    return unicodedata.category(ch).startswith("P") or ch in string.punctuation


@lru_cache(maxsize=4096)
def _char_class(ch: str) -> str:
    """'d' (decimal digit, any script), 'p' (punctuation or symbol), or '' (other)."""
    cat = unicodedata.category(ch)
    if cat == "Nd":
        return "d"
    if cat[0] in "PS":
        return "p"
    return ""


def fold(text: str, lower: bool = True) -> str:
    """NFKC, lower case (unless ``lower=False``) and ASCII digits: steps 1-2 of :func:`tokens`."""
    text = unicodedata.normalize("NFKC", text)
    if lower:
        text = text.lower()
    out = []
    for ch in text:
        kind = _char_class(ch)
        out.append(str(unicodedata.digit(ch)) if kind == "d" and not ch.isascii() else ch)
    return "".join(out)


def normalize(text: str, lang: str | None = None, articles: bool = True, punctuation: str = "ours") -> str:
    """Folded text without punctuation (and articles unless ``articles=False``), whitespace collapsed.

    ``punctuation``: "ours" turns punctuation and symbols into spaces; "squad" deletes them as
    SQuAD/MLQA's scripts do (see :data:`PUNCTUATION_MODES`).
    """
    if punctuation == "squad":
        text = "".join(ch for ch in fold(text) if not _squad_deletes(ch))
    elif punctuation == "ours":
        text = "".join(" " if _char_class(ch) == "p" else ch for ch in fold(text))
    else:
        raise ValueError(f"punctuation mode {punctuation!r} is not one of {', '.join(PUNCTUATION_MODES)}")
    if articles and lang in _ARTICLE_RE:
        text = _ARTICLE_RE[lang].sub(" ", text)
    return " ".join(text.split())


def tokens(text: str, lang: str | None = None, articles: bool = True, punctuation: str = "ours") -> list[str]:
    """Language-aware tokens: words, and single characters of unspaced scripts.

    ``articles=False`` keeps articles (ROUGE, like rouge-score, scores them);
    ``punctuation`` as in :func:`normalize`.
    """
    out: list[str] = []
    for word in normalize(text, lang, articles, punctuation).split():
        if not any(is_no_space_char(ch) for ch in word):
            out.append(word)
            continue
        buf = ""
        for ch in word:
            if is_no_space_char(ch):
                if buf:
                    out.append(buf)
                    buf = ""
                out.append(ch)
            else:
                buf += ch
        if buf:
            out.append(buf)
    return out
