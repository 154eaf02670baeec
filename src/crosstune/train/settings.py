"""A method's resolved settings: its ``methods:`` entry + the shared ``train:`` defaults.

``resolve(config, name)`` returns the dict every :class:`~crosstune.methods.Method`
hook receives; the ``train`` rule's ``params`` are :func:`weight_settings`, the same
without checkpoint/logging cadence (so a change to anything that can change the
weights reruns exactly that method's training, and nothing else does)::

    {"name": "crossin_x2en", "type": "crossin",
     "mode": "x2en", "size": null, ...          # method settings (Method.defaults + config)
     "train": {"learning_rate": ..., ..., "finetuning": {"mode": "full", ...}}}

``train`` is the config's ``train:`` section with the method type's
``train_defaults`` (e.g. CLO trains the attention projections) and then the
method entry's own ``train:`` overrides merged in (``finetuning`` merged key by key). The config must have been
validated against the schema (which fills the defaults of ``train:``).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from ..config import ConfigError
from ..methods import METHODS
from .launch import accelerate_config

RESERVED = ("type", "train")
# train settings that cannot change the trained weights (when to checkpoint and log, what
# to keep, where to report): not part of rule train's params, so changing one reruns no training
RUN_ONLY = ("save_steps", "save_total_limit", "keep_checkpoints", "logging_steps", "report_to")

# transformers.TrainingArguments fields that crosstune sets itself: train.trainer_args may not
# set them; the value says which crosstune setting to use (or why the field is fixed)
OWNED_ARGS = {
    "output_dir": "results/{model}/train/{method}/checkpoints (fixed)",
    "learning_rate": "train.learning_rate", "num_train_epochs": "train.epochs", "max_steps": "train.max_steps",
    "per_device_train_batch_size": "train.per_device_batch_size",
    "gradient_accumulation_steps": "train.gradient_accumulation", "lr_scheduler_type": "train.lr_scheduler",
    "warmup_steps": "train.warmup_ratio", "weight_decay": "train.weight_decay",
    "max_grad_norm": "train.max_grad_norm", "optim": "train.optimizer", "bf16": "train.bf16",
    "gradient_checkpointing": "train.gradient_checkpointing",
    "activation_checkpointing": "train.gradient_checkpointing", "logging_steps": "train.logging_steps",
    "save_strategy": "train.save_steps", "save_steps": "train.save_steps",
    "save_total_limit": "train.save_total_limit", "seed": "the top-level seed", "data_seed": "the top-level seed",
    "report_to": "train.report_to", "eval_strategy": "train.eval_fraction", "do_eval": "train.eval_fraction",
    "use_cpu": "train.device", "fsdp": "train.accelerate_config", "fsdp_config": "train.accelerate_config",
    "deepspeed": "train.accelerate_config", "resume_from_checkpoint": "the checkpoints (resumed automatically)",
    "remove_unused_columns": "the method's collate (fixed: false)",
    "include_num_input_tokens_seen": "metrics.json's tokens (fixed)",
    "dataloader_num_workers": "the engine (fixed: 0)",
    "ddp_find_unused_parameters": "the method (Method.ddp_find_unused_parameters)",
}  # fmt: skip
# trainer_args fields that cannot change the weights (what and where to log and evaluate):
# left out of rule train's params like RUN_ONLY - unless load_best_model_at_end makes the
# evaluation choose the final weights
RUN_ONLY_ARGS = ("run_name", "project", "logging_first_step", "logging_nan_inf_filter", "logging_strategy",
                 "log_level", "log_level_replica", "log_on_each_node", "disable_tqdm", "skip_memory_metrics",
                 "eval_steps", "eval_delay", "eval_on_start", "per_device_eval_batch_size",
                 "eval_accumulation_steps", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id")
# train.report_to names and the package each needs (transformers' integrations)
TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def merge(base: dict, override: dict) -> dict:
    """``base`` updated with ``override``; nested dicts are merged, not replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# methods whose examples are plain (prompt, response) records: a cc_tuning method may train on their mix
DATA_LEVEL = ("sft", "sft_en", "sft_all", "sft_mt", "crossin")


def mix_settings(config: dict, name: str, mix: str) -> dict:
    """``methods.<name>.mix``: a configured data-level method (its settings) or a type (its defaults)."""
    methods = config.get("methods") or {}
    if mix in methods and methods[mix].get("type") in DATA_LEVEL:
        return {k: v for k, v in resolve(config, mix).items() if k != "train"}
    if mix in DATA_LEVEL and mix not in methods:
        return {"name": mix, "type": mix, **copy.deepcopy(METHODS[mix].defaults)}
    raise ConfigError(f"methods.{name}.mix: {mix!r} is neither a configured data-level method nor one of the types "
                      f"{', '.join(DATA_LEVEL)}")  # fmt: skip


def resolve(config: dict, name: str) -> dict:
    methods = config.get("methods") or {}
    if name not in methods:
        raise ConfigError(f"methods.{name}: no such method in the config; configured: {', '.join(sorted(methods))}")
    spec = methods[name]
    kind = spec.get("type")
    if kind not in METHODS:
        raise ConfigError(
            f"methods.{name}.type: unknown method type {kind!r}; registered types: {', '.join(sorted(METHODS))}"
        )
    cls = METHODS[kind]
    unknown = sorted(set(spec) - set(cls.defaults) - set(RESERVED))
    if unknown:
        known = ", ".join(sorted(cls.defaults)) or "none"
        raise ConfigError(f"methods.{name}.{unknown[0]}: not a setting of method type {kind!r} (its settings: {known})")
    own = {k: copy.deepcopy(spec.get(k, v)) for k, v in cls.defaults.items()}
    if own.get("mix") is not None:  # cc_tuning on a data-level method's mix: that method's settings
        own["mix"] = mix_settings(config, name, own["mix"])
    train = merge(merge(config["train"], cls.train_defaults), spec.get("train") or {})
    resolved = {"name": name, "type": kind, **own, "train": train}
    return json.loads(json.dumps(resolved, sort_keys=True))  # one canonical order: stable rule params


def variant_name(name: str, lang: str) -> str:
    """The method a ``per_language`` entry trains for one target language: ``clo_3200-zh``."""
    return f"{name}-{lang}"


def expand_per_language(config: dict) -> None:
    """Replace each ``methods.<name>`` with ``per_language: true`` by one method per target language.

    The variant ``<name>-<lang>`` is the entry with ``languages: [<lang>]``; the
    languages are the entry's ``languages`` (else every configured language but
    English). An ``init_from`` naming another per-language entry points at its
    variant of the same language (SFT-6,400-zh -> DPO-zh), and
    ``evaluation.methods`` naming an entry names all its variants. In place,
    before anything reads ``methods:`` (common.smk).
    """
    methods = config.get("methods") or {}
    expanded, variants = {}, {}
    for name, spec in methods.items():
        if not spec.get("per_language"):
            expanded[name] = {k: v for k, v in spec.items() if k != "per_language"}
            continue
        langs = spec.get("languages") or [x for x in config["languages"] if x != "en"]
        if "en" in langs:
            raise ConfigError(f"methods.{name}.languages: per_language variants are per target language; drop 'en'")
        variants[name] = langs
        for lang in langs:
            rest = {k: copy.deepcopy(v) for k, v in spec.items() if k != "per_language"}
            expanded[variant_name(name, lang)] = {**rest, "languages": [lang]}
    for name, spec in expanded.items():
        source = spec.get("init_from")
        if source in variants:
            lang = spec["languages"][0] if spec.get("languages") and len(spec["languages"]) == 1 else None
            if lang not in variants[source]:
                raise ConfigError(f"methods.{name}.init_from: {source!r} is per language; {name!r} must be too, "
                                  f"in one of its languages ({', '.join(variants[source])})")  # fmt: skip
            spec["init_from"] = variant_name(source, lang)
    config["methods"] = expanded
    chosen = (config.get("evaluation") or {}).get("methods")
    if chosen is not None:
        rows = []
        for row in chosen:
            name, sep, mode = row.partition("@")
            rows += [variant_name(name, lang) + sep + mode for lang in variants[name]] if name in variants else [row]
        config["evaluation"]["methods"] = rows


def weight_settings(config: dict, name: str) -> dict:
    """:func:`resolve` without the ``RUN_ONLY`` train settings (nor ``RUN_ONLY_ARGS`` of
    ``train.trainer_args``): rule train's params."""
    resolved = resolve(config, name)
    train = {k: v for k, v in resolved["train"].items() if k not in RUN_ONLY}
    args = train.pop("trainer_args", None) or {}
    if not args.get("load_best_model_at_end"):
        args = {k: v for k, v in args.items() if k not in RUN_ONLY_ARGS}
    if args:
        train["trainer_args"] = args
    if not train.get("eval_fraction"):  # at their defaults these settings are left out: the params of
        train.pop("eval_fraction", None)  # models trained before they existed stay the same
    resolved["train"] = train
    return resolved


def report_to(train: dict) -> list[str]:
    """``train.report_to`` as transformers' list of integration names (``[]`` for none)."""
    value = train.get("report_to", "none")
    names = [value] if isinstance(value, str) else list(value)
    return [n for n in names if n != "none"]


def check_tracking(train: dict, key: str) -> None:
    """``train.report_to`` names installed trackers; ``train.trainer_args`` names TrainingArguments
    fields that crosstune does not set itself. Errors name the config key (and the nearest field)."""
    import difflib
    import importlib.util

    for name in report_to(train):
        if not any(importlib.util.find_spec(m) for m in TRACKERS[name]):
            raise ConfigError(f"{key}.train.report_to: {name} needs the {TRACKERS[name][0]} package "
                              f"(pip install {TRACKERS[name][0]})")  # fmt: skip
    args = train.get("trainer_args") or {}
    if not args:
        return
    from transformers import TrainingArguments  # a few seconds: only when trainer_args are given

    fields = set(TrainingArguments.__dataclass_fields__)
    for arg in sorted(args):
        if arg in OWNED_ARGS:
            raise ConfigError(f"{key}.train.trainer_args.{arg}: set by crosstune; use {OWNED_ARGS[arg]} instead")
        if arg not in fields:
            near = difflib.get_close_matches(arg, fields, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            if near and near[0] in OWNED_ARGS:
                hint = f"; did you mean {near[0]!r}? crosstune sets it: use {OWNED_ARGS[near[0]]}"
            raise ConfigError(f"{key}.train.trainer_args.{arg}: not a transformers.TrainingArguments field{hint}")


def init_from(config: dict, name: str) -> str | None:
    """The configured method whose trained model method ``name`` starts from (setting ``init_from``), or None.

    That model is both the starting point and, for preference methods, the frozen
    reference. Errors name the config key.
    """
    source = resolve(config, name).get("init_from")
    if source is None:
        return None
    methods = config.get("methods") or {}
    if source not in methods:
        raise ConfigError(f"methods.{name}.init_from: {source!r} is not a configured method "
                          f"(configured: {', '.join(sorted(methods))})")  # fmt: skip
    chain = [name, source]
    while (nxt := resolve(config, chain[-1]).get("init_from")) is not None and nxt in methods:
        if nxt in chain:
            raise ConfigError(f"methods.{name}.init_from: a cycle, {' -> '.join([*chain, nxt])}")
        chain.append(nxt)
    return source


def check(config: dict, base: str | Path = ".") -> None:
    """Every configured method resolves and its training settings fit together."""
    for name in config.get("methods") or {}:
        s = resolve(config, name)
        init_from(config, name)
        t, ft = s["train"], s["train"]["finetuning"]
        key = f"methods.{name}"
        if ft["mode"] == "patterns" and not ft["patterns"]:
            raise ConfigError(f"{key}: finetuning mode 'patterns' needs a non-empty train.finetuning.patterns")
        for pattern in ft["patterns"]:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(f"{key}: train.finetuning.patterns: bad regular expression {pattern!r}: {e}") from None
        if ft["mode"] == "lora" and not ft["target_modules"]:
            raise ConfigError(f"{key}: finetuning mode 'lora' needs train.finetuning.target_modules")
        if t["packing"] and not METHODS[s["type"]].supports_packing:
            raise ConfigError(f"{key}: method type {s['type']!r} does not support train.packing; set it to false")
        if t["epochs"] is None and t["max_steps"] is None:
            raise ConfigError(f"{key}: set train.epochs or train.max_steps")
        if t["num_processes"] > 1 and accelerate_config(t["accelerate_config"], base) is None:
            raise ConfigError(f"{key}: train.accelerate_config not found: {t['accelerate_config']}")
        check_tracking(t, key)
