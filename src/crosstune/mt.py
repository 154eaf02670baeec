"""Machine translation with a seq2seq transformers model (NLLB-200 or M2M100).

``TransformersBackend("facebook/nllb-200-distilled-600M")`` loads the model and
tokenizer with ``AutoModelForSeq2SeqLM`` / ``AutoTokenizer`` (hub id or local
directory) and translates lists of strings between our ISO 639-1 codes.

The language-code scheme is read off the tokenizer:

* ``nllb``   - the tokenizer knows FLORES-200 codes as tokens (``eng_Latn``);
* ``m2m100`` - the tokenizer has ``get_lang_id`` / ``__en__``-style tokens.

Our codes map to the model's with :func:`crosstune.languages.mt_code`, which
raises for a language the model lacks (Basque, Telugu on M2M100). The source
language is set with ``tokenizer.src_lang`` (it decides the language token the
tokenizer adds to the input); the target language is forced as the first
generated token (``forced_bos_token_id``).

Decoding is deterministic (greedy for ``num_beams=1``, beam search otherwise,
never sampling). Strings are batched by token length - longest first, so an
out-of-memory error shows up on the first batch - and returned in input order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tqdm.auto import tqdm

from . import languages
from .translate import Backend

log = logging.getLogger(__name__)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other values unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def detect_scheme(tokenizer, model: str) -> str:
    """``nllb`` or ``m2m100``: how the tokenizer of ``model`` names languages."""
    vocab = tokenizer.get_vocab()
    if "eng_Latn" in vocab:
        return "nllb"
    if hasattr(tokenizer, "get_lang_id") or "__en__" in vocab:
        return "m2m100"
    raise ValueError(
        f"translation model {model}: its tokenizer ({type(tokenizer).__name__}) has neither NLLB-200 "
        "language codes (eng_Latn) nor M2M100 ones (__en__); only NLLB-200 and M2M100 models are supported"
    )


class TransformersBackend(Backend):
    """A seq2seq MT model run with transformers; see the module docstring."""

    def __init__(self, model: str, batch_size: int = 16, max_new_tokens: int = 256,
                 num_beams: int = 1, device: str = "auto"):  # fmt: skip
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if batch_size < 1 or max_new_tokens < 1 or num_beams < 1:
            raise ValueError("translate: batch_size, max_new_tokens and num_beams must be >= 1")
        self.model_name = model
        self.engine = f"transformers:{model}"
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self.device = torch.device(resolve_device(device))
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.scheme = detect_scheme(self.tokenizer, model)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model).to(self.device).eval()
        # M2M100's language tokens are not registered as special tokens by every
        # transformers version, so decoding drops them explicitly
        self.lang_ids = set(getattr(self.tokenizer, "lang_code_to_id", {}).values())
        log.info("loaded %s (%s language codes) on %s", model, self.scheme, self.device)

    # ------------------------------------------------------------------ language codes
    def lang_code(self, code: str) -> str:
        """The model's code for our ``code`` (an error naming model and language if it has none)."""
        mt = languages.mt_code(code, self.scheme, self.model_name)
        self.lang_id(mt, code)  # raises when the tokenizer lacks the code
        return mt

    def lang_id(self, mt: str, code: str) -> int:
        """Token id of the model's language code ``mt`` (our ``code`` for messages)."""
        if self.scheme == "m2m100":
            try:
                return self.tokenizer.get_lang_id(mt)
            except KeyError:
                pass
        else:
            tid = self.tokenizer.convert_tokens_to_ids(mt)
            if tid is not None and tid != self.tokenizer.unk_token_id:
                return tid
        raise ValueError(
            f"translation model {self.model_name} does not support {languages.name(code)} ({code}): "
            f"its tokenizer has no language code {mt!r}"
        )

    # ------------------------------------------------------------------ translation
    def translate(self, texts: Sequence[str], src: str, tgt: str) -> list[str]:
        ids = self.generate_ids(texts, src, tgt)
        return [
            self.tokenizer.decode([t for t in seq if t not in self.lang_ids], skip_special_tokens=True).strip()
            for seq in ids
        ]

    def generate_ids(self, texts: Sequence[str], src: str, tgt: str) -> list[list[int]]:
        """Generated token ids per text (decoder start and forced language token included,
        padding removed); empty strings give ``[]`` without running the model."""
        import torch

        src_code = self.lang_code(src)
        tgt_id = self.lang_id(self.lang_code(tgt), tgt)
        self.tokenizer.src_lang = src_code  # the tokenizer now adds src_code's token to each input
        out: list[list[int]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        limit = self.tokenizer.model_max_length if self.tokenizer.model_max_length < 100_000 else None
        lengths = self.tokenizer([texts[i] for i in todo], add_special_tokens=True)["input_ids"]
        too_long = sum(limit is not None and len(x) > limit for x in lengths)
        if too_long:
            log.warning("%s->%s: %d input(s) longer than %d tokens are truncated", src, tgt, too_long, limit)
        # longest first; ties keep input order, so the batching is a pure function of the input
        order = [i for _, i in sorted(zip((-len(x) for x in lengths), todo, strict=True))]
        batches = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        pad, eos, cut = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0
        with torch.inference_mode():
            for batch in tqdm(batches, desc=f"MT {src}->{tgt}", unit="batch", leave=False):
                enc = self.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                                     truncation=limit is not None, max_length=limit).to(self.device)  # fmt: skip
                gen = self.model.generate(
                    **enc, forced_bos_token_id=tgt_id, max_new_tokens=self.max_new_tokens,
                    num_beams=self.num_beams, do_sample=False,
                )  # fmt: skip
                for i, seq in zip(batch, gen.tolist(), strict=True):
                    # sequences that ended early are right-padded with pad tokens; the
                    # decoder start token may itself equal pad (M2M100 starts with </s>)
                    while len(seq) > 2 and seq[-1] == pad:
                        seq.pop()
                    cut += seq[-1] != eos
                    out[i] = seq
        if cut:
            log.warning("%s->%s: %d of %d translation(s) stopped at max_new_tokens=%d (truncated)",
                        src, tgt, cut, len(todo), self.max_new_tokens)  # fmt: skip
        return out
