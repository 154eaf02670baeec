"""Method ``cc_tuning`` for the training engine (METHODS.md section 2).

Examples are triples (x, y, x_en) from pair records. ``tokenize`` renders the
(x, y) conversation with the chat template (prompt masked in the labels) and
the English prompt x_en with the generation prompt; each records its p.
``collate`` right-pads both. ``compute_loss`` runs one batched English pass
and one batched non-English pass with the connection
(:func:`crosstune.cc_tuning.training.cc_tuning_loss`). The Decision Maker is
the extra module ``decision_maker`` (saved as ``decision_maker.safetensors``).

Settings (``methods.cc_tuning``): ``english_pass`` (faithful | detached),
``tau`` (Gumbel-softmax temperature, 1.0), ``include_english`` (train the
English records too, as (x, y, x) triples; default true, so the data equal SFT's).
"""

from __future__ import annotations

from ..cc_tuning.connection import (
    IGNORE_INDEX,
    chat_prompt_ids,
    num_layers_and_hidden,
    pad_batch,
    pad_token_id,
    tokenize_chat,
    unwrap,
)
from ..cc_tuning.decision import DecisionMaker
from ..cc_tuning.training import TrainSettings, cc_tuning_loss
from ..io import DataError

try:  # the engine's base class (branch `train`); a compatible stand-in until it lands
    from .base import Method
except ImportError:  # pragma: no cover - removed by the integrator once base.py exists

    class Method:
        name: str = ""


class CCTuningMethod(Method):
    name = "cc_tuning"

    def build_examples(self, pairs, settings, seed) -> list[dict]:
        """One example per pair record with an English instruction (English records unless excluded)."""
        opts = TrainSettings.from_settings(settings)
        out = []
        for r in pairs:
            if r["lang"] == "en" and not opts.include_english:
                continue
            if not str(r.get("instruction_en") or "").strip():
                raise DataError(f"pair record {r.get('id')!r} ({r.get('lang')}): cc_tuning needs instruction_en")
            out.append({"id": r["id"], "lang": r["lang"], "instruction": r["instruction"],
                        "response": r["response"], "instruction_en": r["instruction_en"]})  # fmt: skip
        return out

    def tokenize(self, example, tokenizer, max_length, truncation_side) -> dict:
        x = tokenize_chat(tokenizer, example["instruction"], example["response"], max_length, truncation_side)
        en = chat_prompt_ids(tokenizer, example["instruction_en"])
        if max_length is not None and len(en) > max_length:
            en = en[len(en) - max_length :]  # keep the end: p is the last prompt token
        return {"input_ids": x["input_ids"], "labels": x["labels"], "position": x["position"],
                "en_input_ids": en, "en_position": len(en) - 1}  # fmt: skip

    def collate(self, features, tokenizer) -> dict:
        import torch

        pad = pad_token_id(tokenizer)
        ids, mask, labels = pad_batch([f["input_ids"] for f in features], pad, "right",
                                      [f["labels"] for f in features], IGNORE_INDEX)  # fmt: skip
        en_ids, en_mask, _ = pad_batch([f["en_input_ids"] for f in features], pad, "right")
        return {
            "input_ids": ids, "attention_mask": mask, "labels": labels,
            "position": torch.tensor([f["position"] for f in features], dtype=torch.long),
            "en_input_ids": en_ids, "en_attention_mask": en_mask,
            "en_position": torch.tensor([f["en_position"] for f in features], dtype=torch.long),
        }  # fmt: skip

    def extra_modules(self, model, settings) -> dict:
        num_layers, hidden = num_layers_and_hidden(model)
        std = getattr(unwrap(model).config, "initializer_range", 0.02)
        return {"decision_maker": DecisionMaker(hidden, num_layers, init_std=std)}

    def prepare(self, model, tokenizer, dataset, settings):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("cc_tuning needs a tokenizer with a chat template (p is the last prompt token)")
        num_layers_and_hidden(model)  # fails early with a clear error on models without decoder layers
        return dataset

    def compute_loss(self, model, inputs, modules, settings):
        return cc_tuning_loss(model, inputs, modules["decision_maker"], TrainSettings.from_settings(settings))
