"""Per-item scores: QA accuracy / exact match / F1, ROUGE-L, chrF, language fidelity.

All scores are fractions in [0, 1] (chrF included: sacrebleu's 0-100 divided by 100).
Tokens come from :func:`crosstune.evaluate.text.tokens` (language-aware).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np

from .. import languages
from .text import tokens


# --------------------------------------------------------------------------- QA (XQuAD, MKQA)
def _contains(haystack: list[str], needle: list[str]) -> bool:
    """Whether ``needle`` occurs as a contiguous run of tokens in ``haystack``."""
    n = len(needle)
    return n > 0 and any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def token_f1(pred: list[str], gold: list[str]) -> float:
    """SQuAD's token F1: harmonic mean of precision and recall of the shared tokens (a bag)."""
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def qa_scores(output: str, golds: list[str], lang: str, normalize: str = "squad") -> dict[str, float]:
    """accuracy, exact_match and f1 of ``output`` against the best of ``golds``.

    ``normalize`` (config ``evaluation.qa_normalize``): "squad" deletes punctuation as
    SQuAD's and MLQA's scripts do ("U.S. Army" = "US Army"); "ours" makes it a space
    ("U.S." -> "u s"). Either way containment is by whole tokens.

    accuracy (the CC-Tuning paper's measure): a gold answer occurs in the
    normalised output, as a contiguous run of tokens (so "308" is found in
    "the defence allowed 308 points" and in "丢了308分", not in "1308").
    exact_match and f1 are SQuAD's, on the same language-aware tokens; the whole
    output is the prediction (no answer span is cut out of it).
    """
    pred = tokens(output, lang, punctuation=normalize)
    gold_tokens = [t for t in (tokens(g, lang, punctuation=normalize) for g in golds) if t]
    if not gold_tokens:
        raise ValueError(f"no gold answer with any token among {golds!r}")
    return {
        "accuracy": float(any(_contains(pred, g) for g in gold_tokens)),
        "exact_match": float(any(pred == g for g in gold_tokens)),
        "f1": max(token_f1(pred, g) for g in gold_tokens),
    }


# --------------------------------------------------------------------------- ROUGE-L (XL-Sum)
def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(output: str, reference: str, lang: str) -> float:
    """ROUGE-L F-measure (as rouge-score's: F1 of LCS precision and recall) on our tokens.

    rouge-score's default tokenizer keeps only [a-z0-9] and so scores every
    Chinese, Arabic or Hindi summary 0; here the tokens are language-aware.
    """
    pred, ref = tokens(output, lang, articles=False), tokens(reference, lang, articles=False)
    if not pred or not ref:
        return 0.0
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------- chrF (XL-Sum)
def chrf_metric():
    """sacrebleu's CHRF with its defaults (character 6-grams, beta 2, no word n-grams)."""
    from sacrebleu.metrics import CHRF

    from ..versions import require

    # chrf_statistics and chrf_from_statistics call CHRF's private per-item statistics functions
    require("sacrebleu", "crosstune.evaluate.metrics (XL-Sum chrF)")

    return CHRF()


def chrf_statistics(outputs: list[str], references: list[str]) -> np.ndarray:
    """Per-item chrF sufficient statistics (items x 3*orders), as sacrebleu's tests resample them."""
    metric = chrf_metric()
    stats = metric._extract_corpus_statistics(outputs, [references])
    return np.asarray(stats, dtype=np.int64).reshape(len(outputs), -1)


def chrf_from_statistics(stats: np.ndarray) -> float:
    """Corpus chrF in [0, 1] from summed statistics (equals sacrebleu's corpus_score / 100)."""
    metric = chrf_metric()
    return metric._compute_score_from_stats(np.asarray(stats).sum(axis=0).tolist()).score / 100


def chrf_signature() -> str:
    """sacrebleu's signature of the chrF used (one reference per item)."""
    metric = chrf_metric()
    metric.corpus_score(["x"], [["x"]])  # the signature records the number of references seen
    return str(metric.get_signature())


# --------------------------------------------------------------------------- language fidelity
@lru_cache(maxsize=4)
def _identifier(candidates: tuple[str, ...] | None):
    import py3langid.langid as langid

    ident = langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)
    if candidates:
        unknown = sorted(set(candidates) - set(ident.nb_classes))
        if unknown:
            raise ValueError(f"evaluation.langid.candidates: py3langid does not know {unknown}")
        ident.set_languages(list(candidates))
    return ident


def langid_candidates(setting: str | list[str]) -> tuple[str, ...] | None:
    """Config ``evaluation.langid.candidates`` -> :func:`identify`'s ``candidates``."""
    if setting == "evaluation":
        return languages.CODES
    if setting == "all":
        return None
    return tuple(setting)


def identify(text: str, candidates: tuple[str, ...] | None = languages.CODES, min_letters: int = 2) -> str | None:
    """py3langid's language of ``text``, or None when it has fewer than ``min_letters`` letters.

    ``candidates``: the languages to choose among (default the 22 evaluation
    languages; None = all 142 py3langid knows, dialects such as "wuu" included).

    Outputs such as "(2)" or "B" carry no language; they are left out of the
    fidelity score instead of being guessed.
    """
    if sum(ch.isalpha() for ch in text) < min_letters:
        return None
    return _identifier(tuple(candidates) if candidates else None).classify(text)[0]
