"""CC-Tuning's cross-lingual connection at evaluation time (docs/methods.md section 2, inference).

A method of type ``cc_tuning`` is scored in three inference modes, each its own
row (``cc_tuning@matrix`` ...): ``none`` is plain decoding (no :class:`Connection`),
and this class serves the other two. For each prompt, FFN outputs a_l (one per
layer) are taken at p (``position``: ``models.<m>.connection_position``, the last
prompt token or ``after`` tokens before it; :func:`..cc_tuning.connection.tokens_after_p`):

* ``matrix`` - the paper's monolingual setting: from a plain pass over the
  prompt itself, mapped by the Transform Matrix, a'_l = a_l X;
* ``oracle`` - from a pass over the item's real English prompt (``prompt_en``),
  as in training: the upper bound the matrix approximates.

The trained Decision Maker picks one layer from u = mean_l(a'_l) + e_p and that
a'_l is added to the hidden state after decoder layer 0 at p. Generation uses
:func:`crosstune.cc_tuning.inference.generate_batch` (prefill once, recompute p
with the connection) for ``decoder: padded``; with the exact decoder
(evaluate/decode.py) :meth:`Connection.prompt_pass` runs each prompt's pass
alone - the same two steps for one prompt - and the options are scored on that
prompt's cache, which holds p's keys and values with c injected. Otherwise
option log-likelihoods compute c the same way, then run the scored prompt pass
with c injected at p (:meth:`Connection.prompt_hook`), so both see the same model.

``layer_choice``: ``argmax`` (deterministic, the default) or ``gumbel`` (the
released code's random choice, seeded; generation and the likelihood pass then
draw separately).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ..cc_tuning.connection import inject

DECISION_MAKER = "decision_maker.safetensors"
MODES = ("matrix", "oracle")


class Connection:
    def __init__(self, model, tokenizer, model_dir: str | Path, transform: str | Path | None = None,
                 layer_choice: str = "argmax", tau: float = 1.0, seed: int = 0, mode: str = "matrix",
                 position: str = "last"):  # fmt: skip
        from ..cc_tuning.connection import chat_prompt_ids, tokens_after_p
        from ..cc_tuning.decision import load_decision_maker
        from ..cc_tuning.transform import load_transform

        if mode not in MODES:
            raise ValueError(f"cc_tuning connection mode must be one of {', '.join(MODES)}, not {mode!r}")
        if mode == "matrix" and not transform:
            raise ValueError("cc_tuning matrix mode needs the Transform Matrix file (rule transform)")
        path = Path(model_dir) / DECISION_MAKER
        if not path.exists():
            raise FileNotFoundError(f"{model_dir}: no {DECISION_MAKER}; was this model trained as cc_tuning?")
        device = next(model.parameters()).device
        self.model, self.tokenizer, self.mode = model, tokenizer, mode
        self.dm = load_decision_maker(path, device=device)
        self.matrices = load_transform(transform) if mode == "matrix" else None
        self.layer_choice, self.tau, self.position = layer_choice, tau, position
        # tokens of the template's generation prompt behind p (the same for every prompt)
        self.after = tokens_after_p(tokenizer, chat_prompt_ids(tokenizer, "Hello?"), position)
        self.generator = torch.Generator(device=device).manual_seed(seed) if layer_choice == "gumbel" else None

    @property
    def needs_english(self) -> bool:
        return self.mode == "oracle"

    def generate(self, prompt_ids: list[list[int]], lang: str, max_new_tokens: int,
                 english_ids: Sequence[Sequence[int]] | None = None) -> dict:  # fmt: skip
        """{"tokens": new tokens before eos per prompt, "layers": the chosen layer per prompt}.

        ``english_ids``: the tokenized English prompt of each prompt (oracle mode).
        """
        from ..cc_tuning.inference import generate_batch

        return generate_batch(self.model, self.tokenizer, prompt_ids, mode=self.mode, dm=self.dm,
                              matrices=self.matrices, langs=[lang] * len(prompt_ids), english_ids=english_ids,
                              max_new_tokens=max_new_tokens, layer_choice=self.layer_choice, tau=self.tau,
                              generator=self.generator, position=self.position)  # fmt: skip

    def prompt_pass(self, lang: str, english_ids: Sequence[Sequence[int]] | None = None):
        """``(run, layers)``: ``run`` is a prompt pass for :func:`.generation.generate_and_score`
        (prompt i's tokens after what its cache holds, appended to the cache, c injected at p),
        ``layers[i]`` the layer the Decision Maker chose for prompt i.

        matrix: a plain pass over the tokens captures a_l at p, p is forgotten and run again with
        c = a'_l; oracle: a plain pass up to p-1, a_l from prompt i's English prompt
        (``english_ids[i]``), then p with c. Positions before p never see c (causal attention);
        the ``after`` tokens behind p run again with it.
        """
        from ..cc_tuning.connection import capture_mlp, pad_token_id
        from ..cc_tuning.inference import map_activations
        from ..cc_tuning.transform import prompt_activations
        from . import decode

        if self.needs_english and english_ids is None:
            raise ValueError("cc_tuning oracle mode needs one English prompt per prompt")
        layers: dict[int, int] = {}
        k = self.after + 1  # p and the tokens behind it: the last k of the prompt
        first = torch.tensor([-k])

        def run(model, i, x, positions, cache):
            if x.shape[1] < k:
                raise ValueError(f"cc_tuning: prompt {i}'s uncached tokens do not reach back to p")
            if self.mode == "oracle":
                if x.shape[1] > k:  # the positions before p
                    decode.plain_pass(model, i, x[:, :-k], positions[:, :-k], cache)
                a = prompt_activations(model, [english_ids[i]], pad_token_id(self.tokenizer), self.after)
            else:
                with capture_mlp(model, torch.tensor([x.shape[1] - k])) as cap:
                    decode.plain_pass(model, i, x, positions, cache)
                cache.crop(-k)  # p and what follows run again below, with the connection
                a = map_activations(cap.stacked(), self.matrices, [lang])
            c, chosen = self._choose(a, x[:, -k])
            layers[i] = int(chosen.argmax(-1)[0])
            with inject(model, first, c, calls=1):
                return decode.plain_pass(model, i, x[:, -k:], positions[:, -k:], cache)

        return run, layers

    def vectors(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, lang: str,
                english_ids: Sequence[Sequence[int]] | None = None) -> torch.Tensor:  # fmt: skip
        """c for each left-padded prompt (p: column ``-1 - after``): from a plain pass over the prompt
        (matrix) or over its English prompt (oracle)."""
        from ..cc_tuning.connection import capture_mlp, pad_token_id
        from ..cc_tuning.inference import map_activations
        from ..cc_tuning.transform import prompt_activations

        if self.mode == "oracle":
            if english_ids is None or len(english_ids) != ids.shape[0]:
                raise ValueError("cc_tuning oracle mode needs one English prompt per prompt")
            a = prompt_activations(self.model, english_ids, pad_token_id(self.tokenizer), self.after)
        else:
            at_p = torch.full((ids.shape[0],), self.p_column(ids), dtype=torch.long, device=ids.device)
            with torch.no_grad(), capture_mlp(self.model, at_p) as cap:
                self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
            a = map_activations(cap.stacked(), self.matrices, [lang] * ids.shape[0])
        return self._choose(a, ids[:, self.p_column(ids)])[0]

    def p_column(self, ids: torch.Tensor) -> int:
        """p's column in a left-padded batch of prompts."""
        return ids.shape[1] - 1 - self.after

    def _choose(self, a: torch.Tensor, p_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Decision Maker on u = mean_l(a_l) + e_p: (c, the one-hot choice of layer) per row."""
        from ..cc_tuning.connection import input_embeddings

        e = input_embeddings(self.model, p_tokens).to(a.dtype)
        return self.dm(a, e, choice=self.layer_choice, tau=self.tau, generator=self.generator)

    def prompt_hook(self, lang: str, english_of: dict[tuple[int, ...], list[int]] | None = None):
        """For :func:`.generation.token_logliks`: inject c at p during the scored prompt pass.

        ``english_of`` (oracle mode): tokenized prompt -> its tokenized English prompt.
        """
        @contextlib.contextmanager
        def hook(ids, mask, positions):
            english = None
            if self.needs_english:  # each row's prompt without its left padding names its English prompt
                english = [english_of[tuple(row[m.bool()].tolist())] for row, m in zip(ids, mask, strict=True)]
            c = self.vectors(ids, mask, positions, lang, english)
            at_p = torch.full((ids.shape[0],), self.p_column(ids), dtype=torch.long, device=ids.device)
            with inject(self.model, at_p, c, calls=1):
                yield

        return hook
