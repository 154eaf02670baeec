"""Training throughput of method ``sft``: tokens/s of the engine against a plain PyTorch loop.

For each model (the tiny random llama of config/tiny.yaml, and the default model
when its directory exists) it trains ``--steps`` optimiser steps of ``sft`` on the
bundled seed pairs twice, in this process:

* engine   - crosstune.train.engine.train (transformers.Trainer, MethodTrainer,
             the method's collator and loss; no checkpoint inside the timed steps);
* baseline - a hand-written loop over the same tokenized data mix, as many batches
             of the same size (a seeded draw): forward, the method's loss, backward,
             clip, AdamW step.

tokens/s counts non-padding input tokens per second of training-loop wall time.
The ratio engine/baseline is the overhead of the engine (1.0 = none).

    python benchmarks/train_throughput.py --default-model resources/models/smollm2-135m
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from crosstune.data.sources import SEED_DIR, seed_texts  # noqa: E402
from crosstune.io import read_jsonl, write_json, write_jsonl  # noqa: E402
from crosstune.methods import get_method  # noqa: E402
from crosstune.methods.base import pad_id  # noqa: E402
from crosstune.train import data  # noqa: E402
from crosstune.train.engine import load_model, train  # noqa: E402


def seed_pairs() -> list[dict]:
    """Pair records straight from the bundled seed data (what rule pairs makes of it, unfiltered)."""
    english = {r["id"]: r for r in read_jsonl(Path(str(SEED_DIR / "sft_en.jsonl")))}
    out = [{"id": f"seed/{i}", "lang": "en", "instruction": r["instruction"], "response": r["response"],
            "instruction_en": r["instruction"], "response_en": r["response"], "source": "seed"}
           for i, r in english.items()]  # fmt: skip
    for r in read_jsonl(Path(str(SEED_DIR / "translations.jsonl"))):
        en = english[r["id"]]
        out.append({"id": f"seed/{r['id']}#{r['lang']}", "lang": r["lang"], "instruction": r["instruction"],
                    "response": r["response"], "instruction_en": en["instruction"], "response_en": en["response"],
                    "source": "seed"})  # fmt: skip
    return sorted(out, key=lambda p: (p["lang"], p["id"]))


def settings(steps: int, batch: int) -> dict:
    ft = {"mode": "full", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": [], "patterns": []}
    train_settings = {
        "learning_rate": 5e-5, "epochs": None, "max_steps": steps, "per_device_batch_size": batch,
        "gradient_accumulation": 1, "lr_scheduler": "constant", "warmup_ratio": 0.0, "weight_decay": 0.0,
        "max_grad_norm": 1.0, "optimizer": "adamw_torch", "max_length": 512, "truncation_side": "right",
        "packing": False, "bf16": False, "gradient_checkpointing": False, "save_steps": 10**6,
        "save_total_limit": 1, "keep_checkpoints": False, "logging_steps": 1, "num_processes": 1,
        "accelerate_config": "", "device": "cpu", "finetuning": ft,
    }  # fmt: skip
    return {"name": "sft", "type": "sft", "languages": None, "train": train_settings}


def engine_run(model_dir: Path, pairs: Path, work: Path, s: dict) -> dict:
    summary = train(model_dir, pairs, work / "model", work / "checkpoints", s, seed=0)
    return {"tokens": summary["tokens"], "seconds": summary["train_seconds"], "steps": summary["steps"],
            "tokens_per_second": summary["tokens"] / summary["train_seconds"]}  # fmt: skip


def baseline_run(model_dir: Path, pairs: list[dict], s: dict) -> dict:
    """The same sequences, batches of the same size, in a plain loop (order: a seeded permutation)."""
    from transformers import AutoTokenizer

    method = get_method("sft")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    features, _ = data.tokenize(method, data.build_examples(method, pairs, s, 0), tokenizer, s)
    t = s["train"]
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(0)).tolist()
    model = load_model(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=t["learning_rate"], weight_decay=0.0)
    bs, tokens = t["per_device_batch_size"], 0
    batches = [method.collate([features[j] for j in order[i * bs:(i + 1) * bs]], tokenizer)
               for i in range(t["max_steps"])]  # fmt: skip
    start = time.perf_counter()
    for batch in batches:
        loss = method.compute_loss(model, batch, None, s)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int((batch["input_ids"] != pad_id(tokenizer)).sum())
    seconds = time.perf_counter() - start
    return {"tokens": tokens, "seconds": seconds, "steps": len(batches), "tokens_per_second": tokens / seconds}


def tiny_model(work: Path) -> Path:
    from crosstune.models import save_tiny_model

    out = work / "tiny-llama"
    save_tiny_model("llama", seed_texts(), out, seed=42, vocab_size=1024, hidden_size=64, num_layers=2,
                    num_heads=4, num_kv_heads=2, intermediate_size=128)  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--default-model", type=Path, default=REPO / "resources/models/smollm2-135m")
    ap.add_argument("--steps", type=int, default=10, help="timed optimiser steps per run (tiny: 5x this)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the default model")
    ap.add_argument("--tiny-threads", type=int, default=1, help="torch threads for the tiny model")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    pairs = seed_pairs()
    results = {"batch_size": args.batch_size, "torch": torch.__version__, "cpus": os.cpu_count(),
               "load_average_before": os.getloadavg(), "models": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_jsonl(work / "pairs.jsonl", pairs)
        models = {"tiny-llama": (tiny_model(work), args.steps * 5, args.tiny_threads)}
        if (args.default_model / "config.json").exists():
            models["smollm2-135m"] = (args.default_model, args.steps, args.threads)
        else:
            print(f"skipping the default model: {args.default_model} does not exist", file=sys.stderr)
        for name, (model_dir, steps, threads) in models.items():
            torch.set_num_threads(threads)
            s = settings(steps, args.batch_size)
            base = baseline_run(model_dir, pairs, s)
            eng = engine_run(model_dir, work / "pairs.jsonl", work / name, s)
            results["models"][name] = {"steps": steps, "threads": threads, "engine": eng, "baseline": base,
                                       "ratio": eng["tokens_per_second"] / base["tokens_per_second"]}  # fmt: skip
            print(f"{name}: engine {eng['tokens_per_second']:.0f} tok/s, plain loop {base['tokens_per_second']:.0f} "
                  f"tok/s, ratio {results['models'][name]['ratio']:.2f}")  # fmt: skip
    results["load_average_after"] = os.getloadavg()
    write_json(args.out, results)


if __name__ == "__main__":
    main()
