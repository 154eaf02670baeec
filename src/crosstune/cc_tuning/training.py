"""One CC-Tuning training step on a batch of triples (x, y, x_en).

1. English pass: the batch of English prompts (right padded) runs once; every
   layer's FFN output is captured at each sequence's own p (``connection_position``).
   Faithful: with gradient; ``english_pass: detached`` runs it under no_grad.
2. Decision Maker on u = mean_l(a_l) + e_p picks one layer per sequence.
3. Non-English pass over (x, y) with c = sum_l s_l a_l added after decoder
   layer 0 at p only; cross-entropy on the response tokens (the SFT loss's arithmetic).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .connection import (
    IGNORE_INDEX,
    capture_mlp,
    check_no_gradient_checkpointing,
    inject,
    input_embeddings,
)
from .decision import DecisionMaker

ENGLISH_PASS = ("faithful", "detached")


@dataclass(frozen=True)
class TrainSettings:
    """The method settings of ``cc_tuning`` that the training step reads (defaults: the released code's)."""

    english_pass: str = "faithful"  # faithful: the English pass keeps its graph; detached: no_grad
    tau: float = 1.0  # Gumbel-softmax temperature

    def __post_init__(self):
        if self.english_pass not in ENGLISH_PASS:
            raise ValueError(f"cc_tuning english_pass must be one of {', '.join(ENGLISH_PASS)}, "
                             f"not {self.english_pass!r}")  # fmt: skip
        if not (isinstance(self.tau, int | float) and self.tau > 0):
            raise ValueError(f"cc_tuning tau must be a positive number, not {self.tau!r}")

    @classmethod
    def from_settings(cls, settings) -> TrainSettings:
        """From the method's settings mapping (other keys are ignored)."""
        if isinstance(settings, cls):
            return settings
        settings = settings or {}
        return cls(english_pass=settings.get("english_pass", cls.english_pass), tau=settings.get("tau", cls.tau))


def english_activations(model, en_input_ids, en_attention_mask, en_positions, grad: bool) -> torch.Tensor:
    """(B, L, d) FFN outputs at each English prompt's last token. Only the last logit is computed."""
    ctx = nullcontext() if grad else torch.no_grad()
    with ctx, capture_mlp(model, en_positions) as cap:
        model(input_ids=en_input_ids, attention_mask=en_attention_mask, use_cache=False, logits_to_keep=1)
    return cap.stacked()


def response_loss(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Next-token cross-entropy on the labelled tokens (float32), as the engine's SFT loss:
    sum / ``num_items_in_batch`` when given (gradient accumulation, DDP), else the batch mean."""
    losses = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, 1:].flatten(),
                             ignore_index=IGNORE_INDEX, reduction="sum")  # fmt: skip
    if num_items_in_batch is not None:
        return losses / num_items_in_batch
    return losses / (labels[:, 1:] != IGNORE_INDEX).sum().clamp(min=1)


def cc_tuning_forward(model, inputs: dict, dm: DecisionMaker, settings: TrainSettings | None = None,
                      num_items_in_batch=None) -> dict:  # fmt: skip
    """{"loss", "choice": s (B, L), "activations": a (B, L, d)} of one batch (see the module docstring)."""
    settings = settings or TrainSettings()
    check_no_gradient_checkpointing(model)
    grad = torch.is_grad_enabled() and settings.english_pass == "faithful"
    a = english_activations(model, inputs["en_input_ids"], inputs["en_attention_mask"],
                            inputs["en_position"], grad=grad)  # fmt: skip
    ids, pos = inputs["input_ids"], inputs["position"]
    rows = torch.arange(ids.shape[0], device=ids.device)
    e = input_embeddings(model, ids[rows, pos])
    c, s = dm(a, e, choice="gumbel", tau=settings.tau)
    with inject(model, pos, c):
        logits = model(input_ids=ids, attention_mask=inputs["attention_mask"], use_cache=False).logits
    return {"loss": response_loss(logits, inputs["labels"], num_items_in_batch), "choice": s, "activations": a}


def cc_tuning_loss(model, inputs: dict, dm: DecisionMaker, settings: TrainSettings | None = None,
                   num_items_in_batch=None) -> torch.Tensor:  # fmt: skip
    """The training loss of one batch."""
    return cc_tuning_forward(model, inputs, dm, settings, num_items_in_batch)["loss"]
