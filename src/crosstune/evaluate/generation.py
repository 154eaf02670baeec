"""Greedy generation and option log-likelihoods with a Hugging Face causal LM.

Prompts are formatted in one place, :func:`prompt_text`: by default the
chat-templated user message with the generation prompt appended
(``apply_chat_template(..., add_generation_prompt=True)``); with
``models.<name>.prompt_format: plain`` the prompt text itself (after the BOS
token where the tokenizer adds one), for base models without a chat template.
Either is tokenised without adding special tokens again (the text holds them).

:func:`greedy_generate` decodes many prompts at once, in batches sorted by
length (longest first, so memory errors come early) of at most ``batch_size``
prompts, ``max_batch_tokens`` padded tokens (prompt + new tokens) and a
``max_padding`` share of padding. Each batch is decoded by
:func:`.decode.greedy_decode`: every prompt's prompt pass runs alone and
unpadded, the caches are LEFT-padded side by side for the decode steps,
finished rows leave the batch; models it does not handle (short sliding
windows, logits processors in the generation config), and ``decoder="padded"``,
get one left-padded ``model.generate`` call per batch. Position ids count real
tokens only, so every prompt sees positions 0, 1, ... exactly as when it is
decoded alone; the batched tokens equal those of :func:`generate_one_by_one`,
the one-prompt-at-a-time loop of the paper's code, in float32 and in bfloat16
(tests and ``benchmarks/generate_speed.py`` check this).
:func:`generate_and_score` also scores multiple-choice options on each prompt's
cache right after its prompt pass, so such a prompt is run once, not twice.

:func:`option_logliks` computes what lm-evaluation-harness's ``loglikelihood``
computes: the summed log-probability of the continuation's tokens given the
context, and whether each was the argmax (``is_greedy``). The pair is encoded
as HFLM does for causal models - the whole string encoded, the continuation's
tokens being those after the context's - with one difference by default: HFLM
moves trailing whitespace of the context into the continuation, so after a
chat prompt ending in "assistant\n" every option would also be charged
log p("\n" | "...assistant") and ``is_greedy`` would need "\n" to be the argmax.
We condition on the whole generation prompt, exactly what the model answers
after; ``move_whitespace=True`` gives HFLM's encoding (both are checked against
HFLM in ``benchmarks/check_loglik_vs_lm_eval.py``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import decode

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DECODERS = ("exact", "padded")  # evaluation.generation.decoder
PROMPT_FORMATS = ("chat", "plain")  # models.<name>.prompt_format


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def native_bf16(device: torch.device) -> bool:
    """Whether ``dtype: auto`` decodes in bfloat16 on ``device``: a CUDA GPU with bf16 support, or
    a CPU with AMX, where bfloat16 generate jobs ran 2.1x faster than float32 and decode steps of up
    to 32 rows keep the one-by-one bits (:func:`.decode.exact_rows`). A CPU with AVX512-BF16 but no
    AMX multiplies bf16 natively too, yet there the generate job ran slower than in float32 and its
    decode steps must take one row to stay exact; without either, bf16 products are emulated
    (7x slower prompt passes, measured with oneDNN limited to AVX2). BENCHMARKS.md has the runs."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()  # private, hence the getattr
    return False


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 where the hardware has it (:func:`native_bf16`), else float32."""
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return DTYPES[dtype]


def planned_dtype(dtype: str, device: str = "auto", gpus: int = 0) -> str:
    """The dtype a generate job will decode in, decided when the DAG is planned (a rule param,
    so the dtype ``auto`` resolves to is recorded and a change reruns the job).

    ``device`` is evaluation.generation.device, ``gpus`` the job's gpu resource. ``auto`` on
    a GPU job: bfloat16 where this machine's GPU has it, or on a machine without one (the
    job checks the GPU it gets, :func:`check_planned_dtype`); on a CPU job: this CPU's answer.
    """
    if dtype != "auto":
        return dtype
    on_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if on_gpu and not torch.cuda.is_available():
        return "bfloat16"
    resolved = resolve_dtype("auto", torch.device("cuda" if on_gpu else "cpu"))
    return next(name for name, value in DTYPES.items() if value == resolved)


def check_planned_dtype(dtype: str, planned: str, device: str = "auto") -> None:
    """Refuse to decode in another dtype than the planned one (``auto`` resolving differently
    on the machine the job runs on, e.g. a cluster node with another CPU or GPU)."""
    actual = resolve_dtype(dtype, resolve_device(device))
    if actual != DTYPES[planned]:
        raise RuntimeError(
            f"evaluation.generation.dtype: 'auto' was planned as {planned} but resolves to "
            f"{str(actual).removeprefix('torch.')} on this machine ({resolve_device(device)}); "
            "set evaluation.generation.dtype explicitly"
        )


def load_model(model_dir: str | Path, tokenizer_dir: str | Path | None = None, dtype: str = "float32",
               device: str = "auto", prompt_format: str = "chat", model_name: str | None = None):  # fmt: skip
    """(model, tokenizer) of a model directory; a PEFT adapter directory is merged into its base.

    The tokenizer is read from ``model_dir`` when it has one, else from ``tokenizer_dir``.
    ``dtype``: float32 | bfloat16 | float16 | auto (:func:`resolve_dtype`). The tokenizer must
    be able to format prompts as ``prompt_format`` (:func:`check_prompt_format`; ``model_name``:
    the ``models:`` entry its error names).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    torch_dtype = resolve_dtype(dtype, resolve_device(device))
    if (model_dir / "adapter_config.json").exists() and not (model_dir / "config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype)
    has_tokenizer = any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir if has_tokenizer or tokenizer_dir is None else tokenizer_dir)
    check_prompt_format(tokenizer, prompt_format, model_name, model_dir)
    model.to(resolve_device(device)).eval()
    return model, tokenizer


def check_prompt_format(tokenizer, prompt_format: str, model_name: str | None = None, where=""):
    """Refuse a prompt format the tokenizer cannot render, naming the config keys that fix it."""
    key = f"models.{model_name or '<name>'}"
    if prompt_format not in PROMPT_FORMATS:
        choices = ", ".join(PROMPT_FORMATS)
        raise ValueError(f"{key}.prompt_format: {prompt_format!r} is not one of {choices}")
    if prompt_format == "chat" and not tokenizer.chat_template:
        raise ValueError(
            f"{where}: the tokenizer has no chat template, so {key}.prompt_format: chat (the default) cannot "
            f"format the evaluation prompts; set {key}.prompt_format: plain (the prompt text as it is, for a "
            f"base model) or give the model a template with {key}.chat_template"
        )


def chat_text(tokenizer, prompt: str) -> str:
    """The chat-templated prompt (one user message, generation prompt appended)."""
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )


def bos_text(tokenizer) -> str:
    """The BOS token as text when the tokenizer puts one before every text it encodes (Llama, Gemma),
    else "": a plain prompt starts as the base model's training texts did, as a chat template's does."""
    bos = tokenizer.bos_token_id
    ids = tokenizer("a")["input_ids"]
    return tokenizer.bos_token if bos is not None and ids[:1] == [bos] else ""


def prompt_text(tokenizer, prompt: str, prompt_format: str = "chat") -> str:
    """The text the model is given for a benchmark prompt (``models.<name>.prompt_format``):
    ``chat`` - :func:`chat_text`; ``plain`` - the prompt itself, after :func:`bos_text`."""
    return prompt_texts(tokenizer, [prompt], prompt_format)[0]


def prompt_texts(tokenizer, prompts: list[str], prompt_format: str = "chat") -> list[str]:
    """:func:`prompt_text` of many prompts (the BOS check tokenises once, not per prompt)."""
    if prompt_format == "chat":
        return [chat_text(tokenizer, p) for p in prompts]
    if prompt_format == "plain":
        bos = bos_text(tokenizer)
        return [bos + p for p in prompts]
    raise ValueError(f"prompt_format: {prompt_format!r} is not one of {', '.join(PROMPT_FORMATS)}")


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a response: the generation config's eos ids and the tokenizer's eos."""
    eos = model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    if not ids:
        raise ValueError("the model has no end-of-sequence token; greedy decoding could not stop")
    return ids


def _generation_config(model, tokenizer, max_new_tokens: int):
    from transformers import GenerationConfig

    eos = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                            eos_token_id=eos, pad_token_id=pad)  # fmt: skip


def batches(lengths: list[int], batch_size: int, max_batch_tokens: int | None = None, extra: int = 0,
            max_padding: float | None = None):  # fmt: skip
    """Index lists, longest first, each with at most ``batch_size`` items, ``max_batch_tokens``
    padded tokens and a share of padding tokens of at most ``max_padding`` (``extra``: tokens
    every row gets beyond its length, e.g. the new tokens)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    start = 0
    while start < len(order):
        width = lengths[order[start]] + extra  # the first is the longest: every row is padded to it
        cap = batch_size if max_batch_tokens is None else max(1, min(batch_size, max_batch_tokens // width))
        end, real = start + 1, width
        while end < len(order) and end - start < cap:
            row = lengths[order[end]] + extra
            if max_padding is not None and 1 - (real + row) / ((end - start + 1) * width) > max_padding:
                break
            end, real = end + 1, real + row
        yield order[start:end]
        start = end


def _cut(new_tokens: list[int], eos: list[int]) -> tuple[list[int], str]:
    """Tokens before the first end-of-sequence token, and why decoding stopped."""
    for i, t in enumerate(new_tokens):
        if t in eos:
            return new_tokens[:i], "eos"
    return new_tokens, "length"


@torch.inference_mode()
def greedy_generate(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int = 40,
                    batch_size: int = 16, desc: str | None = None, max_batch_tokens: int | None = None,
                    max_padding: float | None = None, decoder: str = "exact",
                    reuse_prefix: bool = False) -> list[tuple[list[int], str]]:  # fmt: skip
    """Greedy continuation of every prompt: (new tokens before eos, "eos" | "length"), in input order."""
    return generate_and_score(model, tokenizer, prompt_ids, None, max_new_tokens, batch_size, desc,
                              max_batch_tokens, max_padding, decoder=decoder, reuse_prefix=reuse_prefix)[0]  # fmt: skip


@torch.inference_mode()
def generate_and_score(model, tokenizer, prompt_ids: list[list[int]], continuations: list[list[list[int]]] | None,
                       max_new_tokens: int = 40, batch_size: int = 16, desc: str | None = None,
                       max_batch_tokens: int | None = None, max_padding: float | None = None,
                       score_batch_size: int = 16, decoder: str = "exact", reuse_prefix: bool = False,
                       prompt_pass=None) -> tuple[list[tuple[list[int], str]], list | None]:  # fmt: skip
    """:func:`greedy_generate`, and with ``continuations`` (per prompt, a list of token lists) also
    :func:`token_logliks` of each continuation after its prompt: ``(outputs, scores)``, ``scores[i]``
    the (log-likelihood, is_greedy) pairs of prompt i's continuations.

    ``decoder``: ``exact`` decodes with :func:`.decode.greedy_decode` (outputs equal
    :func:`generate_one_by_one`'s) where :func:`.decode.supported`, else ``model.generate``;
    ``padded`` always runs left-padded ``model.generate`` batches (faster on a GPU, but a padded
    batch rounds differently: in bfloat16 some outputs differ from one-by-one decoding).
    ``reuse_prefix``: see :func:`.decode.prefill`. With ``exact`` the continuations are scored
    on each prompt's own cache right after its prompt pass, so a multiple-choice prompt is run
    once, not twice. ``prompt_pass(model, i, input_ids, position_ids, cache)``: prompt i's pass
    (see :func:`.decode.prefill`; only where :func:`exact_decoding` holds).
    """
    config = _generation_config(model, tokenizer, max_new_tokens)
    eos = config.eos_token_id
    results: list = [None] * len(prompt_ids)
    scores: list | None = None if continuations is None else [[] for _ in prompt_ids]
    lengths = [len(x) for x in prompt_ids]
    fast = exact_decoding(model, tokenizer, prompt_ids, max_new_tokens, decoder)
    if prompt_pass is not None and not fast:
        raise ValueError("a custom prompt pass needs the exact decoder (evaluate/decode.py)")
    if fast:  # decode steps of at most the rows this machine multiplies as one-row products
        rows = decode.exact_rows(model, batch_size)
        if rows < batch_size:
            log.info("batch_size %d -> %d: in %s this CPU's matrix products round each row as a one-row "
                     "product only up to %d row(s) (decode.exact_rows)", batch_size, rows, model.dtype, rows)  # fmt: skip
            batch_size = rows
    with tqdm(total=len(prompt_ids), desc=desc or "generate", unit="prompt", mininterval=5) as bar:
        for batch in batches(lengths, batch_size, max_batch_tokens, max_new_tokens, max_padding):
            if fast:
                def score(row, cache, last, batch=batch):  # the options of prompt batch[row]
                    i = batch[row]
                    if continuations is not None and continuations[i]:
                        scores[i] = _score_on_cache(model, prompt_ids[i], continuations[i], cache, last,
                                                    config.pad_token_id, score_batch_size)  # fmt: skip

                def run(model, row, x, positions, cache, batch=batch):  # prompt batch[row]'s pass
                    return (prompt_pass or decode.plain_pass)(model, batch[row], x, positions, cache)

                outs = decode.greedy_decode(model, [prompt_ids[i] for i in batch], max_new_tokens, eos,
                                            reuse_prefix=reuse_prefix, on_prefill=score, prompt_pass=run)  # fmt: skip
            else:
                outs = _generate_padded(model, [prompt_ids[i] for i in batch], config)
            for i, out in zip(batch, outs, strict=True):
                results[i] = out
            bar.update(len(batch))
    if continuations is not None and not fast:  # model.generate kept no cache: score separately
        pairs = [(prompt_ids[i], c) for i, conts in enumerate(continuations) for c in conts]
        flat = iter(token_logliks(model, tokenizer, pairs, score_batch_size, f"{desc or 'generate'} options",
                                  max_batch_tokens=max_batch_tokens, max_padding=max_padding))  # fmt: skip
        scores = [[next(flat) for _ in conts] for conts in continuations]
    return results, scores


def exact_decoding(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, decoder: str = "exact") -> bool:
    """Whether ``decoder`` (evaluation.generation.decoder) decodes these prompts with
    :func:`.decode.greedy_decode` (else left-padded ``model.generate`` batches)."""
    if decoder not in DECODERS:
        raise ValueError(f"evaluation.generation.decoder: {decoder!r} is not one of {DECODERS}")
    config = _generation_config(model, tokenizer, max_new_tokens)
    longest = max(map(len, prompt_ids), default=0) + max_new_tokens
    return decoder == "exact" and decode.supported(model, config, longest)


def _generate_padded(model, prompts: list[list[int]], config) -> list[tuple[list[int], str]]:
    """One left-padded ``model.generate`` call (models :mod:`.decode` does not handle)."""
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), config.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):  # left padding
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                         generation_config=config)  # fmt: skip
    return [_cut(out[row, width:].tolist(), config.eos_token_id) for row in range(len(prompts))]


def _score_on_cache(model, prompt: list[int], conts: list[list[int]], cache, last, pad: int,
                    batch_size: int) -> list[tuple[float, bool]]:  # fmt: skip
    """(log-likelihood, is_greedy) of each continuation after ``prompt``, given the prompt's own cache
    (left unchanged: each chunk runs on a copy) and its last position's logits."""
    for c in conts:
        if not c:
            raise ValueError("log-likelihood: empty continuation after encoding")
    first = torch.log_softmax(last.float(), dim=-1)[None]  # one context row: scores every first token
    n = len(prompt)
    mask, positions = torch.ones((1, n), dtype=torch.long), torch.arange(n)[None]
    pairs = [(prompt, c) for c in conts]
    out = []
    for start in range(0, len(conts), batch_size):
        chunk = [(0, j) for j in range(start, min(start + batch_size, len(conts)))]
        copy_ = decode.prefix_cache(model, cache, n)
        out += _continuations(model, pairs, chunk, first, copy_, mask, positions, pad)
    return out


@torch.inference_mode()
def generate_one_by_one(model, tokenizer, prompt_ids: list[list[int]],
                        max_new_tokens: int = 40) -> list[tuple[list[int], str]]:  # fmt: skip
    """The paper's loop: each prompt decoded alone, no padding (the reference for batching)."""
    config = _generation_config(model, tokenizer, max_new_tokens)
    results = []
    for ids in prompt_ids:
        x = torch.tensor([ids], device=model.device)
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=config)
        results.append(_cut(out[0, len(ids) :].tolist(), config.eos_token_id))
    return results


def encode_pair(tokenizer, context: str, continuation: str,
                move_whitespace: bool = False) -> tuple[list[int], list[int]]:  # fmt: skip
    """(context tokens, continuation tokens) as HFLM's causal ``_encode_pair`` (see the module docstring)."""
    n_spaces = len(context) - len(context.rstrip()) if move_whitespace else 0
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    ctx = encode(tokenizer, context)
    return ctx, whole[len(ctx) :]


@torch.inference_mode()
def option_logliks(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 16,
                   desc: str | None = None, move_whitespace: bool = False, max_batch_tokens: int | None = None,
                   max_padding: float | None = None, prompt_hook=None) -> list[tuple[float, bool]]:  # fmt: skip
    """(sum of log p(continuation | context), whether greedy decoding would produce it) per request."""
    pairs = [encode_pair(tokenizer, c, x, move_whitespace) for c, x in requests]
    return token_logliks(model, tokenizer, pairs, batch_size, desc, [x for _, x in requests], max_batch_tokens,
                         max_padding, prompt_hook)  # fmt: skip


def _left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    return ids, mask


@torch.inference_mode()
def token_logliks(model, tokenizer, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16,
                  desc: str | None = None, texts: list[str] | None = None, max_batch_tokens: int | None = None,
                  max_padding: float | None = None, prompt_hook=None) -> list[tuple[float, bool]]:  # fmt: skip
    """:func:`option_logliks` on encoded (context, continuation) token lists.

    The options of one item share their context: each distinct context is run
    once (left-padded batches, position ids from the mask), its key/value cache
    is copied to one row per continuation, and only the continuation tokens are
    run on top. The first continuation token is scored by the context's last
    logits, every later one by the continuation pass. ``prompt_hook(ids, mask,
    positions)``, a context manager, wraps the context pass (CC-Tuning's
    connection, :mod:`.connection`).
    """
    for i, (ctx, cont) in enumerate(pairs):
        if not ctx or not cont:
            what = repr(texts[i]) if texts else f"request {i}"
            raise ValueError(f"log-likelihood of {what}: empty context or continuation after encoding")
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        groups.setdefault(tuple(ctx), []).append(i)
    contexts = list(groups)
    results: list = [None] * len(pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.device
    longest = max(len(c) for _, c in pairs)
    with tqdm(total=len(pairs), desc=desc or "loglikelihood", unit="option", mininterval=5) as bar:
        for batch in batches([len(c) for c in contexts], batch_size, max_batch_tokens, longest, max_padding):
            ids, mask = _left_pad([list(contexts[b]) for b in batch], pad)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            tensors = ids.to(device), mask.to(device), positions.to(device)
            with prompt_hook(*tensors) if prompt_hook else contextlib.nullcontext():
                out = model(input_ids=tensors[0], attention_mask=tensors[1], position_ids=tensors[2], use_cache=True,
                            logits_to_keep=1)  # fmt: skip
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # scores each continuation's first token
            context_cache = getattr(out, decode.cache_io(model))
            rows = [(k, i) for k, b in enumerate(batch) for i in groups[contexts[b]]]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                last = start + batch_size >= len(rows)
                cache = context_cache if last else copy.deepcopy(context_cache)
                scores = _continuations(model, pairs, chunk, first, cache, mask, positions, pad)
                for (_, i), score in zip(chunk, scores, strict=True):
                    results[i] = score
                bar.update(len(chunk))
    return results


def _continuations(model, pairs, chunk, first, cache, mask, positions, pad) -> list[tuple[float, bool]]:
    """Scores of the continuations in ``chunk`` ((context row, request index) pairs) on the contexts' cache."""
    device = model.device
    conts = [pairs[i][1] for _, i in chunk]
    rows = torch.tensor([k for k, _ in chunk])
    heads = torch.tensor([c[0] for c in conts])
    first_lp = first[rows.to(first.device), heads.to(first.device)]
    first_greedy = first[rows.to(first.device)].argmax(-1) == heads.to(first.device)
    scores = [(float(first_lp[r]), bool(first_greedy[r])) for r in range(len(chunk))]
    rest = max(len(c) for c in conts) - 1
    if rest == 0:
        return scores
    cache.reorder_cache(rows.to(device))  # one copy of the context per continuation (in place)
    x = torch.full((len(chunk), rest), pad, dtype=torch.long)
    x_mask = torch.zeros((len(chunk), rest), dtype=torch.long)
    for r, c in enumerate(conts):  # right-padded: padding after the real tokens is never attended to
        x[r, : len(c) - 1] = torch.tensor(c[:-1])
        x_mask[r, : len(c) - 1] = 1
    x_pos = positions[rows, -1:] + 1 + torch.arange(rest)
    logits = model(input_ids=x.to(device), attention_mask=torch.cat([mask[rows], x_mask], -1).to(device),
                   position_ids=x_pos.to(device), use_cache=True, **{decode.cache_io(model): cache}).logits  # fmt: skip
    out = []
    for r, c in enumerate(conts):
        total, greedy = scores[r]
        if len(c) > 1:
            lp = torch.log_softmax(logits[r, : len(c) - 1].float(), dim=-1)
            target = torch.tensor(c[1:], device=lp.device)
            total += lp.gather(-1, target[:, None]).sum().item()
            greedy = greedy and bool((lp.argmax(-1) == target).all())
        out.append((total, greedy))
    return out
