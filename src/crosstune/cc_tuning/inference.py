"""Greedy decoding with the cross-lingual connection, batched, reusing the KV cache.

Modes (docs/methods.md section 2, inference):

* ``matrix`` - the monolingual setting: a_l from the prompt's own plain pass,
  mapped a'_l = a_l X by the Transform Matrix (the language's own X when one
  matrix per language was fitted).
* ``oracle`` - a_l from the real English translation of the prompt.
* ``none`` - no connection: plain greedy decoding.

The Decision Maker picks one layer from u = mean_l(a'_l) + e_p (``argmax`` by
default; ``gumbel`` is the released code's random choice) and c = a'_chosen is
added after decoder layer 0 at p.

Fast path: positions before p do not see the connection (causal attention), so
the prompt is prefilled once without it - capturing a_l at p on the way - the
cache is cropped back to positions 0..p-1 and only p and the ``after`` tokens
that follow it (``connection_position``: 0 for ``last``) are recomputed, with c
added at p; ``generate`` then decodes from that cache. The cost over plain
decoding is one extra forward pass of 1 + ``after`` tokens per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..evaluate.decode import cache_io
from . import MODES
from .connection import (
    capture_mlp,
    chat_prompt_ids,
    common_tokens_after_p,
    inject,
    input_embeddings,
    left_padded_position_ids,
    pad_batch,
    pad_token_id,
    tokens_after_p,
    unwrap,
)
from .decision import DecisionMaker
from .transform import SHARED, matrix_for, prompt_activations


def new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=unwrap(model).config)
    except TypeError:  # older transformers
        return DynamicCache()


def drop_last_tokens(cache, n: int = 1) -> None:
    """Remove the last ``n`` positions from a DynamicCache (negative crop: tokens to remove)."""
    length = cache.get_seq_length()
    cache.crop(-n)
    if cache.get_seq_length() != length - n:
        raise RuntimeError(f"cache crop failed: length {cache.get_seq_length()}, expected {length - n}")


def map_activations(a: torch.Tensor, matrices: dict[str, torch.Tensor], langs: Sequence[str]) -> torch.Tensor:
    """a'_l = a_l X for every row (B, L, d), in float64, returned in a's dtype."""
    out = torch.empty_like(a)
    for lang in sorted(set(langs)):
        rows = torch.tensor([i for i, x in enumerate(langs) if x == lang], device=a.device)
        X = matrix_for(matrices, lang).to(device=a.device, dtype=torch.float64)
        out[rows] = (a[rows].double() @ X).to(a.dtype)
    return out


def _strip(new_tokens: torch.Tensor, eos_ids: set[int]) -> list[list[int]]:
    out = []
    for row in new_tokens.tolist():
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        out.append(row[:cut])
    return out


def _eos_ids(model, tokenizer) -> set[int]:
    eos = unwrap(model).generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


@torch.no_grad()
def generate_batch(model, tokenizer, prompt_ids: Sequence[Sequence[int]], *, mode: str = "matrix",
                   dm: DecisionMaker | None = None, matrices: dict | None = None,
                   langs: Sequence[str] | None = None, english_ids: Sequence[Sequence[int]] | None = None,
                   max_new_tokens: int = 40, layer_choice: str = "argmax", tau: float = 1.0,
                   generator: torch.Generator | None = None, position: str = "last",
                   **generate_kwargs) -> dict:  # fmt: skip
    """Greedy continuations of one batch of tokenized prompts: {"tokens": [[ids]], "layers": [l] or None}.

    p: ``position`` (``models.<m>.connection_position``, :func:`.connection.tokens_after_p`)."""
    if mode not in MODES:
        raise ValueError(f"cc_tuning inference mode must be one of {', '.join(MODES)}, not {mode!r}")
    device = next(model.parameters()).device
    pad = pad_token_id(tokenizer)
    ids, mask, _ = pad_batch(prompt_ids, pad, "left")
    ids, mask = ids.to(device), mask.to(device)
    B, T = ids.shape
    gen = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad, **generate_kwargs)
    eos = _eos_ids(model, tokenizer)
    if mode == "none":
        seq = model.generate(input_ids=ids, attention_mask=mask, **gen)
        return {"tokens": _strip(seq[:, T:], eos), "layers": None}
    if dm is None:
        raise ValueError(f"cc_tuning inference mode {mode!r} needs the Decision Maker")
    after = common_tokens_after_p(tokenizer, prompt_ids, position)  # tokens behind p
    if T < 2 + after:
        raise ValueError("cc_tuning inference needs at least one prompt token before p")
    position_ids = left_padded_position_ids(mask)
    cache, kw = new_cache(model), cache_io(unwrap(model))
    p = T - 1 - after  # left padding: p is the same column in every row
    at_p = torch.full((B,), p, dtype=torch.long, device=device)
    if mode == "matrix":
        if langs is None and matrices is not None and SHARED in matrices:
            langs = [SHARED] * B  # one shared matrix: no languages needed
        if matrices is None or langs is None or len(langs) != B:
            raise ValueError("cc_tuning matrix mode needs the transform matrices and one language per prompt")
        # plain prefill of the prompt capturing a_l at p, then forget the keys/values from p on
        with capture_mlp(model, at_p) as cap:
            model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                  logits_to_keep=1, **{kw: cache})  # fmt: skip
        drop_last_tokens(cache, 1 + after)
        a = map_activations(cap.stacked(), matrices, langs)
    else:  # oracle: the English prompts' own activations; the cache only needs 0..p-1
        if english_ids is None or len(english_ids) != B:
            raise ValueError("cc_tuning oracle mode needs one English prompt per prompt")
        model(input_ids=ids[:, :p], attention_mask=mask[:, :p], position_ids=position_ids[:, :p],
              use_cache=True, logits_to_keep=1, **{kw: cache})  # fmt: skip
        a = prompt_activations(model, english_ids, pad, [tokens_after_p(tokenizer, x, position) for x in english_ids])
    e = input_embeddings(model, ids[:, p])
    c, s = dm(a, e.to(a.dtype), choice=layer_choice, tau=tau, generator=generator)
    # generate() feeds the uncached tokens (p and the `after` tokens behind it) first: the
    # connection goes to p in that call only
    first = torch.full((B,), -1 - after, dtype=torch.long, device=device)
    with inject(model, first, c, calls=1):
        seq = model.generate(input_ids=ids, attention_mask=mask, **{kw: cache}, **gen)
    return {"tokens": _strip(seq[:, T:], eos), "layers": s.argmax(-1).tolist()}


def generate(model, tokenizer, prompts: Sequence[str], *, mode: str = "matrix", dm: DecisionMaker | None = None,
             matrices: dict | None = None, langs: Sequence[str] | None = None,
             english_prompts: Sequence[str] | None = None, batch_size: int = 8, max_new_tokens: int = 40,
             layer_choice: str = "argmax", tau: float = 1.0, seed: int = 0, progress: bool = False,
             position: str = "last", **generate_kwargs) -> list[dict]:  # fmt: skip
    """Generate for chat-templated prompts in length-sorted batches; one dict per prompt, in input order:
    {"text", "tokens", "layer"} (layer: the Decision Maker's choice, None in mode none)."""
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    dm = dm.to(device) if dm is not None else None
    generator = torch.Generator(device=device).manual_seed(seed) if layer_choice == "gumbel" else None
    ids = [chat_prompt_ids(tokenizer, p) for p in prompts]
    en_ids = [chat_prompt_ids(tokenizer, p) for p in english_prompts] if english_prompts is not None else None
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: list[dict | None] = [None] * len(ids)
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=f"generate ({mode})", disable=not progress):
        chunk = order[start : start + batch_size]
        out = generate_batch(
            model, tokenizer, [ids[i] for i in chunk], mode=mode, dm=dm, matrices=matrices,
            langs=[langs[i] for i in chunk] if langs is not None else None,
            english_ids=[en_ids[i] for i in chunk] if en_ids is not None else None,
            max_new_tokens=max_new_tokens, layer_choice=layer_choice, tau=tau, generator=generator,
            position=position, **generate_kwargs,
        )  # fmt: skip
        for j, i in enumerate(chunk):
            toks = out["tokens"][j]
            results[i] = {"text": tokenizer.decode(toks, skip_special_tokens=True), "tokens": toks,
                          "layer": out["layers"][j] if out["layers"] is not None else None}  # fmt: skip
    model.train(was_training)
    return results
