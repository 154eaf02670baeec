"""Batched greedy generation vs the paper's one-prompt-at-a-time loop: speed and identical outputs.

    python benchmarks/generate_speed.py                                   # tiny random model
    python benchmarks/generate_speed.py --model resources/models/smollm2-135m --prompts 48

Prompts: the CC-Tuning paper's released evaluation prompts when
../shared/benchmarks/cc-tuning-eval is present - ``--prompts`` of them, spread
over the six benchmarks in proportion to their sizes in the paper's evaluation
(items per language: XNLI 1000, XStoryCloze 1511, MMMLU 1000, XQuAD 1190,
MKQA 1000, XL-Sum 100; at least one each) with the languages cycled - else a
built-in multilingual set. Both
runs decode the same chat-templated prompts greedily (``--max-new-tokens``, 40
as in the paper) with the same model (``--dtype``) in this process; the baseline
is ``generate_one_by_one`` (what the paper's code did: one ``model.generate``
call per prompt, with its KV cache), the contender ``greedy_generate``
(length-sorted batches decoded by :mod:`crosstune.evaluate.decode`);
``--padded`` also times the contender before that module (left-padded
``model.generate`` batches). Prints a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from crosstune.evaluate import generation as G  # noqa: E402

CC_EVAL = REPO.parent / "shared" / "benchmarks" / "cc-tuning-eval"
FILES = {  # benchmark -> (prompt folder, languages, items per language in the paper's evaluation)
    "XNLI": ("split_sample", ["ar", "el", "en", "hi", "ru", "sw", "th", "tr", "ur", "zh"], 1000),
    "XStoryCloze": ("split", ["ar", "en", "es", "eu", "hi", "id", "ru", "sw", "te", "zh"], 1511),
    "MMMLU": ("split_sample", ["ar", "bn", "en", "es", "hi", "id", "ko", "pt", "sw", "yo"], 1000),
    "XQuAD": ("split", ["ar", "de", "el", "en", "hi", "ru", "th", "tr", "vi", "zh"], 1190),
    "MKQA": ("split_sample", ["ar", "de", "en", "ja", "ko", "pt", "ru", "tr", "vi", "zh"], 1000),
    "XLSum": ("split_sample", ["ar", "en", "fr", "hi", "id", "ru", "sw", "tr", "ur", "vi"], 100),
}
BUILTIN = [
    "前提：他们告诉我，我最后会被叫到一个人那里去见面。\n假设：我从来没有被告知任何与任何人会面。\n\n(1) 蕴涵\n(2) 中立\n(3) 矛盾\n\n你的答案是：",
    "Please answer the following question.\n\nWho wrote the song i love the nightlife\n\nYour answer:",
    "ما هي عاصمة مصر؟ أجب بكلمة واحدة.",
    "Nilipofika nyumbani nikajaribu kutazama kila kipindi.\n(1) Nilichoka.\n(2) Mwishowe nilitazama zote.\n\nJibu lako:",
    "Объясни, почему небо голубое, в двух предложениях.",
    "आपको क्या लगता है कि आधार और परिकल्पना के बीच क्या संबंध है?",
    "Please summarize the following content into one sentence.\nThe council met on Monday and voted to close "
    "the bridge for three months of repairs, starting in June.",
    "Hi",
]


def prompts(n: int, only: list[str] | None = None) -> tuple[list[str], str]:
    if not CC_EVAL.is_dir():
        return (BUILTIN * (n // len(BUILTIN) + 1))[:n], "built-in"
    chosen = {b: spec for b, spec in FILES.items() if not only or b in only}
    total = sum(size for *_, size in chosen.values())
    out = []
    for bench, (folder, langs, size) in chosen.items():
        for i in range(max(1, round(n * size / total))):
            lang = langs[i % len(langs)]
            with (CC_EVAL / bench / folder / f"{lang}.json").open(encoding="utf-8") as f:
                lines = [next(f) for _ in range(i // len(langs) + 1)]
            out.append(json.loads(lines[-1])["instruction"])
    return out, f"CC-Tuning released prompts: {', '.join(chosen)}"


def tiny_model():
    sys.path.insert(0, str(REPO))
    from crosstune.data.sources import seed_texts
    from crosstune.models import build_tiny_model, train_tokenizer

    tok = train_tokenizer(seed_texts(), vocab_size=512)
    return build_tiny_model("llama", tok, seed=0).eval(), tok


def padded_generate(model, tok, ids, max_new_tokens, batch_size, max_batch_tokens, max_padding):
    """The contender before evaluate/decode.py: length-sorted, left-padded ``model.generate`` batches."""
    config, out = G._generation_config(model, tok, max_new_tokens), [None] * len(ids)
    for batch in G.batches([len(x) for x in ids], batch_size, max_batch_tokens, max_new_tokens, max_padding):
        for i, r in zip(batch, G._generate_padded(model, [ids[i] for i in batch], config), strict=True):
            out[i] = r
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: a tiny random llama)")
    ap.add_argument("--prompts", type=int, default=48, help="number of prompts (spread over the benchmarks)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--only", help="comma-separated benchmarks, e.g. XNLI,MKQA (default: all six)")
    ap.add_argument("--max-batch-tokens", type=int, default=8192, help="padded tokens per batch at most")
    ap.add_argument("--max-padding", type=float, default=0.25, help="largest share of padding in a batch")
    ap.add_argument("--padded", action="store_true", help="also time the previous contender (padded generate)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (rule generate's default is 1)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"],
                    help="model dtype (config.yaml evaluates in auto: bfloat16 on a CPU with AVX512-BF16/AMX)")
    ap.add_argument("--reuse-prefix", action="store_true", help="compute shared prompt prefixes once")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = G.load_model(args.model, dtype=args.dtype, device="cpu") if args.model else tiny_model()
    print(f"dtype: {model.dtype}")
    texts, source = prompts(args.prompts, args.only.split(",") if args.only else None)
    ids = [G.encode(tok, G.chat_text(tok, t)) for t in texts]
    G.greedy_generate(model, tok, ids[:2], 2, 2)  # warm-up (first-call allocations)

    def timed(fn, *a, **kw):
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        return out, time.perf_counter() - t0

    limits = {"max_batch_tokens": args.max_batch_tokens, "max_padding": args.max_padding,
              "reuse_prefix": args.reuse_prefix}
    load = os.getloadavg()[0]
    batched, t_batched = timed(G.greedy_generate, model, tok, ids, args.max_new_tokens, args.batch_size, **limits)
    if args.padded:  # the previous contender: one left-padded model.generate call per batch
        padded, t_padded = timed(padded_generate, model, tok, ids, args.max_new_tokens, args.batch_size, **limits)
    single, t_single = timed(G.generate_one_by_one, model, tok, ids, args.max_new_tokens)
    # the same with one new token: the prompt pass (prefill), identical work in both loops
    _, p_batched = timed(G.greedy_generate, model, tok, ids, 1, args.batch_size, **limits)
    _, p_single = timed(G.generate_one_by_one, model, tok, ids, 1)

    same = sum(a == b for a, b in zip(batched, single, strict=True))
    new_tokens = sum(len(new) for new, _ in single)
    name = Path(args.model).name if args.model else "tiny-llama (random, d=64)"
    print(f"prompts: {len(ids)} ({source}), prompt tokens: mean {sum(map(len, ids)) / len(ids):.0f}, "
          f"max {max(map(len, ids))}; new tokens: {new_tokens}")  # fmt: skip
    print(f"one-by-one: {t_single:.1f} s   batched (bs {args.batch_size}): {t_batched:.1f} s   "
          f"speed-up: {t_single / t_batched:.1f}x   identical outputs: {same}/{len(ids)}")  # fmt: skip
    decode = (t_single - p_single) / max(t_batched - p_batched, 1e-9)
    print(f"prompt pass only (1 new token): one-by-one {p_single:.1f} s, batched {p_batched:.1f} s; "
          f"decoding after it: {t_single - p_single:.1f} s vs {t_batched - p_batched:.1f} s = {decode:.1f}x")
    print(f"| {name} | {len(ids)} ({source.split(': ')[-1]}) | {sum(map(len, ids)) / len(ids):.0f} | "
          f"{args.batch_size} | {t_single:.1f} | {t_batched:.1f} | **{t_single / t_batched:.1f}x** | "
          f"{p_single:.1f} / {p_batched:.1f} | {decode:.1f}x | {same}/{len(ids)} | "
          f"{platform.machine()}, {args.threads} thread(s), {str(model.dtype).split('.')[-1]}, torch {torch.__version__} |")  # fmt: skip
    if args.padded:
        print(f"before (padded model.generate batches): {t_padded:.1f} s = {t_single / t_padded:.1f}x, identical "
              f"outputs: {sum(a == b for a, b in zip(padded, single, strict=True))}/{len(ids)}")
    print(f"load average (1 min) at start / end: {load:.1f} / {os.getloadavg()[0]:.1f}")
    if same != len(ids):
        for i, (a, b) in enumerate(zip(batched, single, strict=True)):
            if a != b:
                k = next((j for j, (x, y) in enumerate(zip(a[0], b[0], strict=False)) if x != y), min(len(a[0]), len(b[0])))
                print(f"  prompt {i}: first difference at new token {k}: {a[0][k:k + 3]} vs {b[0][k:k + 3]}")


if __name__ == "__main__":
    main()
