"""Greedy decoding of a batch of prompts of different lengths, built for the CPU.

``model.generate`` on a left-padded batch wastes work in three places on a CPU
(profile of SmolLM2-135M, one thread, in BENCHMARKS.md):

1. the prompt pass also runs the padding, and the prompt pass is compute-bound
   (about 2 ms per prompt token whatever the batch size), so every padded
   token costs as much as a real one;
2. ``DynamicCache`` grows by ``torch.cat``: each decode step copies the whole
   key/value cache of every layer (29% of a step for 16 prompts of 300 tokens);
3. rows that reached end-of-sequence are computed until the last row stops.

Here each prompt's prompt pass runs alone and unpadded - the same computation
as the one-prompt-at-a-time loop - except that the longest token prefix it
shares with the previous prompt (prompts are visited in lexicographic order)
is taken from that prompt's cache instead of being computed again: the chat
template's system prompt, a benchmark's instruction head, a premise shared by
three XNLI hypotheses. The caches are then laid side by side, LEFT-padded, in
buffers with room for the new tokens (each step writes its keys and values in
place), and a row leaves the batch as soon as it has stopped.

Semantics are those of ``model.generate`` with ``do_sample=False``: the
argmax of the last position's float32 logits, stop at any end-of-sequence id
or after ``max_new_tokens``, position ids counted over real tokens only. Only
caches made of plain ``DynamicLayer`` layers qualify (:func:`supported`; or
sliding-window layers whose window is longer than the sequence); anything else
(shorter windows, recurrent layers) and generation configs that
process logits are left to ``model.generate`` by the caller.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DynamicCache, GenerationConfig
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

# generation-config fields that make model.generate change the logits before the argmax
LOGITS_FIELDS = ("repetition_penalty", "encoder_repetition_penalty", "no_repeat_ngram_size",
                 "encoder_no_repeat_ngram_size", "bad_words_ids", "min_length", "min_new_tokens",
                 "forced_bos_token_id", "forced_eos_token_id", "exponential_decay_length_penalty",
                 "suppress_tokens", "begin_suppress_tokens", "sequence_bias", "guidance_scale",
                 "renormalize_logits", "remove_invalid_values", "watermarking_config")  # fmt: skip


def cache_io(model) -> str:
    """Name of the key/value cache, both as forward argument and output field: ``cache`` in
    transformers >= 5.2x, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def supported(model, config: GenerationConfig, longest: int) -> bool:
    """Whether :func:`greedy_decode` reproduces ``model.generate(generation_config=config)`` for
    sequences of up to ``longest`` tokens: plain key/value cache layers (or sliding-window ones whose
    window holds the whole sequence, where they attend as plain ones) and no logits processing in the
    config the model's defaults fill in."""
    for layer in DynamicCache(config=model.config).layers:
        plain = type(layer) is DynamicLayer
        if not plain and not (type(layer) is DynamicSlidingWindowLayer and layer.sliding_window > longest):
            return False
    default = GenerationConfig()
    for field in LOGITS_FIELDS:
        # model.generate takes the model's value where ours is the default
        ours = getattr(config, field, None)
        value = ours if ours != getattr(default, field, None) else getattr(model.generation_config, field, ours)
        if value != getattr(default, field, None):
            return False
    return True


class ReservedLayer(DynamicLayer):
    """A cache layer that writes new keys/values into room reserved up front (no ``torch.cat``).

    ``keys``/``values`` are views of the first ``length`` positions of the buffers
    (batch, heads, room, head_dim).
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.key_room, self.value_room, self.length = keys, values, length
        self.device, self.is_initialized = keys.device, True
        self._view()

    def _view(self):
        self.keys = self.key_room[:, :, : self.length]
        self.values = self.value_room[:, :, : self.length]

    def update(self, key_states, value_states, *args, **kwargs):
        n = key_states.shape[-2]
        if self.length + n > self.key_room.shape[-2]:  # out of room: grow like DynamicLayer
            self.key_room = torch.cat([self.keys, key_states], dim=-2)
            self.value_room = torch.cat([self.values, value_states], dim=-2)
        else:
            self.key_room[:, :, self.length : self.length + n] = key_states
            self.value_room[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._view()
        return self.keys, self.values

    def select(self, rows: torch.Tensor, start: int = 0):
        """Keep only ``rows`` of the batch and the positions from ``start`` on."""
        self.key_room = self.key_room[rows, :, start:]
        self.value_room = self.value_room[rows, :, start:]
        self.length -= start
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.select(indices)

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("ReservedLayer does not crop")


def _shared(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def prefix_cache(model, cache: DynamicCache, n: int) -> DynamicCache:
    """A new cache holding the first ``n`` positions of ``cache`` (which is left unchanged)."""
    return DynamicCache([(layer.keys[:, :, :n], layer.values[:, :, :n]) for layer in cache.layers], config=model.config)


def prefill(model, prompts: list[list[int]], reuse_prefix: bool = True):
    """Yield (index, cache, last-position logits) for every prompt, each run alone and unpadded,
    in lexicographic order; with ``reuse_prefix`` the prefix a prompt shares with the previous one is
    copied from that one's cache (keys and values of a position depend only on the tokens before it)."""
    name, device = cache_io(model), model.device
    prev, prev_cache = [], None
    for i in sorted(range(len(prompts)), key=lambda i: prompts[i]):
        ids = prompts[i]
        # at least the last token runs: its logits give the first new token
        shared = min(_shared(prev, ids), len(ids) - 1) if reuse_prefix and prev_cache is not None else 0
        cache = prefix_cache(model, prev_cache, shared) if shared else DynamicCache(config=model.config)
        x = torch.tensor([ids[shared:]], device=device)
        positions = torch.arange(shared, len(ids), device=device)[None]
        out = model(input_ids=x, position_ids=positions, use_cache=True, logits_to_keep=1, **{name: cache})
        prev, prev_cache = ids, getattr(out, name)
        yield i, prev_cache, out.logits[0, -1]


@torch.inference_mode()
def greedy_decode(model, prompts: list[list[int]], max_new_tokens: int, eos: list[int], reuse_prefix: bool = True,
                  on_prefill=None) -> list[tuple[list[int], str]]:  # fmt: skip
    """(new tokens before the first eos id, "eos" | "length") of every prompt, decoded as one batch.

    ``on_prefill(index, cache, logits)`` is called with each prompt's own cache and last logits
    right after its prompt pass (option scoring reuses them; it must not change the cache).
    """
    n, width = len(prompts), max(map(len, prompts))
    room = width + max_new_tokens
    # row r holds its prompt at columns width-len(r) .. width-1 (left padding), new tokens after
    mask = torch.zeros((n, room), dtype=torch.long)
    for r, ids in enumerate(prompts):
        mask[r, width - len(ids) : width] = 1
    layers, logits = None, torch.empty(0)
    for i, cache, last in prefill(model, prompts, reuse_prefix):
        if layers is None:  # buffers shaped like this prompt's keys/values, n rows, room positions
            def empty(t):  # (rows, heads, room, head_dim) like t = (1, heads, length, head_dim)
                return t.new_zeros(n, t.shape[1], room, t.shape[-1])

            layers = [ReservedLayer(empty(src.keys), empty(src.values), width) for src in cache.layers]
            logits = last.new_empty(n, last.shape[-1], dtype=torch.float32)
        for layer, src in zip(layers, cache.layers, strict=True):
            layer.key_room[i, :, width - len(prompts[i]) : width] = src.keys[0]
            layer.value_room[i, :, width - len(prompts[i]) : width] = src.values[0]
        logits[i] = last.float()
        if on_prefill is not None:
            on_prefill(i, cache, last)
    cache = DynamicCache(config=model.config)
    cache.layers = layers
    name, device = cache_io(model), model.device
    eos_set = set(eos)
    new: list[list[int]] = [[] for _ in prompts]
    stopped: list[str | None] = [None] * n
    rows = list(range(n))  # prompt index of each batch row still decoding
    lengths = torch.tensor([len(p) for p in prompts])  # real tokens so far: the next position id
    for _ in range(max_new_tokens):
        tokens = logits.argmax(-1)  # greedy: first index of the largest float32 logit, as generate
        keep = []
        for r, (i, t) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            if t in eos_set:
                stopped[i] = "eos"
            else:
                new[i].append(t)
                if len(new[i]) == max_new_tokens:
                    stopped[i] = "length"
                else:
                    keep.append(r)
        if not keep:
            break
        if len(keep) < len(rows):  # drop stopped rows, and columns that are padding in every row left
            sel = torch.tensor(keep)
            rows, tokens, lengths, mask = [rows[r] for r in keep], tokens[sel], lengths[sel], mask[sel]
            start = int(mask.any(0).int().argmax())
            mask = mask[:, start:]
            for layer in layers:
                layer.select(sel.to(device), start)
        cols = layers[0].length + 1
        mask[:, cols - 1] = 1
        out = model(input_ids=tokens[:, None].to(device), attention_mask=mask[:, :cols].to(device),
                    position_ids=lengths[:, None].to(device), use_cache=True, **{name: cache})  # fmt: skip
        lengths += 1
        logits = out.logits[:, -1].float()
    return [(toks, why or "length") for toks, why in zip(new, stopped, strict=True)]
