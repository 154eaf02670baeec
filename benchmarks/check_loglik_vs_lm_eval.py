"""Check our option log-likelihoods against lm-evaluation-harness's HFLM ``loglikelihood``.

    pip install -e '.[dev]'        # lm_eval is a dev extra, not a runtime dependency
    python benchmarks/check_loglik_vs_lm_eval.py                      # tiny random llama (float32)
    python benchmarks/check_loglik_vs_lm_eval.py --model resources/models/smollm2-135m

Requests: chat-templated multiple-choice prompts in English, Chinese, Arabic,
Hindi, Swahili and Russian, each with its option texts and labels as
continuations. Two comparisons, same model object, float32, CPU:

1. ``move_whitespace=True`` (HFLM's own encoding: the prompt's trailing "\\n"
   moved into the continuation) against ``HFLM.loglikelihood`` on the same
   (context, continuation) strings - the token ids must be identical too;
2. our default encoding (conditioned on the whole prompt) against HFLM's
   ``_loglikelihood_tokens`` on our token ids - the same computation, ours
   left-padded with position ids and ``logits_to_keep``, HFLM's right-padded.

Passes when every |difference| < 1e-4 and every ``is_greedy`` agrees.
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

from crosstune.evaluate import generation as G  # noqa: E402

ITEMS = [  # (prompt, option texts)
    ("Premise: The cat sleeps on the sofa.\nHypothesis: An animal is resting.\n\n(1) entailment\n(2) neutral\n"
     "(3) contradiction\n\nIf you have to choose one of these options, your answer would be:",
     ["entailment", "neutral", "contradiction"]),
    ("前提：他们告诉我，我最后会被叫到一个人那里去见面。\n假设：我从来没有被告知任何与任何人会面。\n\n(1) 蕴涵\n(2) 中立\n(3) 矛盾\n\n"
     "如果你必须选择其中一个选项，你的答案是：", ["蕴涵", "中立", "矛盾"]),
    ("الرجاء الإجابة على سؤال الاختيار المتعدد التالي:\n\nما هو معكوس -i في الزمرة الضربية؟\n(A) 1\n(B) -1\n(C) i\n(D) -i\n\n"
     "إذا كان عليك اختيار أحد هذه الخيارات، فإن إجابتك ستكون:", ["1", "-1", "i", "-i"]),
    ("आधार: उसने रोटी खरीदी।\nपरिकल्पना: उसने कल खरीदी।\n\n(1) निहित\n(2) तटस्थ\n(3) विरोधाभास\n\nआपका उत्तर होगा:",
     ["निहित", "तटस्थ", "विरोधाभास"]),
    ("Nilipofika nyumbani nikajaribu kutazama kila kipindi.\n(1) Nilichoka sana.\n(2) Mwishowe nilitazama zote.\n\n"
     "Jibu lako:", ["Nilichoka sana.", "Mwishowe nilitazama zote."]),
    ("Какой из вариантов верен?\n(A) Москва\n(B) Париж\n\nВаш ответ:", ["Москва", "Париж"]),
]  # fmt: skip


def tiny_model():
    from crosstune.data.sources import seed_texts
    from crosstune.models import build_tiny_model, train_tokenizer

    tok = train_tokenizer(seed_texts(), vocab_size=512)
    return build_tiny_model("llama", tok, seed=0).eval(), tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model directory (default: a tiny random llama)")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        sys.exit("lm_eval is not installed: pip install -e '.[dev]'")
    import lm_eval

    model, tok = G.load_model(args.model, dtype="float32", device="cpu") if args.model else tiny_model()
    requests = []
    for prompt, options in ITEMS:
        context = G.chat_text(tok, prompt)
        labels = [f"({k + 1})" for k in range(len(options))]
        requests += [(context, x) for x in options + labels]
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.batch_size, add_bos_token=False, device="cpu")

    # 1: HFLM's encoding, strings in (timed: our shared context pass vs HFLM's one sequence per option)
    t0 = time.perf_counter()
    ours = G.option_logliks(model, tok, requests, args.batch_size, move_whitespace=True)
    t_ours = time.perf_counter() - t0
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(requests)]
    t0 = time.perf_counter()
    theirs = lm.loglikelihood(instances, disable_tqdm=True)
    t_theirs = time.perf_counter() - t0
    same_tokens = all(G.encode_pair(tok, c, x, move_whitespace=True) == lm._encode_pair(c, x) for c, x in requests)
    diff1 = max(abs(a[0] - b[0]) for a, b in zip(ours, theirs, strict=True))
    greedy1 = sum(a[1] == b[1] for a, b in zip(ours, theirs, strict=True))

    # 2: our default encoding, token ids in
    pairs = [G.encode_pair(tok, c, x) for c, x in requests]
    ours2 = G.token_logliks(model, tok, pairs, args.batch_size)
    theirs2 = lm._loglikelihood_tokens([(r, c, x) for r, (c, x) in zip(requests, pairs, strict=True)],
                                       disable_tqdm=True)  # fmt: skip
    diff2 = max(abs(a[0] - b[0]) for a, b in zip(ours2, theirs2, strict=True))
    greedy2 = sum(a[1] == b[1] for a, b in zip(ours2, theirs2, strict=True))

    name = Path(args.model).name if args.model else "tiny-llama (random, d=64)"
    n = len(requests)
    ok = diff1 < 1e-4 and diff2 < 1e-4 and greedy1 == greedy2 == n and same_tokens
    print(f"lm_eval {lm_eval.__version__}, model {name}, {n} (context, continuation) requests")
    print(f"1 HFLM encoding, loglikelihood():        max |diff| {diff1:.2e}, is_greedy agree {greedy1}/{n}, "
          f"token ids identical: {same_tokens}")  # fmt: skip
    print(f"2 our encoding, _loglikelihood_tokens(): max |diff| {diff2:.2e}, is_greedy agree {greedy2}/{n}")
    print(f"time for the {n} requests: HFLM {t_theirs:.2f} s, ours {t_ours:.2f} s ({t_theirs / t_ours:.1f}x)")
    print(f"| {name} | {n} | {diff1:.1e} | {diff2:.1e} | {greedy1}/{n}, {greedy2}/{n} | {'PASS' if ok else 'FAIL'} | "
          f"{t_theirs:.2f} / {t_ours:.2f} s |")  # fmt: skip
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
