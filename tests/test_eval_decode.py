"""The CPU decoding loop (evaluate/decode.py) equals model.generate, token for token."""

from __future__ import annotations

import pytest
import torch

from crosstune.evaluate import decode as D
from crosstune.evaluate import generation as G

from .test_eval_generation import PROMPTS


@pytest.fixture(scope="module")
def family_models(tiny_model_dir):
    loaded = {}

    def get(family):
        if family not in loaded:
            loaded[family] = G.load_model(tiny_model_dir(family), dtype="float32", device="cpu")
        return loaded[family]

    return get


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gemma"])
def test_greedy_decode_equals_generate(family_models, family):
    model, tok = family_models(family)
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS]
    # shared prefixes of every kind: a duplicate, a prompt that is a prefix of another, a common head
    ids += [ids[0], ids[3][: len(ids[3]) - 4], ids[3] + ids[1]]
    config = G._generation_config(model, tok, 10)
    assert D.supported(model, config, max(map(len, ids)) + 10)  # mistral: its window holds the sequence
    reference = G.generate_one_by_one(model, tok, ids, max_new_tokens=10)
    for reuse in (True, False):
        assert D.greedy_decode(model, ids, 10, config.eos_token_id, reuse_prefix=reuse) == reference
    # the prompt passes ran fewer tokens than the prompts hold: shared prefixes ran once
    ran = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: ran.append(kw["input_ids"].shape[1]), with_kwargs=True)
    try:
        first = D.greedy_decode(model, ids, 1, config.eos_token_id, reuse_prefix=True)
        assert first == [(r[:1], "length" if r else "eos") for r, _ in reference]
    finally:
        hook.remove()
    assert len(ran) == len(ids) and sum(ran) <= sum(map(len, ids)) - len(ids[0]) - len(ids[3]) + 6
    # rows that stop early leave the batch: make the first new token of three prompts an eos id
    eos = config.eos_token_id + [reference[k][0][0] for k in (1, 4, 6) if reference[k][0]]
    got = D.greedy_decode(model, ids, 10, eos)
    for (new, why), (ref, _) in zip(got, reference, strict=True):
        cut = next((k for k, t in enumerate(ref) if t in eos), None)
        assert (new, why) == ((ref, "length") if cut is None else (ref[:cut], "eos"))
    assert sum(why == "eos" for _, why in got) >= 3


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_bfloat16_logits_equal_one_by_one_bit_for_bit(tiny_model_dir, family):
    """In bfloat16 every logit of the batched loop is the one-by-one loop's, bit for bit: each row's
    operations are its own and a decode step's matrix product of a few rows rounds each row as a
    one-row product (not so with masked attention over the padding, or with prefix reuse's shorter
    prompt pass; in float32 a batched product differs from a one-row one in the last bit)."""
    from transformers import GenerationConfig

    model, tok = G.load_model(tiny_model_dir(family), dtype="bfloat16", device="cpu")
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS]
    ids += [ids[0], ids[3][: len(ids[3]) - 4], ids[3] + ids[1]]
    n = 8  # no eos: every row decodes every step, so decode step s holds all prompts in order
    config = GenerationConfig(do_sample=False, max_new_tokens=n, eos_token_id=None, pad_token_id=0,
                              output_logits=True, return_dict_in_generate=True)  # fmt: skip
    reference = []
    for p in ids:  # generate's logits are the last position's, in float32
        x = torch.tensor([p])
        reference.append(torch.cat(model.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                                  generation_config=config).logits))  # fmt: skip
    calls = []
    hook = model.lm_head.register_forward_hook(lambda m, a, out: calls.append(out[:, -1].float()))
    try:
        D.greedy_decode(model, ids, n, [])
    finally:
        hook.remove()
    assert len(calls) == len(ids) + n - 1  # one prompt pass per prompt, then n - 1 decode steps
    order = sorted(range(len(ids)), key=lambda i: ids[i])  # prompt passes run in lexicographic order
    for i, ref in enumerate(reference):
        ours = torch.stack([calls[order.index(i)][0]] + [calls[len(ids) + s][i] for s in range(n - 1)])
        assert torch.equal(ours, ref), f"prompt {i}"


def test_unsupported_configs_fall_back_to_generate(family_models):
    model, tok = family_models("mistral")
    config = G._generation_config(model, tok, 10)
    assert not D.supported(model, config, model.config.sliding_window + 1)  # window too short
    model, tok = family_models("llama")
    assert D.supported(model, config, 100)
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS[:4]]
    before = model.generation_config.repetition_penalty
    model.generation_config.repetition_penalty = 1.5  # a logits processor generate applies
    try:
        assert not D.supported(model, G._generation_config(model, tok, 8), 100)
        reference = G.generate_one_by_one(model, tok, ids, 8)
        assert G.greedy_generate(model, tok, ids, 8, batch_size=4) == reference
    finally:
        model.generation_config.repetition_penalty = before


def test_reserved_layer_writes_in_place_and_grows():
    keys = torch.zeros(2, 1, 4, 3)
    layer = D.ReservedLayer(keys, torch.zeros(2, 1, 4, 3), length=2)
    k, v = layer.update(torch.ones(2, 1, 1, 3), 2 * torch.ones(2, 1, 1, 3))
    assert k.shape == (2, 1, 3, 3) and layer.key_room is keys and keys[:, :, 2].eq(1).all()
    k, v = layer.update(torch.ones(2, 1, 2, 3), torch.ones(2, 1, 2, 3))  # 5 > room 4: grows
    assert k.shape == (2, 1, 5, 3) and layer.get_seq_length() == 5 and v[:, :, 2].eq(2).all()
    layer.select([1], start=1)
    assert layer.keys.shape == (1, 1, 4, 3) and layer.length == 4


def test_generate_and_score_equals_separate_calls(family_models):
    model, tok = family_models("llama")
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS[:5]]
    conts = [[G.encode(tok, o) for o in ("yes", "no", "(2) no, it is not")] if k % 2 == 0 else []
             for k in range(len(ids))]  # fmt: skip
    # score batch 2: three options run in two chunks, each on its own copy of the prompt's cache
    outputs, scores = G.generate_and_score(model, tok, ids, conts, 6, batch_size=3, score_batch_size=2)
    assert outputs == G.generate_one_by_one(model, tok, ids, 6)
    pairs = [(ids[k], c) for k in range(len(ids)) for c in conts[k]]
    expected = iter(G.token_logliks(model, tok, pairs))
    for k in range(len(ids)):
        assert len(scores[k]) == len(conts[k])
        for total, greedy in scores[k]:
            ref_total, ref_greedy = next(expected)
            assert total == pytest.approx(ref_total, abs=1e-4) and greedy == ref_greedy


def test_predict_language_scores_options_once_per_prompt(family_models):
    from crosstune.evaluate.predict import option_continuations, predict_language

    from .eval_items import nli_items

    model, tok = family_models("llama")
    items = nli_items("zh")
    settings = {"generation": {"max_new_tokens": 5, "batch_size": 2},
                "likelihood": {"enabled": True, "continuation": "text", "batch_size": 2}}  # fmt: skip
    passes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: passes.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        records = predict_language(model, tok, items, settings)
    finally:
        hook.remove()
    prompt_tokens = sum(r["prompt_tokens"] for r in records)
    assert sum(s[0] * s[1] for s in passes if s[1] > 1) < 2 * prompt_tokens  # no second prompt pass
    texts = [G.chat_text(tok, it["prompt"]) for it in items]
    requests = [(t, o) for t, it in zip(texts, items, strict=True) for o in option_continuations(it, "text")]
    expected = iter(G.option_logliks(model, tok, requests))
    for r in records:
        for total, greedy in zip(r["option_loglik"], r["option_greedy"], strict=True):
            ref_total, ref_greedy = next(expected)
            assert total == pytest.approx(ref_total, abs=1e-4) and greedy == ref_greedy


def test_reserved_layer_select_moves_rows_up_in_place():
    keys = torch.arange(4.0)[:, None, None, None].expand(4, 1, 5, 2).clone()  # row r holds r everywhere
    layer = D.ReservedLayer(keys, keys.clone(), length=3)
    layer.select([1, 3], start=1, firsts=[1, 2])  # row 3's real positions start at column 2
    assert layer.key_room.data_ptr() == keys[0, :, 1:].data_ptr()  # the same buffer
    assert layer.keys.shape == (2, 1, 2, 2) and layer.keys[:, 0, :, 0].tolist() == [[1.0, 1.0], [1.0, 3.0]]
    layer.batch_select_indices(torch.tensor([1]))
    assert layer.values[:, 0, :, 0].tolist() == [[1.0, 3.0]] and layer.get_seq_length() == 2


def test_decoder_setting_picks_the_loop_and_names_the_key(family_models, tiny_model_dir, monkeypatch, caplog):
    from crosstune.evaluate.predict import predict_language

    from .eval_items import nli_items

    model, tok = family_models("llama")
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS[:4]]
    reference = G.generate_one_by_one(model, tok, ids, 6)
    calls = []
    real = D.greedy_decode
    monkeypatch.setattr(D, "greedy_decode", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    assert G.greedy_generate(model, tok, ids, 6, batch_size=4) == reference
    assert len(calls) == 1 and calls[0]["reuse_prefix"] is False  # exact by default, no prefix reuse
    # padded: model.generate batches (in float32 the same tokens), the decode loop is not called
    assert G.greedy_generate(model, tok, ids, 6, batch_size=4, decoder="padded") == reference
    assert len(calls) == 1
    with pytest.raises(ValueError, match="evaluation.generation.decoder: 'fast'"):
        G.greedy_generate(model, tok, ids, 6, decoder="fast")
    # the rule's settings reach the library
    settings = {"generation": {"max_new_tokens": 3, "batch_size": 2, "decoder": "exact", "reuse_prefix": True},
                "likelihood": {"enabled": False, "continuation": "text", "batch_size": 2}}  # fmt: skip
    predict_language(model, tok, nli_items("zh")[:2], settings)
    assert calls[-1]["reuse_prefix"] is True
    settings["generation"]["decoder"] = "padded"
    n = len(calls)
    records = predict_language(model, tok, nli_items("zh")[:2], settings)
    assert len(calls) == n and len(records) == 2


def test_exact_rows_by_dtype_and_cpu(family_models, tiny_model_dir, monkeypatch):
    """Decode steps on a CPU in half precision take at most the rows whose products round each row
    as alone: 32 in bfloat16 with AMX, else one; float32 keeps the batch size."""
    fp32, _ = family_models("llama")
    bf16, _ = G.load_model(tiny_model_dir("llama"), dtype="bfloat16", device="cpu")
    fp16, _ = G.load_model(tiny_model_dir("llama"), dtype="float16", device="cpu")
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx, raising=False)
        assert D.exact_rows(fp32, 40) == 40 and D.exact_rows(fp16, 40) == 1
        assert D.exact_rows(bf16, 40) == (32 if amx else 1) and D.exact_rows(bf16, 16) == (16 if amx else 1)


def test_bfloat16_decode_steps_take_at_most_the_exact_rows(family_models, tiny_model_dir, monkeypatch, caplog):
    model, tok = family_models("llama")
    bf16, _ = G.load_model(tiny_model_dir("llama"), dtype="bfloat16", device="cpu")
    ids = [G.encode(tok, G.chat_text(tok, p)) for p in PROMPTS[:5]]
    reference = G.generate_one_by_one(bf16, tok, ids, 4)
    sizes, asked = [], []
    real = D.greedy_decode
    monkeypatch.setattr(D, "greedy_decode", lambda m, prompts, *a, **kw: sizes.append(len(prompts)) or real(m, prompts, *a, **kw))
    monkeypatch.setattr(D, "exact_rows", lambda m, limit: asked.append((m.dtype, limit)) or 2)
    with caplog.at_level("INFO", logger="crosstune.evaluate.generation"):
        assert G.greedy_generate(bf16, tok, ids, 4, batch_size=4) == reference
    assert asked == [(torch.bfloat16, 4)] and sizes and max(sizes) == 2 and sum(sizes) == 5
    assert "batch_size 4 -> 2" in caplog.text
