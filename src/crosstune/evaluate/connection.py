"""CC-Tuning's cross-lingual connection at evaluation time (METHODS.md section 2, inference).

A method of type ``cc_tuning`` is evaluated as the paper does in its monolingual
setting: for each prompt, the FFN outputs a_l at its last token p come from a
plain pass, are mapped by the Transform Matrix (a'_l = a_l X), the trained
Decision Maker picks one layer from u = mean_l(a'_l) + e_p, and that a'_l is
added to the hidden state after decoder layer 0 at p. Generation uses
:func:`crosstune.cc_tuning.inference.generate_batch` (prefill once, recompute p
with the connection); option log-likelihoods run the same plain pass to get c,
then the scored prompt pass with c injected at p, so both see the same model.

``layer_choice``: ``argmax`` (deterministic, the default) or ``gumbel`` (the
released code's random choice, seeded; generation and the likelihood pass then
draw separately).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

DECISION_MAKER = "decision_maker.safetensors"


class Connection:
    def __init__(self, model, tokenizer, model_dir: str | Path, transform: str | Path, layer_choice: str = "argmax",
                 tau: float = 1.0, seed: int = 0):  # fmt: skip
        from ..cc_tuning.decision import load_decision_maker
        from ..cc_tuning.transform import load_transform

        path = Path(model_dir) / DECISION_MAKER
        if not path.exists():
            raise FileNotFoundError(f"{model_dir}: no {DECISION_MAKER}; was this model trained as cc_tuning?")
        device = next(model.parameters()).device
        self.model, self.tokenizer = model, tokenizer
        self.dm = load_decision_maker(path, device=device)
        self.matrices = load_transform(transform)
        self.layer_choice, self.tau = layer_choice, tau
        self.generator = torch.Generator(device=device).manual_seed(seed) if layer_choice == "gumbel" else None

    def generate(self, prompt_ids: list[list[int]], lang: str, max_new_tokens: int) -> dict:
        """{"tokens": new tokens before eos per prompt, "layers": the chosen layer per prompt}."""
        from ..cc_tuning.inference import generate_batch

        return generate_batch(self.model, self.tokenizer, prompt_ids, mode="matrix", dm=self.dm,
                              matrices=self.matrices, langs=[lang] * len(prompt_ids), max_new_tokens=max_new_tokens,
                              layer_choice=self.layer_choice, tau=self.tau, generator=self.generator)  # fmt: skip

    def vectors(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, lang: str) -> torch.Tensor:
        """c for each left-padded prompt (its last column is p), from a plain pass."""
        from ..cc_tuning.connection import capture_mlp, input_embeddings
        from ..cc_tuning.inference import map_activations

        last = torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
        with torch.no_grad(), capture_mlp(self.model, last) as cap:
            self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
        a = map_activations(cap.stacked(), self.matrices, [lang] * ids.shape[0])
        e = input_embeddings(self.model, ids[:, -1]).to(a.dtype)
        c, _ = self.dm(a, e, choice=self.layer_choice, tau=self.tau, generator=self.generator)
        return c

    def prompt_hook(self, lang: str):
        """For :func:`.generation.token_logliks`: inject c at p during the scored prompt pass."""
        from ..cc_tuning.connection import inject

        @contextlib.contextmanager
        def hook(ids, mask, positions):
            c = self.vectors(ids, mask, positions, lang)
            last = torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
            with inject(self.model, last, c, calls=1):
                yield

        return hook
