"""Training configuration: schema <-> registry, method settings, accelerate configs."""

from __future__ import annotations

import pytest
import yaml

from crosstune.config import ConfigError
from crosstune.methods import METHODS, get_method
from crosstune.train.settings import RUN_ONLY, check, resolve, weight_settings

from .conftest import REPO
from .train_helpers import SCHEMA, config

ACCELERATE = REPO / "workflow" / "profiles" / "accelerate"


def test_schema_lists_every_registered_method_and_its_settings():
    schema = yaml.safe_load(SCHEMA.read_text())
    method = schema["$defs"]["method"]
    assert set(method["properties"]["type"]["enum"]) == set(METHODS)
    for kind, cls in METHODS.items():
        missing = set(cls.defaults) - set(method["properties"])
        assert not missing, f"{kind}: settings {missing} not in the schema"


def test_tiny_config_trains_every_method_type():
    tiny = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    assert {m["type"] for m in tiny["methods"].values()} == set(METHODS)
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    assert {"sft", "crossin", "clo", "cc_tuning"} <= {m["type"] for m in default["methods"].values()}


def test_checkpoint_and_logging_cadence_are_not_rule_params():
    """Rule train's params (weight_settings) leave out what cannot change the weights, so
    changing save_steps or logging_steps (globally or per method) retrains nothing."""
    base = config({"sft": {"type": "sft"}})
    changed = config({"sft": {"type": "sft", "train": {"logging_steps": 3}}},
                     train={"save_steps": 7, "save_total_limit": 1, "keep_checkpoints": True})  # fmt: skip
    assert weight_settings(base, "sft") == weight_settings(changed, "sft")
    assert not set(RUN_ONLY) & set(weight_settings(base, "sft")["train"])
    full = resolve(changed, "sft")["train"]  # what the job itself gets
    assert (full["save_steps"], full["logging_steps"], full["keep_checkpoints"]) == (7, 3, True)
    lr = config({"sft": {"type": "sft"}}, train={"learning_rate": 0.123})
    assert weight_settings(base, "sft") != weight_settings(lr, "sft")


def test_variant_without_code_and_train_overrides_merge():
    cfg = config({"crossin_x2en": {"type": "crossin", "mode": "x2en",
                                   "train": {"learning_rate": 0.5, "finetuning": {"mode": "lora", "lora_r": 2}}}},
                 train={"max_steps": 7})  # fmt: skip
    s = resolve(cfg, "crossin_x2en")
    assert (s["name"], s["type"], s["mode"], s["size"], s["base"]) == ("crossin_x2en", "crossin", "x2en", None, "en")
    assert s["train"]["learning_rate"] == 0.5 and s["train"]["max_steps"] == 7
    ft = s["train"]["finetuning"]
    assert (ft["mode"], ft["lora_r"], ft["lora_alpha"]) == ("lora", 2, 128)  # merged key by key
    assert cfg["train"]["learning_rate"] != 0.5 and cfg["train"]["finetuning"]["mode"] == "full"  # config untouched
    assert list(s) == sorted(s)  # canonical order: stable rule params


def test_method_train_defaults_sit_between_the_config_and_the_entry():
    from crosstune.methods.clo import ATTENTION_PATTERNS

    cfg = config({"clo": {"type": "clo"}, "clo_full": {"type": "clo", "train": {"finetuning": {"mode": "full"}}},
                  "sft_dpo": {"type": "sft_dpo"}}, train={"finetuning": {"mode": "lora"}})  # fmt: skip
    clo = resolve(cfg, "clo")
    assert (clo["beta"], clo["lambda"], clo["size"]) == (0.1, 0.5, None)
    assert clo["train"]["finetuning"]["mode"] == "patterns" and clo["train"]["finetuning"]["patterns"] == ATTENTION_PATTERNS
    assert resolve(cfg, "clo_full")["train"]["finetuning"]["mode"] == "full"
    dpo = resolve(cfg, "sft_dpo")
    assert dpo["init_from"] == "sft" and dpo["train"]["finetuning"]["mode"] == "lora"  # no train_defaults: the config's


def test_unknown_method_type_is_a_schema_error_naming_the_key():
    from snakemake.utils import validate

    with pytest.raises(Exception, match=r"(?s)'dpo' is not one of.*\['methods'\]\['my_dpo'\]\['type'\]"):
        validate({"models": {"m": {"source": {"type": "tiny", "family": "llama"}}},
                  "methods": {"my_dpo": {"type": "dpo"}}}, str(SCHEMA), set_default=True)  # fmt: skip
    cfg = config({"sft": {"type": "sft"}})
    cfg["methods"]["my_dpo"] = {"type": "dpo"}  # past the schema (e.g. an unvalidated config)
    with pytest.raises(ConfigError, match=r"methods\.my_dpo\.type: unknown method type 'dpo'; registered types: "):
        resolve(cfg, "my_dpo")
    with pytest.raises(ValueError, match="unknown method type 'dpo'"):
        get_method("dpo")


def test_setting_of_another_method_type_is_an_error():
    cfg = config({"plain": {"type": "sft", "mode": "x2en"}})
    with pytest.raises(ConfigError, match=r"methods\.plain\.mode: not a setting of method type 'sft'"):
        check(cfg, REPO)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ({"finetuning": {"mode": "patterns"}}, "needs a non-empty train.finetuning.patterns"),
        ({"finetuning": {"mode": "patterns", "patterns": ["(q"]}}, "bad regular expression"),
        ({"epochs": None, "max_steps": None}, "set train.epochs or train.max_steps"),
        ({"num_processes": 2, "accelerate_config": "nope.yaml"}, "accelerate_config not found: nope.yaml"),
    ],
)
def test_inconsistent_train_settings(train, message):
    cfg = config({"x": {"type": "sft", "train": train}})
    with pytest.raises(ConfigError, match=r"methods\.x: .*" + message.replace(".", r"\.").replace("(", r"\(")):
        check(cfg, REPO)


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("zero3", "DEEPSPEED")])
def test_shipped_accelerate_configs_load(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    cfg = load_config_from_file(str(ACCELERATE / f"{name}.yaml"))
    assert cfg.distributed_type.value == kind and cfg.num_machines == 1
    if name == "zero3":
        assert cfg.deepspeed_config["zero_stage"] == 3 and cfg.deepspeed_config["zero3_save_16bit_model"]
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_per_language_entry_expands_into_one_method_per_target_language():
    from crosstune.train.settings import expand_per_language

    cfg = config({"sft_6400": {"type": "sft", "per_language": True, "size": 6},
                  "dpo": {"type": "sft_dpo", "per_language": True, "init_from": "sft_6400", "languages": ["sw", "zh"]},
                  "clo": {"type": "clo", "size": 3}})  # fmt: skip
    cfg["languages"] = ["en", "sw", "zh", "ar"]
    cfg["evaluation"]["methods"] = ["base", "dpo", "sft_6400-ar"]
    expand_per_language(cfg)
    assert sorted(cfg["methods"]) == ["clo", "dpo-sw", "dpo-zh", "sft_6400-ar", "sft_6400-sw", "sft_6400-zh"]
    assert cfg["evaluation"]["methods"] == ["base", "dpo-sw", "dpo-zh", "sft_6400-ar"]
    s = resolve(cfg, "sft_6400-zh")
    assert (s["name"], s["languages"], s["size"]) == ("sft_6400-zh", ["zh"], 6) and "per_language" not in s
    assert resolve(cfg, "dpo-sw")["init_from"] == "sft_6400-sw"  # its own language's SFT model
    check(cfg)
    bad = config({"a": {"type": "sft", "per_language": True}, "b": {"type": "sft_dpo", "init_from": "a"}})
    with pytest.raises(ConfigError, match=r"methods.b.init_from: 'a' is per language; 'b' must be too"):
        expand_per_language(bad)


def test_the_training_module_answers_help_and_names_its_job_file():
    import subprocess
    import sys

    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    run = [sys.executable, "-m", "crosstune.train"]
    shown = subprocess.run([*run, "--help"], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "usage: python -m crosstune.train" in shown.stdout and "job" in shown.stdout
    missing = subprocess.run(run, capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "the following arguments are required: job" in missing.stderr
