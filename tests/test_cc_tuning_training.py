"""CC-Tuning training: the method's data path, the loss against a manual computation, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from crosstune.cc_tuning.connection import IGNORE_INDEX, input_embeddings
from crosstune.cc_tuning.decision import (
    DecisionMaker,
    gumbel_softmax,
    load_decision_maker,
    save_decision_maker,
)
from crosstune.cc_tuning.training import TrainSettings, cc_tuning_forward, cc_tuning_loss
from crosstune.methods.cc_tuning import CCTuning, TrainDataError

from .cc_tuning_reference import lively, manual_forward

PAIRS = [
    {"id": "s/1#sw", "lang": "sw", "instruction": "Mji mkuu wa Kenya ni upi?", "response": "Nairobi.",
     "instruction_en": "What is the capital of Kenya?", "response_en": "Nairobi.", "source": "s"},
    {"id": "s/2#de", "lang": "de", "instruction": "Wie viele Tage hat eine Woche?",
     "response": "Eine Woche hat sieben Tage.", "instruction_en": "How many days are in a week?",
     "response_en": None, "source": "s"},
    {"id": "s/3", "lang": "en", "instruction": "Name a primary colour.", "response": "Red.",
     "instruction_en": "Name a primary colour.", "response_en": "Red.", "source": "s"},
]  # fmt: skip


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tiny_tokenizer):
    model = lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama")), seed=2, std=0.2)
    method = CCTuning()
    examples = method.build_examples(PAIRS, dict(CCTuning.defaults), seed=0)
    feats = [method.tokenize(ex, tiny_tokenizer, 256, "right") for ex in examples]
    assert all(f is not None for f in feats)
    return model, method, examples, feats, method.collate(feats, tiny_tokenizer)


def test_build_examples(tiny_tokenizer):
    method = CCTuning()
    settings = dict(CCTuning.defaults)
    examples = method.build_examples(PAIRS, settings, 0)
    assert [e["id"] for e in examples] == ["s/1#sw", "s/2#de", "s/3"]  # every language, as sft
    assert examples[0] == {"id": "s/1#sw", "prompt": "Mji mkuu wa Kenya ni upi?", "response": "Nairobi.",
                           "lang": "sw", "kind": "cc_tuning", "prompt_en": "What is the capital of Kenya?"}  # fmt: skip
    assert [e["id"] for e in method.build_examples(PAIRS, dict(settings, languages=["de"]), 0)] == ["s/2#de"]
    # English records: (x, y, x) self-connection triples (the release), or left out
    assert [e["kind"] for e in examples] == ["cc_tuning", "cc_tuning", "self_connection"]
    assert examples[2]["prompt"] == examples[2]["prompt_en"]
    assert [e["id"] for e in method.build_examples(PAIRS, dict(settings, english="none"), 0)] == ["s/1#sw", "s/2#de"]
    with pytest.raises(TrainDataError, match="english must be self or none"):
        method.build_examples(PAIRS, dict(settings, english="both"), 0)
    with pytest.raises(TrainDataError, match="'s/1#sw' .* has no instruction_en"):
        method.build_examples([dict(PAIRS[0], instruction_en=None)], settings, 0)
    with pytest.raises(ValueError, match="english_pass must be one of"):
        method.build_examples(PAIRS, dict(settings, english_pass="half"), 0)
    with pytest.raises(ValueError, match="tau must be a positive number"):
        method.build_examples(PAIRS, dict(settings, tau=0), 0)


def test_tokenize_and_collate(setup, tiny_tokenizer):
    _, _, examples, feats, batch = setup
    f = feats[0]
    assert tiny_tokenizer.decode(f["en_input_ids"]).endswith("What is the capital of Kenya?<|im_end|>\n"
                                                             "<|im_start|>assistant\n")  # fmt: skip
    assert f["en_position"] == len(f["en_input_ids"]) - 1
    assert tiny_tokenizer.decode(f["input_ids"][: f["position"] + 1]).endswith("<|im_start|>assistant\n")
    assert tiny_tokenizer.decode(f["input_ids"][f["position"] + 1 :]) == "Nairobi.<|im_end|>"
    assert CCTuning().tokenize(examples[0], tiny_tokenizer, f["position"] + 1, "right") is None  # no response left
    B = len(feats)
    assert batch["input_ids"].shape[0] == B and batch["en_input_ids"].shape[0] == B
    for b, feat in enumerate(feats):  # right padding: each row starts with its own tokens
        n = len(feat["input_ids"])
        assert batch["input_ids"][b, :n].tolist() == feat["input_ids"]
        assert batch["attention_mask"][b].sum() == n and batch["labels"][b, n:].eq(IGNORE_INDEX).all()
        assert batch["position"][b] == feat["position"] and batch["en_position"][b] == feat["en_position"]


def _force_layer(model, dm, batch, layer):
    """Set W so that W u_b has a margin of 1000 for ``layer`` on every row (Gumbel noise cannot flip it)."""
    with torch.no_grad():
        a = cc_tuning_forward(model, batch, dm, TrainSettings(english_pass="detached"))["activations"]
        rows = torch.arange(a.shape[0])
        e = input_embeddings(model, batch["input_ids"][rows, batch["position"]])
        u = a.mean(1) + e
        Z = torch.zeros(a.shape[0], a.shape[1], dtype=u.dtype)
        Z[:, layer] = 1000.0
        dm.linear.weight.copy_(torch.linalg.lstsq(u, Z).solution.T)  # W u_b = z_b exactly (B < d)
    return a


@pytest.mark.parametrize("layer", [0, 1])
def test_loss_equals_manual_computation(setup, layer):
    model, _, _, feats, batch = setup
    dm = DecisionMaker(64, 2).double()
    _force_layer(model, dm, batch, layer)
    torch.manual_seed(0)
    out = cc_tuning_forward(model, batch, dm, TrainSettings())
    assert out["choice"].argmax(-1).tolist() == [layer] * len(feats)
    # manual: each triple on its own, by hand
    total, count = 0.0, 0
    with torch.no_grad():
        for f in feats:
            _, mlp_en = manual_forward(model, torch.tensor(f["en_input_ids"]))
            c = mlp_en[f["en_position"], layer]
            logits, _ = manual_forward(model, torch.tensor(f["input_ids"]), f["position"], c)
            labels = torch.tensor(f["labels"])
            total += F.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE_INDEX, reduction="sum")
            count += int((labels[1:] != IGNORE_INDEX).sum())
    # the SFT loss arithmetic upcasts the logits to float32
    torch.testing.assert_close(out["loss"].detach().double(), total / count, rtol=1e-6, atol=1e-6)
    torch.manual_seed(0)
    summed = cc_tuning_forward(model, batch, dm, TrainSettings(), num_items_in_batch=4 * count)["loss"]
    torch.testing.assert_close(summed.detach().double(), total / (4 * count), rtol=1e-6, atol=1e-6)


def _grads(model, dm, batch, english_pass):
    model.zero_grad(set_to_none=True)
    dm.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same Gumbel draw in both modes
    out = cc_tuning_forward(model, batch, dm, TrainSettings(english_pass=english_pass))
    if out["activations"].requires_grad:
        out["activations"].retain_grad()
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads, dm.linear.weight.grad.clone()


def test_gradients_faithful_and_detached(setup):
    model, _, _, _, batch = setup
    dm = DecisionMaker(64, 2, init_std=0.1).double()
    faithful, g_f, w_f = _grads(model, dm, batch, "faithful")
    detached, g_d, w_d = _grads(model, dm, batch, "detached")
    assert torch.equal(faithful["choice"], detached["choice"])
    torch.testing.assert_close(faithful["loss"], detached["loss"])
    for w in (w_f, w_d):  # straight-through: W learns although s is one-hot
        assert torch.isfinite(w).all() and w.abs().sum() > 0
    # faithful: the English pass is part of the graph and adds its share to the model's gradients
    assert faithful["activations"].requires_grad and faithful["activations"].grad.abs().sum() > 0
    assert not detached["activations"].requires_grad
    name = "model.layers.1.mlp.down_proj.weight"
    assert not torch.allclose(g_f[name], g_d[name])
    model.zero_grad(set_to_none=True)


def test_compute_loss_via_method_and_extra_modules(setup):
    model, method, _, _, batch = setup
    modules = torch.nn.ModuleDict(method.extra_modules(model, {}))
    dm = modules["decision_maker"]
    assert tuple(dm.linear.weight.shape) == (2, 64) and dm.linear.bias is None
    modules.double()
    torch.manual_seed(3)
    loss = method.compute_loss(model, batch, modules, dict(CCTuning.defaults, english_pass="detached", tau=0.5))
    torch.manual_seed(3)
    again = cc_tuning_loss(model, batch, dm, TrainSettings(english_pass="detached", tau=0.5))
    assert loss.ndim == 0 and torch.isfinite(loss) and torch.equal(loss, again)


def test_gumbel_softmax_matches_torch():
    logits = torch.randn(5, 7, requires_grad=True)
    torch.manual_seed(11)
    ours = gumbel_softmax(logits, tau=0.7, hard=True)
    torch.manual_seed(11)
    ref = F.gumbel_softmax(logits, tau=0.7, hard=True)
    assert torch.equal(ours, ref) and ours.sum(-1).eq(1).all()
    (g1,) = torch.autograd.grad((ours * torch.arange(7.0)).sum(), logits)
    (g2,) = torch.autograd.grad((ref * torch.arange(7.0)).sum(), logits)
    assert torch.equal(g1, g2) and g1.abs().sum() > 0


def test_decision_maker_save_reload(tmp_path):
    dm = DecisionMaker(64, 3, init_std=0.5)
    a, e = torch.randn(4, 3, 64), torch.randn(4, 64)
    path = tmp_path / "decision_maker.safetensors"
    save_decision_maker(dm, path)
    back = load_decision_maker(path)
    assert torch.equal(back.linear.weight, dm.linear.weight)
    c1, s1 = dm(a, e, choice="argmax")
    c2, s2 = back(a, e, choice="argmax")
    assert torch.equal(c1, c2) and torch.equal(s1, s2)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(dm(a, e, generator=g1)[1], back(a, e, generator=g2)[1])
    assert torch.equal(c1, a[torch.arange(4), s1.argmax(-1)])  # c is exactly the chosen layer's a_l


def test_gradient_checkpointing_is_refused(tiny_model_dir, tiny_tokenizer, setup):
    _, _, _, _, batch = setup
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("qwen2"))
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        cc_tuning_loss(model, batch, DecisionMaker(64, 2))
    settings = dict(CCTuning.defaults, train={"gradient_checkpointing": True})
    with pytest.raises(TrainDataError, match="does not support train.gradient_checkpointing"):
        CCTuning().prepare(model, tiny_tokenizer, [], settings)
