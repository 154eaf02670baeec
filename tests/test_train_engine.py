"""The training engine end to end on the tiny model: saving, scopes, extra modules, resume, DDP."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, TrainerCallback

from crosstune.methods import METHODS, TrainDataError
from crosstune.methods.base import causal_lm_loss
from crosstune.methods.sft import Sft
from crosstune.train.engine import train
from crosstune.train.launch import run

from .conftest import REPO
from .train_helpers import seed_pairs, settings, write_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", seed_pairs(items=6))


@pytest.fixture(scope="module")
def base(tiny_model_dir):
    return tiny_model_dir("llama")


def weights(path):
    return load_file(str(path / "model.safetensors"))


def job(tmp_path, base, pairs, s, tag="run"):
    out = tmp_path / tag
    return {"model_dir": str(base), "pairs": str(pairs), "output": str(out / "model"),
            "checkpoint_dir": str(out / "checkpoints"), "settings": s, "seed": 42,
            "metrics": str(out / "metrics.json"), "plot": str(out / "loss.png")}  # fmt: skip


class LogitBias(Sft):
    """A toy method with an extra module (a learned bias on the logits), like CC-Tuning's Decision Maker."""

    name = "toy_bias"

    def extra_modules(self, model, settings):
        bias = torch.nn.Linear(1, model.config.vocab_size, bias=False)
        torch.nn.init.normal_(bias.weight, std=0.01)
        LogitBias.initial = bias.weight.detach().clone()  # for the test to compare against
        return {"bias": bias}

    def compute_loss(self, model, inputs, modules, settings, num_items_in_batch=None):
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        return causal_lm_loss(logits + modules["bias"].weight[:, 0], inputs["labels"], num_items_in_batch)


@pytest.fixture
def toy_bias(monkeypatch):
    monkeypatch.setitem(METHODS, "toy_bias", LogitBias)


class Crash(TrainerCallback):
    """Kill the run at the end of step ``step`` (before that step's checkpoint), or right after
    its checkpoint is saved (``after_save``: before the model is moved into place)."""

    def __init__(self, step, after_save=False):
        self.step, self.after_save = step, after_save

    def crash(self, state, saved):
        if state.global_step == self.step and saved == self.after_save:
            raise RuntimeError("killed")

    def on_step_end(self, args, state, control, **kwargs):
        self.crash(state, saved=False)

    def on_save(self, args, state, control, **kwargs):
        self.crash(state, saved=True)


def test_sft_saves_a_loadable_model_with_metrics(tmp_path, base, pairs):
    j = job(tmp_path, base, pairs, settings({"type": "sft"}, name="sft"))
    summary = train(**j)
    out = tmp_path / "run"
    model = AutoModelForCausalLM.from_pretrained(out / "model")
    assert model.config.hidden_size == 64
    trained, before = weights(out / "model"), weights(base)
    assert trained.keys() == before.keys() and not torch.equal(trained["lm_head.weight" if "lm_head.weight" in trained
                                                                       else "model.embed_tokens.weight"],
                                                               before["model.embed_tokens.weight"])  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and [e["step"] for e in metrics["loss_curve"]] == [1, 2, 3]
    assert metrics["composition"] == {"sft": {lang: 6 for lang in ("ar", "en", "hi", "ru", "sw", "zh")}}
    assert metrics["distinct_examples"] == {"sft": 36}  # no example repeated
    assert metrics["tokens"] > 0 and metrics["tokens_per_second"] > 0 and summary["final_loss"] > 0
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    prov = json.loads((out / "model" / "provenance.json").read_text())
    assert prov["stage"] == "train" and prov["settings"]["name"] == "sft" and prov["seed"] == 42
    assert (out / "model" / "chat_template.jinja").exists() and not (out / "model" / "training_args.bin").exists()
    assert not list((out / "checkpoints").glob("checkpoint-*"))  # keep_checkpoints: false


def test_pattern_freezing_trains_only_matching_parameters(tmp_path, base, pairs):
    s = settings({"type": "sft", "train": {"finetuning": {"mode": "patterns", "patterns": [r"self_attn\.(q|o)_proj"]}}})
    summary = train(**job(tmp_path, base, pairs, s))
    trained, before = weights(tmp_path / "run" / "model"), weights(base)
    changed = {k for k in before if not torch.equal(trained[k], before[k])}
    assert changed == {f"model.layers.{i}.self_attn.{p}_proj.weight" for i in range(2) for p in "qo"}
    assert summary["parameters"]["trainable"] == 2 * 2 * 64 * 64


def test_lora_trains_adapters_and_merges_them(tmp_path, base, pairs):
    s = settings({"type": "sft", "train": {"learning_rate": 0.01, "finetuning": {
        "mode": "lora", "lora_r": 2, "lora_alpha": 4, "target_modules": ["v_proj"]}}})  # fmt: skip
    summary = train(**job(tmp_path, base, pairs, s))
    out = tmp_path / "run" / "model"
    assert (out / "adapter" / "adapter_config.json").exists()
    trained, before = weights(out), weights(base)
    changed = {k for k in before if not torch.equal(trained[k], before[k])}
    assert changed == {f"model.layers.{i}.self_attn.v_proj.weight" for i in range(2)}  # base frozen, LoRA merged
    assert summary["parameters"]["trainable"] == 2 * (2 * 64 + 32 * 2)  # layers x (A: r x in + B: out x r)
    AutoModelForCausalLM.from_pretrained(out)


def test_extra_modules_train_and_are_saved_beside_the_model(tmp_path, base, pairs, toy_bias):
    s = settings({"type": "sft"}, name="biased")
    s["type"] = "toy_bias"
    train(**job(tmp_path, base, pairs, s))
    out = tmp_path / "run" / "model"
    bias = load_file(str(out / "bias.safetensors"))["weight"]
    assert bias.shape == (512, 1)
    assert "crosstune_extra" not in " ".join(weights(out))  # the HF directory holds only the model
    assert (bias - LogitBias.initial).abs().max() > 1e-4  # it trained with the model
    AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.parametrize("scope", ["full+extra", "lora"])
def test_killed_run_resumes_to_the_same_weights_and_curve(tmp_path, base, pairs, scope, request):
    spec = {"type": "sft"}
    if scope == "lora":
        spec["train"] = {"finetuning": {"mode": "lora", "lora_r": 2, "lora_alpha": 4, "lora_dropout": 0.3,
                                        "target_modules": ["q_proj", "v_proj"]}}  # fmt: skip
    else:
        request.getfixturevalue("toy_bias")
    s = settings(spec, name="r", max_steps=5, save_steps=2, save_total_limit=3)
    if scope != "lora":
        s["type"] = "toy_bias"
    ref = train(**job(tmp_path, base, pairs, s, "ref"))
    j = job(tmp_path, base, pairs, s, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(**j, callbacks=[Crash(3)])
    assert not (tmp_path / "killed" / "model").exists()
    assert [p.name for p in (tmp_path / "killed" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    resumed = train(**j)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["steps"] == 5
    assert resumed["loss_curve"] == ref["loss_curve"]
    a, b = weights(tmp_path / "ref" / "model"), weights(tmp_path / "killed" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    if scope != "lora":
        assert torch.equal(load_file(str(tmp_path / "ref/model/bias.safetensors"))["weight"],
                           load_file(str(tmp_path / "killed/model/bias.safetensors"))["weight"])  # fmt: skip


@pytest.mark.parametrize("schedule", [{"max_steps": 3}, {"max_steps": None, "epochs": 1}], ids=["steps", "epochs"])
def test_resume_from_the_final_checkpoint_trains_no_extra_step(tmp_path, base, pairs, schedule):
    # constant learning rate: one step too many would change every weight
    s = settings({"type": "sft"}, lr_scheduler="constant", save_steps=1, per_device_batch_size=8, **schedule)
    ref = train(**job(tmp_path, base, pairs, s, "ref"))
    j = job(tmp_path, base, pairs, s, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(**j, callbacks=[Crash(ref["steps"], after_save=True)])
    assert not (tmp_path / "killed" / "model").exists()
    resumed = train(**j)
    assert resumed["resumed_from"] == f"checkpoint-{ref['steps']}" and resumed["steps"] == ref["steps"]
    for key in ("loss_curve", "train_loss", "tokens", "epochs"):
        assert resumed[key] == ref[key], key
    a, b = weights(tmp_path / "ref" / "model"), weights(tmp_path / "killed" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_metrics_after_a_mid_run_resume_cover_the_whole_run(tmp_path, base, pairs):
    # a checkpoint (3) between two loss logs (2, 4): its steps must still count once
    s = settings({"type": "sft"}, max_steps=5, save_steps=3, logging_steps=2)
    ref = train(**job(tmp_path, base, pairs, s, "ref"))
    j = job(tmp_path, base, pairs, s, "killed")
    with pytest.raises(RuntimeError, match="killed"):
        train(**j, callbacks=[Crash(4)])
    resumed = train(**j)
    assert resumed["resumed_from"] == "checkpoint-3"
    assert [e["step"] for e in ref["loss_curve"]] == [2, 3, 4, 5]  # checkpoint and last steps are logged too
    assert resumed["loss_curve"] == ref["loss_curve"] and resumed["tokens"] == ref["tokens"]
    assert resumed["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-12)
    curve = ref["loss_curve"]
    assert ref["train_loss"] == pytest.approx((2 * curve[0]["loss"] + curve[1]["loss"] + curve[2]["loss"]
                                               + curve[3]["loss"]) / 5)  # fmt: skip


def test_changed_settings_do_not_resume_stale_checkpoints(tmp_path, base, pairs):
    s = settings({"type": "sft"}, max_steps=3, save_steps=1)
    j = job(tmp_path, base, pairs, s)
    with pytest.raises(RuntimeError, match="killed"):
        train(**j, callbacks=[Crash(2)])
    s2 = settings({"type": "sft"}, max_steps=3, save_steps=1, learning_rate=0.002)
    assert train(**{**j, "settings": s2})["resumed_from"] is None


def test_checkpoints_rotate(tmp_path, base, pairs):
    s = settings({"type": "sft"}, max_steps=4, save_steps=1, save_total_limit=2, keep_checkpoints=True)
    train(**job(tmp_path, base, pairs, s))
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert kept == ["checkpoint-3", "checkpoint-4"]


def test_bad_input_stops_before_the_first_step(tmp_path, base, pairs):
    j = job(tmp_path, base, pairs, settings({"type": "sft"}, name="sft_short", max_length=5))
    with pytest.raises(TrainDataError, match=r"method 'sft_short' \(type 'sft'\): all 36 sequences lost"):
        train(**j)
    assert not (tmp_path / "run").exists()
    empty = write_pairs(tmp_path / "empty.jsonl", [p for p in seed_pairs(items=2) if p["lang"] != "en"])
    with pytest.raises(TrainDataError, match=r"method 'en_only' \(type 'sft_en'\): the data mix is empty"):
        train(**job(tmp_path, base, empty, settings({"type": "sft_en"}, name="en_only")))


def test_two_process_ddp_matches_one_process(tmp_path, base, pairs):
    """Same global batch (1 x 4 vs 2 x 2): same loss curve and weights, up to float summation order."""
    one = settings({"type": "sft"}, name="sft", max_steps=3, per_device_batch_size=4)
    two = settings({"type": "sft"}, name="sft", max_steps=3, per_device_batch_size=2, num_processes=2,
                   accelerate_config=str(REPO / "workflow/profiles/accelerate/ddp.yaml"))  # fmt: skip
    run(job(tmp_path, base, pairs, one, "one"))
    run(job(tmp_path, base, pairs, two, "two"))
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert m2["num_processes"] == 2 and m1["num_processes"] == 1
    assert m1["tokens"] == m2["tokens"]  # the same sequences were seen
    l1, l2 = ([e["loss"] for e in m["loss_curve"]] for m in (m1, m2))
    assert torch.allclose(torch.tensor(l1), torch.tensor(l2), rtol=1e-5, atol=0)
    a, b = weights(tmp_path / "one" / "model"), weights(tmp_path / "two" / "model")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)




def test_a_kill_while_deleting_a_checkpoint_leaves_none_that_looks_complete(tmp_path, monkeypatch):
    """Checkpoints are deleted after the model is in place (and stale ones before training): a job's
    time limit can cut that off. What is left must read as unfinished, so the retry resumes from the
    checkpoint before it instead of failing on a checkpoint whose weights are gone."""
    from pathlib import Path

    from crosstune.train import engine

    for step in (2, 4):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"weights")
        (checkpoint / "trainer_state.json").write_text("{}")

    def killed(path, *args, **kwargs):  # the kill arrives once the weights are deleted
        (Path(path) / "model.safetensors").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.shutil, "rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.discard(tmp_path / "checkpoint-4")
    monkeypatch.undo()
    assert (tmp_path / "checkpoint-4").is_dir()  # left behind, but not as a complete checkpoint
    assert engine.last_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    assert "did not finish" in engine.unreadable(tmp_path / "checkpoint-4")  # the rerun discards it
