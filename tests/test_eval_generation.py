"""Batched greedy decoding equals one-by-one decoding; option log-likelihoods; the generate stage."""

from __future__ import annotations

import json

import pytest
import torch

from crosstune.evaluate import generation as G
from crosstune.evaluate.predict import predict_benchmark

from .eval_items import nli_items, write_items

PROMPTS = [
    "Translate to English: 猫在沙发上睡觉。",
    "Hi",
    "ما هي عاصمة مصر؟ أجب بكلمة واحدة من فضلك.",
    "Write one sentence about the sea.",
    "Je, unapenda chai?",
    "Объясни, почему небо голубое, в двух предложениях.",
    "आप कैसे हैं?",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model, tokenizer = G.load_model(tiny_model_dir("llama"), dtype="float32", device="cpu")
    return model, tokenizer


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_batched_equals_one_by_one(tiny_model_dir, family, dtype):
    # bfloat16 too: every per-row operation is the one-by-one loop's own and the decode steps'
    # matrix products give each row a one-row product's bits (module docstring of evaluate/decode.py:
    # decode.exact_rows caps the rows of a bfloat16 step at 32 with AMX, at one without)
    model, tok = G.load_model(tiny_model_dir(family), dtype=dtype, device="cpu")
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS]
    assert len({len(x) for x in ids}) > 3  # really different lengths: real left padding
    reference = G.generate_one_by_one(model, tok, ids, max_new_tokens=12)
    for batch_size, budget, padding in ((3, None, None), (7, None, None), (7, 120, None), (7, None, 0.1)):
        batched = G.greedy_generate(model, tok, ids, 12, batch_size, max_batch_tokens=budget, max_padding=padding)
        assert batched == reference
    assert all(len(new) <= 12 and stop in ("eos", "length") for new, stop in reference)


def test_batches_respect_size_and_token_budget():
    lengths = [5, 50, 20, 21, 3, 48]
    assert list(G.batches(lengths, 4)) == [[1, 5, 3, 2], [0, 4]]  # longest first
    # 100 padded tokens at most: 50+10 alone, 48+10 alone, then 21+10 -> three rows
    assert list(G.batches(lengths, 4, max_batch_tokens=100, extra=10)) == [[1], [5], [3, 2, 0], [4]]
    assert list(G.batches([500], 4, max_batch_tokens=100)) == [[0]]  # a too-long prompt still runs, alone
    # at most 25% padding: 50, 48, 21 pad 31 of 150 (21%), adding 20 would pad 61 of 200;
    # 20 and 5 would pad 15 of 40; 5 and 3 pad 2 of 10
    assert list(G.batches(lengths, 4, max_padding=0.25)) == [[1, 5, 3], [2], [0, 4]]


def test_generation_stops_at_eos(tiny):
    model, tok = tiny
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS[:3]]
    first = G.greedy_generate(model, tok, ids, max_new_tokens=3)
    assert all(len(new) == 3 and stop == "length" for new, stop in first)
    # make each prompt's greedy first token an end-of-sequence token: every output is then empty
    eos_before = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id] + [new[0] for new, _ in first if new]
    try:
        assert G.greedy_generate(model, tok, ids, max_new_tokens=3, batch_size=2) == [([], "eos")] * 3
        assert G.generate_one_by_one(model, tok, ids, 3) == [([], "eos")] * 3
    finally:
        model.generation_config.eos_token_id = eos_before


def test_option_logliks_equal_a_plain_forward_pass(tiny):
    model, tok = tiny
    contexts = [G.chat_text(tok, "Is the sky blue? (1) yes (2) no"), G.chat_text(tok, PROMPTS[2])]
    options = ["yes", "no", "(2) no, it is not", "中立"]
    requests = [(c, o) for o in options for c in contexts]  # contexts interleaved: grouped inside
    # batch_size 3: the 4 options of a context run in two chunks on copies of its cache
    got = G.option_logliks(model, tok, requests, batch_size=3, max_batch_tokens=200)
    for (context, option), (total, greedy) in zip(requests, got, strict=True):
        ctx, cont = G.encode_pair(tok, context, option)
        x = torch.tensor([ctx + cont])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(x).logits[0, :-1].float(), -1)
        targets = torch.tensor(cont)
        expected = logprobs[len(ctx) - 1 :].gather(-1, targets[:, None]).sum().item()
        assert total == pytest.approx(expected, abs=1e-4)
        assert greedy == bool((logprobs[len(ctx) - 1 :].argmax(-1) == targets).all())
    # we condition on the whole prompt; lm-evaluation-harness moves its trailing newline over
    ctx, cont = G.encode_pair(tok, "prompt\n", "yes")
    assert tok.decode(ctx) == "prompt\n" and tok.decode(cont) == "yes"
    ctx, cont = G.encode_pair(tok, "prompt\n", "yes", move_whitespace=True)
    assert tok.decode(ctx) == "prompt" and tok.decode(cont) == "\nyes"


def test_likelihood_ranking_prefers_what_the_model_generates(tiny):
    model, tok = tiny
    prompt = G.encode(tok, G.chat_text(tok, PROMPTS[3]))
    [(new, _)] = G.greedy_generate(model, tok, [prompt], max_new_tokens=4)
    # the greedy continuation is greedy; with its last token changed it is not, and less likely
    changed = new[:-1] + [new[-1] + 1]
    [(ll_greedy, is_greedy), (ll_changed, changed_greedy)] = G.token_logliks(
        model, tok, [(prompt, new), (prompt, changed)]
    )
    assert is_greedy and not changed_greedy and ll_greedy > ll_changed
    # among single-token options the greedy token has the highest log-likelihood
    others = [t for t in range(5, 40) if t != new[0]][:6]
    scores = G.token_logliks(model, tok, [(prompt, [t]) for t in [new[0], *others]], batch_size=4)
    assert max(range(len(scores)), key=lambda i: scores[i][0]) == 0
    assert [g for _, g in scores] == [True] + [False] * len(others)


def test_predict_benchmark_writes_every_language_and_resumes(tmp_path, tiny_model_dir, tiny, monkeypatch):
    from crosstune.evaluate import predict

    model, tok = tiny
    model_dir = tiny_model_dir("llama")
    paths = write_items(tmp_path, "xnli", langs=("en", "zh"))
    settings = {"generation": {"max_new_tokens": 5, "batch_size": 2, "dtype": "float32"},
                "likelihood": {"enabled": True, "continuation": "text", "batch_size": 4}}  # fmt: skip
    out, resume = tmp_path / "pred", tmp_path / ".resume"
    real, ran = predict.predict_language, []

    def crash_on_zh(model, tok, items, settings, desc="", connection=None):
        if items[0]["lang"] == "zh":
            raise RuntimeError("out of memory")
        ran.append(items[0]["lang"])
        return real(model, tok, items, settings, desc)

    monkeypatch.setattr(predict, "predict_language", crash_on_zh)
    with pytest.raises(RuntimeError):
        predict_benchmark(model, tok, model_dir, "xnli", paths, out, settings, resume)
    assert not out.exists() and (resume / "en.key").exists() and ran == ["en"]

    def record(model, tok, items, settings, desc="", connection=None):
        ran.append(items[0]["lang"])
        return real(model, tok, items, settings, desc)

    monkeypatch.setattr(predict, "predict_language", record)
    stats = predict_benchmark(model, tok, model_dir, "xnli", paths, out, settings, resume)
    assert ran == ["en", "zh"] and not resume.exists()  # English was not decoded again
    assert stats["zh"]["items"] == 3 and sorted(p.name for p in out.iterdir()) == ["en.jsonl", "zh.jsonl"]
    records = [json.loads(line) for line in (out / "zh.jsonl").open()]
    assert [r["id"] for r in records] == [it["id"] for it in nli_items("zh")]
    for r in records:
        assert len(r["option_loglik"]) == 3 and r["continuation"] == "text"
        assert 0 <= r["n_tokens"] <= 5 and r["stopped"] in ("eos", "length") and isinstance(r["output"], str)
    # resumed English equals a fresh run
    fresh = real(model, tok, nli_items("en"), settings)
    assert [json.loads(line) for line in (out / "en.jsonl").open()] == json.loads(json.dumps(fresh))


def test_dtype_auto_is_resolved_when_planning_and_checked_by_the_job(monkeypatch):
    """generate's `dtype` param is the planned dtype, never `auto`: a GPU job plans bfloat16 on a
    machine without a GPU, a CPU job plans this CPU's answer; a job on other hardware refuses."""
    assert G.planned_dtype("float16", "auto", gpus=1) == "float16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert G.planned_dtype("auto", "auto", gpus=1) == "bfloat16"
    assert G.planned_dtype("auto", "cuda:0", gpus=0) == "bfloat16"
    for native in (True, False):
        monkeypatch.setattr(G, "native_bf16", lambda device, native=native: native)
        assert G.planned_dtype("auto", "auto", gpus=0) == ("bfloat16" if native else "float32")
        G.check_planned_dtype("auto", "bfloat16" if native else "float32", "cpu")
    # planned on a CPU with bfloat16, run on one without: an error, not float32 outputs
    with pytest.raises(RuntimeError, match="evaluation.generation.dtype: 'auto' was planned as bfloat16 but resolves to float32"):
        G.check_planned_dtype("auto", "bfloat16", "cpu")
    G.check_planned_dtype("bfloat16", "bfloat16", "cpu")  # an explicit dtype is what it says
