"""CC-Tuning methods are evaluated with the connection: generation and option log-likelihoods."""

from __future__ import annotations

import pytest
import torch

from crosstune.cc_tuning import inference
from crosstune.cc_tuning.connection import capture_mlp, inject, input_embeddings
from crosstune.cc_tuning.decision import DecisionMaker, save_decision_maker
from crosstune.cc_tuning.transform import save_transform
from crosstune.evaluate import generation as G
from crosstune.evaluate.connection import Connection
from crosstune.evaluate.predict import predict_language

from .eval_items import nli_items

SETTINGS = {"generation": {"max_new_tokens": 6, "batch_size": 2, "max_batch_tokens": None, "max_padding": None},
            "likelihood": {"enabled": True, "continuation": "text", "batch_size": 2}}  # fmt: skip


def with_decoder(decoder: str) -> dict:
    """SETTINGS with evaluation.generation.decoder set."""
    return {**SETTINGS, "generation": {**SETTINGS["generation"], "decoder": decoder}}


@pytest.fixture(scope="module")
def cc_dir(tiny_model_dir, tmp_path_factory):
    """A random Decision Maker (scaled up so layers differ) and a large random matrix (so the
    connection visibly changes what the random tiny model says)."""
    out = tmp_path_factory.mktemp("cc")
    torch.manual_seed(3)
    dm = DecisionMaker(64, 2, init_std=1.0)
    save_decision_maker(dm, out / "decision_maker.safetensors")
    save_transform(out / "transform.safetensors", {"all": 30 * torch.randn(64, 64)})
    (out / "config.json").symlink_to(tiny_model_dir("llama") / "config.json")
    return out


@pytest.fixture(scope="module")
def connected(tiny_model_dir, cc_dir):
    """The tiny model and its connection in matrix mode."""
    model, tok = G.load_model(tiny_model_dir("llama"), dtype="float32", device="cpu")
    return model, tok, Connection(model, tok, cc_dir, cc_dir / "transform.safetensors")


@pytest.mark.parametrize("decoder", ["exact", "padded"])
def test_generation_uses_the_connection(connected, decoder):
    model, tok, conn = connected
    items = nli_items("zh")
    settings = with_decoder(decoder)
    records = predict_language(model, tok, items, settings, connection=conn)
    reference = inference.generate(model, tok, [it["prompt"] for it in items], mode="matrix", dm=conn.dm,
                                   matrices=conn.matrices, langs=["zh"] * 3, batch_size=1, max_new_tokens=6)  # fmt: skip
    assert [r["output"] for r in records] == [x["text"] for x in reference]
    assert [r["layer"] for r in records] == [x["layer"] for x in reference]
    plain = predict_language(model, tok, items, SETTINGS)
    assert [r["output"] for r in records] != [r["output"] for r in plain]  # the connection changes the outputs
    assert "layer" not in plain[0]


@pytest.mark.parametrize("decoder", ["exact", "padded"])
def test_generation_at_the_release_position(connected, cc_dir, decoder):
    """connection_position release (the tiny ChatML template: the token after the last <|im_start|>)."""
    model, tok, last = connected
    conn = Connection(model, tok, cc_dir, cc_dir / "transform.safetensors", position="release")
    assert conn.after > 0
    items = nli_items("zh")
    records = predict_language(model, tok, items, with_decoder(decoder), connection=conn)
    reference = inference.generate(model, tok, [it["prompt"] for it in items], mode="matrix", dm=conn.dm,
                                   matrices=conn.matrices, langs=["zh"] * 3, batch_size=1, max_new_tokens=6,
                                   position="release")  # fmt: skip
    assert [r["output"] for r in records] == [x["text"] for x in reference]
    at_last = predict_language(model, tok, items, with_decoder(decoder), connection=last)
    assert [r["output"] for r in records] != [r["output"] for r in at_last]  # p moved: other outputs


def test_option_logliks_with_the_connection(connected):
    model, tok, conn = connected
    context = G.chat_text(tok, nli_items("zh")[1]["prompt"])
    options = ["蕴涵", "中立", "矛盾"]
    got = G.option_logliks(model, tok, [(context, o) for o in options], batch_size=2, prompt_hook=conn.prompt_hook("zh"))
    plain = G.option_logliks(model, tok, [(context, o) for o in options])
    for option, (total, _), (plain_total, _) in zip(options, got, plain, strict=True):
        ctx, cont = G.encode_pair(tok, context, option)
        p = torch.tensor([len(ctx) - 1])
        x = torch.tensor([ctx + cont])
        with torch.no_grad():
            with capture_mlp(model, p) as cap:  # a_l at p from the plain prompt
                model(torch.tensor([ctx]))
            a = inference.map_activations(cap.stacked(), conn.matrices, ["zh"])
            c, _ = conn.dm(a, input_embeddings(model, torch.tensor([ctx[-1]])), choice="argmax")
            with inject(model, p, c):  # c added after layer 0 at p, in one pass over prompt + option
                logprobs = torch.log_softmax(model(x).logits[0, :-1].float(), -1)
        expected = logprobs[len(ctx) - 1 :].gather(-1, torch.tensor(cont)[:, None]).sum().item()
        assert total == pytest.approx(expected, abs=1e-4)
        assert total != pytest.approx(plain_total, abs=1e-3)  # and it is not the plain model's


def test_exact_decoder_scores_options_on_the_connected_prompt_cache(connected):
    """Exact decoder: one prompt pass with c at p serves the first new token and every option;
    padded: a second, connected pass per option (checked against a hand-built forward above)."""
    model, tok, conn = connected
    items = nli_items("zh")
    runs = {}
    for decoder in ("exact", "padded"):
        settings = with_decoder(decoder)
        passes: list = []
        hook = model.register_forward_pre_hook(lambda m, a, kw, passes=passes: passes.append(kw["input_ids"].shape),
                                               with_kwargs=True)  # fmt: skip
        try:
            runs[decoder] = predict_language(model, tok, items, settings, connection=conn)
        finally:
            hook.remove()
        runs[decoder + " prompt tokens"] = sum(b * t for b, t in passes if t > 1)
    exact, padded = runs["exact"], runs["padded"]
    assert [r["output"] for r in exact] == [r["output"] for r in padded]
    assert [r["layer"] for r in exact] == [r["layer"] for r in padded]
    for e, p in zip(exact, padded, strict=True):
        assert e["option_loglik"] == pytest.approx(p["option_loglik"], abs=1e-4)
        assert e["option_greedy"] == p["option_greedy"]
    assert runs["exact prompt tokens"] < runs["padded prompt tokens"]  # no second prompt pass


def test_missing_decision_maker_is_a_clear_error(tiny_model_dir, tmp_path):
    model, tok = G.load_model(tiny_model_dir("llama"), device="cpu")
    with pytest.raises(FileNotFoundError, match="decision_maker.safetensors"):
        Connection(model, tok, tmp_path, tmp_path / "transform.safetensors")


def oracle_items(lang: str) -> list[dict]:
    """The language's NLI items with the English item of the same index as prompt_en."""
    english = nli_items("en")
    return [{**it, "prompt_en": en["prompt"]} for it, en in zip(nli_items(lang), english, strict=True)]


@pytest.mark.parametrize("decoder", ["exact", "padded"])
def test_oracle_generation_takes_the_english_prompts(connected, cc_dir, decoder):
    model, tok, conn = connected
    oracle = Connection(model, tok, cc_dir, mode="oracle")
    items = oracle_items("zh")
    settings = with_decoder(decoder)
    records = predict_language(model, tok, items, settings, connection=oracle)
    reference = inference.generate(model, tok, [it["prompt"] for it in items], mode="oracle", dm=oracle.dm,
                                   english_prompts=[it["prompt_en"] for it in items], batch_size=1,
                                   max_new_tokens=6)  # fmt: skip
    assert [r["output"] for r in records] == [x["text"] for x in reference]
    assert [r["layer"] for r in records] == [x["layer"] for x in reference]
    matrix = predict_language(model, tok, items, SETTINGS, connection=conn)
    assert [r["output"] for r in records] != [r["output"] for r in matrix]  # a different connection


@pytest.mark.parametrize("decoder", ["exact", "padded"])  # options on the prompt's cache / a second pass
def test_oracle_option_logliks_use_the_english_prompt(connected, cc_dir, decoder):
    model, tok, _ = connected
    oracle = Connection(model, tok, cc_dir, mode="oracle")
    items = oracle_items("zh")
    settings = with_decoder(decoder)
    records = predict_language(model, tok, items, settings, connection=oracle)
    it, got = items[1], records[1]["option_loglik"]
    ctx = G.encode(tok, G.chat_text(tok, it["prompt"]))
    en = G.encode(tok, G.chat_text(tok, it["prompt_en"]))
    p = torch.tensor([len(ctx) - 1])
    for option, total in zip(["蕴涵", "中立", "矛盾"], got, strict=True):
        _, cont = G.encode_pair(tok, G.chat_text(tok, it["prompt"]), option)
        with torch.no_grad():
            with capture_mlp(model, torch.tensor([len(en) - 1])) as cap:  # a_l at p of the English prompt
                model(torch.tensor([en]))
            c, _ = oracle.dm(cap.stacked(), input_embeddings(model, torch.tensor([ctx[-1]])), choice="argmax")
            with inject(model, p, c):
                logprobs = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0, :-1].float(), -1)
        expected = logprobs[len(ctx) - 1 :].gather(-1, torch.tensor(cont)[:, None]).sum().item()
        assert total == pytest.approx(expected, abs=1e-4)


def test_oracle_without_english_prompts_is_a_clear_error(connected, cc_dir):
    model, tok, _ = connected
    oracle = Connection(model, tok, cc_dir, mode="oracle")
    with pytest.raises(ValueError, match=r"xnli/zh: .*prompt_en.*xnli/zh/0000"):
        predict_language(model, tok, nli_items("zh"), SETTINGS, desc="xnli/zh", connection=oracle)


def test_matrix_mode_needs_the_transform(connected, cc_dir):
    model, tok, _ = connected
    with pytest.raises(ValueError, match="Transform Matrix"):
        Connection(model, tok, cc_dir, mode="matrix")


@pytest.mark.parametrize("mode", ["matrix", "oracle"])
def test_the_connection_runs_in_bfloat16(cc_dir, tiny_model_dir, mode):
    """dtype bfloat16 (or auto on bf16 hardware): activations, matrix and Decision Maker meet in the model's dtype."""
    model, tok = G.load_model(tiny_model_dir("llama"), dtype="bfloat16", device="cpu")
    bf16 = Connection(model, tok, cc_dir, cc_dir / "transform.safetensors", mode=mode)
    records = predict_language(model, tok, oracle_items("zh"), SETTINGS, connection=bf16)
    assert all(isinstance(r["layer"], int) and len(r["option_loglik"]) == 3 for r in records)


def test_auto_dtype_is_bfloat16_only_on_native_hardware(monkeypatch):
    """On a CPU: AMX only. AVX512-BF16 alone multiplies bfloat16 natively too, but the generate job
    ran slower there than in float32 and its batched products round rows differently (BENCHMARKS.md)."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert G.resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert G.resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert G.resolve_dtype("auto", cpu) == torch.bfloat16
    assert G.resolve_dtype("float32", cpu) == torch.float32


def test_plain_decoding_runs_in_bfloat16(tiny_model_dir):
    """The CPU decode loop (buffers, ragged attention, options on the prompt's cache) in the model's dtype."""
    model, tok = G.load_model(tiny_model_dir("llama"), dtype="bfloat16", device="cpu")
    records = predict_language(model, tok, oracle_items("zh"), SETTINGS)
    assert all(len(r["option_loglik"]) == 3 and r["n_tokens"] <= 6 for r in records)
    alone = [predict_language(model, tok, [it], SETTINGS)[0] for it in oracle_items("zh")]
    for r, a in zip(records, alone, strict=True):  # batched as alone, within bfloat16 rounding
        assert r["option_loglik"] == pytest.approx(a["option_loglik"], abs=0.1)
