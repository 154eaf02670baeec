r"""CLO - Cross-Lingual Optimization (docs/methods.md section 3) and its SFT->DPO baseline.

Both classes implement the training engine's Method interface
(``crosstune.methods.base.Method``: ``build_examples``, ``tokenize``, ``collate``,
``extra_modules``, ``prepare``, ``compute_loss``, ``trainable``); they are
registered as ``clo`` and ``sft_dpo``.

Data (:mod:`crosstune.preference`): one training example is one item in one
target language t with both preference directions, (x_t: chosen y_t, rejected
y_en) and (x_en: chosen y_en, rejected y_t). Settings ``size`` (items per target
language: the paper's 3,200 / 6,400 examples), ``languages`` and ``seed``.

Loss of ``clo``, for a batch of B examples (2B preference pairs)::

    L      = lambda * NLL + (1 - lambda) * L_pref
    L_pref = mean over the 2B pairs of
             -log sigmoid(beta * ((log pi(c) - log pi_ref(c)) - (log pi(r) - log pi_ref(r))))
    NLL    = -(sum of log pi over the y_t tokens of the x_t direction's chosen
             sequences) / (number of those tokens)  - a per-token mean over the batch

log pi(.) is the sequence log-probability: the sum over the response tokens
(response + eos) of the chat-templated (prompt, response) sequence; prompt
tokens never count. ``beta`` = 0.1 and ``lambda`` = 0.5 are OUR defaults: no
public source gives the paper's values. "The batch" is the optimizer step's
whole batch - all accumulation steps on all processes - as for ``sft``: CLO's
collated batch carries the y_t rows' labels as ``labels``, so the Trainer counts
the NLL's tokens over that batch (``num_items_in_batch``), and L_pref, a mean
over equally many pairs per micro-batch, is divided by the accumulation steps
and processes.
So N processes x b examples train like 1 process x N*b. ``sft_dpo`` has no
``labels``: its per-micro-batch mean is scaled by the Trainer.

One forward per step: the 2B chosen rows and the 2B rejected rows are right-padded
into one (4B, T) batch, rows ``[chosen (example 0 target, example 0 english,
example 1 target, ...); rejected (same order)]``.

Reference log-probabilities: computed ONCE before step 1 by
:meth:`reference_table`, which the Trainer calls at ``on_train_begin`` with the
model as its engine prepared it (DDP/FSDP/DeepSpeed-wrapped and on its device;
sharded weights are gathered by the wrapped forward, README "Sharded weights"),
still holding the start weights (``clo``: the frozen base model; ``sft_dpo``:
the ``sft`` model it starts from). The table (row, chosen/rejected, direction)
is set as ``method.reference``; :meth:`prepare` numbers the dataset rows and a
batch looks its values up by ``row``. Checkpoints keep the table. (Features
carrying ``ref_chosen_logps`` / ``ref_rejected_logps`` columns, as
:meth:`with_reference` makes for one process, are used as given.) The alternative - a frozen copy of the model run under
no_grad inside every step - was measured with ``benchmarks/clo_step.py`` (tiny
llama, hidden 64, 2 layers; seed pairs; 4 items = 16 rows per step; CPU time,
1 thread; BENCHMARKS.md), in CLO steps with the cached reference::

    cached:   1.00 per step, + 0.51 once per batch of data (prepare, batches sorted by length)
    in-step:  1.38 per step  (the same no_grad forward, repeated every epoch)

(hidden 256, 4 layers: 0.46 once vs 1.38 per step). Over one epoch in-step is a
little cheaper (1.38 vs 1.51 on the tiny model); from the second epoch on the
cache saves the reference forward of every step, and it needs no second copy of
the weights (with attention-only training the reference cannot be the trained
model with adapters switched off). Caching was chosen. The reference pass runs
the model in eval mode, under bf16 autocast when
``train.bf16`` is set (as the Trainer runs the policy), so the step-0 margins are
zero up to batching noise.

Trainable parameters: ``clo`` trains the attention projections q, k, v, o as
reported - :data:`ATTENTION_PATTERNS` (regexes searched in parameter names,
finetuning mode ``patterns``) or :data:`ATTENTION_MODULES` (LoRA target modules);
:attr:`CLOMethod.train_defaults` is that default for the engine's
``train.finetuning`` (applied by :func:`crosstune.train.settings.resolve` over
the config's ``train:``; a ``methods.<name>.train.finetuning`` entry overrides
it, e.g. ``{mode: full}``). ``sft_dpo`` trains what ``train.finetuning`` says
(full by default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from ..io import DataError
from ..preference import DIRECTIONS, build_preference_records
from .base import (
    Method,
    TrainDataError,
    pad_id,
    pad_sequences,
    sequence_logprobs,  # noqa: F401 - part of this module's API (tests, benchmarks)
    token_losses,
)

if TYPE_CHECKING:  # torch is imported where it is used: importing the registry stays light
    import torch

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
ATTENTION_PATTERNS = [rf"\.{m}\." for m in ATTENTION_MODULES]  # e.g. model.layers.3.self_attn.q_proj.weight
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


# --------------------------------------------------------------------- arithmetic
def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(labels[:, i+1] | tokens <= i), shape (rows, T-1), in float32; 0 where the label is -100."""
    return -token_losses(logits, labels)


def dpo_losses(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> torch.Tensor:
    """Per-pair -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) (sequence log-probs in, shape kept)."""
    import torch.nn.functional as F

    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


def preference_metrics(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float,
                       losses) -> dict:  # fmt: skip
    """What TRL's DPOTrainer logs, under its names, for these pairs (detached means).

    rewards/chosen = beta * (log pi(c) - log pi_ref(c)) and rewards/rejected likewise;
    rewards/margins their difference, rewards/accuracies the share of pairs with the
    chosen reward above the rejected; logps/* the policy's sequence log-probs;
    ``dpo_loss`` the preference term (L_pref; CLO's ``loss`` also holds the NLL).
    """
    import torch

    with torch.no_grad():
        chosen = beta * (policy_chosen - ref_chosen).detach()
        rejected = beta * (policy_rejected - ref_rejected).detach()
        return {"rewards/chosen": chosen.mean(), "rewards/rejected": rejected.mean(),
                "rewards/accuracies": (chosen > rejected).float().mean(), "rewards/margins": (chosen - rejected).mean(),
                "logps/chosen": policy_chosen.detach().mean(), "logps/rejected": policy_rejected.detach().mean(),
                "dpo_loss": losses.detach().mean()}  # fmt: skip


def clo_loss(nll: torch.Tensor, pref: torch.Tensor, lam: float) -> torch.Tensor:
    """lambda * NLL + (1 - lambda) * L_pref; the unused term is left out at the ends (no 0 * nan)."""
    if lam == 1:
        return nll
    if lam == 0:
        return pref
    return lam * nll + (1 - lam) * pref


# --------------------------------------------------------------------- methods
class PreferenceMethod(Method):
    """Shared data side of ``clo`` and ``sft_dpo``: preference examples, one [chosen; rejected] forward."""

    defaults: dict[str, Any] = {
        "languages": None,  # target languages (null: every language with known English responses)
        "size": None,  # items per target language (paper: 3200 or 6400); null: all; each gives 2 pairs
        "seed": None,  # sampling seed (null: the global seed)
        "beta": 0.1,  # DPO temperature; OUR default, the paper's value is not public
        "ref_batch_size": 8,  # examples per forward when caching reference log-probs
    }
    supports_packing = False
    needs_reference = True

    # ----------------------------------------------------------------- data
    def build_examples(self, pairs: list[dict], settings: dict, seed: int) -> list[dict]:
        seed = seed if settings.get("seed") is None else settings["seed"]
        try:
            records = build_preference_records(pairs, settings.get("languages"), settings.get("size"), seed)
        except DataError as e:
            raise TrainDataError(str(e)) from None
        examples = []
        for target, english in zip(records[::2], records[1::2], strict=True):
            examples.append({"id": target["item"], "lang": target["lang"], "kind": self.name,
                             "prompt": target["prompt"], "response": target["chosen"],
                             "directions": [target, english]})  # fmt: skip
        return examples

    def tokenize(self, example: dict, tokenizer, max_length: int, truncation_side: str) -> dict | None:
        """Four sequences: chosen and rejected of both directions; None if truncation emptied a response."""
        out: dict[str, list] = {"chosen_input_ids": [], "chosen_labels": [], "rejected_input_ids": [], "rejected_labels": []}
        for d in example["directions"]:
            prompt = self.prompt_ids(d["prompt"], tokenizer)
            for side in ("chosen", "rejected"):
                if not d[side].strip():
                    raise TrainDataError(f"preference record {d['id']!r} has an empty {side} response")
                response = self.response_ids(d[side], tokenizer)
                ids, labels = prompt + response, [-100] * len(prompt) + response
                if len(ids) > max_length:
                    cut = slice(None, max_length) if truncation_side == "right" else slice(-max_length, None)
                    ids, labels = ids[cut], labels[cut]
                if all(x == -100 for x in labels[1:]):
                    return None
                out[f"{side}_input_ids"].append(ids)
                out[f"{side}_labels"].append(labels)
        return out

    def collate(self, features: list[dict], tokenizer) -> dict:
        """One (4B, T) batch: chosen rows (per example target, english), then rejected rows, right-padded."""
        pad = pad_id(tokenizer)
        ids = [s for side in ("chosen", "rejected") for f in features for s in f[f"{side}_input_ids"]]
        labels = [s for side in ("chosen", "rejected") for f in features for s in f[f"{side}_labels"]]
        batch = {
            "input_ids": pad_sequences(ids, pad),
            "attention_mask": pad_sequences([[1] * len(x) for x in ids], 0),
            # all rows; the Trainer counts `labels` tokens, so only CLO adds them (its NLL rows)
            "response_labels": pad_sequences(labels, -100),
        }
        import torch

        for col in REF_COLUMNS:
            if col in features[0]:
                batch[col] = torch.tensor([v for f in features for v in f[col]], dtype=torch.float32)
        if "row" in features[0]:
            batch["row"] = torch.tensor([f["row"] for f in features], dtype=torch.long)
        return batch

    # ----------------------------------------------------------------- model
    def forward_logps(self, model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence log-probs (4B,), token log-probs (4B, T-1)) from ONE forward of the whole batch."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        tok = token_logprobs(logits, batch["response_labels"])
        return tok.sum(-1), tok

    def reference_logps(self, model, tokenizer, dataset, batch_size: int, bf16: bool = False,
                        rank: int = 0, world: int = 1, device=None) -> tuple[list, list]:  # fmt: skip
        """Per example [target, english] sequence log-probs of chosen and rejected under ``model`` (eval mode).

        Examples are batched in order of length (less padding), results returned in
        dataset order. ``bf16``: under bf16 autocast, as the Trainer runs the policy.
        With ``world`` processes, this one (``rank``) computes batches rank, rank +
        world, ... - the same batches as one process would, so the same values - and
        leaves None for the others. Every process runs the same number of forwards
        (a process out of batches repeats its first one and drops the result): under
        FSDP / ZeRO-3 a forward is collective.
        """
        import torch

        was_training = model.training
        model.eval()
        device = device if device is not None else next(model.parameters()).device
        device = torch.device(device)
        feats = [dataset[i] for i in range(len(dataset))]
        order = sorted(range(len(feats)), key=lambda i: max(map(len, feats[i]["chosen_input_ids"] + feats[i]["rejected_input_ids"])))
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        rounds = -(-len(batches) // world)
        chosen, rejected = [None] * len(feats), [None] * len(feats)
        try:
            for k in tqdm(range(rounds), desc=f"reference log-probs {self.name}", mininterval=5, disable=rank != 0):
                b = rank + k * world
                idx = batches[b] if b < len(batches) else batches[0]
                batch = {k: v.to(device) for k, v in self.collate([feats[i] for i in idx], tokenizer).items()}
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    seq, _ = self.forward_logps(model, batch)
                if b >= len(batches):
                    continue
                seq = seq.view(2, len(idx), len(DIRECTIONS)).cpu().tolist()
                for j, i in enumerate(idx):
                    chosen[i], rejected[i] = seq[0][j], seq[1][j]
        finally:
            model.train(was_training)
        return chosen, rejected

    def with_reference(self, model, tokenizer, dataset, settings: dict):
        """``dataset`` with the reference log-probs of ``model`` as columns (one process; tests, benchmarks)."""
        bf16 = bool(settings.get("train", {}).get("bf16", False))
        chosen, rejected = self.reference_logps(model, tokenizer, dataset, settings.get("ref_batch_size", 8), bf16)
        if isinstance(dataset, list):
            return [{**f, REF_COLUMNS[0]: c, REF_COLUMNS[1]: r} for f, c, r in zip(dataset, chosen, rejected, strict=True)]
        present = [c for c in REF_COLUMNS if c in dataset.column_names]
        if present:
            dataset = dataset.remove_columns(present)
        return dataset.add_column(REF_COLUMNS[0], chosen).add_column(REF_COLUMNS[1], rejected)

    def prepare(self, model, tokenizer, dataset, settings: dict):
        """Number the rows: a batch looks its reference log-probs up in :attr:`reference` by row."""
        if isinstance(dataset, list):
            return [{**f, "row": i} for i, f in enumerate(dataset)]
        return dataset.add_column("row", list(range(len(dataset))))

    def reference_table(self, model, tokenizer, dataset, settings: dict, accelerator):
        """(rows, 2, 2) float32 tensor [row, chosen/rejected, target/english] of the prepared ``model``.

        The processes share the batches (see :meth:`reference_logps`) and exchange
        their results, so every process holds the whole table.
        """
        import torch
        from accelerate.utils import gather_object

        bf16 = bool(settings.get("train", {}).get("bf16", False))
        chosen, rejected = self.reference_logps(model, tokenizer, dataset, settings.get("ref_batch_size", 8), bf16,
                                                rank=accelerator.process_index, world=accelerator.num_processes,
                                                device=accelerator.device)  # fmt: skip
        mine = [(i, c, r) for i, (c, r) in enumerate(zip(chosen, rejected, strict=True)) if c is not None]
        table = torch.empty(len(chosen), 2, len(DIRECTIONS), dtype=torch.float32)
        for i, c, r in gather_object(mine) if accelerator.num_processes > 1 else mine:
            table[i, 0], table[i, 1] = torch.tensor(c), torch.tensor(r)
        return table

    def preference_terms(self, model, inputs: dict, settings: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-pair DPO losses (2B,), token log-probs (4B, T-1)) of this batch."""
        seq, tok = self.forward_logps(model, inputs)
        n = seq.shape[0] // 2
        if REF_COLUMNS[0] in inputs:
            ref_c, ref_r = inputs[REF_COLUMNS[0]].to(seq), inputs[REF_COLUMNS[1]].to(seq)
        elif "row" in inputs and self.reference is not None:
            ref = self.reference[inputs["row"].cpu()].to(seq)  # (B, chosen/rejected, direction)
            ref_c, ref_r = ref[:, 0].reshape(-1), ref[:, 1].reshape(-1)
        else:
            raise RuntimeError(f"method {self.name!r}: the batch has no reference log-probs "
                               "(reference_table() must run before step 1)")  # fmt: skip
        losses = dpo_losses(seq[:n], seq[n:], ref_c, ref_r, settings["beta"])
        self.last_metrics = preference_metrics(seq[:n], seq[n:], ref_c, ref_r, settings["beta"], losses)
        return losses, tok


class CLOMethod(PreferenceMethod):
    """``clo``: lambda * NLL(y_t | x_t) + (1 - lambda) * DPO over both directions, reference = base model."""

    name = "clo"
    defaults = {**PreferenceMethod.defaults, "lambda": 0.5}  # lambda: OUR default, the paper's is not public
    # the engine's train.finetuning default for this method: attention projections, as reported
    train_defaults = {"finetuning": {"mode": "patterns", "patterns": ATTENTION_PATTERNS, "target_modules": ATTENTION_MODULES}}

    def collate(self, features: list[dict], tokenizer) -> dict:
        """The preference batch, plus ``labels``: the y_t rows (the NLL's tokens) for the Trainer to count."""
        batch = super().collate(features, tokenizer)
        batch["labels"] = batch["response_labels"][: 2 * len(features) : 2]
        return batch

    def compute_loss(self, model, inputs: dict, modules, settings: dict, num_items_in_batch=None) -> torch.Tensor:
        """NLL per y_t token of the whole step's batch when ``num_items_in_batch`` is given, else of this batch."""
        lam = settings["lambda"]
        if not 0 <= lam <= 1:
            raise ValueError(f"method {settings.get('name', self.name)!r}: lambda must be in [0, 1], not {lam!r}")
        losses, tok = self.preference_terms(model, inputs, settings)
        n = tok.shape[0] // 2
        # chosen rows alternate (target, english) per example: rows 0, 2, ... are y_t given x_t
        target_tok = tok[:n:2]
        tokens = (inputs["response_labels"][:n:2, 1:] != -100).sum().clamp(min=1)  # this micro-batch's y_t tokens
        pref = losses.mean()
        if num_items_in_batch is not None:
            # Like nll, a share of the step's total: the Trainer neither divides by the accumulation
            # steps nor lets DDP/FSDP's gradient average over processes stand (MethodTrainer.compute_loss)
            t = settings["train"]
            nll = -target_tok.sum() / num_items_in_batch
            pref = pref / (t["gradient_accumulation"] * t.get("num_processes", 1))
        else:
            nll = -target_tok.sum() / tokens
        # logged per y_t token of this micro-batch (TRL's name), whatever the loss's scaling
        self.last_metrics["nll_loss"] = (-target_tok.sum() / tokens).detach()
        return clo_loss(nll, pref, lam)


class SFTDPOMethod(PreferenceMethod):
    """``sft_dpo``: plain DPO on the same preference pairs, trained from the ``sft`` method's model.

    Its base model - and so its reference - is the output of the method named by
    ``init_from`` (default ``sft``); the train rule starts it from that model
    directory instead of the base model. The loss is the mean DPO loss over both
    directions (CLO's L_pref, without the NLL term).
    """

    name = "sft_dpo"
    defaults = {**PreferenceMethod.defaults, "init_from": "sft"}  # the method whose trained model it starts from

    def compute_loss(self, model, inputs: dict, modules, settings: dict, num_items_in_batch=None) -> torch.Tensor:
        losses, _ = self.preference_terms(model, inputs, settings)
        return losses.mean()
