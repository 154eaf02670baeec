"""One CC-Tuning training step on a batch of triples (x, y, x_en).

1. English pass: the batch of English prompts (right padded) runs once; every
   layer's FFN output is captured at each sequence's own last prompt token.
   Faithful: with gradient; ``english_pass: detached`` runs it under no_grad.
2. Decision Maker on u = mean_l(a_l) + e_p picks one layer per sequence.
3. Non-English pass over (x, y) with c = sum_l s_l a_l added after decoder
   layer 0 at p only; cross-entropy on the response tokens (the model's own loss).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .connection import capture_mlp, check_no_gradient_checkpointing, inject, input_embeddings
from .decision import DecisionMaker

ENGLISH_PASS = ("faithful", "detached")


@dataclass(frozen=True)
class TrainSettings:
    """``methods.cc_tuning`` training settings (defaults are the released code's)."""

    english_pass: str = "faithful"  # faithful: the English pass keeps its graph; detached: no_grad
    tau: float = 1.0  # Gumbel-softmax temperature
    include_english: bool = True  # English records train as (x, y, x) triples, like the SFT data

    def __post_init__(self):
        if self.english_pass not in ENGLISH_PASS:
            raise ValueError(
                f"methods.cc_tuning.english_pass must be one of {', '.join(ENGLISH_PASS)}, not {self.english_pass!r}"
            )
        if not self.tau > 0:
            raise ValueError(f"methods.cc_tuning.tau must be positive, not {self.tau!r}")

    @classmethod
    def from_settings(cls, settings) -> TrainSettings:
        """From a mapping or an object with attributes; keys it does not know are ignored."""
        if isinstance(settings, cls):
            return settings
        get = settings.get if hasattr(settings, "get") else (lambda k, d: getattr(settings, k, d))
        if settings is None:
            return cls()
        sub = get("cc_tuning", None)  # the whole method-settings block may be passed
        if isinstance(sub, dict):
            get = sub.get
        return cls(
            english_pass=get("english_pass", cls.english_pass),
            tau=float(get("tau", cls.tau)),
            include_english=bool(get("include_english", cls.include_english)),
        )


def english_activations(model, en_input_ids, en_attention_mask, en_positions, grad: bool) -> torch.Tensor:
    """(B, L, d) FFN outputs at each English prompt's last token. Only the last logit is computed."""
    ctx = nullcontext() if grad else torch.no_grad()
    with ctx, capture_mlp(model, en_positions) as cap:
        model(input_ids=en_input_ids, attention_mask=en_attention_mask, use_cache=False, logits_to_keep=1)
    return cap.stacked()


def cc_tuning_forward(model, inputs: dict, dm: DecisionMaker, settings: TrainSettings | None = None) -> dict:
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
        out = model(input_ids=ids, attention_mask=inputs["attention_mask"], labels=inputs["labels"], use_cache=False)
    return {"loss": out.loss, "choice": s, "activations": a}


def cc_tuning_loss(model, inputs: dict, dm: DecisionMaker, settings: TrainSettings | None = None) -> torch.Tensor:
    """The training loss of one batch."""
    return cc_tuning_forward(model, inputs, dm, settings)["loss"]
