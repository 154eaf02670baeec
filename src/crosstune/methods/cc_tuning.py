"""Method ``cc_tuning`` for the training engine (docs/methods.md section 2).

Examples are triples (x, y, x_en) from pair records: ``prompt`` (x),
``response`` (y) and ``prompt_en`` (x_en). ``tokenize`` is the engine's SFT
tokenization of (x, y) (chat-templated prompt + response + eos, prompt masked)
plus p, and the English prompt x_en with its own p; ``collate`` right-pads
both. ``compute_loss`` runs one batched English pass and one batched
non-English pass with the connection
(:func:`crosstune.cc_tuning.training.cc_tuning_forward`). The Decision Maker is
the extra module ``decision_maker`` (saved as ``decision_maker.safetensors``).

Settings (``methods.<name>`` with ``type: cc_tuning``): ``languages`` (null:
every language of the pairs - the data of ``sft``), ``english`` (``self``: English
records train as (x, y, x) triples, connected to their own English pass - the
release, whose parallel file is its SFT data with an English column; ``none``:
left out, the connection only ever cross-lingual), ``english_pass`` (faithful | detached), ``tau`` (Gumbel-softmax
temperature, 1.0), ``mix`` (null, or a data-level method - ``sft_all``,
``sft_mt``, ``crossin``, ... - whose mix gives the (x, y) records: the paper's
"complement to data augmentation"; x_en is that method's English version of each
prompt, :meth:`~crosstune.methods.sft.Sft.english_prompt`). ``connection_position``
(last | release, where p sits in the templated prompt) is the base model's setting
(``models.<m>.connection_position``), which rule train adds to the method's settings.

The CC-Tuning library (and torch) is imported inside the hooks, so importing
the method registry stays light (the Snakefile reads it to check the config).
"""

from __future__ import annotations

from .base import Method, TrainDataError


class CCTuning(Method):
    name = "cc_tuning"
    # mix: null, or the resolved settings of the data-level method whose examples it trains on
    # (crosstune.train.settings.resolve turns the configured name into them)
    defaults = {"languages": None, "english": "self", "english_pass": "faithful", "tau": 1.0, "mix": None}
    supports_packing = False  # p indexes each row: one example per row
    ddp_find_unused_parameters = False

    def build_examples(self, pairs, settings, seed) -> list[dict]:
        """One triple per pair record of ``languages`` (all when null), in file order."""
        from ..cc_tuning.training import TrainSettings

        try:
            TrainSettings.from_settings(settings)  # bad values fail before any work
        except ValueError as e:
            raise TrainDataError(str(e)) from None
        languages = settings.get("languages")
        english = settings.get("english", "self")
        if english not in ("self", "none"):
            raise TrainDataError(f"english must be self or none, not {english!r}")
        position = settings.get("connection_position") or "last"
        where = {} if position == "last" else {"connection_position": position}  # the default adds nothing
        if settings.get("mix"):
            return self.mixed_examples([r for r in pairs if languages is None or r["lang"] in languages],
                                       settings["mix"], seed, where)  # fmt: skip
        out = []
        for r in pairs:
            if (languages is not None and r["lang"] not in languages) or (r["lang"] == "en" and english == "none"):
                continue
            x_en = r.get("instruction_en")
            if not isinstance(x_en, str) or not x_en.strip():
                raise TrainDataError(f"pair record {r.get('id')!r} ({r.get('lang')}) has no instruction_en, "
                                     "needed for cc_tuning's English pass")  # fmt: skip
            out.append({"id": r["id"], "prompt": r["instruction"], "response": r["response"], "lang": r["lang"],
                        "kind": "self_connection" if r["lang"] == "en" else "cc_tuning", "prompt_en": x_en,
                        **where})  # fmt: skip
        return out

    def mixed_examples(self, pairs: list[dict], mix: dict, seed: int, where: dict) -> list[dict]:
        """The data-level method's examples, each with the English version of its prompt as ``prompt_en``."""
        from . import METHODS

        method = METHODS[mix["type"]]()
        if not hasattr(method, "english_prompt"):
            raise TrainDataError(f"mix {mix['name']!r} (type {mix['type']!r}) is not a data-level mix")
        examples = method.build_examples(pairs, mix, seed if mix.get("seed") is None else mix["seed"])
        by_id = {r["id"]: r for r in pairs}
        # a derived example's id is its pair record's id + "|kind" (crosstune.methods.sft.example)
        return [{**ex, "kind": f"cc_tuning+{ex['kind']}",
                 "prompt_en": method.english_prompt(by_id[ex["id"].split("|")[0]], ex["kind"], mix), **where}
                for ex in examples]  # fmt: skip

    def tokenize(self, example, tokenizer, max_length, truncation_side) -> dict | None:
        if not example["response"].strip():
            raise TrainDataError(f"example {example['id']!r} has an empty response")
        from ..cc_tuning.connection import chat_prompt_ids, tokenize_chat, tokens_after_p

        position = example.get("connection_position", "last")
        x = tokenize_chat(tokenizer, example["prompt"], example["response"], max_length, truncation_side, position)
        if x is None:  # truncation removed p or every response token: the engine drops it
            return None
        en = chat_prompt_ids(tokenizer, example["prompt_en"])
        after = tokens_after_p(tokenizer, en, position)
        if max_length is not None and len(en) > max_length:
            en = en[len(en) - max_length :]  # keep the end, where p is
        return {**x, "en_input_ids": en, "en_position": len(en) - 1 - after}

    def collate(self, features, tokenizer) -> dict:
        import torch

        from ..cc_tuning.connection import IGNORE_INDEX, pad_batch, pad_token_id

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
        from ..cc_tuning.connection import num_layers_and_hidden, unwrap
        from ..cc_tuning.decision import DecisionMaker

        num_layers, hidden = num_layers_and_hidden(model)
        std = getattr(unwrap(model).config, "initializer_range", 0.02)  # the released code's init
        return {"decision_maker": DecisionMaker(hidden, num_layers, init_std=std)}

    def prepare(self, model, tokenizer, dataset, settings):
        from ..cc_tuning.connection import num_layers_and_hidden

        if not getattr(tokenizer, "chat_template", None):
            raise TrainDataError("cc_tuning needs a tokenizer with a chat template (p is the last prompt token)")
        if (settings.get("train") or {}).get("gradient_checkpointing"):
            raise TrainDataError("cc_tuning does not support train.gradient_checkpointing: the connection's "
                                 "hooks run inside the checkpointed decoder layers")  # fmt: skip
        num_layers_and_hidden(model)  # fails early on models without decoder layers
        return dataset

    def compute_loss(self, model, inputs, modules, settings, num_items_in_batch=None):
        from ..cc_tuning.training import TrainSettings, cc_tuning_forward

        opts = TrainSettings.from_settings(settings)
        out = cc_tuning_forward(model, inputs, modules["decision_maker"], opts, num_items_in_batch)
        # the Decision Maker's one-hot choices summed over the batch: rows per chosen layer
        self.last_counts = {"layer_choice": out["choice"].detach().sum(0)}
        return out["loss"]

