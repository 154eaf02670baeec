"""Train one method: data mix -> tokens -> model -> ``MethodTrainer`` -> saved model.

:func:`train` runs in every process (``accelerate launch`` starts N of them; a
single-process run calls it directly). Work that writes files happens on the
main process only; saving the model is collective (FSDP/DeepSpeed gather it).

Resume: checkpoints go to ``checkpoint_dir`` (``checkpoint-<step>``, rotated by
``save_total_limit``) with ``fingerprint.json`` - a hash of the settings, seed,
pairs and base model. A rerun with the same fingerprint continues from the last
complete checkpoint; a changed fingerprint discards the stale checkpoints.

Starting point: ``model_dir``, the base model - or, for a method with
``init_from`` (``sft_dpo``), the trained model of that method, which the
``train`` rule passes instead; it is then also the frozen reference of the
preference loss (the Trainer caches the reference log-probs from the prepared
model before step 1: ``MethodTrainer.compute_reference``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from .. import faults
from ..io import read_jsonl, sha256_file, write_json
from ..methods import TrainDataError, get_method
from . import data

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- model + scope
def load_model(model_dir: str | os.PathLike):
    import torch
    from transformers import AutoModelForCausalLM

    # fp32 master weights; train.bf16 trains under autocast
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def apply_finetuning(model, method, settings: dict):
    """Set what trains: full, LoRA (peft) or parameters matching patterns. Returns the model to train."""
    ft = settings["train"]["finetuning"]
    if ft["mode"] == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=ft["lora_r"], lora_alpha=ft["lora_alpha"], lora_dropout=ft["lora_dropout"],
                            target_modules=ft["target_modules"], task_type="CAUSAL_LM")  # fmt: skip
        try:
            model = get_peft_model(model, config)
        except ValueError as e:
            raise TrainDataError(f"{data.who(settings)}: LoRA target_modules {ft['target_modules']}: {e}") from None
    else:
        for name, p in model.named_parameters():
            p.requires_grad_(method.trainable(name, settings))
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainDataError(f"{data.who(settings)}: no parameter is trainable (finetuning {ft})")
    if settings["train"]["gradient_checkpointing"] and ft["mode"] != "full":
        model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
    return model


def attach_extra(model, modules: dict) -> None:
    import torch

    from .trainer import EXTRA

    if modules:
        extra = torch.nn.ModuleDict(modules)
        extra.requires_grad_(True)
        model.add_module(EXTRA, extra)


def parameter_counts(model) -> dict[str, int]:
    # a parameter loaded partitioned under DeepSpeed ZeRO-3 (zero3_init_flag) is empty; ds_numel is its size
    def size(p):
        return getattr(p, "ds_numel", p.numel())

    trainable = sum(size(p) for p in model.parameters() if p.requires_grad)
    total = sum(size(p) for p in model.parameters())
    return {"trainable": trainable, "total": total}


def loaded_partitioned(model) -> bool:
    """Whether DeepSpeed ZeRO-3 loaded the model partitioned (``zero3_init_flag``): every process then
    held only its shard from the start, and nothing may read the weights outside the engine."""
    return any(hasattr(p, "ds_id") for p in model.parameters())


def check_start_model(model_dir: Path, settings: dict) -> None:
    """A method with ``init_from`` must start from that method's trained model (its provenance says so).

    The engine loads ``model_dir`` as the starting point; preference methods cache
    their reference log-probs from it before step 1 - so it is also the reference.
    """
    source = settings.get("init_from")
    if source is None:
        return
    meta = model_dir / "provenance.json"
    trained = json.loads(meta.read_text()).get("method") if meta.is_file() else None
    if trained != source:
        raise TrainDataError(f"{data.who(settings)}: init_from {source!r} needs the trained model of method "
                             f"{source!r}, but {model_dir} is " + (f"that of {trained!r}" if trained else
                             "not a trained model (no method in its provenance.json)"))  # fmt: skip


# --------------------------------------------------------------------------- arguments + resume
def training_arguments(settings: dict, seed: int, checkpoint_dir: str | os.PathLike, method=None,
                       run_name: str | None = None):  # fmt: skip
    """The Trainer's arguments: crosstune's train settings, then ``train.trainer_args`` as given."""
    from transformers import TrainingArguments

    from .settings import report_to

    t = settings["train"]
    # transformers 5 renamed gradient_checkpointing to activation_checkpointing
    ckpt = "activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__ \
        else "gradient_checkpointing"
    own = dict(
        output_dir=str(checkpoint_dir),
        learning_rate=t["learning_rate"],
        num_train_epochs=t["epochs"] if t["epochs"] is not None else 1,
        max_steps=t["max_steps"] if t["max_steps"] is not None else -1,
        per_device_train_batch_size=t["per_device_batch_size"],
        gradient_accumulation_steps=t["gradient_accumulation"],
        lr_scheduler_type=t["lr_scheduler"],
        warmup_steps=t["warmup_ratio"],  # a float below 1 is a fraction of the total steps
        weight_decay=t["weight_decay"],
        max_grad_norm=t["max_grad_norm"],
        optim=t["optimizer"],
        bf16=t["bf16"],
        **{ckpt: t["gradient_checkpointing"]},
        logging_steps=t["logging_steps"],
        save_strategy="steps",
        save_steps=t["save_steps"],
        save_total_limit=t["save_total_limit"],
        seed=seed,
        data_seed=seed,
        report_to=report_to(t) or "none",
        # the held-out loss at every logging step (trainer_args.eval_steps: other steps) and at the end
        eval_strategy="steps" if t["eval_fraction"] else "no",
        remove_unused_columns=False,  # methods may carry their own columns to collate
        include_num_input_tokens_seen="non_padding",
        use_cpu=t["device"] == "cpu",
        dataloader_num_workers=0,
        ddp_find_unused_parameters=bool(getattr(method, "ddp_find_unused_parameters", False)),
    )
    # defaults that train.trainer_args may change (they cannot change the weights)
    defaults = {"run_name": run_name or settings["name"], "per_device_eval_batch_size": t["per_device_batch_size"]}
    passed = t.get("trainer_args") or {}
    try:
        return TrainingArguments(**{**defaults, **own, **passed})
    except (TypeError, ValueError) as e:
        if not passed:
            raise
        raise TrainDataError(f"{data.who(settings)}: train.trainer_args {passed}: {e}") from None


def runs_dir(checkpoint_dir: Path) -> Path:
    """TensorBoard's event files of the run: ``runs/`` beside ``checkpoints/``, outside the model directory."""
    return checkpoint_dir.parent / "runs"


def direct_tensorboard(trainer, runs: Path, resume: Path | None) -> None:
    """Point the Trainer's TensorBoard logging (``report_to: tensorboard``) at ``runs``.

    A fresh run starts from an empty ``runs/`` (the events of a replaced model go with
    it); a resumed one appends and hides the steps after its checkpoint that the killed
    session had logged (SummaryWriter's ``purge_step``), so every step shows once.
    """
    from transformers.integrations import TensorBoardCallback

    if not trainer.is_world_process_zero():
        return
    if resume is None and runs.exists():
        shutil.rmtree(runs)
    if "tensorboard" not in trainer.args.report_to:
        return
    from torch.utils.tensorboard import SummaryWriter

    trainer.remove_callback(TensorBoardCallback)  # the one report_to made, which would write under output_dir
    step = int(resume.name.split("-")[1]) + 1 if resume else None
    trainer.add_callback(TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(runs), purge_step=step)))


def fingerprint(settings: dict, seed: int, pairs: Path, model_dir: Path) -> str:
    """Hash of everything a checkpoint depends on (settings, seed, pairs, base model files)."""
    parts = {"settings": settings, "seed": seed, "pairs": sha256_file(pairs)}
    parts["model"] = {f.name: sha256_file(f) for f in sorted(model_dir.iterdir())
                      if f.is_file() and f.name != "provenance.json"}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def checkpoints(checkpoint_dir: Path) -> list[Path]:
    found = [p for p in checkpoint_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest checkpoint whose save completed (trainer_state.json is written last)."""
    complete = [p for p in checkpoints(checkpoint_dir) if (p / "trainer_state.json").is_file()]
    return complete[-1] if complete else None


def discard(checkpoint: Path) -> None:
    """Delete a checkpoint, its completion mark (``trainer_state.json``) first: a kill midway
    (a job's time limit while it cleans up) leaves a directory that reads as unfinished and is
    discarded on the rerun, never one that looks complete with its weights gone."""
    (checkpoint / "trainer_state.json").unlink(missing_ok=True)
    shutil.rmtree(checkpoint)


def unreadable(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (unfinished save, truncated file), else None.

    Cheap checks only: a safetensors header against the file size, the zip
    directory at the end of a torch.save file, JSON parsing.
    """
    import zipfile

    from safetensors import safe_open

    if not (checkpoint / "trainer_state.json").is_file():
        return "its save did not finish (no trainer_state.json)"
    for f in sorted(checkpoint.rglob("*")):
        try:
            if f.suffix == ".safetensors":
                with safe_open(str(f), framework="pt"):
                    pass
            elif f.suffix in (".pt", ".pth", ".bin"):
                zipfile.ZipFile(f).close()
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except Exception as e:  # any failure to read means the file is damaged
            return f"{f.relative_to(checkpoint)} is damaged ({type(e).__name__}: {e})"
    return None


def sync_fingerprint(checkpoint_dir: Path, compute, state) -> Path | None:
    """Discard checkpoints of other settings and damaged ones; return the checkpoint to resume from, if any.

    ``compute()`` gives the fingerprint (hashing the inputs: main process only).
    """
    path = checkpoint_dir / "fingerprint.json"
    if state.is_main_process:
        value = compute()
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        old = json.loads(path.read_text())["fingerprint"] if path.is_file() else None
        stale = checkpoints(checkpoint_dir)
        if old != value and stale:
            log.warning("discarding %d checkpoint(s) in %s made with other settings or inputs", len(stale), checkpoint_dir)
            for p in stale:
                discard(p)
        for p in checkpoints(checkpoint_dir):
            why = unreadable(p)
            if why:  # a crash or a full disk mid-save; resume from the one before (or start clean)
                log.warning("discarding checkpoint %s: %s", p, why)
                discard(p)
        write_json(path, {"fingerprint": value})
    state.wait_for_everyone()
    return last_checkpoint(checkpoint_dir)


# --------------------------------------------------------------------------- final save
@contextlib.contextmanager
def unpartitioned_loading():
    """``from_pretrained`` in one process while DeepSpeed ZeRO-3 is set up.

    The Trainer's arguments register the ZeRO-3 config with transformers, which
    then loads every model inside ``deepspeed.zero.Init``: partitioned over the
    processes, a collective. A load that only the main process makes (the LoRA
    merge) would wait for the others, which have finished - so the config is
    hidden while it loads and restored after.
    """
    from transformers.integrations import deepspeed as hf_deepspeed

    from ..versions import require

    require("transformers", "crosstune.train.engine (the LoRA merge under DeepSpeed ZeRO-3)")
    registered = hf_deepspeed._hf_deepspeed_config_weak_ref  # noqa: SLF001 (no public getter of the object)
    config = registered() if registered is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)


def merge_lora(model_dir: Path, adapter_dir: Path, out: Path) -> None:
    """Fold a saved LoRA adapter into the base weights and save a plain model to ``out`` (one process)."""
    from peft import PeftModel

    with unpartitioned_loading():
        merged = PeftModel.from_pretrained(load_model(model_dir), adapter_dir).merge_and_unload()
    merged.save_pretrained(out)


def save_final(trainer, settings: dict, model_dir: Path, final: Path) -> None:
    """Collective: every process calls it. The main process ends with a complete ``final``."""
    state = trainer.accelerator
    if state.is_main_process and final.exists():
        shutil.rmtree(final)
    state.wait_for_everyone()
    lora = settings["train"]["finetuning"]["mode"] == "lora"
    trainer.save_model(str(final / "adapter" if lora else final))
    state.wait_for_everyone()
    if not state.is_main_process:
        return
    if lora:
        merge_lora(model_dir, final / "adapter", final)
        for f in (final / "adapter").glob("*.safetensors"):
            if f.name != "adapter_model.safetensors":  # extra modules live beside the model
                f.rename(final / f.name)
        trainer.processing_class.save_pretrained(final)
    for f in final.rglob("training_args.bin"):
        f.unlink()


def log_curve(log_history: list[dict], key: str) -> list[dict]:
    """The log entries holding ``key`` (``loss``: training logs, ``eval_loss``: evaluations) as
    ``{step, key, *values}`` points: every logged value (learning rate, gradient norm, the
    method's metrics) but the Trainer's bookkeeping and timings. The names come from the history
    itself, so a run resumed from a checkpoint keeps the values its first session logged."""
    entries = [e for e in log_history if key in e]
    names = dict.fromkeys(k for e in entries for k in e if k not in BOOKKEEPING and not k.endswith(TIMINGS))
    return [{k: e[k] for k in ("step", *names) if k in e} for e in entries]


BOOKKEEPING = {"step", "epoch", "num_input_tokens_seen", "total_flos"}
TIMINGS = ("_runtime", "_per_second")  # wall-clock speeds: differ between identical runs


# --------------------------------------------------------------------------- the job
def train(model_dir, pairs, output, checkpoint_dir, settings: dict, seed: int, *,
          metrics=None, plot=None, config: dict | None = None, callbacks=(), run_name=None) -> dict:  # fmt: skip
    """Train ``settings['name']`` on ``pairs`` from ``model_dir``; save the model to ``output``.

    Also writes ``metrics`` (JSON) and ``plot`` (loss curve PNG) when given, and
    ``provenance.json`` in the model directory. Returns the metrics. ``run_name``:
    the trackers' name of the run (default the method's name).
    """
    from transformers import AutoTokenizer

    from .trainer import MethodTrainer, Progress, RunComplete, whole_run_loss

    model_dir, pairs, output, checkpoint_dir = map(Path, (model_dir, pairs, output, checkpoint_dir))
    method = get_method(settings["type"])
    t = settings["train"]
    check_start_model(model_dir, settings)

    examples = data.build_examples(method, read_jsonl(pairs), settings, seed)
    examples, held_out = data.hold_out(examples, t["eval_fraction"], seed, settings)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    features, dropped = data.tokenize(method, examples, tokenizer, settings)
    eval_features = data.tokenize(method, held_out, tokenizer, settings)[0] if held_out else []
    if t["packing"]:
        if not method.supports_packing:
            raise TrainDataError(f"{data.who(settings)}: this method does not support train.packing")
        features = data.pack(features, t["max_length"], seed)
        eval_features = data.pack(eval_features, t["max_length"], seed) if eval_features else []
    # one dataset, training rows first: the method prepares (numbers) all of them
    dataset = data.to_dataset(features + eval_features)

    args = training_arguments(settings, seed, checkpoint_dir, method, run_name)  # also sets up the processes
    from transformers import set_seed

    set_seed(seed)  # the same initial weights of extra modules / LoRA on every process and run
    model = apply_finetuning(load_model(model_dir), method, settings)
    attach_extra(model, method.extra_modules(model, settings))
    dataset = method.prepare(model, tokenizer, dataset, settings)
    counts, partitioned = parameter_counts(model), loaded_partitioned(model)
    train_rows, eval_rows = dataset, None
    if eval_features:
        train_rows, eval_rows = dataset.select(range(len(features))), dataset.select(range(len(features), len(dataset)))

    progress = Progress()
    trainer = MethodTrainer(
        model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows, processing_class=tokenizer,
        data_collator=lambda batch: method.collate(batch, tokenizer),
        callbacks=[progress, *callbacks], method=method, settings=settings, reference_dataset=dataset,
    )  # fmt: skip
    resume = sync_fingerprint(checkpoint_dir, lambda: fingerprint(settings, seed, pairs, model_dir), trainer.accelerator)
    if resume:
        log.info("resuming %s from %s", settings["name"], resume)
    direct_tensorboard(trainer, runs_dir(checkpoint_dir), resume)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except RunComplete:  # the checkpoint is the last step: its weights (now loaded) are the result
        log.info("%s: %s holds the final step; nothing left to train", settings["name"], resume.name)

    final = checkpoint_dir / "final"
    save_final(trainer, settings, model_dir, final)
    if not trainer.accelerator.is_main_process:
        return {}
    state = trainer.state
    curve = log_curve(state.log_history, "loss")
    eval_curve = log_curve(state.log_history, "eval_loss")
    summary = {
        "method": settings["name"], "type": settings["type"], "init_from": settings.get("init_from"),
        "start_model": str(model_dir), "examples": len(examples),
        "composition": data.composition(examples), "distinct_examples": data.distinct(examples),
        "dropped_truncated": len(dropped), "sequences": len(features),
        "parameters": counts, "loaded_partitioned": partitioned, "num_processes": trainer.accelerator.num_processes,
        "steps": state.global_step, "epochs": state.epoch, "resumed_from": resume.name if resume else None,
        # whole run (resumed sessions included): tokens, train_loss; this session only: seconds, throughput
        "tokens": state.num_input_tokens_seen, "train_loss": whole_run_loss(state.log_history),
        "train_seconds": round(progress.seconds, 3),
        "tokens_per_second": round(progress.tokens / progress.seconds, 1) if progress.seconds else None,
        "final_loss": curve[-1]["loss"] if curve else None, "loss_curve": curve,
    }  # fmt: skip
    if held_out:  # train.eval_fraction: the held-out examples and their loss
        summary.update({"eval_examples": len(held_out), "eval_composition": data.composition(held_out),
                        "eval_loss": eval_curve[-1]["eval_loss"] if eval_curve else None,
                        "eval_curve": eval_curve})  # fmt: skip
    from ..provenance import write_provenance

    write_provenance(final, config=config or {}, seed=seed, stage="train", extra={
        "method": settings["name"], "settings": settings, "base_model": str(model_dir), "pairs": str(pairs),
        "summary": {k: v for k, v in summary.items() if k not in ("loss_curve", "eval_curve")},
    })  # fmt: skip
    faults.point("train.before_move")
    if output.exists():
        shutil.rmtree(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    os.replace(final, output)
    if metrics:
        write_json(metrics, summary)
    if plot:
        from .plot import loss_curve

        loss_curve(curve, plot, title=data.label(settings), eval_curve=eval_curve)
    if not t["keep_checkpoints"]:
        for p in checkpoints(checkpoint_dir):  # oldest first: a kill midway leaves the newest to resume from
            discard(p)
    return summary
