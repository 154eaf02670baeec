"""The method interface: what a training method contributes to the one training engine.

A method is three things: how its training examples are built from pair records
(the data mix), how its loss is computed, and which parameters train. The engine
(:mod:`crosstune.train`) owns everything else - the ``transformers.Trainer``,
checkpoints and resume, optimiser, mixed precision, distributed launch - and
calls the hooks below in this order, on every process::

    examples = method.build_examples(pairs, settings, seed)        # list of dicts
    features = [method.tokenize(ex, tokenizer, max_length, side) for ex in examples]
    model    = <base model>; LoRA applied by the engine when finetuning.mode == "lora"
    for name, p in model.named_parameters():                        # full / patterns
        p.requires_grad_(method.trainable(name, settings))
    modules  = ModuleDict(method.extra_modules(model, settings))   # e.g. a Decision Maker
    dataset  = method.prepare(model, tokenizer, dataset, settings)  # once, model not yet prepared
    method.reference = method.reference_table(prepared model, ...)  # needs_reference only, before step 1
    each step: batch = method.collate(features, tokenizer)
               loss  = method.compute_loss(model, batch, modules, settings, num_items_in_batch)

``settings`` is the method's entry of the config's ``methods:`` map, resolved
(:func:`crosstune.train.settings.resolve`): ``name`` (the config key, e.g.
``crossin_x2en``), ``type`` (the registry name, e.g. ``crossin``), the method's
own settings at the top level (defaults from :attr:`Method.defaults`) and
``train`` - the full training settings (config ``train:`` merged with the
method's ``train:`` overrides; ``train.finetuning`` holds mode, LoRA and patterns).

Contract of each hook:

* ``build_examples(pairs, settings, seed) -> list[dict]``: pair records (schema
  in :mod:`crosstune.pairs`) -> examples, each at least ``id``, ``prompt`` (the
  user message), ``response``; the SFT family adds ``lang`` (language of the
  response) and ``kind`` (which part of the mix it belongs to). Must be
  deterministic given ``seed``. Methods may add fields (e.g. ``prompt_en``).
* ``tokenize(example, tokenizer, max_length, truncation_side) -> dict``: default
  is the chat-templated prompt (``add_generation_prompt=True``) + response + eos,
  labels -100 on the prompt. Returns lists (``input_ids``, ``labels``, plus any
  method fields); raise :class:`TrainDataError` for an empty response; return
  ``None`` when truncation removed every response token (the engine drops it and
  fails when nothing is left).
* ``collate(features, tokenizer) -> dict``: default right-pads ``input_ids``
  (pad id), ``labels`` (-100) and builds ``attention_mask``.
* ``extra_modules(model, settings) -> dict[str, nn.Module]``: trained with the
  model (they join its optimizer, DDP/FSDP/DeepSpeed wrapping and checkpoints)
  and saved as ``<name>.safetensors`` beside the final Hugging Face model
  directory. Default none.
* ``prepare(model, tokenizer, dataset, settings) -> dataset``: called once before
  training with the model as loaded - not yet wrapped, sharded or on its device,
  so only checks and data work belong here (e.g. a row index column). Default: identity.
* ``reference_table(model, tokenizer, dataset, settings, accelerator) -> tensor``
  (methods with ``needs_reference``): called once by the Trainer at
  ``on_train_begin`` with the model as the training engine prepared it (DDP,
  FSDP or DeepSpeed wrapped, on its device), on every process; the result, one
  row per dataset row, is set as ``method.reference`` and saved in every
  checkpoint (a resumed run reads it back instead of recomputing it).
* ``compute_loss(model, inputs, modules, settings, num_items_in_batch=None)``:
  ``model`` is what the Trainer calls (possibly DDP/DeepSpeed-wrapped);
  ``modules`` the ModuleDict of extra modules. When ``num_items_in_batch`` is
  given (the number of target tokens - ``labels[:, 1:] != -100`` - over the whole
  accumulated, all-process batch) return ``sum of token losses / num_items_in_batch``
  so gradient accumulation and DDP match one large batch; otherwise return a mean
  over this batch (the engine then divides by the accumulation steps).
  Default: causal-LM cross-entropy on ``labels``. A method may set
  ``self.last_metrics`` (name -> detached scalar of this batch, e.g. CLO's
  ``rewards/margins``) and ``self.last_counts`` (name -> detached count vector,
  e.g. CC-Tuning's chosen layers): the engine logs their means since the last log
  to metrics.json, the loss plot and the trackers (:mod:`crosstune.train.trainer`).
* ``trainable(name, settings) -> bool``: which parameters of the (non-LoRA) model
  train. Default from ``settings["train"]["finetuning"]``: ``full`` -> all,
  ``patterns`` -> names matching one of the regexes (``re.search``). In ``lora``
  mode peft decides and this hook is not called. Extra modules always train.

Class attributes: ``name`` (registry key), ``defaults`` (method settings and
their defaults; a config key not listed here is an error), ``train_defaults``
(the method's own defaults for ``train:`` settings, e.g. CLO's attention-only
``finetuning``: merged over the config's ``train:`` and under the method
entry's ``train:`` overrides), ``supports_packing``,
``ddp_find_unused_parameters`` (set True if some trainable parameter can miss a
gradient in a step).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class TrainDataError(ValueError):
    """Bad training input, detected before the first step.

    Hooks raise it with the cause; the engine prefixes the method's config key and type.
    """


class Method:
    name: str = ""
    defaults: dict[str, Any] = {}
    # train: settings this method changes by default (the config's method entry overrides them)
    train_defaults: dict[str, Any] = {}
    # Examples may be packed into shared rows (the default tokenize/collate/loss only).
    supports_packing: bool = False
    # DDP: True when some trainable parameters may get no gradient in a step.
    ddp_find_unused_parameters: bool = False
    # True: the engine calls reference_table() with the prepared model before step 1 and
    # sets .reference to its result (a tensor indexed by dataset row); checkpoints keep it.
    needs_reference: bool = False
    reference = None
    # set by compute_loss, read (and reset) by the engine after every loss: see compute_loss
    last_metrics: dict = {}
    last_counts: dict = {}

    # ----------------------------------------------------------------- data
    def build_examples(self, pairs: list[dict], settings: dict, seed: int) -> list[dict]:
        raise NotImplementedError(f"method {self.name!r} does not build examples")

    def prompt_ids(self, prompt: str, tokenizer) -> list[int]:
        """Token ids of the chat-templated user turn with the generation prompt appended."""
        messages = [{"role": "user", "content": prompt}]
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(out["input_ids"])

    def response_ids(self, response: str, tokenizer) -> list[int]:
        """Token ids of the response followed by eos (the chat template's end-of-turn)."""
        ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        return list(ids) + [tokenizer.eos_token_id]

    def tokenize(self, example: dict, tokenizer, max_length: int, truncation_side: str) -> dict | None:
        if not example["response"].strip():
            raise TrainDataError(f"example {example['id']!r} has an empty response")
        prompt = self.prompt_ids(example["prompt"], tokenizer)
        response = self.response_ids(example["response"], tokenizer)
        if len(response) < 2:  # only eos: the response vanished in templating
            raise TrainDataError(f"example {example['id']!r}: response is empty after templating")
        input_ids = prompt + response
        labels = [-100] * len(prompt) + response
        if len(input_ids) > max_length:
            cut = slice(None, max_length) if truncation_side == "right" else slice(-max_length, None)
            input_ids, labels = input_ids[cut], labels[cut]
        # the first token never is a target (nothing predicts it), so at least one later label must survive
        if all(x == -100 for x in labels[1:]):
            return None
        return {"input_ids": input_ids, "labels": labels}

    def collate(self, features: list[dict], tokenizer) -> dict:
        return pad_batch(features, pad_id(tokenizer))

    # ----------------------------------------------------------------- model
    def extra_modules(self, model, settings: dict) -> dict:
        return {}

    def prepare(self, model, tokenizer, dataset, settings: dict):
        return dataset

    def reference_table(self, model, tokenizer, dataset, settings: dict, accelerator):
        raise NotImplementedError(f"method {self.name!r} sets needs_reference but has no reference_table()")

    def compute_loss(self, model, inputs: dict, modules, settings: dict, num_items_in_batch=None) -> torch.Tensor:
        fields = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
        logits = model(**fields, use_cache=False).logits
        return causal_lm_loss(logits, inputs["labels"], num_items_in_batch)

    def trainable(self, name: str, settings: dict) -> bool:
        ft = settings["train"]["finetuning"]
        if ft["mode"] == "full":
            return True
        if ft["mode"] == "patterns":
            return any(re.search(p, name) for p in ft["patterns"])
        raise ValueError(f"method {self.name!r}: trainable() is not used in finetuning mode {ft['mode']!r}")


# --------------------------------------------------------------------- helpers for methods
def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def pad_sequences(seqs: list[list[int]], value: int):
    """Right-pad lists of ints into one (len(seqs), longest) long tensor."""
    import torch

    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def pad_batch(features: list[dict], pad: int) -> dict:
    """Right-pad ``input_ids`` (pad id) and ``labels`` (-100); add ``attention_mask``.

    Packed rows (features with ``position_ids``) get no attention mask: transformers
    derives a block-diagonal mask from position ids that restart at 0 in every
    segment, and the padding continues as a segment of its own (positions 0, 1, ...).
    """
    import torch

    batch = {
        "input_ids": pad_sequences([f["input_ids"] for f in features], pad),
        "labels": pad_sequences([f["labels"] for f in features], -100),
    }
    if "position_ids" in features[0]:
        width = batch["input_ids"].shape[1]
        batch["position_ids"] = torch.stack([
            torch.tensor(f["position_ids"] + list(range(width - len(f["position_ids"]))), dtype=torch.long)
            for f in features
        ])  # fmt: skip
    else:
        batch["attention_mask"] = pad_sequences([[1] * len(f["input_ids"]) for f in features], 0)
    return batch


def token_losses(logits, labels):
    """Per-token cross-entropy of next-token prediction, (batch, seq-1); 0 where labels[:, 1:] == -100."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    losses = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100, reduction="none"
    )
    return losses.view(shift_labels.shape)


def causal_lm_loss(logits, labels, num_items_in_batch=None):
    """Cross-entropy on response tokens: sum / num_items_in_batch if given, else mean over this batch."""
    losses = token_losses(logits, labels)
    if num_items_in_batch is not None:
        return losses.sum() / num_items_in_batch
    n = (labels[:, 1:] != -100).sum()
    return losses.sum() / n.clamp(min=1)


def sequence_logprobs(logits, labels):
    """Sum of log p(label) over each row's target tokens, shape (batch,) - for preference losses."""
    return -token_losses(logits, labels).sum(-1)
