"""models.<m>.connection_position: where CC-Tuning's p sits (last | release, the released tag_locate.py),
on the release's chat templates (config/chat_templates/release-*.jinja), in training, activations and inference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from crosstune.cc_tuning import connection as cn
from crosstune.cc_tuning.decision import DecisionMaker
from crosstune.cc_tuning.inference import generate_batch
from crosstune.cc_tuning.transform import SHARED, prompt_activations
from crosstune.methods.cc_tuning import CCTuning

TEMPLATES = Path(__file__).resolve().parent.parent / "config" / "chat_templates"
MARKERS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "[INST]", "[/INST]"]


def family_tokenizer(model_dir, template: str, markers: bool = False):
    tok = AutoTokenizer.from_pretrained(model_dir)
    if markers:  # the Llama 3 / Mistral control tokens, as the real vocabularies have them
        tok.add_special_tokens({"additional_special_tokens": MARKERS})
    tok.chat_template = (TEMPLATES / template).read_text()
    return tok


@pytest.mark.parametrize(
    ("template", "marker", "step"),
    [
        ("release-llama3.jinja", "<|end_header_id|>", 1),  # tag_locate.py: the 2nd <|end_header_id|> + 1
        ("release-qwen2.jinja", "<|im_start|>", 1),  # the 3rd <|im_start|> + 1: the "assistant" token
        ("release-mistral.jinja", "[/INST]", -1),  # the 1st [/INST] - 1
    ],
)  # fmt: skip
def test_release_position_per_family(tiny_model_dir, template, marker, step):
    tok = family_tokenizer(tiny_model_dir("llama"), template, markers=True)
    ids = cn.chat_prompt_ids(tok, "Habari?")
    pieces = tok.convert_ids_to_tokens(ids)
    assert cn.tokens_after_p(tok, ids, "last") == 0
    p = len(ids) - 1 - cn.tokens_after_p(tok, ids, "release")
    # the occurrence the release counts is the marker's last one in a one-turn prompt
    occurrences = [i for i, t in enumerate(pieces) if t == marker]
    assert len(occurrences) == {"<|end_header_id|>": 2, "<|im_start|>": 3, "[/INST]": 1}[marker]
    assert p == occurrences[-1] + step
    assert "Habari" in tok.decode(ids[: p + 1])  # p is never before the user's text
    if marker == "<|im_start|>":  # Qwen's vocabulary has "assistant" as one token, the tiny one splits it
        assert tok.decode(ids[p:]) == "assistant\n"


def test_release_templates_render_the_llamafactory_format(tiny_model_dir):
    chat = [{"role": "user", "content": " Habari? "}, {"role": "assistant", "content": "Nzuri."}]
    tok = family_tokenizer(tiny_model_dir("llama"), "release-qwen2.jinja", markers=True)
    kw = {"tokenize": False, "bos_token": "<s>", "eos_token": "</s>"}
    assert tok.apply_chat_template(chat, **kw) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                                   "<|im_start|>user\n Habari? <|im_end|>\n<|im_start|>assistant\n"
                                                   "Nzuri.<|im_end|>")  # fmt: skip
    for name, prompt in [("release-qwen2.jinja", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                          "<|im_start|>user\n Habari? <|im_end|>\n<|im_start|>assistant\n"),
                         ("release-mistral.jinja", "<s>[INST]  Habari?  [/INST]"),
                         ("release-llama3.jinja", "<s><|start_header_id|>user<|end_header_id|>\n\n Habari? <|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n")]:  # fmt: skip
        tok.chat_template = (TEMPLATES / name).read_text()
        assert tok.apply_chat_template(chat[:1], add_generation_prompt=True, **kw) == prompt
        assert tok.apply_chat_template(chat, **kw).startswith(prompt)  # the prompt is a prefix of the whole


def test_release_without_a_marker_is_an_error(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    tok.chat_template = "{{ messages[0]['content'] }}"
    with pytest.raises(ValueError, match="connection_position release"):
        cn.tokens_after_p(tok, cn.chat_prompt_ids(tok, "Habari?"), "release")
    with pytest.raises(ValueError, match="one of last, release"):
        cn.tokens_after_p(tok, [1, 2], "first")


def test_training_and_activations_use_the_position(tiny_model_dir):
    tok = family_tokenizer(tiny_model_dir("qwen2"), "release-qwen2.jinja")
    method = CCTuning()
    pairs = [{"id": "a", "lang": "sw", "instruction": "Jina lako ni nani?", "response": "Ni Amina.",
              "instruction_en": "What is your name?"}]  # fmt: skip
    for position, tail in (("last", "\n"), ("release", "assistant\n")):  # the prompt from p on
        [ex] = method.build_examples(pairs, {**CCTuning.defaults, "connection_position": position}, 0)
        f = method.tokenize(ex, tok, 256, "right")
        prompt, en = cn.chat_prompt_ids(tok, ex["prompt"]), cn.chat_prompt_ids(tok, ex["prompt_en"])
        assert f["input_ids"][: len(prompt)] == prompt and f["en_input_ids"] == en
        assert tok.decode(prompt[f["position"] :]) == tail and tok.decode(en[f["en_position"] :]) == tail
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("qwen2"))
    after = [len(en) - 1 - f["en_position"], len(prompt) - 1 - f["position"]]
    with torch.no_grad(), cn.capture_mlp(model, torch.tensor([f["en_position"]])) as cap:
        model(torch.tensor([en]))
    torch.testing.assert_close(prompt_activations(model, [en, prompt], 0, after)[:1], cap.stacked(), rtol=0, atol=0)


def reference_greedy(model, ids, p, c, n):
    """No cache: every step reruns the whole sequence with c added at p."""
    seq = list(ids)
    for _ in range(n):
        with torch.no_grad(), cn.inject(model, torch.tensor([p]), c):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(ids) :]


@pytest.mark.parametrize("template", ["release-llama3.jinja", "release-qwen2.jinja", "release-mistral.jinja"])
@pytest.mark.parametrize("mode", ["matrix", "oracle"])
def test_inference_fast_path_injects_at_the_release_position(tiny_model_dir, mode, template):
    tok = family_tokenizer(tiny_model_dir("qwen2"), template, markers=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("qwen2"), dtype=torch.float32).eval()
    torch.manual_seed(1)
    model.resize_token_embeddings(len(tok))  # room for the added control tokens
    L, d = cn.num_layers_and_hidden(model)
    torch.manual_seed(0)
    dm = DecisionMaker(d, L, init_std=0.5)
    prompt, en = cn.chat_prompt_ids(tok, "Mji mkuu wa Kenya?"), cn.chat_prompt_ids(tok, "Capital of Kenya?")
    p = len(prompt) - 1 - cn.tokens_after_p(tok, prompt, "release")
    source = prompt if mode == "matrix" else en
    at = len(source) - 1 - cn.tokens_after_p(tok, source, "release")
    with torch.no_grad(), cn.capture_mlp(model, torch.tensor([at])) as cap:
        model(torch.tensor([source]))
    c, _ = dm(cap.stacked(), cn.input_embeddings(model, torch.tensor([prompt[p]])), choice="argmax")
    out = generate_batch(model, tok, [prompt], mode=mode, dm=dm, matrices={SHARED: torch.eye(d)},
                         english_ids=[en], max_new_tokens=6, position="release", eos_token_id=None)  # fmt: skip
    ref = reference_greedy(model, prompt, p, c, 6)
    assert out["tokens"][0] == ref[: len(out["tokens"][0])] and len(out["tokens"][0]) >= 1
