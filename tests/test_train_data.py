"""Data side of training: label masking, each method's data mix, packing, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from crosstune.methods import METHODS, TrainDataError, get_method
from crosstune.methods.base import causal_lm_loss, pad_batch
from crosstune.train import data

from .train_helpers import seed_pairs, settings

LANGS = ("ar", "hi", "sw", "zh", "ru")


@pytest.fixture(scope="module")
def pairs():
    return seed_pairs(items=10)  # 10 English items, each in 5 more languages: 60 records


def mix(spec, pairs, seed=0):
    s = settings(spec, name="m")
    return data.build_examples(get_method(s["type"]), pairs, s, seed)


# --------------------------------------------------------------------------- label masking
def test_labels_cover_exactly_the_response_and_eos(tiny_tokenizer):
    ex = {"id": "x", "prompt": "Name a colour.", "response": "Blue is a colour."}
    f = get_method("sft").tokenize(ex, tiny_tokenizer, max_length=512, truncation_side="right")
    prompt = tiny_tokenizer.apply_chat_template([{"role": "user", "content": ex["prompt"]}],
                                                add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]  # fmt: skip
    n = len(prompt)
    assert f["input_ids"][:n] == list(prompt)
    assert f["labels"][:n] == [-100] * n
    target = [t for t in f["labels"] if t != -100]
    assert tiny_tokenizer.decode(target) == "Blue is a colour.<|im_end|>"
    assert f["input_ids"][n:] == target
    # the templated conversation is the model's own chat template, token for token
    full = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": ex["prompt"]}, {"role": "assistant", "content": ex["response"]}],
        tokenize=True, return_dict=True)["input_ids"]  # fmt: skip
    assert list(full[: len(f["input_ids"])]) == f["input_ids"]


def test_only_response_tokens_reach_the_loss(tiny_tokenizer):
    method = get_method("sft")
    feats = [method.tokenize({"id": str(i), "prompt": p, "response": r}, tiny_tokenizer, 512, "right")
             for i, (p, r) in enumerate([("Say hi.", "Hi there."), ("Count to three please.", "One two three.")])]  # fmt: skip
    batch = pad_batch(feats, tiny_tokenizer.pad_token_id)
    logits = torch.randn(*batch["input_ids"].shape, len(tiny_tokenizer), requires_grad=True)
    loss = causal_lm_loss(logits, batch["labels"])
    loss.backward()
    # position t predicts token t+1: gradient exactly where the next token is a response token
    predicts_response = torch.zeros(batch["input_ids"].shape, dtype=torch.bool)
    predicts_response[:, :-1] = batch["labels"][:, 1:] != -100
    touched = logits.grad.abs().sum(-1) > 0
    assert torch.equal(touched, predicts_response)
    # and the value is the mean cross-entropy over those tokens (sum / count)
    lp = torch.log_softmax(logits.detach()[:, :-1], -1)
    mask = batch["labels"][:, 1:] != -100
    picked = lp.gather(-1, batch["labels"][:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(loss, -(picked * mask).sum() / mask.sum())
    assert torch.allclose(causal_lm_loss(logits.detach(), batch["labels"], num_items_in_batch=mask.sum() * 2), loss / 2)


def test_truncation_sides(tiny_tokenizer):
    method = get_method("sft")
    ex = {"id": "x", "prompt": "Please describe the sea in one long sentence.", "response": "The sea is wide and deep."}
    full = method.tokenize(ex, tiny_tokenizer, 512, "right")
    n_prompt = full["labels"].count(-100)
    right = method.tokenize(ex, tiny_tokenizer, n_prompt + 2, "right")
    assert right["input_ids"] == full["input_ids"][: n_prompt + 2]
    left = method.tokenize(ex, tiny_tokenizer, 6, "left")
    assert left["input_ids"] == full["input_ids"][-6:] and left["labels"] == full["labels"][-6:]
    assert method.tokenize(ex, tiny_tokenizer, n_prompt + 1, "right")["labels"][-1] != -100  # one target left
    assert method.tokenize(ex, tiny_tokenizer, n_prompt, "right") is None  # no target left


# --------------------------------------------------------------------------- data mixes
def test_sft_mixes_every_language(pairs):
    ex = mix({"type": "sft"}, pairs)
    assert len(ex) == 60
    assert data.composition(ex) == {"sft": {lang: 10 for lang in ("en", *LANGS)}}
    sw = next(e for e in ex if e["id"] == "seed/seed-001#sw")
    rec = next(p for p in pairs if p["id"] == "seed/seed-001#sw")
    assert (sw["prompt"], sw["response"]) == (rec["instruction"], rec["response"])
    only = mix({"type": "sft", "languages": ["en", "sw"]}, pairs)
    assert data.composition(only) == {"sft": {"en": 10, "sw": 10}}


def test_sft_en_is_english_only(pairs):
    ex = mix({"type": "sft_en"}, pairs)
    assert data.composition(ex) == {"sft": {"en": 10}}


def test_sft_all_pairs_every_non_english_record_with_its_english_copy(pairs):
    ex = mix({"type": "sft_all"}, pairs)
    assert data.composition(ex) == {"en_copy": {"en": 50}, "sft": {lang: 10 for lang in LANGS}}
    copy = next(e for e in ex if e["id"] == "seed/seed-003#zh|en_copy")
    en = next(p for p in pairs if p["id"] == "seed/seed-003")
    assert (copy["prompt"], copy["response"]) == (en["instruction"], en["response"])
    per_item = mix({"type": "sft_all", "english_copies": "per_item"}, pairs)
    assert data.composition(per_item) == {"en_copy": {"en": 10}, "sft": {lang: 10 for lang in LANGS}}
    # metrics.json states how often the mix repeats an example: per_record copies each English item 5 times
    assert data.distinct(ex) == {"en_copy": 10, "sft": 50} and data.distinct(per_item) == {"en_copy": 10, "sft": 50}


def test_sft_mt_adds_one_translation_task_per_non_english_record(pairs):
    ex = mix({"type": "sft_mt"}, pairs)
    assert data.composition(ex) == {"mt": {"en": 50}, "sft": {lang: 10 for lang in ("en", *LANGS)}}
    mt = next(e for e in ex if e["id"] == "seed/seed-002#hi|mt")
    hi = next(p for p in pairs if p["id"] == "seed/seed-002#hi")
    assert mt["prompt"] == "Translate the following into English.\n" + hi["instruction"]
    assert mt["response"] == hi["instruction_en"]


@pytest.mark.parametrize("mode", ["en2x", "x2en", "x2x", "x2x_split", "translation", "x2x+translation"])
def test_crossin_modes(pairs, mode):
    ex = mix({"type": "crossin", "mode": mode, "size": 25}, pairs, seed=7)
    base = [e for e in ex if e["kind"] == "sft"]
    drawn = [e for e in ex if e["kind"] != "sft"]
    assert data.composition(base) == {"sft": {"en": 10}}  # base: the English records
    per_draw = {"x2x": 2, "x2x+translation": 3}.get(mode, 1)
    assert len(drawn) == 25 * per_draw and len({e["id"].split("|")[0] for e in drawn}) == 25  # without replacement
    if per_draw > 1:  # the release: every draw emits each kind, grouped by kind
        records = [e["id"].split("|")[0] for e in drawn]
        assert records[:25] == records[25:50] and len(set(e["id"] for e in drawn)) == len(drawn)
    kinds = {e["kind"]: 0 for e in drawn}
    for e in drawn:
        kinds[e["kind"]] += 1
        rec = next(p for p in pairs if p["id"] == e["id"].split("|")[0])
        t = rec["lang"]
        if e["kind"] == "en2x":
            assert (e["prompt"], e["response"], e["lang"]) == (f"{rec['instruction_en']}\n[{t}]", rec["response"], t)
        elif e["kind"] == "x2en":
            assert (e["prompt"], e["response"], e["lang"]) == (f"{rec['instruction']}\n[en]", rec["response_en"], "en")
        else:
            assert e["prompt"] == "Translate the following sentence into English.\n" + rec["instruction"]
            assert e["response"] == rec["instruction_en"]
    expected = {"x2x_split": {"en2x": 13, "x2en": 12}, "x2x": {"en2x": 25, "x2en": 25},
                "x2x+translation": {"en2x": 25, "x2en": 25, "translation": 25}}.get(mode, {mode: 25})  # fmt: skip
    assert kinds == expected


def test_crossin_sampling_is_seeded_and_sized(pairs):
    a = mix({"type": "crossin", "size": 20}, pairs, seed=1)
    assert a == mix({"type": "crossin", "size": 20}, pairs, seed=1)
    assert a != mix({"type": "crossin", "size": 20}, pairs, seed=2)
    assert mix({"type": "crossin", "size": 20, "seed": 1}, pairs, seed=99) == a  # its own seed wins
    every = mix({"type": "crossin", "mode": "x2en", "base": "none"}, pairs)
    assert len(every) == 50 and {e["kind"] for e in every} == {"x2en"}
    assert len(mix({"type": "crossin", "size": 5, "base": "all"}, pairs)) == 70  # 60 records + 5 draws x 2
    split = mix({"type": "crossin", "size": 5, "mode": "x2x_split"}, pairs)
    assert math.ceil(5 / 2) == sum(e["kind"] == "en2x" for e in split)
    ours = mix({"type": "crossin", "size": 5, "mode": "en2x", "tag_template": "[{lang}] {instruction}"}, pairs)
    assert all(e["prompt"].startswith(f"[{e['lang']}] ") for e in ours if e["kind"] == "en2x")
    with pytest.raises(TrainDataError, match=r"method 'm' \(type 'crossin'\): size 51 is larger than the 50"):
        mix({"type": "crossin", "size": 51}, pairs)


def test_every_registered_method_builds_a_mix(pairs):
    for kind in METHODS:
        assert mix({"type": kind}, pairs), kind


# --------------------------------------------------------------------------- packing
def test_packed_rows_lose_nothing_across_boundaries(tiny_tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama")).eval()
    method = get_method("sft")
    examples = mix({"type": "sft"}, seed_pairs(items=2))[:6]
    feats = [method.tokenize(e, tiny_tokenizer, 512, "right") for e in examples]
    rows = data.pack(feats, max_length=400, seed=0)
    assert len(rows) < len(feats)
    assert sorted(len(r["input_ids"]) for r in rows) and all(len(r["input_ids"]) <= 400 for r in rows)
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(f["input_ids"]) for f in feats)
    with torch.no_grad():
        unpacked = pad_batch(feats, tiny_tokenizer.pad_token_id)
        n = (unpacked["labels"][:, 1:] != -100).sum()
        packed = pad_batch(rows, tiny_tokenizer.pad_token_id)
        assert "attention_mask" not in packed and (packed["labels"][:, 1:] != -100).sum() == n
        ref = method.compute_loss(model, unpacked, None, {}, num_items_in_batch=n)
        got = method.compute_loss(model, packed, None, {}, num_items_in_batch=n)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- bad input
def test_empty_mix_names_the_method(pairs):
    non_english = [p for p in pairs if p["lang"] != "en"]
    with pytest.raises(TrainDataError, match=r"method 'm' \(type 'sft_en'\): the data mix is empty"):
        mix({"type": "sft_en"}, non_english)


def test_empty_response_after_templating(tiny_tokenizer):
    s = settings({"type": "sft"}, name="sft")
    bad = [{"id": "ok", "prompt": "Hi", "response": "Hello."}, {"id": "blank", "prompt": "Hi", "response": "  \n"}]
    with pytest.raises(TrainDataError, match=r"method 'sft': example 'blank' has an empty response"):
        data.tokenize(get_method("sft"), bad, tiny_tokenizer, s)


def test_all_truncated_away_and_partly_dropped(tiny_tokenizer, pairs):
    examples = mix({"type": "sft"}, pairs)
    s = settings({"type": "sft"}, name="sft", max_length=4)
    with pytest.raises(TrainDataError, match=r"method 'sft': all 60 sequences lost every response token.*max_length=4"):
        data.tokenize(get_method("sft"), examples, tiny_tokenizer, s)
    prompts = [get_method("sft").tokenize(e, tiny_tokenizer, 10**6, "right")["labels"].count(-100) for e in examples]
    cut = sorted(prompts)[len(prompts) // 2]
    s = settings({"type": "sft"}, name="sft", max_length=cut)
    feats, dropped = data.tokenize(get_method("sft"), examples, tiny_tokenizer, s)
    # a sequence survives iff its prompt is shorter than max_length (one response token remains)
    assert len(dropped) == sum(p >= cut for p in prompts) > 0
    assert len(feats) == 60 - len(dropped) and all(len(f["input_ids"]) <= cut for f in feats)


def test_missing_english_side_names_the_record(pairs):
    broken = [dict(p, response_en=None) if p["id"] == "seed/seed-004#ru" else p for p in pairs]
    with pytest.raises(TrainDataError, match=r"'seed/seed-004#ru' \(ru\) has no response_en"):
        mix({"type": "sft_all"}, broken)


# --------------------------------------------------------------------------- data size, cc_tuning on a mix
def test_sft_size_takes_clos_items_per_language(pairs):
    from crosstune.preference import select_items

    ex = mix({"type": "sft", "size": 4}, pairs, seed=3)
    assert data.composition(ex) == {"sft": {lang: 4 for lang in ("en", *LANGS)}}
    items = {lang: {e["id"].split("#")[0] for e in ex if e["lang"] == lang} for lang in LANGS}
    clo = select_items(pairs, list(LANGS), 4, 3)  # CLO-4 with the same seed: the same items
    assert items == {lang: {r["id"].split("#")[0] for r in clo if r["lang"] == lang} for lang in LANGS}
    small = mix({"type": "sft", "size": 2, "languages": ["sw"]}, pairs, seed=3)
    assert {e["id"] for e in small} < {e["id"] for e in ex}  # a smaller size is a subset
    assert mix({"type": "sft", "size": 4}, pairs, seed=4) != ex
    with pytest.raises(TrainDataError, match=r"size 11: language '.*' has only 10 pair records"):
        mix({"type": "sft", "size": 11}, pairs)


@pytest.mark.parametrize("source", ["sft_all", "sft_mt", "crossin"])
def test_cc_tuning_trains_on_a_data_level_mix(pairs, source):
    from crosstune.train.settings import resolve

    from .train_helpers import config

    cfg = config({source: {"type": source, **({"size": 20} if source == "crossin" else {})},
                  "cc": {"type": "cc_tuning", "mix": source}})  # fmt: skip
    s = resolve(cfg, "cc")
    assert s["mix"]["type"] == source and "train" not in s["mix"]
    ex = data.build_examples(get_method("cc_tuning"), pairs, s, 0)
    plain = data.build_examples(get_method(source), pairs, resolve(cfg, source), 0)
    assert [(e["id"], e["prompt"], e["response"]) for e in ex] == [(e["id"], e["prompt"], e["response"]) for e in plain]
    by_id = {p["id"]: p for p in pairs}
    for e in ex:
        rec = by_id[e["id"].split("|")[0]]
        kind = e["kind"].removeprefix("cc_tuning+")
        # x_en: the same request in English (already English prompts are their own English version)
        tag = s["mix"].get("tag_template", "")  # crossin: the release's "{instruction}\n[{lang}]"
        want = {"sft": rec["instruction_en"], "en_copy": rec["instruction_en"],
                "mt": "Translate the following into English.\n" + rec["instruction_en"],
                "en2x": tag.format(lang=rec["lang"], instruction=rec["instruction_en"]),
                "x2en": tag.format(lang="en", instruction=rec["instruction_en"])}[kind]  # fmt: skip
        assert e["prompt_en"] == want, e


def test_cc_tuning_mix_must_be_a_data_level_method():
    from crosstune.config import ConfigError
    from crosstune.train.settings import resolve

    from .train_helpers import config

    cfg = config({"clo": {"type": "clo"}, "cc": {"type": "cc_tuning", "mix": "clo"}})
    with pytest.raises(ConfigError, match=r"methods.cc.mix: 'clo' is neither a configured data-level method"):
        resolve(cfg, "cc")
    assert resolve(config({"cc": {"type": "cc_tuning", "mix": "sft_mt"}}), "cc")["mix"]["type"] == "sft_mt"
