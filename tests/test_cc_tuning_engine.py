"""CC-Tuning on the training engine: a few steps on the tiny model, the Decision Maker saved beside it."""

from __future__ import annotations

import pytest
import torch

from crosstune.cc_tuning.decision import load_decision_maker
from crosstune.methods import METHODS
from crosstune.methods.cc_tuning import CCTuning
from crosstune.train import engine

from .train_helpers import seed_pairs, settings, write_pairs


class Recording(CCTuning):
    """CC-Tuning that remembers the Decision Maker's initial weight."""

    def extra_modules(self, model, settings):
        modules = super().extra_modules(model, settings)
        Recording.initial = modules["decision_maker"].linear.weight.detach().clone()
        return modules


@pytest.mark.parametrize("english_pass", ["faithful", "detached"])
def test_engine_trains_cc_tuning_and_saves_the_decision_maker(tmp_path, tiny_model_dir, monkeypatch, english_pass):
    from transformers import AutoModelForCausalLM

    assert METHODS["cc_tuning"] is CCTuning  # registered under its type name
    monkeypatch.setitem(METHODS, "cc_tuning", Recording)
    pairs = write_pairs(tmp_path / "pairs.jsonl", seed_pairs(items=4))
    s = settings({"type": "cc_tuning", "english_pass": english_pass}, name="cc")
    assert (s["type"], s["english_pass"], s["tau"], s["languages"]) == ("cc_tuning", english_pass, 1.0, None)
    out = tmp_path / "run"
    engine.train(model_dir=str(tiny_model_dir("llama")), pairs=str(pairs), output=str(out / "model"),
                 checkpoint_dir=str(out / "checkpoints"), settings=s, seed=42, metrics=str(out / "metrics.json"),
                 plot=str(out / "loss.png"))  # fmt: skip
    dm = load_decision_maker(out / "model" / "decision_maker.safetensors")
    assert tuple(dm.linear.weight.shape) == (2, 64)
    assert (dm.linear.weight - Recording.initial).abs().max() > 0  # W trained (straight-through)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))
    trained = AutoModelForCausalLM.from_pretrained(out / "model")
    w0, w1 = base.model.layers[0].mlp.up_proj.weight, trained.model.layers[0].mlp.up_proj.weight
    assert not torch.equal(w0, w1)  # the model trained with the connection


def test_engine_trains_cc_tuning_on_the_sft_mt_mix(tmp_path, tiny_model_dir):
    """cc_tuning+mt: the sft_mt mix (tasks and translation tasks), each example with its English prompt."""
    import json

    pairs = write_pairs(tmp_path / "pairs.jsonl", seed_pairs(items=2, langs=("sw",)))
    s = settings({"type": "cc_tuning", "mix": "sft_mt"}, name="cc_tuning+mt", max_steps=1)
    out = tmp_path / "run"
    engine.train(model_dir=str(tiny_model_dir("llama")), pairs=str(pairs), output=str(out / "model"),
                 checkpoint_dir=str(out / "checkpoints"), settings=s, seed=42, metrics=str(out / "metrics.json"),
                 plot=str(out / "loss.png"))  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["composition"] == {"cc_tuning+mt": {"en": 2}, "cc_tuning+sft": {"en": 2, "sw": 2}}
    assert (out / "model" / "decision_maker.safetensors").is_file()
