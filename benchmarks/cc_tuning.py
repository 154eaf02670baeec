"""CC-Tuning benchmarks: training step, inference and Transform Matrix solve, as ratios in one process.

    python benchmarks/cc_tuning.py train     --model resources/models/smollm2-135m
    python benchmarks/cc_tuning.py infer     --model resources/models/smollm2-135m
    python benchmarks/cc_tuning.py transform --rows 32000 --dim 4096

``--model tiny`` builds the tests' tiny random llama (d=64, L=2); ``--model
random-smollm2`` a random llama of SmolLM2-135M's shape (d=576, L=30, vocab
49152) with the tiny tokenizer. Variants are timed interleaved on the same
batches (median of ``--reps``); results are printed as Markdown rows and JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from crosstune.cc_tuning.decision import DecisionMaker  # noqa: E402
from crosstune.cc_tuning.inference import generate  # noqa: E402
from crosstune.cc_tuning.training import TrainSettings, cc_tuning_loss, response_loss  # noqa: E402
from crosstune.cc_tuning.transform import solve_transform  # noqa: E402
from crosstune.methods.cc_tuning import CCTuning  # noqa: E402


def seed_pairs() -> list[dict]:
    """Pair records from the bundled seed data (non-English translations with their English instruction)."""
    from crosstune.data.sources import SEED_DIR
    from crosstune.io import read_jsonl

    english = {r["id"]: r for r in read_jsonl(Path(str(SEED_DIR / "sft_en.jsonl")))}
    return [
        {"id": f"seed/{r['id']}#{r['lang']}", "lang": r["lang"], "instruction": r["instruction"],
         "response": r["response"], "instruction_en": english[r["id"]]["instruction"],
         "response_en": english[r["id"]]["response"], "source": "seed"}  # fmt: skip
        for r in read_jsonl(Path(str(SEED_DIR / "translations.jsonl")))
    ]


def load_model(spec: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crosstune.data.sources import seed_texts
    from crosstune.models import build_tiny_model, train_tokenizer

    if spec in ("tiny", "random-smollm2"):
        tok = train_tokenizer(seed_texts(), vocab_size=512)
        sizes = {} if spec == "tiny" else dict(hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3,
                                               intermediate_size=1536)  # fmt: skip
        model = build_tiny_model("llama", tok, seed=0, **sizes)
        if spec == "random-smollm2":  # SmolLM2's vocabulary size: the LM head costs what it costs there
            model.resize_token_embeddings(49152)
        return model, tok
    return AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32), AutoTokenizer.from_pretrained(spec)


CLOCK = {"fn": time.process_time}


def timed(fn) -> float:
    t0 = CLOCK["fn"]()
    fn()
    return CLOCK["fn"]() - t0


def interleave(variants: dict, reps: int) -> dict[str, list[float]]:
    """Time each variant once per repetition, rotating the order (one warm-up round first).

    The clock is the process's CPU time by default (``--clock cpu``): on a shared
    machine it does not count the time other processes hold the cores.
    """
    names = list(variants)
    for name in names:
        variants[name]()
    times = {n: [] for n in names}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(variants[name]))
    return times


def bench_train(args) -> dict:
    model, tok = load_model(args.model)
    model.train()
    method = CCTuning()
    examples = method.build_examples(seed_pairs(), dict(CCTuning.defaults), seed=0)[: args.batch_size * args.batches]
    feats = [method.tokenize(ex, tok, 1024, "right") for ex in examples]
    batches = [method.collate(feats[i : i + args.batch_size], tok) for i in range(0, len(feats), args.batch_size)]
    dm = DecisionMaker(model.config.hidden_size, model.config.num_hidden_layers)
    opt = torch.optim.AdamW(list(model.parameters()) + list(dm.parameters()), lr=1e-6)
    state = {"i": 0}

    def step(loss_fn):
        def run():
            batch = batches[state["i"] % len(batches)]
            loss_fn(batch).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return run

    def sft(b):  # the engine's default loss: full logits, cross-entropy on the response tokens
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
        return response_loss(logits, b["labels"])

    variants = {
        "sft": step(sft),
        "cc_tuning (faithful)": step(lambda b: cc_tuning_loss(model, b, dm, TrainSettings("faithful"))),
        "cc_tuning (detached)": step(lambda b: cc_tuning_loss(model, b, dm, TrainSettings("detached"))),
    }
    times = {n: [] for n in variants}
    for i in range(len(batches)):  # every variant on the same batches
        state["i"] = i
        for name, ts in interleave(variants, args.reps).items():
            times[name] += ts
    base = statistics.median(times["sft"])
    tokens = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    en_tokens = sum(int(b["en_attention_mask"].sum()) for b in batches) / len(batches)
    return {
        "what": "train step (forward + backward + AdamW)", "model": args.model, "batch_size": args.batch_size,
        "mean tokens/batch (x,y)": tokens, "mean tokens/batch (English prompts)": en_tokens,
        "seconds": {n: statistics.median(t) for n, t in times.items()},
        "ratio": {n: statistics.median(t) / base for n, t in times.items()},
    }  # fmt: skip


def bench_infer(args) -> dict:
    from crosstune.cc_tuning.connection import chat_prompt_ids
    from tests.cc_tuning_reference import slow_generate

    model, tok = load_model(args.model)
    model.eval()
    pairs = seed_pairs()[:: max(1, len(seed_pairs()) // args.prompts)][: args.prompts]
    prompts, langs = [p["instruction"] for p in pairs], [p["lang"] for p in pairs]
    d, L = model.config.hidden_size, model.config.num_hidden_layers
    dm = DecisionMaker(d, L)
    X = {"all": torch.eye(d, dtype=torch.float64) + 0.01 * torch.randn(d, d, dtype=torch.float64)}
    new = args.new_tokens
    kw = dict(batch_size=args.batch_size, max_new_tokens=new, min_new_tokens=new)  # equal lengths for all
    ids = [chat_prompt_ids(tok, p) for p in prompts]
    variants = {
        "plain generate (mode none)": lambda: generate(model, tok, prompts, mode="none", **kw),
        "cc_tuning matrix (fast)": lambda: generate(model, tok, prompts, mode="matrix", dm=dm, matrices=X,
                                                    langs=langs, **kw),  # fmt: skip
        "cc_tuning matrix (fast, batch 1)": lambda: generate(model, tok, prompts, mode="matrix", dm=dm, matrices=X,
                                                             langs=langs, **dict(kw, batch_size=1)),  # fmt: skip
        "cc_tuning matrix (slow reference)": lambda: [
            slow_generate(model, tok, dm, i, "matrix", X["all"], max_new_tokens=new, stop_at_eos=False) for i in ids
        ],
    }
    with torch.no_grad():
        times = interleave(variants, args.reps)
    base = statistics.median(times["plain generate (mode none)"])
    slow = statistics.median(times["cc_tuning matrix (slow reference)"])
    return {
        "what": "greedy decoding", "model": args.model, "prompts": len(prompts), "batch_size": args.batch_size,
        "new_tokens": new, "seconds": {n: statistics.median(t) for n, t in times.items()},
        "ratio_to_plain": {n: statistics.median(t) / base for n, t in times.items()},
        "speedup_over_slow": {n: slow / statistics.median(t) for n, t in times.items()},
    }  # fmt: skip


def bench_transform(args) -> dict:
    g = torch.Generator().manual_seed(0)
    S = torch.randn(args.rows, args.dim, dtype=torch.float64, generator=g)
    X = torch.randn(args.dim, args.dim, dtype=torch.float64, generator=g) / args.dim**0.5
    T = S @ X + 0.01 * torch.randn(args.rows, args.dim, dtype=torch.float64, generator=g)
    out = {"what": "transform solve (float64, CPU)", "rows": args.rows, "dim": args.dim,
           "threads": 1, "seconds": {}}  # solve_transform pins the CPU solve to one thread  # fmt: skip
    solvers = {"gelsy": ("lstsq gelsy (minimum-norm; last bits vary between runs)", {"driver": "gelsy"}),
               "gelsd": ("lstsq gelsd (default; numpy's driver, minimum-norm)", {"driver": "gelsd"}),
               "ridge": ("ridge 1e-3 (normal equations, Cholesky)", {"ridge": 1e-3})}  # fmt: skip
    for name, kw in (solvers[s] for s in args.solvers.split(",")):
        t0, c0 = time.perf_counter(), time.process_time()
        got = solve_transform(S, T, **kw)
        out["seconds"][name] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
        out.setdefault("max_abs_error", {})[name] = float((got - X).abs().max())
        del got
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["train", "infer", "transform"])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--rows", type=int, default=32000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    ap.add_argument("--solvers", default="gelsy,gelsd,ridge", help="transform: comma-separated gelsy,gelsd,ridge")
    args = ap.parse_args(argv)
    CLOCK["fn"] = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"train": bench_train, "infer": bench_infer, "transform": bench_transform}[args.what](args)
    result["threads"] = torch.get_num_threads()
    result["clock"] = args.clock
    result["torch"] = torch.__version__
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
