"""Fast batched inference with the connection = the released code's slow path, token for token."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from crosstune.cc_tuning import inference as inf
from crosstune.cc_tuning.connection import chat_prompt_ids
from crosstune.cc_tuning.decision import DecisionMaker, load_decision_maker, save_decision_maker
from crosstune.cc_tuning.transform import load_transform, save_transform

from .cc_tuning_reference import lively, slow_generate
from .conftest import FAMILIES

PROMPTS = ["Mji mkuu wa Kenya ni upi?", "Hi", "Wie viele Tage hat eine Woche? Bitte antworte kurz.", "¿Qué hora es?"]
ENGLISH = ["What is the capital of Kenya?", "Hi", "How many days are in a week? Answer briefly.", "What time is it?"]
LANGS = ["sw", "en", "de", "es"]
NEW = 6


def _setup(tiny_model_dir, family, seed=5):
    model = lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir(family)), seed=seed)
    g = torch.Generator().manual_seed(seed)
    dm = DecisionMaker(64, 2, init_std=None).double()
    dm.linear.weight.data = torch.randn(2, 64, generator=g, dtype=torch.float64)
    X = {"all": 0.3 * torch.randn(64, 64, generator=g, dtype=torch.float64)}
    return model, dm, X


@pytest.mark.parametrize("family", FAMILIES)
def test_fast_equals_slow_reference(family, tiny_model_dir, tiny_tokenizer):
    model, dm, X = _setup(tiny_model_dir, family)
    tok = tiny_tokenizer
    ids = [chat_prompt_ids(tok, p) for p in PROMPTS]
    en = [chat_prompt_ids(tok, p) for p in ENGLISH]
    outs = {}
    for mode in ("matrix", "oracle", "none"):
        fast = inf.generate(model, tok, PROMPTS, mode=mode, dm=dm, matrices=X, langs=LANGS, english_prompts=ENGLISH,
                            batch_size=3, max_new_tokens=NEW)  # fmt: skip
        slow = [slow_generate(model, tok, dm, i, mode, X["all"], e, max_new_tokens=NEW) for i, e in zip(ids, en, strict=True)]
        assert [r["tokens"] for r in fast] == slow, mode
        assert all(len(t) > 0 for t in slow)
        outs[mode] = slow
        if mode == "matrix":
            assert {r["layer"] for r in fast} == {0, 1}  # both layers get chosen
    assert outs["matrix"] != outs["none"] and outs["oracle"] != outs["none"]  # the connection matters


def test_none_mode_is_plain_generate(tiny_model_dir, tiny_tokenizer):
    model, _, _ = _setup(tiny_model_dir, "qwen2")
    got = inf.generate(model, tiny_tokenizer, PROMPTS, mode="none", batch_size=4, max_new_tokens=NEW)
    for prompt, r in zip(PROMPTS, got, strict=True):
        ids = torch.tensor([chat_prompt_ids(tiny_tokenizer, prompt)])
        seq = model.generate(input_ids=ids, max_new_tokens=NEW, do_sample=False)[0, ids.shape[1] :].tolist()
        eos = tiny_tokenizer.eos_token_id
        assert r["tokens"] == (seq[: seq.index(eos)] if eos in seq else seq)
        assert r["layer"] is None and r["text"] == tiny_tokenizer.decode(r["tokens"], skip_special_tokens=True)


def test_decision_maker_choice_in_fast_path(tiny_model_dir, tiny_tokenizer):
    """The layers the fast path reports are the argmax of W u on the mapped activations."""
    model, dm, X = _setup(tiny_model_dir, "llama")
    from .cc_tuning_reference import slow_connection

    got = inf.generate(model, tiny_tokenizer, PROMPTS, dm=dm, matrices=X, langs=LANGS, max_new_tokens=1)
    want = [slow_connection(model, dm, chat_prompt_ids(tiny_tokenizer, p), "matrix", X["all"])[1] for p in PROMPTS]
    assert [r["layer"] for r in got] == want and len(set(want)) == 2


def test_gumbel_choice_is_seeded(tiny_model_dir, tiny_tokenizer):
    model, dm, X = _setup(tiny_model_dir, "mistral")
    dm.linear.weight.data.mul_(1e-3)  # near-uniform: the noise decides
    runs = [inf.generate(model, tiny_tokenizer, PROMPTS * 3, dm=dm, matrices=X, langs=LANGS * 3,
                         layer_choice="gumbel", seed=s, max_new_tokens=2) for s in (0, 0, 1)]  # fmt: skip
    layers = [[r["layer"] for r in run] for run in runs]
    assert layers[0] == layers[1] and layers[0] != layers[2] and len(set(layers[0])) == 2


def test_per_language_matrices_and_save_reload(tiny_model_dir, tiny_tokenizer, tmp_path):
    model, dm, X = _setup(tiny_model_dir, "gemma")
    g = torch.Generator().manual_seed(9)
    per = {lang: 0.3 * torch.randn(64, 64, generator=g, dtype=torch.float64) for lang in LANGS}
    kw = dict(mode="matrix", langs=LANGS, batch_size=2, max_new_tokens=NEW)
    first = inf.generate(model, tiny_tokenizer, PROMPTS, dm=dm, matrices=per, **kw)
    for prompt, lang, r in zip(PROMPTS, LANGS, first, strict=True):
        ids = chat_prompt_ids(tiny_tokenizer, prompt)
        assert r["tokens"] == slow_generate(model, tiny_tokenizer, dm, ids, "matrix", per[lang], max_new_tokens=NEW)
    model.save_pretrained(tmp_path / "model")
    save_decision_maker(dm, tmp_path / "decision_maker.safetensors")
    save_transform(tmp_path / "transform.safetensors", per)
    model2 = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float64)
    dm2 = load_decision_maker(tmp_path / "decision_maker.safetensors")
    again = inf.generate(model2, tiny_tokenizer, PROMPTS, dm=dm2, matrices=load_transform(tmp_path / "transform.safetensors"), **kw)
    assert again == first


def test_mode_errors(tiny_model_dir, tiny_tokenizer):
    model, dm, X = _setup(tiny_model_dir, "llama")
    with pytest.raises(ValueError, match="mode must be one of"):
        inf.generate(model, tiny_tokenizer, PROMPTS, mode="magic", dm=dm)
    with pytest.raises(ValueError, match="needs the transform matrices"):
        inf.generate(model, tiny_tokenizer, PROMPTS, mode="matrix", dm=dm)
    with pytest.raises(ValueError, match="needs the transform matrices and one language per prompt"):
        inf.generate(model, tiny_tokenizer, PROMPTS, mode="matrix", dm=dm, matrices={"sw": X["all"]})
    shared = inf.generate(model, tiny_tokenizer, PROMPTS, mode="matrix", dm=dm, matrices=X, max_new_tokens=2)
    assert shared == inf.generate(model, tiny_tokenizer, PROMPTS, mode="matrix", dm=dm, matrices=X, langs=LANGS,
                                  max_new_tokens=2)  # fmt: skip
    with pytest.raises(ValueError, match="needs one English prompt"):
        inf.generate(model, tiny_tokenizer, PROMPTS, mode="oracle", dm=dm)
