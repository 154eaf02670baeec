"""One rule-generate job, by decoder: exact vs padded batches vs the one-by-one loop.

    snakemake --cores 2            # the default run: a trained cc_tuning model and its Transform Matrix
    python benchmarks/generate_connection.py --mode matrix
    python benchmarks/generate_connection.py --mode oracle
    python benchmarks/generate_connection.py --mode none --model resources/models/smollm2-135m --dtype float32

One rule-generate job's work (``predict_language`` per language: greedy outputs,
40 new tokens, and the options' log-likelihoods) with CC-Tuning's connection
(``--mode matrix | oracle``) or without (``none``: any model), once with
``decoder: exact`` and once with ``decoder: padded`` (padded ``model.generate``
batches, then a second prompt pass per option), timed in process CPU seconds;
then the one-prompt-at-a-time loop (``cc_tuning.inference.generate`` with batch
1, or ``generate_one_by_one`` for ``none``: generation only) as the reference
the outputs (and chosen layers) are compared with. The option log-likelihoods
of the two decoders are compared too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from crosstune.cc_tuning import inference  # noqa: E402
from crosstune.evaluate import generation as G  # noqa: E402
from crosstune.evaluate.connection import Connection  # noqa: E402
from crosstune.evaluate.items import read_items  # noqa: E402
from crosstune.evaluate.predict import predict_language  # noqa: E402

RESULTS = REPO / "results" / "smollm2-135m"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(RESULTS / "train" / "cc_tuning" / "model"))
    ap.add_argument("--base", default=str(REPO / "resources" / "models" / "smollm2-135m"), help="tokenizer")
    ap.add_argument("--transform", default=str(RESULTS / "cc_tuning" / "cc_tuning" / "transform.safetensors"))
    ap.add_argument("--benchmark", default="xstorycloze")
    ap.add_argument("--languages", default="en,ar,hi,sw,zh,ru")
    ap.add_argument("--mode", choices=["matrix", "oracle", "none"], default="matrix")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = G.load_model(args.model, args.base, args.dtype, "cpu")
    conn = None
    if args.mode != "none":
        conn = Connection(model, tok, args.model, args.transform if args.mode == "matrix" else None, mode=args.mode)
    langs = args.languages.split(",")
    items = {lang: read_items(REPO / "results" / "benchmarks" / args.benchmark / f"{lang}.jsonl", args.benchmark, lang)
             for lang in langs}  # fmt: skip
    limits = {"max_new_tokens": 40, "batch_size": 16, "max_batch_tokens": 8192, "max_padding": 0.25}
    runs, seconds = {}, {}
    for decoder in ("exact", "padded"):
        settings = {"generation": {**limits, "decoder": decoder},
                    "likelihood": {"enabled": True, "continuation": "text", "batch_size": 16}}  # fmt: skip
        t0 = time.process_time()
        runs[decoder] = {lang: predict_language(model, tok, items[lang], settings, lang, connection=conn)
                         for lang in langs}  # fmt: skip
        seconds[decoder] = time.process_time() - t0
    t0 = time.process_time()
    same = {"exact": 0, "padded": 0}
    n = 0
    for lang in langs:
        prompts = [it["prompt"] for it in items[lang]]
        if conn is None:
            ids = [G.encode(tok, G.chat_text(tok, p)) for p in prompts]
            reference = [{"text": tok.decode(new, skip_special_tokens=True), "layer": None}
                         for new, _ in G.generate_one_by_one(model, tok, ids, 40)]  # fmt: skip
        else:
            english = [it["prompt_en"] for it in items[lang]] if args.mode == "oracle" else None
            reference = inference.generate(model, tok, prompts, mode=args.mode, dm=conn.dm, matrices=conn.matrices,
                                           langs=[lang] * len(prompts), english_prompts=english, batch_size=1,
                                           max_new_tokens=40)  # fmt: skip
        n += len(reference)
        for decoder in same:
            same[decoder] += sum(r["output"] == x["text"] and r.get("layer") == x["layer"]
                                 for r, x in zip(runs[decoder][lang], reference, strict=True))  # fmt: skip
    one_by_one = time.process_time() - t0
    pairs = [(e, p) for lang in langs for e, p in zip(runs["exact"][lang], runs["padded"][lang], strict=True)
             if e["option_loglik"]]  # fmt: skip
    diff = max((abs(a - b) for e, p in pairs for a, b in zip(e["option_loglik"], p["option_loglik"], strict=True)),
               default=0.0)  # fmt: skip
    flags = sum(e["option_greedy"] == p["option_greedy"] for e, p in pairs)
    print(f"option log-likelihoods, exact vs padded: max difference {diff:.1e}, is_greedy flags equal {flags}/{len(pairs)}")
    print(f"{args.benchmark} ({','.join(langs)}), mode {args.mode}, {model.dtype}, {args.threads} thread(s)")
    print(f"| {args.mode} | {str(model.dtype).split('.')[-1]} | {n} | {seconds['exact']:.1f} | {seconds['padded']:.1f} | "
          f"{seconds['padded'] / seconds['exact']:.2f}x | {one_by_one:.1f} | {same['exact']}/{n} | {same['padded']}/{n} |")  # fmt: skip


if __name__ == "__main__":
    main()
