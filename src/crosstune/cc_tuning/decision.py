"""The Decision Maker: which layer's FFN output becomes the connection.

W is an L x d linear map without bias. For a sequence with FFN outputs
a_1..a_L (at the English prompt's last token in training, mapped by the
Transform Matrix at inference) and e_p, the input embedding of the
non-English sequence at p:

    u = mean_l(a_l) + e_p,   s = gumbel_softmax(W u, tau, hard=True),   c = sum_l s_l a_l

``hard=True`` makes s one-hot in the forward pass with the soft probabilities'
gradient (straight-through), so c is exactly one layer's a_l and W still learns.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

CHOICES = ("argmax", "gumbel")


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, hard: bool = True,
                   generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """``torch.nn.functional.gumbel_softmax`` with an optional random generator (same arithmetic)."""
    noise = torch.empty_like(logits).exponential_(generator=generator).log().neg()  # Gumbel(0, 1)
    soft = ((logits + noise) / tau).softmax(-1)
    if not hard:
        return soft
    index = soft.argmax(-1, keepdim=True)
    one_hot = torch.zeros_like(logits).scatter_(-1, index, 1.0)
    return one_hot - soft.detach() + soft


class DecisionMaker(nn.Module):
    """``linear``: nn.Linear(d, L, bias=False); its weight W has shape (L, d)."""

    def __init__(self, hidden_size: int, num_layers: int, init_std: float | None = 0.02):
        super().__init__()
        self.linear = nn.Linear(hidden_size, num_layers, bias=False)
        if init_std is not None:  # the released code's init: the model's normal(0, initializer_range)
            nn.init.normal_(self.linear.weight, mean=0.0, std=init_std)

    @property
    def num_layers(self) -> int:
        return self.linear.out_features

    @property
    def hidden_size(self) -> int:
        return self.linear.in_features

    def logits(self, a: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """W u for a (B, L, d) and e (B, d); computed in W's dtype."""
        w = self.linear.weight
        u = a.to(w.dtype).mean(dim=1) + e.to(w.dtype)
        return self.linear(u)

    def choose(self, a: torch.Tensor, e: torch.Tensor, choice: str = "gumbel", tau: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
        """s, (B, L): one-hot. ``gumbel``: Gumbel-softmax, straight-through; ``argmax``: deterministic."""
        logits = self.logits(a, e)
        if choice == "gumbel":
            return gumbel_softmax(logits, tau=tau, hard=True, generator=generator)
        if choice == "argmax":
            return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        raise ValueError(f"cc_tuning layer choice must be one of {', '.join(CHOICES)}, not {choice!r}")

    def forward(self, a: torch.Tensor, e: torch.Tensor, choice: str = "gumbel", tau: float = 1.0,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(c, s): the connection vectors (B, d) in a's dtype and the one-hot choices (B, L)."""
        s = self.choose(a, e, choice=choice, tau=tau, generator=generator)
        c = (s.to(a.dtype).unsqueeze(-1) * a).sum(dim=1)
        return c, s


def save_decision_maker(dm: DecisionMaker, path: str | Path) -> None:
    """Safetensors file with the weight and its shape in the metadata (written atomically, same bytes)."""
    from ..io import save_safetensors

    meta = {"hidden_size": str(dm.hidden_size), "num_layers": str(dm.num_layers), "format": "crosstune.cc_tuning"}
    save_safetensors(path, dm.state_dict(), meta)


def load_decision_maker(path: str | Path, device=None, dtype=None) -> DecisionMaker:
    """A Decision Maker from a safetensors state dict (``linear.weight`` of shape (L, d))."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    if set(state) != {"linear.weight"}:
        raise ValueError(f"{path}: not a Decision Maker state dict (keys {sorted(state)}, expected linear.weight)")
    num_layers, hidden_size = state["linear.weight"].shape
    dm = DecisionMaker(hidden_size, num_layers, init_std=None)
    dm.load_state_dict(state)
    return dm.to(device=device, dtype=dtype) if (device or dtype) else dm
