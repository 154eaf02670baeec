"""Training runs in trackers: report_to, trainer_args, the held-out eval loss, method metrics.

TensorBoard is read back with its own event reader; wandb and mlflow are checked up
to the TrainingArguments the Trainer gets (they are not test dependencies). TRL (a
test dependency) checks the preference loss and its metrics.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from crosstune.config import ConfigError
from crosstune.methods.clo import dpo_losses
from crosstune.train import data, engine
from crosstune.train.settings import RUN_ONLY, check, resolve, weight_settings

from .train_helpers import config, seed_pairs, settings, write_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", seed_pairs(items=5, langs=("sw", "zh")))


def run(tmp_path, model_dir, pairs, s, tag="run"):
    out = tmp_path / tag
    summary = engine.train(model_dir=str(model_dir), pairs=str(pairs), output=str(out / "model"),
                           checkpoint_dir=str(out / "checkpoints"), settings=s, seed=42,
                           metrics=str(out / "metrics.json"), plot=str(out / "loss.png"))  # fmt: skip
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    return summary, out


def events(runs):
    """TensorBoard's view of a log directory: {tag: [(step, value)]} of its scalars, and its histograms."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(runs), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    return scalars, {t: acc.Histograms(t) for t in acc.Tags()["histograms"]}


# --------------------------------------------------------------------------- config
def test_defaults_and_which_settings_are_rule_params():
    base = config({"sft": {"type": "sft"}})
    t = resolve(base, "sft")["train"]
    assert (t["report_to"], t["trainer_args"], t["eval_fraction"]) == ("none", {}, 0)
    assert "report_to" in RUN_ONLY

    def params(**train):
        return weight_settings(config({"sft": {"type": "sft"}}, train), "sft")

    # cannot change the weights: no retraining
    assert params(report_to=["tensorboard", "wandb"]) == params()
    assert params(trainer_args={"run_name": "x", "eval_steps": 5, "logging_first_step": True}) == params()
    # can: a rule param
    assert params(eval_fraction=0.2) != params()
    assert params(trainer_args={"adam_beta2": 0.95}) != params()
    # at their defaults, the new settings leave the params of models trained before them alone
    assert not {"report_to", "trainer_args", "eval_fraction"} & set(params()["train"])
    # evaluation picks the final weights: eval_steps is then a param too
    best = {"load_best_model_at_end": True, "metric_for_best_model": "loss"}
    assert params(trainer_args={**best, "eval_steps": 2}) != params(trainer_args={**best, "eval_steps": 4})


@pytest.mark.parametrize("args, message", [
    ({"adam_epsilo": 1e-6}, "train.trainer_args.adam_epsilo: not a transformers.TrainingArguments field; did you mean 'adam_epsilon'?"),
    ({"learning_rat": 1e-6}, "did you mean 'learning_rate'? crosstune sets it: use train.learning_rate"),
    ({"num_train_epochs": 2}, "train.trainer_args.num_train_epochs: set by crosstune; use train.epochs instead"),
    ({"report_to": "wandb"}, "use train.report_to instead"),
    ({"seed": 1}, "use the top-level seed instead"),
])  # fmt: skip
def test_trainer_args_are_checked_before_any_job(args, message):
    cfg = config({"sft": {"type": "sft", "train": {"trainer_args": args}}})
    with pytest.raises(ConfigError, match="methods.sft.train.trainer_args") as e:
        check(cfg)
    assert message in str(e.value)
    check(config({"sft": {"type": "sft", "train": {"trainer_args": {"adam_beta2": 0.95, "eval_steps": 3}}}}))


def test_report_to_needs_its_tracker_installed(monkeypatch):
    import importlib.util

    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError):  # not a transformers integration crosstune offers
        config({"sft": {"type": "sft"}}, train={"report_to": "tensorbord"})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"methods.sft.train.report_to: mlflow needs the mlflow package"):
        check(config({"sft": {"type": "sft"}}, train={"report_to": ["tensorboard", "mlflow"]}))


def test_settings_reach_the_training_arguments(tmp_path):
    s = settings({"type": "sft"}, name="sft", report_to="wandb", eval_fraction=0.25,
                 trainer_args={"adam_beta2": 0.95, "per_device_eval_batch_size": 2})  # fmt: skip
    args = engine.training_arguments(s, 42, tmp_path, run_name="tiny/sft")
    assert args.report_to == ["wandb"] and args.run_name == "tiny/sft" and args.adam_beta2 == 0.95
    assert args.eval_strategy == "steps" and args.eval_steps == args.logging_steps == 1
    assert args.per_device_eval_batch_size == 2
    plain = engine.training_arguments(settings({"type": "sft"}, name="sft"), 42, tmp_path)
    assert plain.report_to == [] and plain.eval_strategy == "no" and plain.run_name == "sft"
    assert plain.per_device_eval_batch_size == plain.per_device_train_batch_size


# --------------------------------------------------------------------------- held-out split
def test_hold_out_is_seeded_and_keeps_each_item_on_one_side():
    from crosstune.methods import get_method

    s = settings({"type": "sft_all"}, name="sft_all")
    examples = data.build_examples(get_method("sft_all"), seed_pairs(items=10), s, 42)
    train, held = data.hold_out(examples, 0.2, 42, s)
    assert len(train) + len(held) == len(examples) and data.hold_out(examples, 0.2, 42, s) == (train, held)
    assert len({data.item(ex) for ex in held}) == 2  # 20% of the 10 English items
    assert not {data.item(ex) for ex in held} & {data.item(ex) for ex in train}
    assert {ex["kind"] for ex in held} == {"sft", "en_copy"}  # an item's English copy goes with it
    assert data.hold_out(examples, 0.2, 7, s)[1] != held  # another seed, other items
    assert data.hold_out(examples, 0, 42, s) == (examples, [])
    with pytest.raises(data.TrainDataError, match="train.eval_fraction 0.01 of 10 items holds out 0"):
        data.hold_out(examples, 0.01, 42, s)


# --------------------------------------------------------------------------- runs
def test_sft_eval_loss_and_tensorboard_events(tmp_path, tiny_model_dir, pairs):
    s = settings({"type": "sft"}, name="sft", report_to="tensorboard", eval_fraction=0.4,
                 trainer_args={"eval_steps": 2})  # fmt: skip
    summary, out = run(tmp_path, tiny_model_dir("llama"), pairs, s)
    # 2 of 5 items held out (each in en, sw, zh); eval every 2 steps and at the last (3)
    assert summary["examples"] == 9 and summary["eval_examples"] == 6
    assert [e["step"] for e in summary["eval_curve"]] == [2, 3] and summary["eval_loss"] > 0
    assert summary["eval_loss"] == summary["eval_curve"][-1]["eval_loss"]
    scalars, _ = events(out / "runs")  # beside the model, not in it
    assert not (out / "model" / "runs").exists() and not (out / "checkpoints" / "runs").exists()
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([e["loss"] for e in summary["loss_curve"]])
    assert [v for _, v in scalars["eval/loss"]] == pytest.approx([e["eval_loss"] for e in summary["eval_curve"]])
    # a fresh run of the method starts its events anew
    run(tmp_path, tiny_model_dir("llama"), pairs, s)
    assert len(list((out / "runs").glob("events.out.tfevents.*"))) == 1


def test_preference_metrics_reach_metrics_json_tensorboard_and_the_plot(tmp_path, tiny_model_dir, pairs):
    s = settings({"type": "clo", "size": 3}, name="clo", report_to="tensorboard", per_device_batch_size=1,
                 eval_fraction=0.34)  # fmt: skip
    summary, out = run(tmp_path, tiny_model_dir("llama"), pairs, s)
    first, *_ = curve = summary["loss_curve"]
    names = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
             "logps/rejected", "dpo_loss", "nll_loss"]  # fmt: skip
    assert all(set(names) <= set(e) for e in curve)
    # step 1 runs the start weights, which are the reference: zero rewards, L_pref = log 2
    assert abs(first["rewards/chosen"]) < 1e-4 and abs(first["rewards/margins"]) < 1e-4
    assert first["dpo_loss"] == pytest.approx(0.6931, abs=1e-3)
    for e in curve:  # means of linear terms; CLO's loss = lambda * NLL + (1 - lambda) * L_pref
        assert e["rewards/margins"] == pytest.approx(e["rewards/chosen"] - e["rewards/rejected"], abs=1e-5)
        assert 0 <= e["rewards/accuracies"] <= 1
        assert e["loss"] == pytest.approx(0.5 * e["nll_loss"] + 0.5 * e["dpo_loss"], rel=1e-4)
    assert curve[-1]["rewards/margins"] > 0  # the preference is learned on the training pairs
    assert all({"eval_rewards/margins", "eval_nll_loss"} <= set(e) for e in summary["eval_curve"])
    scalars, _ = events(out / "runs")
    assert [v for _, v in scalars["train/rewards/margins"]] == pytest.approx([e["rewards/margins"] for e in curve])
    assert "eval/rewards/accuracies" in scalars and "train/nll_loss" in scalars
    from PIL import Image

    assert Image.open(out / "loss.png").size[1] == int(3 * 3.5 * 120)  # loss, rewards and loss-term panels


def test_cc_tuning_logs_its_layer_choices_and_evaluation_leaves_the_weights(tmp_path, tiny_model_dir, pairs):
    s = settings({"type": "cc_tuning"}, name="cc", report_to="tensorboard", eval_fraction=0.4, max_steps=2)
    summary, out = run(tmp_path, tiny_model_dir("llama"), pairs, s, "every")
    for e in summary["loss_curve"]:  # 2 decoder layers; shares of the step's 4 rows
        shares = [e["layer_choice/0"], e["layer_choice/1"]]
        assert sum(shares) == pytest.approx(1) and all(x * 4 == pytest.approx(round(x * 4)) for x in shares)
    _, hist = events(out / "runs")
    assert [h.step for h in hist["train/layer_choice"]] == [1, 2]
    assert all(h.histogram_value.num == 4 for h in hist["train/layer_choice"])
    assert [h.histogram_value.num for h in hist["eval/layer_choice"]] == [6, 6]  # 6 held-out rows per evaluation
    # evaluating at every step or only at the end: the same weights (evaluation draws no training noise)
    once = {**s, "train": {**s["train"], "trainer_args": {"eval_steps": 100}}}
    run(tmp_path, tiny_model_dir("llama"), pairs, once, "once")
    a, b = (load_file(str(tmp_path / t / "model" / "model.safetensors")) for t in ("every", "once"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resumed_run_appends_to_tensorboard_without_repeating_steps(tmp_path, tiny_model_dir, pairs):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:  # after the checkpoint of step 2 and the log of step 3
                raise RuntimeError("killed")

    s = settings({"type": "sft"}, name="sft", report_to="tensorboard", max_steps=4, save_steps=2)
    s["train"]["keep_checkpoints"] = True
    out = tmp_path / "run"
    job = dict(model_dir=str(tiny_model_dir("llama")), pairs=str(pairs), output=str(out / "model"),
               checkpoint_dir=str(out / "checkpoints"), settings=s, seed=42, metrics=str(out / "metrics.json"))
    with pytest.raises(RuntimeError, match="killed"):
        engine.train(**job, callbacks=[Kill()])
    summary = engine.train(**job)
    assert summary["resumed_from"] == "checkpoint-2"
    scalars, _ = events(out / "runs")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2, 3, 4]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([e["loss"] for e in summary["loss_curve"]])


# --------------------------------------------------------------------------- TRL parity
class LogProbs(torch.nn.Module):
    """Stands in for the policy in TRL's loss: its fused-head outputs carry given sequence log-probs."""

    def __init__(self, logps: torch.Tensor, width: int):
        super().__init__()
        self.logps, self.width = logps, width

    def forward(self, input_ids, **kwargs):
        from types import SimpleNamespace

        rows = len(self.logps)
        per_token = torch.zeros(rows, self.width - 1)
        per_token[:, 0] = self.logps  # TRL sums the per-token values over the completion
        return SimpleNamespace(log_probs=per_token, entropy=torch.zeros(rows, self.width - 1),
                               mean_logits=torch.zeros(rows, self.width - 1),
                               is_top1=torch.zeros(rows, self.width - 1, dtype=torch.bool), aux_loss=None)  # fmt: skip


def test_preference_loss_matches_trl_sigmoid_dpo(tmp_path, tiny_model_dir):
    """Our L_pref and reward metrics against TRL's DPOTrainer (loss_type sigmoid), same log-probs in.

    TRL's loss code is run as the library runs it (``DPOTrainer.compute_loss`` with
    precomputed reference log-probs); only the policy's forward is replaced by the
    given sequence log-probs.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from crosstune.methods.clo import preference_metrics

    base = tiny_model_dir("llama")
    beta = 0.1
    prefs = Dataset.from_list([{"prompt": [{"role": "user", "content": f"q{i}"}],
                                "chosen": [{"role": "assistant", "content": "yes"}],
                                "rejected": [{"role": "assistant", "content": "no"}]} for i in range(4)])  # fmt: skip
    args = DPOConfig(output_dir=str(tmp_path), beta=beta, loss_type=["sigmoid"], precompute_ref_log_probs=True,
                     report_to="none", use_cpu=True, per_device_train_batch_size=4)  # fmt: skip
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(base), args=args, train_dataset=prefs,
                         processing_class=AutoTokenizer.from_pretrained(base))  # fmt: skip
    torch.manual_seed(0)
    chosen, rejected, ref_c, ref_r = (torch.randn(6, dtype=torch.float64).float() * 5 - 20 for _ in range(4))
    width = 5
    inputs = {"input_ids": torch.ones(12, width, dtype=torch.long), "attention_mask": torch.ones(12, width),
              "completion_mask": torch.ones(12, width), "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    trainer.model.train()
    theirs = trainer.compute_loss(LogProbs(torch.cat([chosen, rejected]), width), inputs)
    ours = dpo_losses(chosen, rejected, ref_c, ref_r, beta)
    assert ours.mean().item() == pytest.approx(theirs.item(), abs=1e-6)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    mine = preference_metrics(chosen, rejected, ref_c, ref_r, beta, ours)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                 "logps/rejected"):  # fmt: skip
        assert mine[name].item() == pytest.approx(logged[name], abs=1e-5), name
