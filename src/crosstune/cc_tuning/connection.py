"""The cross-lingual connection on any Hugging Face decoder whose layers have an ``mlp``.

Two forward-hook context managers (they always remove their hooks on exit):

* :func:`capture_mlp` records every decoder layer's FFN (MLP) output - the
  value added to the residual stream, before the addition - at one position
  per sequence of the batch: a tensor ``(B, L, d)``.
* :func:`inject` adds one vector per sequence to the hidden state right after
  decoder layer 0, at one position per sequence.

Positions are indices into the *current call's* input (for a call that feeds
only the last prompt token on top of a KV cache, that position is 0).

p comes from the tokenizer's chat template: the prompt is the user turn rendered
with ``add_generation_prompt=True`` (:func:`chat_prompt_ids`) and p is one of its
tokens, chosen by ``models.<m>.connection_position`` (:func:`tokens_after_p`):
``last`` - its last token; ``release`` - the token the released code's
LLaMA_Factory/train_utils/tag_locate.py picks (Llama 3: the last token; Qwen2: the
"assistant" token, one before the end; Mistral: the token before ``[/INST]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import torch
from torch import nn

IGNORE_INDEX = -100


# --------------------------------------------------------------------------- model structure
def unwrap(model: nn.Module) -> nn.Module:
    """The bare transformers model under DDP/accelerate (``.module``) and PEFT wrappers."""
    while True:
        if hasattr(model, "get_base_model"):  # peft.PeftModel
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), nn.Module):  # DDP, DataParallel
            model = model.module
        else:
            return model


_LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a causal LM (llama, qwen2, mistral, gemma: ``model.model.layers``).

    Raises a ValueError naming the model class when no layer list whose layers
    all have an ``mlp`` is found.
    """
    base = unwrap(model)
    for path in _LAYER_PATHS:
        obj = base
        for name in path.split("."):
            obj = getattr(obj, name, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) and all(hasattr(layer, "mlp") for layer in obj):
            return obj
    raise ValueError(
        f"cc_tuning: cannot find the decoder layers of {type(base).__name__}: expected a ModuleList "
        f"of layers with an `mlp` at one of {', '.join(_LAYER_PATHS)}"
    )


def input_embeddings(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """What decoder layer 0 receives for ``input_ids`` (Gemma's embedding module includes its sqrt(d) scale)."""
    return unwrap(model).get_input_embeddings()(input_ids)


def num_layers_and_hidden(model: nn.Module) -> tuple[int, int]:
    config = unwrap(model).config
    config = getattr(config, "text_config", None) or config
    return len(decoder_layers(model)), config.hidden_size


def _rows(positions: torch.Tensor) -> torch.Tensor:
    return torch.arange(positions.shape[0], device=positions.device)


# --------------------------------------------------------------------------- hooks
class Capture:
    """Filled by :func:`capture_mlp`: ``outputs[l]`` is layer l's MLP output at the positions, (B, d)."""

    def __init__(self, num_layers: int):
        self.outputs: list[torch.Tensor | None] = [None] * num_layers

    def stacked(self) -> torch.Tensor:
        """(B, L, d)."""
        missing = [i for i, t in enumerate(self.outputs) if t is None]
        if missing:
            raise RuntimeError(f"cc_tuning: no MLP output captured for layers {missing} (was the model run?)")
        return torch.stack(self.outputs, dim=1)


@contextmanager
def capture_mlp(model: nn.Module, positions: torch.Tensor):
    """Record each decoder layer's MLP output at ``positions`` (one index per sequence).

    Gradients flow through the captured tensors when the forward pass runs with grad.
    """
    layers = decoder_layers(model)
    cap = Capture(len(layers))
    handles = []

    def make_hook(i: int):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            pos = positions.to(out.device)
            cap.outputs[i] = out[_rows(pos), pos]

        return hook

    try:
        for i, layer in enumerate(layers):
            handles.append(layer.mlp.register_forward_hook(make_hook(i)))
        yield cap
    finally:
        for h in handles:
            h.remove()


@contextmanager
def inject(model: nn.Module, positions: torch.Tensor, vectors: torch.Tensor, calls: int | None = None):
    """Add ``vectors[b]`` to the hidden state after decoder layer 0 at ``positions[b]``.

    The addition is out of place, so every other position of the layer-0 output
    is copied unchanged. ``calls`` limits how many forward calls are modified
    (``calls=1``: only the next one, e.g. the first step of ``generate``).
    """
    layer0 = decoder_layers(model)[0]
    state = {"left": calls}

    def hook(module, args, output):
        if state["left"] is not None:
            if state["left"] <= 0:
                return None
            state["left"] -= 1
        hidden = output[0] if isinstance(output, tuple) else output
        pos = positions.to(hidden.device)
        pos = torch.where(pos < 0, pos + hidden.shape[1], pos)  # -1: the call's last token
        rows = _rows(pos)
        vec = vectors.to(device=hidden.device, dtype=hidden.dtype)
        hidden = hidden.index_put((rows, pos), hidden[rows, pos] + vec)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    handle = layer0.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def check_no_gradient_checkpointing(model: nn.Module) -> None:
    """The hooks run inside the decoder layers; recomputation during backward would not see them."""
    base = unwrap(model)
    new_name = hasattr(type(base), "is_activation_checkpointing")  # transformers >= 5.x
    if getattr(base, "is_activation_checkpointing" if new_name else "is_gradient_checkpointing", False):
        raise ValueError(
            "cc_tuning does not support gradient checkpointing (train.gradient_checkpointing): the "
            "connection's hooks run inside the checkpointed decoder layers"
        )


# --------------------------------------------------------------------------- chat template and p
POSITIONS = ("last", "release")
# The release's rule (tag_locate.py), per chat-template family: a marker token and the step from it.
# It counts occurrences in its own templates (Llama 3: the 2nd <|end_header_id|>, no system turn;
# Qwen2: the 3rd <|im_start|>, after the default system turn; Mistral: the 1st [/INST]); in a
# one-turn prompt each is the marker's last occurrence, which is what is looked up here.
RELEASE_MARKERS = (("<|end_header_id|>", 1), ("<|im_start|>", 1), ("[/INST]", -1))


def tokens_after_p(tokenizer, prompt_ids: Sequence[int], position: str = "last") -> int:
    """How many tokens of a templated prompt follow p (``connection_position``; 0 for ``last``).

    ``release``: the marker of :data:`RELEASE_MARKERS` that occurs last in the prompt decides;
    a ValueError names the setting when the prompt has none of them.
    """
    if position not in POSITIONS:
        raise ValueError(f"connection_position must be one of {', '.join(POSITIONS)}, not {position!r}")
    if position == "last":
        return 0
    ids = list(prompt_ids)
    best = None  # (index of the marker, p)
    for marker, step in RELEASE_MARKERS:
        tid = tokenizer.convert_tokens_to_ids(marker)
        if tid is None or tokenizer.convert_ids_to_tokens(tid) != marker or tid not in ids:
            continue
        at = len(ids) - 1 - ids[::-1].index(tid)
        if best is None or at > best[0]:
            best = (at, at + step)
    if best is None or not 0 <= best[1] < len(ids):
        raise ValueError("connection_position release: the templated prompt has none of the release's "
                         f"marker tokens ({', '.join(m for m, _ in RELEASE_MARKERS)}; tag_locate.py knows the "
                         "Llama 3, Qwen2 and Mistral templates): use connection_position: last")  # fmt: skip
    return len(ids) - 1 - best[1]


def common_tokens_after_p(tokenizer, prompts: Sequence[Sequence[int]], position: str = "last") -> int:
    """:func:`tokens_after_p` of a batch of prompts, which must agree (left padding puts p in one column)."""
    counts = sorted({tokens_after_p(tokenizer, x, position) for x in prompts})
    if len(counts) != 1:
        raise ValueError(f"connection_position {position}: p is {counts} tokens before the end of the prompts "
                         "of one batch; the chat template must end every prompt alike")  # fmt: skip
    return counts[0]


def chat_prompt_ids(tokenizer, instruction: str) -> list[int]:
    """Token ids of the user turn rendered by the chat template with the generation prompt appended."""
    messages = [{"role": "user", "content": instruction}]
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def tokenize_chat(tokenizer, instruction: str, response: str, max_length: int | None = None,
                  truncation_side: str = "right", position: str = "last") -> dict | None:  # fmt: skip
    """``input_ids``, ``labels`` (prompt masked) and ``position`` p of an (instruction, response) pair.

    As the training engine's SFT tokenization: the chat-templated prompt
    (generation prompt appended; p chosen by ``position``, :func:`tokens_after_p`)
    + the response tokens + eos. Truncation to ``max_length`` cuts the end
    (``right``) or the start (``left``). None when truncation removed p or every
    response token.
    """
    if truncation_side not in ("left", "right"):
        raise ValueError(f"truncation_side must be 'left' or 'right', not {truncation_side!r}")
    prompt = chat_prompt_ids(tokenizer, instruction)
    answer = list(tokenizer(response, add_special_tokens=False)["input_ids"]) + [tokenizer.eos_token_id]
    ids = prompt + answer
    labels = [IGNORE_INDEX] * len(prompt) + answer
    p = len(prompt) - 1 - tokens_after_p(tokenizer, prompt, position)
    if max_length is not None and len(ids) > max_length:
        cut = len(ids) - max_length
        if truncation_side == "right":
            ids, labels = ids[:max_length], labels[:max_length]
        else:
            ids, labels, p = ids[cut:], labels[cut:], p - cut
    if not 0 <= p < len(ids) or all(t == IGNORE_INDEX for t in labels[1:]):
        return None
    return {"input_ids": ids, "labels": labels, "position": p}


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right",
              value_seqs: Sequence[Sequence[int]] | None = None, value_pad: int = IGNORE_INDEX):  # fmt: skip
    """Pad lists of ids to a (B, T) LongTensor and its attention mask; ``value_seqs`` (labels) alongside."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    vals = torch.full((len(seqs), width), value_pad, dtype=torch.long) if value_seqs is not None else None
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.tensor(list(s), dtype=torch.long)
        mask[i, sl] = 1
        if vals is not None:
            vals[i, sl] = torch.tensor(list(value_seqs[i]), dtype=torch.long)
    return ids, mask, vals


def left_padded_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding (as ``generate`` computes them)."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def pad_token_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id
    return tokenizer.eos_token_id if pid is None else pid
