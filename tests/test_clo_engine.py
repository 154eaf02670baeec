"""CLO and SFT->DPO on the training engine: attention-only CLO, sft_dpo from the sft model as start and reference."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from crosstune.config import ConfigError
from crosstune.methods import METHODS, TrainDataError
from crosstune.methods.clo import CLOMethod, SFTDPOMethod
from crosstune.train import engine
from crosstune.train.settings import check, init_from

from .conftest import REPO
from .train_helpers import config, seed_pairs, settings, write_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", seed_pairs(items=3, langs=("sw", "zh")))


def run(tmp_path, model_dir, pairs, s, tag):
    out = tmp_path / tag
    return engine.train(model_dir=str(model_dir), pairs=str(pairs), output=str(out / "model"),
                        checkpoint_dir=str(out / "checkpoints"), settings=s, seed=42,
                        metrics=str(out / "metrics.json"))  # fmt: skip


class RecordingDPO(SFTDPOMethod):
    """sft_dpo that keeps its dataset and reference table (the cached reference log-probs)."""

    def prepare(self, model, tokenizer, dataset, settings):
        RecordingDPO.prepared = super().prepare(model, tokenizer, dataset, settings)
        return RecordingDPO.prepared

    def reference_table(self, *args):
        RecordingDPO.table = super().reference_table(*args)
        return RecordingDPO.table


def test_clo_trains_only_the_attention_projections(tmp_path, tiny_model_dir, pairs):
    base = tiny_model_dir("llama")
    summary = run(tmp_path, base, pairs, settings({"type": "clo", "size": 2}, name="clo", max_steps=2), "clo")
    assert summary["type"] == "clo" and summary["steps"] == 2 and summary["init_from"] is None
    before, after = load_file(str(base / "model.safetensors")), load_file(str(tmp_path / "clo/model/model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(any(f".{m}." in k for m in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)
    assert any(".mlp." in k for k in before) and not any(".mlp." in k for k in changed)


def test_sft_dpo_starts_from_the_sft_model_which_is_its_reference(tmp_path, tiny_model_dir, pairs, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tiny_model_dir("llama")
    run(tmp_path, base, pairs, settings({"type": "sft"}, name="sft", max_steps=2), "sft")
    sft_model = tmp_path / "sft/model"
    s = settings({"type": "sft_dpo", "size": 2}, name="sft_dpo", max_steps=1)
    assert s["init_from"] == "sft"
    monkeypatch.setitem(METHODS, "sft_dpo", RecordingDPO)
    summary = run(tmp_path, sft_model, pairs, s, "dpo")
    assert summary["init_from"] == "sft" and summary["start_model"] == str(sft_model)
    provenance = json.loads((tmp_path / "dpo/model/provenance.json").read_text())
    assert provenance["base_model"] == str(sft_model)

    # the cached reference log-probs are the sft model's, not the base model's
    cached = RecordingDPO.prepared
    feats = [{k: cached[i][k] for k in ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")}
             for i in range(len(cached))]  # fmt: skip
    tok = AutoTokenizer.from_pretrained(sft_model)

    def reference(model_dir):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        return SFTDPOMethod().reference_logps(model, tok, feats, batch_size=8)

    got = RecordingDPO.table[:, 0]  # chosen, both directions
    assert torch.allclose(got, torch.tensor(reference(sft_model)[0]), atol=1e-4)
    assert not torch.allclose(got, torch.tensor(reference(base)[0]), atol=1e-2)


def test_sft_dpo_refuses_a_start_model_that_is_not_its_init_from(tmp_path, tiny_model_dir, pairs):
    s = settings({"type": "sft_dpo", "size": 2}, name="sft_dpo", max_steps=1)
    with pytest.raises(TrainDataError, match=r"method 'sft_dpo': init_from 'sft' needs the trained model .* not a trained"):
        run(tmp_path, tiny_model_dir("llama"), pairs, s, "dpo")
    s_base = settings({"type": "sft_dpo", "size": 2, "init_from": None}, name="dpo_base", max_steps=1)
    assert run(tmp_path, tiny_model_dir("llama"), pairs, s_base, "dpo_base")["steps"] == 1  # null: the base model


def test_init_from_must_name_a_configured_method():
    cfg = config({"sft": {"type": "sft"}, "dpo": {"type": "sft_dpo", "init_from": "sfft"}})
    with pytest.raises(ConfigError, match=r"methods\.dpo\.init_from: 'sfft' is not a configured method \(configured: dpo, sft\)"):
        check(cfg, REPO)
    cfg = config({"a": {"type": "sft_dpo", "init_from": "b"}, "b": {"type": "sft_dpo", "init_from": "a"}})
    with pytest.raises(ConfigError, match=r"methods\.a\.init_from: a cycle, a -> b -> a"):
        init_from(cfg, "a")
    assert init_from(config({"sft": {"type": "sft"}, "dpo": {"type": "sft_dpo"}}), "dpo") == "sft"
    assert init_from(config({"clo": {"type": "clo"}}), "clo") is None and CLOMethod.train_defaults


def test_resumed_clo_reads_its_reference_from_the_checkpoint(tmp_path, tiny_model_dir, pairs, monkeypatch):
    """A resumed run must not recompute the reference from the checkpoint's (trained) weights."""
    from .test_train_engine import Crash

    base = tiny_model_dir("llama")
    s = settings({"type": "clo", "size": 2}, name="clo", max_steps=3, save_steps=1, per_device_batch_size=1,
                 learning_rate=0.01)  # fmt: skip
    ref = run(tmp_path, base, pairs, s, "ref")
    with pytest.raises(RuntimeError, match="killed"):
        engine.train(model_dir=str(base), pairs=str(pairs), output=str(tmp_path / "k/model"),
                     checkpoint_dir=str(tmp_path / "k/checkpoints"), settings=s, seed=42, callbacks=[Crash(2)])  # fmt: skip
    saved = load_file(str(tmp_path / "k/checkpoints/checkpoint-1/reference.safetensors"))["reference"]
    calls = []
    monkeypatch.setattr(CLOMethod, "reference_table", lambda *a: calls.append(a))
    resumed = run(tmp_path, base, pairs, s, "k")
    assert resumed["resumed_from"] == "checkpoint-1" and not calls  # read back, not recomputed
    assert resumed["loss_curve"] == ref["loss_curve"] and saved.shape == (4, 2, 2)
