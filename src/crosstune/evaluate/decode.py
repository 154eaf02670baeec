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
as the one-prompt-at-a-time loop - and writes its keys and values straight
into LEFT-padded batch buffers with room for the new tokens (each decode step
writes in place). Decode steps attend per row over the row's own positions
only (:func:`ragged_sdpa`), so padding costs no arithmetic and does not limit
the batch, and a row leaves the batch as soon as it has stopped.

Every operation a row goes through is then the one-by-one loop's own, except
the decode steps' matrix products, which take all rows at once. In bfloat16 on
a CPU with AMX (oneDNN) a product of up to 32 rows gives each row exactly the
bits of a one-row product (33 rows and more do not); without AMX two rows can
already differ, so a half-precision decode step takes at most 32 rows or one
(:func:`exact_rows`; the caller splits the batch), and the outputs equal the
one-by-one loop's token for token by construction; in float32 a
product of 2 rows or more rounds the last bit differently from a one-row
product, which in every measurement here left the outputs unchanged
(BENCHMARKS.md has both, and an H200 run). Optionally
(``reuse_prefix``) a prompt that shares a long token prefix with the previous
one (prompts are visited in lexicographic order: the chat template's system
prompt, a premise shared by three XNLI hypotheses) copies it from that
prompt's row instead of computing it, where that pays (see :func:`prefill`):
about 5% of the prompt pass, but the shorter pass is a matrix product of
another shape, which rounds differently (in bfloat16 8 of 32 outputs changed).

Semantics are those of ``model.generate`` with ``do_sample=False``: the
argmax of the last position's float32 logits, stop at any end-of-sequence id
or after ``max_new_tokens``, position ids counted over real tokens only. Only
caches made of plain ``DynamicLayer`` layers qualify (:func:`supported`; or
sliding-window layers whose window is longer than the sequence); anything else
(shorter windows, recurrent layers) and generation configs that
process logits are left to ``model.generate`` by the caller.
"""

from __future__ import annotations

import contextlib
import inspect

import torch

from ..versions import require

# the private transformers functions below change between releases: refuse an untested one first
require("transformers", "crosstune.evaluate.decode (the evaluation's decoder)")

from transformers import AttentionInterface, DynamicCache, GenerationConfig  # noqa: E402
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer  # noqa: E402
from transformers.integrations.sdpa_attention import sdpa_attention_forward  # noqa: E402
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask  # noqa: E402

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


AMX_ROWS = 32  # rows a bfloat16 product takes on AMX and still rounds each row as alone (measured)


def exact_rows(model, limit: int) -> int:
    """The most rows (at most ``limit``) a decode step of ``model`` may take so that each row keeps
    the one-prompt-at-a-time loop's bits.

    A CPU matrix product accumulates in float32 in an order set by the kernel oneDNN picks for the
    shape, dtype and thread count; a half-precision result is that sum rounded to 8 (bfloat16) or
    11 bits, so a different order shows in some outputs and, through the argmax, in some tokens.
    With AMX a bfloat16 product of up to 32 rows gives each row exactly a one-row product's bits
    (33 rows and more do not; BENCHMARKS.md). Without AMX (AVX512-BF16 only) the one-row product
    takes another kernel: products of 2 rows already differ for some inputs, and 10 of 48 SmolLM2
    outputs differed from the one-by-one loop - there, and for float16, decode steps take one row.
    float32 and GPUs keep ``limit``: a batched float32 product differs from a one-row one in the
    last of 24 bits, which in every measurement here left the outputs alone.
    """
    if model.device.type != "cpu" or model.dtype not in (torch.bfloat16, torch.float16):
        return limit
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()  # private, hence the getattr
    return min(limit, AMX_ROWS) if amx and model.dtype == torch.bfloat16 else 1


RAGGED = "crosstune_ragged_sdpa"


def ragged_sdpa(module, query, key, value, attention_mask, *args, **kwargs):
    """``sdpa`` where each row of a one-token decode step attends only from its first real position.

    A left-padded row would otherwise run the attention arithmetic over all the padding (in a
    batch with one 950-token prompt, every row attends over 950+ positions), and through another
    kernel path than a prompt decoded alone (with a mask: no ``enable_gqa``). Here every row is the
    very call the one-prompt-at-a-time loop makes: no mask, its own positions only. Needs masks
    that are padding on the left and real tokens after (what :func:`greedy_decode` builds).
    """
    if attention_mask is None or query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, *args, **kwargs)
    allowed = attention_mask[:, 0, 0] if attention_mask.dtype == torch.bool else attention_mask[:, 0, 0] == 0
    starts = allowed.int().argmax(-1).tolist()  # each row's first attended column
    rows = [sdpa_attention_forward(module, query[r : r + 1], key[r : r + 1, :, s:], value[r : r + 1, :, s:], None,
                                   *args, **kwargs)[0] for r, s in enumerate(starts)]  # fmt: skip
    return torch.cat(rows), None


AttentionInterface.register(RAGGED, ragged_sdpa)
ALL_MASK_ATTENTION_FUNCTIONS.register(RAGGED, sdpa_mask)


@contextlib.contextmanager
def ragged_attention(model):
    """Decode steps with :func:`ragged_sdpa` when the model runs ``sdpa`` (else unchanged)."""
    before = model.config._attn_implementation
    if before != "sdpa":
        yield
        return
    model.set_attn_implementation(RAGGED)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


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

    def select(self, keep: list[int], start: int = 0, firsts: list[int] | None = None):
        """Keep only the batch rows ``keep`` (increasing) and the positions from ``start`` on.

        Rows move up inside the buffers (row keep[j] -> row j; keep[j] >= j, so a row is read before
        it is overwritten), only from its first real column ``firsts[j]`` on: no new buffer, whose
        first writes would cost a page fault per 4 kB. Row j keeps its old, finite values before that.
        """
        for j, r in enumerate(keep):
            if r != j:
                a = firsts[j] if firsts else 0
                self.key_room[j, :, a : self.length] = self.key_room[r, :, a : self.length]
                self.value_room[j, :, a : self.length] = self.value_room[r, :, a : self.length]
        self.key_room = self.key_room[: len(keep), :, start:]
        self.value_room = self.value_room[: len(keep), :, start:]
        self.length -= start
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_room, self.value_room = self.key_room[indices], self.value_room[indices]
        self._view()

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last ``-tokens_to_remove`` positions (transformers' negative crop); their room
        stays, and the next update writes over it."""
        if tokens_to_remove > 0:
            raise ValueError(f"ReservedLayer.crop takes the negative number of positions to remove, not {tokens_to_remove}")
        self.length = max(0, self.length + tokens_to_remove)
        self._view()


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


def _row_cache(model, layers: list[ReservedLayer], row: int, pad: int, length: int) -> DynamicCache:
    """A one-row cache whose layers are views of ``row`` of the batch buffers, from column ``pad`` on:
    a prompt pass on it writes its keys and values straight into the batch buffers."""
    cache = DynamicCache(config=model.config)
    cache.layers = [ReservedLayer(b.key_room[row : row + 1, :, pad:], b.value_room[row : row + 1, :, pad:], length)
                    for b in layers]  # fmt: skip
    return cache


def plain_pass(model, index: int, input_ids: torch.Tensor, position_ids: torch.Tensor, cache) -> torch.Tensor:
    """A prompt pass: the (1, n) tokens after what ``cache`` holds, appended to it; the last position's logits."""
    out = model(input_ids=input_ids, position_ids=position_ids, use_cache=True, logits_to_keep=1,
                **{cache_io(model): cache})  # fmt: skip
    return out.logits[0, -1]


def prefill(model, prompts: list[list[int]], room: int, reuse_prefix: bool = False, zero_padding: bool = False,
            on_prefill=None, prompt_pass=plain_pass) -> tuple[list[ReservedLayer], torch.Tensor]:  # fmt: skip
    """The prompt pass of every prompt, alone and unpadded, into LEFT-padded batch buffers.

    Row r holds prompt r at columns width-len(r) .. width-1 (width: the longest prompt) and has
    room for ``room`` positions. Prompts run in lexicographic order; with ``reuse_prefix`` the
    prefix a prompt shares with the previous one is copied from that one's row instead of being
    computed (a position's keys and values depend only on the tokens up to it). Returns the
    buffers (as cache layers holding ``width`` positions) and the last position's float32 logits.
    ``prompt_pass(model, index, input_ids, position_ids, cache)`` runs a prompt's pass (default
    :func:`plain_pass`; CC-Tuning's connection brings its own): it must leave the prompt's keys and
    values in ``cache`` and return its last position's logits.
    """
    device = model.device
    n, width = len(prompts), max(map(len, prompts))
    layers: list[ReservedLayer] = []
    logits = torch.empty(0)
    prev = None
    for i in sorted(range(n), key=lambda i: prompts[i]):
        ids, pad = prompts[i], width - len(prompts[i])
        # at least the last token runs: its logits give the first new token
        shared = min(_shared(prompts[prev], ids), len(ids) - 1) if reuse_prefix and prev is not None else 0
        # on a prefix the pass attends through an explicit mask, not sdpa's is_causal, which costs
        # about len^2 / 8000 tokens' worth (SmolLM2, one CPU thread: 4767 tokens took 22 s, not 14):
        # a short shared prefix of a long prompt (the chat template's system prompt) is not worth it
        if shared * 8192 < len(ids) ** 2:
            shared = 0
        if not layers:  # first prompt: a plain cache, which shows the shapes of the keys and values
            cache = DynamicCache(config=model.config)
        else:
            prev_pad = width - len(prompts[prev])
            for b in layers:
                b.key_room[i, :, pad : pad + shared] = b.key_room[prev, :, prev_pad : prev_pad + shared]
                b.value_room[i, :, pad : pad + shared] = b.value_room[prev, :, prev_pad : prev_pad + shared]
            cache = _row_cache(model, layers, i, pad, shared)
        x = torch.tensor([ids[shared:]], device=device)
        positions = torch.arange(shared, len(ids), device=device)[None]
        last = prompt_pass(model, i, x, positions, cache)
        if not layers:
            def empty(t):  # (rows, heads, room, head_dim) like t = (1, heads, length, head_dim)
                # not zeroed: zero-filling 1.4 GB for 32 rows of up to 1000 tokens costs seconds
                return t.new_empty(n, t.shape[1], room, t.shape[-1])

            layers = [ReservedLayer(empty(src.keys), empty(src.values), width) for src in cache.layers]
            for b, src in zip(layers, cache.layers, strict=True):
                b.key_room[i, :, pad:width], b.value_room[i, :, pad:width] = src.keys[0], src.values[0]
            logits = last.new_empty(n, last.shape[-1], dtype=torch.float32)
        if zero_padding:  # masked attention weighs the padding by 0, and 0 * garbage may be nan
            for b in layers:
                b.key_room[i, :, :pad], b.value_room[i, :, :pad] = 0, 0
        logits[i] = last.float()
        if on_prefill is not None:
            on_prefill(i, cache, last)
        prev = i
    return layers, logits


@torch.inference_mode()
def greedy_decode(model, prompts: list[list[int]], max_new_tokens: int, eos: list[int], reuse_prefix: bool = False,
                  on_prefill=None, ragged: bool = True, prompt_pass=plain_pass) -> list[tuple[list[int], str]]:  # fmt: skip
    """(new tokens before the first eos id, "eos" | "length") of every prompt, decoded as one batch.

    ``on_prefill(index, cache, logits)`` is called with each prompt's own cache and last logits
    right after its prompt pass (option scoring reuses them; it must not change the cache).
    ``ragged``: decode steps attend without padding (:func:`ragged_sdpa`). ``prompt_pass``: see
    :func:`prefill`.
    """
    ragged = ragged and model.config._attn_implementation == "sdpa"
    n, width = len(prompts), max(map(len, prompts))
    layers, logits = prefill(model, prompts, width + max_new_tokens, reuse_prefix, not ragged, on_prefill, prompt_pass)
    cache = DynamicCache(config=model.config)
    cache.layers = layers
    mask = torch.zeros((n, width + max_new_tokens), dtype=torch.long)  # 1: a real token
    for r, ids in enumerate(prompts):
        mask[r, width - len(ids) : width] = 1
    name, device = cache_io(model), model.device
    eos_set = set(eos)
    new: list[list[int]] = [[] for _ in prompts]
    stopped: list[str | None] = [None] * n
    rows = list(range(n))  # prompt index of each batch row still decoding
    lengths = torch.tensor([len(p) for p in prompts])  # real tokens so far: the next position id
    with ragged_attention(model) if ragged else contextlib.nullcontext():
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
                firsts = (mask.int().argmax(-1)).tolist()  # first real column of each kept row
                mask = mask[:, start:]
                for layer in layers:
                    layer.select(keep, start, firsts)
            cols = layers[0].length + 1
            mask[:, cols - 1] = 1
            out = model(input_ids=tokens[:, None].to(device), attention_mask=mask[:, :cols].to(device),
                        position_ids=lengths[:, None].to(device), use_cache=True, **{name: cache})  # fmt: skip
            lengths += 1
            logits = out.logits[:, -1].float()
    return [(toks, why or "length") for toks, why in zip(new, stopped, strict=True)]
