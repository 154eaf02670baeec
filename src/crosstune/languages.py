"""The 22 languages of the CC-Tuning evaluation and their codes in MT models.

Codes in the config are ISO 639-1 (``ar``, ``zh``...). MT models name languages
their own way: NLLB-200 uses FLORES-200 codes (``arb_Arab``), M2M100 uses
ISO 639-1 but lacks some languages (Basque, Telugu): those map to ``None`` and
asking for them is an error that names the model and the language.
"""

from __future__ import annotations

# code -> (English name, NLLB-200 / FLORES-200 code, M2M100 code or None)
LANGUAGES: dict[str, tuple[str, str, str | None]] = {
    "ar": ("Arabic", "arb_Arab", "ar"),
    "bn": ("Bengali", "ben_Beng", "bn"),
    "de": ("German", "deu_Latn", "de"),
    "el": ("Greek", "ell_Grek", "el"),
    "en": ("English", "eng_Latn", "en"),
    "es": ("Spanish", "spa_Latn", "es"),
    "eu": ("Basque", "eus_Latn", None),
    "fr": ("French", "fra_Latn", "fr"),
    "hi": ("Hindi", "hin_Deva", "hi"),
    "id": ("Indonesian", "ind_Latn", "id"),
    "ja": ("Japanese", "jpn_Jpan", "ja"),
    "ko": ("Korean", "kor_Hang", "ko"),
    "pt": ("Portuguese", "por_Latn", "pt"),
    "ru": ("Russian", "rus_Cyrl", "ru"),
    "sw": ("Swahili", "swh_Latn", "sw"),
    "te": ("Telugu", "tel_Telu", None),
    "th": ("Thai", "tha_Thai", "th"),
    "tr": ("Turkish", "tur_Latn", "tr"),
    "ur": ("Urdu", "urd_Arab", "ur"),
    "vi": ("Vietnamese", "vie_Latn", "vi"),
    "yo": ("Yoruba", "yor_Latn", "yo"),
    "zh": ("Chinese", "zho_Hans", "zh"),
}

CODES = tuple(sorted(LANGUAGES))


def name(code: str) -> str:
    """English name of a language code, e.g. ``name("sw") == "Swahili"``."""
    check(code)
    return LANGUAGES[code][0]


def check(code: str, where: str = "language") -> str:
    if code not in LANGUAGES:
        raise ValueError(f"{where}: unknown language code {code!r}; known codes: {', '.join(CODES)}")
    return code


def mt_code(code: str, scheme: str, model: str = "") -> str:
    """The code an MT model uses for ``code``; ``scheme`` is ``nllb`` or ``m2m100``."""
    check(code)
    _, nllb, m2m = LANGUAGES[code]
    if scheme == "nllb":
        return nllb
    if scheme == "m2m100":
        if m2m is None:
            raise ValueError(
                f"translation model {model or 'M2M100'} does not support {name(code)} ({code}); "
                "use an NLLB-200 model for this language"
            )
        return m2m
    raise ValueError(f"unknown MT language-code scheme {scheme!r} (expected 'nllb' or 'm2m100')")


# Codes that datasets use for our languages. Aya labels languages with ISO 639-3:
# individual languages (arb Standard Arabic, swh Swahili, cmn Mandarin) and
# macrolanguages (ara, swa, zho). Arabic dialects (ary, arz, apc, ...) are not
# mapped: our Arabic is Modern Standard Arabic.
ISO639_3: dict[str, str] = {
    "arb": "ar", "ara": "ar", "ben": "bn", "deu": "de", "ell": "el", "eng": "en", "spa": "es",
    "eus": "eu", "fra": "fr", "hin": "hi", "ind": "id", "jpn": "ja", "kor": "ko", "por": "pt",
    "rus": "ru", "swh": "sw", "swa": "sw", "tel": "te", "tha": "th", "tur": "tr", "urd": "ur",
    "vie": "vi", "yor": "yo", "zho": "zh", "cmn": "zh",
}  # fmt: skip

# BCP-47 subtags that mark Traditional Chinese (our zh is Simplified, like zho_Hans)
TRADITIONAL_CHINESE = {"hant", "tw", "hk", "mo"}


def from_iso639_3(code: str | None) -> str | None:
    """Our code for an ISO 639-3 code (``swh`` -> ``sw``), or None for other languages."""
    return ISO639_3.get((code or "").strip().lower())


def from_bcp47(tag: str | None) -> str | None:
    """Our code for a BCP-47 tag (``en``, ``pt-BR``, ``zh-Hans``), or None for other languages.

    The primary subtag decides, except that Traditional Chinese (``zh-TW``, ``zh-Hant``) is None.
    """
    parts = (tag or "").strip().replace("_", "-").lower().split("-")
    primary = parts[0]
    if primary == "zh" and TRADITIONAL_CHINESE.intersection(parts[1:]):
        return None
    return primary if primary in LANGUAGES else None
