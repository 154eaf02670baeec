"""Independent references for the CC-Tuning tests (and the benchmarks' slow path).

* ``manual_forward`` runs a llama-style decoder (llama, qwen2, mistral, gemma)
  layer by layer by hand: input norm, attention, residual, post-attention norm,
  MLP, residual - recording each MLP output and adding a vector after layer 0.
* ``slow_generate`` is the released code's inference: per prompt, one full plain
  pass for a_l at p, then a second full prefill with the connection, then
  greedy decoding with that pass's cache.
"""

from __future__ import annotations

import torch

from crosstune.cc_tuning.connection import capture_mlp, inject, input_embeddings


def lively(model, seed: int = 0, std: float = 0.3):
    """Re-draw every weight matrix with a large std (in float64) so outputs depend on the input."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.ndim == 2:
            p.data.normal_(0.0, std, generator=g)
    return model.double().eval()


def manual_forward(model, ids: torch.Tensor, p: int | None = None, vec: torch.Tensor | None = None):
    """(logits (T, V), mlp outputs (T, L, d)) of one unpadded sequence ``ids`` (T,), by hand."""
    base = model.model
    T = ids.shape[0]
    h = base.embed_tokens(ids[None])
    pos = torch.arange(T)[None]
    mask = torch.full((T, T), torch.finfo(h.dtype).min, dtype=h.dtype).triu(1)[None, None]
    pe = base.rotary_emb(h, position_ids=pos)
    mlps = []
    for i, layer in enumerate(base.layers):
        attn = layer.self_attn(hidden_states=layer.input_layernorm(h), attention_mask=mask,
                               position_embeddings=pe, position_ids=pos)[0]  # fmt: skip
        h = h + attn
        m = layer.mlp(layer.post_attention_layernorm(h))
        mlps.append(m[0])
        h = h + m
        if i == 0 and vec is not None:
            delta = torch.zeros_like(h)
            delta[0, p] = vec
            h = h + delta
    return model.lm_head(base.norm(h))[0], torch.stack(mlps, dim=1)


@torch.no_grad()
def slow_connection(model, dm, ids: list[int], mode: str, X=None, english_ids=None, choice="argmax"):
    """c (1, d) for one prompt: plain full pass of the prompt (or of its English translation) at p."""
    src = english_ids if mode == "oracle" else ids
    t = torch.tensor([src])
    with capture_mlp(model, torch.tensor([len(src) - 1])) as cap:
        model(input_ids=t)
    a = cap.stacked()
    if mode == "matrix":
        a = (a.double() @ X.double()).to(a.dtype)
    e = input_embeddings(model, torch.tensor([ids[-1]]))
    c, s = dm(a, e.to(a.dtype), choice=choice)
    return c, int(s.argmax())


@torch.no_grad()
def slow_generate(model, tokenizer, dm, ids: list[int], mode: str, X=None, english_ids=None,
                  max_new_tokens: int = 8, stop_at_eos: bool = True) -> list[int]:  # fmt: skip
    """The released code's loop for one prompt: two full prefills, then greedy decoding with the cache."""
    t = torch.tensor([ids])
    if mode == "none":
        out = model(input_ids=t, use_cache=True)
    else:
        c, _ = slow_connection(model, dm, ids, mode, X, english_ids)
        with inject(model, torch.tensor([len(ids) - 1]), c):
            out = model(input_ids=t, use_cache=True)
    key = "cache" if "cache" in out else "past_key_values"
    cache = out[key]
    tokens = []
    nxt = out.logits[:, -1].argmax(-1)
    for _ in range(max_new_tokens):
        if stop_at_eos and nxt.item() == tokenizer.eos_token_id:
            break
        tokens.append(nxt.item())
        out = model(input_ids=nxt[:, None], use_cache=True, **{key: cache})
        nxt = out.logits[:, -1].argmax(-1)
    return tokens
