"""On a GPU: the one-by-one loop vs the two decoders (exact, padded), speed and identical outputs.

    python benchmarks/generate_gpu.py --model resources/models/smollm2-135m
    python benchmarks/generate_gpu.py --model resources/models/smollm2-135m --random-weights --shape 8b

Same prompts as ``generate_speed.py`` (the CC-Tuning paper's released prompts when
../shared is present, else ``--prompts-json``: {"name": [prompt, ...]}), chat-templated,
40 new tokens, TF32 off. Per prompt set and dtype it times ``generate_one_by_one`` (the
paper's loop), ``decoder: padded`` (left-padded ``model.generate`` batches), ``decoder:
exact`` (``decode.greedy_decode``) and the exact loop with masked instead of per-row
attention, and counts outputs identical to one-by-one. ``--random-weights`` builds the
model from the directory's config.json with seeded random weights (for a device machine
the weights cannot reach; the final norm is scaled x8 so the logits are peaked as a trained
model's, fewer near-ties) and ``--shape 8b`` widens it to Llama-3-8B's layer sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from crosstune.evaluate import decode as D  # noqa: E402
from crosstune.evaluate import generation as G  # noqa: E402

SHAPES = {"8b": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128}}  # fmt: skip


def random_model(model_dir: str, dtype: torch.dtype, shape: str | None, device: torch.device):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    for key, value in SHAPES.get(shape, {}).items():
        setattr(config, key, value)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)
    return model.to(dtype).eval()


def timed(fn):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def compare(model, tok, ids: list[list[int]], batch_size: int) -> dict:
    eos = G._generation_config(model, tok, 40).eos_token_id
    limits = {"max_batch_tokens": 1 << 20, "max_padding": 1.0}
    G.generate_one_by_one(model, tok, ids[:2], 3)  # warm-up
    reference, t_single = timed(lambda: G.generate_one_by_one(model, tok, ids, 40))
    row = {"prompts": len(ids), "mean_prompt_tokens": sum(map(len, ids)) / len(ids), "one_by_one_s": t_single}

    def masked():
        out = [None] * len(ids)
        for batch in G.batches([len(x) for x in ids], batch_size, extra=40, **limits):
            for i, r in zip(batch, D.greedy_decode(model, [ids[i] for i in batch], 40, eos, ragged=False),
                            strict=True):  # fmt: skip
                out[i] = r
        return out

    contenders = {
        "padded": lambda: G.greedy_generate(model, tok, ids, 40, batch_size, decoder="padded", **limits),
        "exact": lambda: G.greedy_generate(model, tok, ids, 40, batch_size, decoder="exact", **limits),
        "masked": masked,
    }
    for name, fn in contenders.items():
        fn()  # warm-up
        out, t = timed(fn)
        row[f"{name}_s"], row[f"{name}_speedup"] = t, t_single / t
        row[f"{name}_identical"] = sum(a == b for a, b in zip(out, reference, strict=True))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model directory (config.json and tokenizer at least)")
    ap.add_argument("--random-weights", action="store_true", help="seeded random weights from config.json")
    ap.add_argument("--shape", choices=sorted(SHAPES), help="with --random-weights: widen to this shape")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--prompts-json", help='{"name": [prompt, ...]} (default: the released prompts)')
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--device", default="cuda", help="cuda (cpu only to try the script out)")
    args = ap.parse_args()
    import generate_speed

    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    if args.prompts_json:
        sets = json.loads(Path(args.prompts_json).read_text(encoding="utf-8"))
    else:
        sets = {"four": generate_speed.prompts(32, ["XNLI", "XStoryCloze", "MMMLU", "MKQA"])[0],
                "all six": generate_speed.prompts(34)[0]}  # fmt: skip
    print(torch.__version__, torch.cuda.get_device_name(0) if device.type == "cuda" else device, flush=True)
    rows = []
    for dtype in args.dtypes.split(","):
        if args.random_weights:
            from transformers import AutoTokenizer

            model = random_model(args.model, G.DTYPES[dtype], args.shape, device)
            tok = AutoTokenizer.from_pretrained(args.model)
        else:
            model, tok = G.load_model(args.model, dtype=dtype, device=args.device)
        for name, texts in sets.items():
            ids = [G.encode(tok, G.chat_text(tok, t)) for t in texts]
            row = {"model": Path(args.model).name + (f" ({args.shape or 'own'} shape, random)" if args.random_weights
                                                      else ""), "dtype": dtype, "prompts_set": name,
                   **compare(model, tok, ids, args.batch_size)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                Path(args.out).write_text(json.dumps(rows, indent=1))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
