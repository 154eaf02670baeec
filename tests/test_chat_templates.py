"""Chat templates for base models (models.<name>.chat_template / eos_token; config/chat_templates/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from crosstune.models import set_chat_template

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "config" / "chat_templates"
CHAT = [{"role": "user", "content": "Habari?"}, {"role": "assistant", "content": "Nzuri sana."}]


@pytest.fixture
def hub_like_dir(tmp_path, tiny_tokenizer):
    """A model directory whose files are symlinks into a read-only 'hub cache', as base_model links them."""
    cache, model = tmp_path / "cache", tmp_path / "model"
    tiny_tokenizer.save_pretrained(cache)
    (cache / "generation_config.json").write_text(json.dumps({"eos_token_id": 2, "bos_token_id": 1}))
    model.mkdir()
    for f in sorted(cache.iterdir()):
        (model / f.name).symlink_to(f)
    return cache, model


def test_template_and_eos_replace_links_not_the_cache(hub_like_dir):
    cache, model = hub_like_dir
    before = {f.name: f.read_bytes() for f in cache.iterdir()}
    tok = AutoTokenizer.from_pretrained(model)
    eos = "<pad>"  # any token of the tiny vocabulary stands in for <|eot_id|>
    info = set_chat_template(model, (TEMPLATES / "chatml.jinja").read_text(), eos)
    assert {f.name: f.read_bytes() for f in cache.iterdir()} == before  # the cache is untouched
    for name in ("chat_template.jinja", "tokenizer_config.json", "generation_config.json"):
        assert not (model / name).is_symlink()
    new = AutoTokenizer.from_pretrained(model)
    assert new.eos_token == eos and info["eos_token_id"] == tok.convert_tokens_to_ids(eos)
    assert json.loads((model / "generation_config.json").read_text())["eos_token_id"] == [2, info["eos_token_id"]]
    text = new.apply_chat_template(CHAT, tokenize=False)
    assert text == "<|im_start|>user\nHabari?<|im_end|>\n<|im_start|>assistant\nNzuri sana.<|im_end|>\n"


def test_unknown_eos_token_is_an_error(hub_like_dir):
    with pytest.raises(ValueError, match="not a token"):
        set_chat_template(hub_like_dir[1], None, "<|no such token|>")


@pytest.mark.parametrize(
    ("name", "prompt", "full_end"),
    [
        ("llama3.jinja", "<|start_header_id|>user<|end_header_id|>\n\nHabari?<|eot_id|>"
         "<|start_header_id|>assistant<|end_header_id|>\n\n", "Nzuri sana.<|eot_id|>"),
        ("mistral.jinja", "[INST] Habari?[/INST]", " Nzuri sana.</s>"),
        ("chatml.jinja", "<|im_start|>user\nHabari?<|im_end|>\n<|im_start|>assistant\n", "Nzuri sana.<|im_end|>\n"),
    ],
)  # fmt: skip
def test_bundled_templates_render_the_family_format(tiny_tokenizer, name, prompt, full_end):
    tok = tiny_tokenizer
    template = (TEMPLATES / name).read_text()
    bos = tok.bos_token or ""
    eos = "</s>" if name == "mistral.jinja" else tok.eos_token
    kw = {"chat_template": template, "tokenize": False, "bos_token": bos, "eos_token": eos}
    p = tok.apply_chat_template(CHAT[:1], add_generation_prompt=True, **kw)
    full = tok.apply_chat_template(CHAT, **kw)
    start = bos if name != "chatml.jinja" else ""
    assert p == start + prompt
    assert full.startswith(p) and full == p + full_end  # the prompt is a prefix: p is its last token


def test_mistral_template_puts_the_system_message_first(tiny_tokenizer):
    chat = [{"role": "system", "content": "Be brief."}, *CHAT]
    out = tiny_tokenizer.apply_chat_template(chat, chat_template=(TEMPLATES / "mistral.jinja").read_text(),
                                             tokenize=False, bos_token="<s>", eos_token="</s>")  # fmt: skip
    assert out == "<s>[INST] Be brief.\n\nHabari?[/INST] Nzuri sana.</s>"
