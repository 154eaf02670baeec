"""The connection's hooks on tiny models of every family, against a forward pass built by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from crosstune.cc_tuning import connection as cn

from .cc_tuning_reference import lively, manual_forward
from .conftest import FAMILIES


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    cache = {}

    def get(family):
        if family not in cache:
            cache[family] = lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir(family)), seed=1)
        return cache[family]

    return get


def _ids(tok, text="Habari ya asubuhi? Tell me more."):
    return torch.tensor(cn.chat_prompt_ids(tok, text))


@pytest.mark.parametrize("family", FAMILIES)
def test_injection_equals_hand_built_forward(family, models, tiny_tokenizer):
    model = models(family)
    ids = _ids(tiny_tokenizer)
    p = len(ids) - 4
    vec = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(input_ids=ids[None]).logits[0]
        with cn.inject(model, torch.tensor([p]), vec[None]):
            injected = model(input_ids=ids[None]).logits[0]
        manual, _ = manual_forward(model, ids, p, vec)
        manual_plain, _ = manual_forward(model, ids)
    torch.testing.assert_close(plain, manual_plain, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(injected, manual, rtol=1e-9, atol=1e-9)
    assert torch.equal(injected[:p], plain[:p])  # causal: bit-identical before p
    assert (injected[p:] - plain[p:]).abs().amax(-1).min() > 1e-6  # and changed from p on
    # the hooks are gone after the block
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids[None]).logits[0], plain)


@pytest.mark.parametrize("family", FAMILIES)
def test_capture_equals_hand_built_mlp_outputs(family, models, tiny_tokenizer):
    model = models(family)
    a, b = _ids(tiny_tokenizer), _ids(tiny_tokenizer, "Ni nini?")
    _, mlp_a = manual_forward(model, a)
    _, mlp_b = manual_forward(model, b)
    ids, mask, _ = cn.pad_batch([a.tolist(), b.tolist()], 0, "right")
    positions = torch.tensor([len(a) - 1, len(b) - 2])
    with torch.no_grad(), cn.capture_mlp(model, positions) as cap:
        model(input_ids=ids, attention_mask=mask)
    got = cap.stacked()
    assert got.shape == (2, 2, 64)
    torch.testing.assert_close(got[0], mlp_a[len(a) - 1], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(got[1], mlp_b[len(b) - 2], rtol=1e-9, atol=1e-9)


def test_hooks_removed_after_an_exception(models, tiny_tokenizer):
    model = models("llama")
    with pytest.raises(RuntimeError, match="boom"):
        with cn.capture_mlp(model, torch.tensor([0])), cn.inject(model, torch.tensor([0]), torch.ones(1, 64)):
            raise RuntimeError("boom")
    layers = cn.decoder_layers(model)
    assert not layers[0]._forward_hooks and not any(layer.mlp._forward_hooks for layer in layers)


def test_inject_calls_limit_and_negative_position(models, tiny_tokenizer):
    model = models("qwen2")
    ids = _ids(tiny_tokenizer)[None]
    vec = torch.ones(1, 64, dtype=torch.float64)
    with torch.no_grad():
        with cn.inject(model, torch.tensor([ids.shape[1] - 1]), vec):
            want = model(input_ids=ids).logits
        with cn.inject(model, torch.tensor([-1]), vec, calls=1):
            first = model(input_ids=ids).logits
            second = model(input_ids=ids).logits
        plain = model(input_ids=ids).logits
    assert torch.equal(first, want) and torch.equal(second, plain)


def test_decoder_layers_resolver_error():
    class NoLayers(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Linear(2, 2)

    with pytest.raises(ValueError, match="cannot find the decoder layers of NoLayers"):
        cn.decoder_layers(NoLayers())


def test_position_from_chat_template(tiny_tokenizer):
    out = cn.tokenize_chat(tiny_tokenizer, "Jambo?", "Jambo sana.")
    text = tiny_tokenizer.decode(out["input_ids"][: out["position"] + 1])
    assert text == "<|im_start|>user\nJambo?<|im_end|>\n<|im_start|>assistant\n"  # p: the last prompt token
    answer = [t for t in out["labels"] if t != cn.IGNORE_INDEX]
    assert tiny_tokenizer.decode(answer) == "Jambo sana.<|im_end|>"
    assert out["labels"][: out["position"] + 1] == [cn.IGNORE_INDEX] * (out["position"] + 1)
    assert out["input_ids"][out["position"] + 1 :] == answer


@pytest.mark.parametrize("side", ["left", "right"])
def test_truncation_moves_p_with_the_tokens(tiny_tokenizer, side):
    q, a = "What is the boiling point of water?", "It boils at 100 degrees."
    full = cn.tokenize_chat(tiny_tokenizer, q, a)
    p, n = full["position"], len(full["input_ids"])
    out = cn.tokenize_chat(tiny_tokenizer, q, a, max_length=n - 3, truncation_side=side)
    assert out["input_ids"][out["position"]] == full["input_ids"][p]
    if side == "right":  # the response's end goes
        assert out["input_ids"] == full["input_ids"][: n - 3] and out["position"] == p
    else:  # the prompt's beginning goes
        assert out["input_ids"] == full["input_ids"][3:] and out["position"] == p - 3
    # right: only the prompt fits, nothing to learn; left: the whole prompt (p with it) cut off -> dropped
    assert cn.tokenize_chat(tiny_tokenizer, q, a, max_length=n - p - 1 if side == "left" else p + 1,
                            truncation_side=side) is None  # fmt: skip
    kept = cn.tokenize_chat(tiny_tokenizer, q, a, max_length=n - p if side == "left" else p + 2, truncation_side=side)
    assert kept is not None and kept["position"] == (0 if side == "left" else p)


def test_left_padding_position_ids():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert cn.left_padded_position_ids(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]
