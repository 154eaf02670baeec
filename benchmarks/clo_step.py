"""CLO training-step time relative to an SFT step, on the same tiny-model batches (one process).

Variants, each an AdamW step (forward, backward, optimiser) on pre-collated
batches of B seed items (target languages ar hi sw zh ru):

* ``sft``            - causal-LM loss on the B (x_t, y_t) sequences, full fine-tuning (the baseline);
* ``clo``            - CLO as configured by default: 4B rows [chosen; rejected] in one forward,
                       cached reference log-probs, attention projections trained;
* ``clo_full``       - the same, every parameter trained;
* ``clo_ref_in_step``- attention only, reference log-probs from a frozen copy under no_grad in
                       every step instead of the cache;
* ``prepare``        - the one-off cost of caching the reference, per batch of data.

Variants are interleaved round by round and the median round is reported, so
the shared machine's drift hits them alike; by default the clock is this
process's CPU time (with one thread it ignores time spent waiting for a core
on a busy machine). Ratios are against ``sft``.

    PYTHONPATH=src python benchmarks/clo_step.py [--size tiny|small] [--append BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from crosstune.data.sources import SEED_DIR, seed_texts
from crosstune.io import read_jsonl
from crosstune.methods.clo import CLOMethod
from crosstune.models import build_tiny_model, train_tokenizer

SIZES = {
    "tiny": {"hidden_size": 64, "num_layers": 2, "intermediate_size": 128},
    "small": {"hidden_size": 256, "num_layers": 4, "intermediate_size": 768, "num_heads": 8, "num_kv_heads": 4},
}


def seed_pairs() -> list[dict]:
    english = {r["id"]: r for r in read_jsonl(Path(str(SEED_DIR / "sft_en.jsonl")))}
    return [
        {"id": f"seed/{r['id']}#{r['lang']}", "lang": r["lang"], "instruction": r["instruction"],
         "response": r["response"], "instruction_en": english[r["id"]]["instruction"],
         "response_en": english[r["id"]]["response"], "source": "seed"}  # fmt: skip
        for r in read_jsonl(Path(str(SEED_DIR / "translations.jsonl")))
    ]


def sft_batch(features: list[dict], pad: int) -> dict:
    """The B (x_t, y_t) sequences of these CLO features as a plain SFT batch."""
    rows = [(f["chosen_input_ids"][0], f["chosen_labels"][0]) for f in features]
    width = max(len(ids) for ids, _ in rows)
    batch = {"input_ids": torch.full((len(rows), width), pad), "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
             "labels": torch.full((len(rows), width), -100)}  # fmt: skip
    for i, (ids, labels) in enumerate(rows):
        batch["input_ids"][i, : len(ids)] = torch.tensor(ids)
        batch["attention_mask"][i, : len(ids)] = 1
        batch["labels"][i, : len(ids)] = torch.tensor(labels)
    return batch


def make_step(model, loss_fn):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--batch", type=int, default=4, help="items per batch (CLO: 4x as many rows)")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--append", type=Path, help="append the results as a section of this markdown file")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                    help="cpu: this process's CPU time (robust on a shared machine with 1 thread); wall: elapsed")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    tok = train_tokenizer(seed_texts(), vocab_size=512)
    method = CLOMethod()
    settings = {"name": "clo", "type": "clo", **method.defaults,
                "train": {"finetuning": dict(CLOMethod.train_defaults["finetuning"])}}  # fmt: skip
    examples = method.build_examples(seed_pairs(), settings, seed=0)[: args.batch * args.batches]
    features = [method.tokenize(ex, tok, 512, "right") for ex in examples]
    base = build_tiny_model("llama", tok, seed=0, **SIZES[args.size])

    plain = features
    features = method.with_reference(base, tok, plain, settings)
    chunks = [features[i : i + args.batch] for i in range(0, len(features), args.batch)]
    clo_batches = [method.collate(c, tok) for c in chunks]
    sft_batches = [sft_batch(c, tok.pad_token_id) for c in chunks]
    none = torch.nn.ModuleDict()

    def model_with(trainable):
        m = copy.deepcopy(base).train()
        for name, p in m.named_parameters():
            p.requires_grad_(trainable(name))
        return m

    attention = lambda name: method.trainable(name, settings)  # noqa: E731
    frozen = copy.deepcopy(base).eval().requires_grad_(False)

    def clo_loss(m, batch):
        return method.compute_loss(m, batch, none, settings)

    def clo_in_step(m, batch):
        with torch.no_grad():  # the reference forward every step, instead of the cache
            seq, _ = method.forward_logps(frozen, batch)
        n = seq.shape[0] // 2
        batch = {**batch, "ref_chosen_logps": seq[:n], "ref_rejected_logps": seq[n:]}
        return method.compute_loss(m, batch, none, settings)

    variants = {
        "sft": (make_step(model_with(lambda n: True), lambda m, b: m(**b, use_cache=False).loss), sft_batches),
        "clo": (make_step(model_with(attention), clo_loss), clo_batches),
        "clo_full": (make_step(model_with(lambda n: True), clo_loss), clo_batches),
        "clo_ref_in_step": (make_step(model_with(attention), clo_in_step), clo_batches),
    }
    # the one-off reference pass over all the data, counted per batch of data
    variants["prepare"] = (lambda _: method.with_reference(frozen, tok, plain, settings), [None])
    for step, batches in variants.values():  # warm-up
        step(batches[0])
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, (step, batches) in variants.items():
            t = clock()
            for b in batches:
                step(b)
            times[name].append((clock() - t) / (len(chunks) if name == "prepare" else len(batches)))
    med = {k: statistics.median(v) for k, v in times.items()}

    cfg = SIZES[args.size]
    head = (f"{args.size} llama (hidden {cfg['hidden_size']}, {cfg['num_layers']} layers, vocab {len(tok)}), "
            f"batch {args.batch} items = {args.batch} SFT rows / {4 * args.batch} CLO rows, {args.batches} batches, "
            f"{args.rounds} rounds, {args.threads} thread(s), {args.clock} clock, CPU {platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, {date.today()}")  # fmt: skip
    lines = [head, "", "| variant | ms per step | ratio to sft |", "| --- | ---: | ---: |"]
    for name in variants:
        lines.append(f"| {name} | {1000 * med[name]:.1f} | {med[name] / med['sft']:.2f} |")
    lines.append(f"\n`prepare` is the one-off reference pass per batch of data; relative to the CLO step: "
                 f"{med['prepare'] / med['clo']:.2f}. In-step reference relative to cached: "
                 f"{med['clo_ref_in_step'] / med['clo']:.2f}.")  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if args.append:
        new = not args.append.exists() or not args.append.read_text().strip()
        with args.append.open("a") as fh:
            if new:
                fh.write("# Benchmarks\n\nRatios against a baseline run in the same process.\n")
            fh.write(f"\n## CLO step vs SFT step (`benchmarks/clo_step.py --size {args.size}`)\n\n{text}\n")


if __name__ == "__main__":
    main()
