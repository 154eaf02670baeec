"""A CC-Tuning model with its cross-lingual connection, outside the pipeline.

``AutoModelForCausalLM.from_pretrained`` on a cc_tuning model directory gives the trained
weights alone: the ``@none`` row of the evaluation. :func:`load` adds the trained Decision
Maker (``decision_maker.safetensors`` in the directory) and, in matrix mode, the Transform
Matrix, and its :meth:`ConnectedModel.generate` decodes exactly as rule ``generate`` does:
the same :func:`crosstune.evaluate.predict.predict_language` with the same
:class:`crosstune.evaluate.connection.Connection` (nothing here re-implements the connection).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .inference import MODES
from .transform import SHARED

TRANSFORM = "transform.safetensors"  # rule transform's file; beside the model in a pushed repository


def _local_dir(model_dir: str | Path) -> Path:
    """A local directory, or a hub repository (``storage.push_to_hub``) downloaded into the cache."""
    path = Path(model_dir)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model_dir)))


class ConnectedModel:
    """``model`` (transformers), ``tokenizer`` and ``connection`` (None in mode ``none``)."""

    def __init__(self, model, tokenizer, connection, model_dir: Path):
        self.model, self.tokenizer, self.connection, self.model_dir = model, tokenizer, connection, model_dir

    @property
    def mode(self) -> str:
        return self.connection.mode if self.connection is not None else "none"

    def records(self, prompts: Sequence[str], *, lang: str | None = None,
                english_prompts: Sequence[str] | None = None, max_new_tokens: int = 40, batch_size: int = 16,
                max_batch_tokens: int | None = 8192, max_padding: float | None = 0.25,
                decoder: str = "exact") -> list[dict]:  # fmt: skip
        """The pipeline's prediction record per prompt (``output``, ``n_tokens``, ``stopped``, ``layer``...).

        Prompts are user messages (the tokenizer's chat template is applied). ``lang``: the prompts'
        language, needed only with a per-language Transform Matrix; ``english_prompts``: each prompt's
        English version (oracle mode). The decoding settings are ``evaluation.generation``'s defaults.
        """
        from ..evaluate.predict import predict_language

        if english_prompts is not None and len(english_prompts) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(english_prompts)} English prompts")
        items = [{"id": f"prompt/{i}", "index": i, "lang": lang, "task": "generation", "prompt": p,
                  **({"prompt_en": english_prompts[i]} if english_prompts is not None else {})}
                 for i, p in enumerate(prompts)]  # fmt: skip
        settings = {
            "generation": {"max_new_tokens": max_new_tokens, "batch_size": batch_size, "decoder": decoder,
                           "max_batch_tokens": max_batch_tokens, "max_padding": max_padding},
            "likelihood": {"enabled": False, "continuation": "text", "batch_size": batch_size},
        }  # fmt: skip
        language = lang if lang is not None else SHARED  # the shared matrix serves every language
        return predict_language(self.model, self.tokenizer, [{**it, "lang": language} for it in items], settings,
                                desc=f"cc_tuning@{self.mode}", connection=self.connection)  # fmt: skip

    def generate(self, prompts: Sequence[str] | str, **kwargs) -> list[str]:
        """Greedy responses (text) to ``prompts`` with the connection; see :meth:`records` for the options."""
        if isinstance(prompts, str):
            prompts = [prompts]
        return [r["output"] for r in self.records(prompts, **kwargs)]


def load(model_dir: str | Path, transform: str | Path | None = None, mode: str = "matrix", *,
         dtype: str = "float32", device: str = "auto", layer_choice: str = "argmax", seed: int = 0,
         position: str | None = None) -> ConnectedModel:  # fmt: skip
    """A cc_tuning model (a directory of rule train, or a hub repository pushed by rule push_to_hub)
    whose ``generate`` applies the connection.

    ``mode``: ``matrix`` (the paper's monolingual setting: ``transform``, rule transform's
    ``transform.safetensors``; default: the one in ``model_dir``), ``oracle`` (the connection from each
    prompt's English version) or ``none`` (no connection: what ``from_pretrained`` gives).
    ``position``: p (``models.<m>.connection_position``); default: the one the model was trained with
    (its provenance.json). ``tau``: the method's, from the same record.
    """
    from ..evaluate.connection import Connection
    from ..evaluate.generation import load_model

    if mode not in MODES:
        raise ValueError(f"cc_tuning mode must be one of {', '.join(MODES)}, not {mode!r}")
    path = _local_dir(model_dir)
    settings = json.loads((path / "provenance.json").read_text()).get("settings", {}) if (
        path / "provenance.json").exists() else {}  # fmt: skip
    if settings and settings.get("type") != "cc_tuning":
        raise ValueError(f"{model_dir}: trained as {settings.get('type')!r}, not cc_tuning: it has no connection")
    model, tokenizer = load_model(path, dtype=dtype, device=device)
    connection = None
    if mode != "none":
        if mode == "matrix" and transform is None and (path / TRANSFORM).exists():
            transform = path / TRANSFORM
        connection = Connection(model, tokenizer, path, transform, layer_choice, settings.get("tau", 1.0), seed,
                                mode=mode, position=position or settings.get("connection_position") or "last")  # fmt: skip
    return ConnectedModel(model, tokenizer, connection, path)
