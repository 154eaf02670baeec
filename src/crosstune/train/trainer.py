"""``MethodTrainer``: a ``transformers.Trainer`` whose loss comes from the method.

The method's extra modules (e.g. CC-Tuning's Decision Maker) are attached to the
trained model as the submodule ``crosstune_extra`` (an ``nn.ModuleDict``), so the
optimiser, gradient clipping, DDP/FSDP/DeepSpeed wrapping and the Trainer's
checkpoints (optimizer, scheduler, RNG, state) cover them like any other
parameter. Every save - checkpoint or final - splits them out of the model's
state dict: the model directory stays a plain Hugging Face model and each extra
module is written beside it as ``<name>.safetensors``.

Method metrics: after every loss, the trainer takes the method's ``last_metrics``
(scalars, e.g. CLO's ``rewards/margins``) and ``last_counts`` (counts, e.g.
CC-Tuning's chosen layers) and, at each log, adds their means over the steps since
the previous log (counts as fractions ``<name>/<i>``) to the logged values - as TRL's
DPOTrainer does, with the ``eval_`` prefix for an evaluation - so they reach the log
history (metrics.json, the loss plot) and every tracker of ``report_to``; TensorBoard
also gets each count vector as a histogram.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import torch
from safetensors.torch import load_file, save_file
from transformers import Trainer, TrainerCallback
from transformers.integrations import TensorBoardCallback

from .. import faults

log = logging.getLogger(__name__)

EXTRA = "crosstune_extra"
REFERENCE = "reference.safetensors"  # a checkpoint's copy of the method's reference table


def split_extra(state_dict: dict) -> tuple[dict, dict[str, dict]]:
    """(model state dict, {module name: its state dict}) from a state dict holding both."""
    model, extra = {}, defaultdict(dict)
    for key, value in state_dict.items():
        if f"{EXTRA}." in key:
            module, _, param = key.split(f"{EXTRA}.", 1)[1].partition(".")
            extra[module][param] = value
        else:
            model[key] = value
    return model, dict(extra)


def load_extra(modules: torch.nn.ModuleDict, directory: str | os.PathLike) -> None:
    for name, module in modules.items():
        path = os.path.join(directory, f"{name}.safetensors")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{directory}: extra module {name!r} was not saved ({name}.safetensors missing)")
        module.load_state_dict(load_file(path, device="cpu"))


class Window:
    """A method's metrics since the last log: scalar values (averaged) and count vectors (summed)."""

    def __init__(self):
        self.values: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.counts: dict[str, torch.Tensor] = {}

    def add(self, metrics: dict, counts: dict) -> None:
        for name, value in metrics.items():
            self.values[name].append(torch.as_tensor(value).detach().float().reshape(()))
        for name, value in counts.items():
            value = torch.as_tensor(value).detach().float()
            self.counts[name] = self.counts[name] + value if name in self.counts else value

    def take(self, accelerator) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """(means, summed counts) over the window and every process (collective); the window restarts."""
        many = accelerator.num_processes > 1
        means, counts = {}, {}
        for name, values in sorted(self.values.items()):
            mean = torch.stack(values).mean().to(accelerator.device)
            means[name] = (accelerator.reduce(mean, "mean") if many else mean).item()
        for name, total in sorted(self.counts.items()):
            total = total.to(accelerator.device)
            counts[name] = (accelerator.reduce(total, "sum") if many else total).cpu()
            share = counts[name] / counts[name].sum().clamp(min=1)
            means.update({f"{name}/{i}": round(v, 6) for i, v in enumerate(share.tolist())})
        self.__init__()
        return means, counts


class MethodTrainer(Trainer):
    def __init__(self, *args, method, settings: dict, reference_dataset=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method = method
        self.settings = settings
        # the rows the reference table covers (training + held-out rows); default the training set
        self.reference_dataset = reference_dataset
        self.windows = {"train": Window(), "eval": Window()}
        # Count target tokens over the accumulated (and all-process) batch for every
        # method with `labels`; the method normalises its summed loss by that count.
        self.model_accepts_loss_kwargs = True
        self.resume_dir = None
        self.add_callback(Reference(self))

    def train(self, resume_from_checkpoint=None, **kwargs):
        self.resume_dir = resume_from_checkpoint
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def compute_reference(self, model) -> None:
        """Fill the method's reference table once the training engine holds the prepared model.

        Called at ``on_train_begin``: FSDP / DeepSpeed ZeRO-3 have wrapped (and
        sharded) the model and put it on its device, so its forward gathers the
        shards as in a training step. A resumed run reads the table from its
        checkpoint instead: the model then holds the checkpoint's weights, not the
        reference's.
        """
        if not self.method.needs_reference:
            return
        if self.resume_dir:
            path = os.path.join(self.resume_dir, REFERENCE)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{self.resume_dir}: checkpoint has no {REFERENCE} (the reference "
                                        "log-probs of its run); delete the checkpoints to start over")  # fmt: skip
            self.method.reference = load_file(path)["reference"]
            return
        rows = self.reference_dataset if self.reference_dataset is not None else self.train_dataset
        self.method.reference = self.method.reference_table(model, self.processing_class, rows,
                                                            self.settings, self.accelerator)  # fmt: skip

    def _save_checkpoint(self, model, trial):
        # written before the Trainer's trainer_state.json, which marks the checkpoint complete
        if self.method.needs_reference and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            save_file({"reference": self.method.reference.contiguous()}, os.path.join(folder, REFERENCE))
        super()._save_checkpoint(model, trial)

    @property
    def extra(self) -> torch.nn.ModuleDict:
        modules = getattr(self.model, EXTRA, None)
        return modules if modules is not None else torch.nn.ModuleDict()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = self.method.compute_loss(model, inputs, self.extra, self.settings, num_items_in_batch=num_items_in_batch)
        self.windows["train" if self.model.training else "eval"].add(self.method.last_metrics, self.method.last_counts)
        self.method.last_metrics, self.method.last_counts = {}, {}
        # A loss normalised by the whole accumulated batch's token count needs no
        # division by the accumulation steps; a per-batch mean does.
        self.loss_is_scaled_for_ga = num_items_in_batch is not None
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # DDP averages gradients over processes, but the count already spans all of them
            loss = loss * self.accelerator.num_processes
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """The evaluation loss is the method's loss (a per-batch mean), whatever the batch's columns."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args, **kwargs):
        # an evaluation draws no random numbers from the training's generators (CC-Tuning's
        # Gumbel noise), so how often it evaluates cannot change the trained weights
        device = self.accelerator.device
        cuda = [] if device.type != "cuda" else [device.index if device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda):
            return super().evaluate(*args, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the method's metrics since the last log (see the module docstring) to a loss or eval log."""
        mode = "eval" if "eval_loss" in logs else "train" if "loss" in logs else None
        counts, prefix = {}, "eval_" if mode == "eval" else ""
        if mode is not None:
            means, counts = self.windows[mode].take(self.accelerator)
            logs.update({prefix + name: value for name, value in means.items()})
        super().log(logs, start_time)
        for callback in self.callback_handler.callbacks:
            writer = getattr(callback, "tb_writer", None) if isinstance(callback, TensorBoardCallback) else None
            for name, total in counts.items() if writer is not None else ():
                tensorboard_histogram(writer, f"{mode}/{name}", total, self.state.global_step)

    def _save(self, output_dir=None, state_dict=None):
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not len(self.extra):
            return super()._save(output_dir, state_dict)
        if state_dict is None:
            state_dict = self.model.state_dict()
        model_state, extra = split_extra(state_dict)
        super()._save(output_dir, model_state)
        if self.args.should_save:
            for name, tensors in extra.items():
                tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
                save_file(tensors, os.path.join(output_dir, f"{name}.safetensors"), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        # FSDP and DeepSpeed restore the whole wrapped model from their own files
        if len(self.extra) and not (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            load_extra(self.extra, resume_from_checkpoint)

    def _issue_warnings_after_load(self, load_result):
        missing = [k for k in load_result.missing_keys if f"{EXTRA}." not in k]
        return super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))


def tensorboard_histogram(writer, tag: str, counts: torch.Tensor, step: int) -> None:
    """Counts per index 0..n-1 (e.g. chosen layers) as a TensorBoard histogram, one bucket per index."""
    counts = counts.double()
    index = torch.arange(len(counts), dtype=torch.float64)
    seen = index[counts > 0]
    if not len(seen):
        return
    writer.add_histogram_raw(tag, min=seen.min().item(), max=seen.max().item(), num=counts.sum().item(),
                             sum=(index * counts).sum().item(), sum_squares=(index**2 * counts).sum().item(),
                             bucket_limits=(index + 0.5).tolist(), bucket_counts=counts.tolist(),
                             global_step=step)  # fmt: skip
    writer.flush()


class RunComplete(Exception):
    """Raised at train begin when the resumed checkpoint already holds the last step."""


class Reference(TrainerCallback):
    """Runs :meth:`MethodTrainer.compute_reference` with the model the Trainer prepared."""

    def __init__(self, trainer: MethodTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.compute_reference(self.trainer.model_wrapped)


class Progress(TrainerCallback):
    """Tokens and wall time of this session (a resumed run counts from its checkpoint).

    Two resume rules live here too:
    - every checkpoint step is also a loss-log step, so the log history saved in
      the checkpoint accounts for every step before it (the whole-run loss is a
      weighted mean of the logged windows, see :func:`whole_run_loss`);
    - a resume from the final checkpoint stops before any step (``RunComplete``):
      the Trainer would otherwise skip the trained batches and run one step more.
    """

    seconds = 0.0
    tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        import time

        if state.global_step >= state.max_steps > 0:
            raise RunComplete(state.global_step)
        self.start = time.perf_counter()
        self.tokens0 = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        faults.point("train.step", state.global_step)
        if control.should_save:
            control.should_log = True

    def on_save(self, args, state, control, **kwargs):
        faults.point("train.checkpoint", state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        import time

        self.seconds = time.perf_counter() - self.start
        self.tokens = state.num_input_tokens_seen - self.tokens0


def whole_run_loss(log_history: list[dict]) -> float | None:
    """Mean training loss over every step of the run, resumed sessions included.

    Each logged ``loss`` is the mean over the steps since the previous log, so the
    whole-run mean weights it by that window. Checkpoints are log steps
    (:class:`Progress`), so a resumed history has no gaps.
    """
    points = sorted((e["step"], e["loss"]) for e in log_history if "loss" in e)
    if not points:
        return None
    total, prev = 0.0, 0
    for step, loss in points:
        total += loss * (step - prev)
        prev = step
    return total / prev
