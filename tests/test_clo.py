"""CLO and SFT->DPO: preference data, sequence log-probs, the loss, reference caching, trainable parameters."""

from __future__ import annotations

import copy
import math
import random
import re
from pathlib import Path

import pytest
import torch

from crosstune.data.sources import SEED_DIR
from crosstune.io import read_jsonl
from crosstune.methods.clo import (
    ATTENTION_PATTERNS,
    REF_COLUMNS,
    CLOMethod,
    SFTDPOMethod,
    TrainDataError,
    clo_loss,
    dpo_losses,
    sequence_logprobs,
)
from crosstune.models import build_tiny_model
from crosstune.preference import build_preference_records, stats


def seed_pairs() -> list[dict]:
    """Pair records of the bundled seed data: English items and their human translations."""
    english = {r["id"]: r for r in read_jsonl(Path(str(SEED_DIR / "sft_en.jsonl")))}
    pairs = [{"id": f"seed/{i}#en", "lang": "en", "instruction": r["instruction"], "response": r["response"],
              "instruction_en": r["instruction"], "response_en": r["response"], "source": "seed"}
             for i, r in english.items()]  # fmt: skip
    for r in read_jsonl(Path(str(SEED_DIR / "translations.jsonl"))):
        e = english[r["id"]]
        pairs.append({"id": f"seed/{r['id']}#{r['lang']}", "lang": r["lang"], "instruction": r["instruction"],
                      "response": r["response"], "instruction_en": e["instruction"], "response_en": e["response"],
                      "source": "seed"})  # fmt: skip
    return pairs


def settings_for(method, **over) -> dict:
    ft = {"mode": "patterns", "patterns": ATTENTION_PATTERNS, "target_modules": None}
    return {"name": method.name, "type": method.name, **method.defaults, "train": {"finetuning": ft}, **over}


@pytest.fixture(scope="module")
def features(tiny_tokenizer):
    """Tokenized CLO features of 3 seed items in sw and zh (6 examples)."""
    method = CLOMethod()
    examples = method.build_examples(seed_pairs(), settings_for(method, languages=["sw", "zh"], size=3), seed=0)
    return [method.tokenize(ex, tiny_tokenizer, 256, "right") for ex in examples]


def tiny(tokenizer, seed=0):
    return build_tiny_model("llama", tokenizer, seed=seed)


# --------------------------------------------------------------------- preference records
def record(item, lang, instruction, response, response_en="Four."):
    return {"id": f"s/{item}#{lang}", "lang": lang, "instruction": instruction, "response": response,
            "instruction_en": f"What is {item}?", "response_en": response_en, "source": "s"}  # fmt: skip


def test_records_have_both_directions_with_right_chosen_and_rejected():
    pairs = [
        record(1, "en", "What is 1?", "Four."),
        record(1, "sw", "Ni nini 1?", "Nne."),
        record(2, "sw", "Ni nini 2?", "Mbili.", response_en=None),  # English response unknown: no preference
        record(1, "zh", "1是什么?", "四。"),
    ]
    recs = build_preference_records(pairs, seed=0)
    assert [r["id"] for r in recs] == ["s/1#sw|target", "s/1#sw|english", "s/1#zh|target", "s/1#zh|english"]
    target, english = recs[0], recs[1]
    assert (target["prompt"], target["chosen"], target["rejected"]) == ("Ni nini 1?", "Nne.", "Four.")
    assert (english["prompt"], english["chosen"], english["rejected"]) == ("What is 1?", "Four.", "Nne.")
    assert (target["chosen_lang"], target["rejected_lang"], english["chosen_lang"], english["rejected_lang"]) == (
        "sw", "en", "en", "sw")  # fmt: skip
    assert stats(recs) == [{"lang": "sw", "direction": "english", "records": 1},
                           {"lang": "sw", "direction": "target", "records": 1},
                           {"lang": "zh", "direction": "english", "records": 1},
                           {"lang": "zh", "direction": "target", "records": 1}]  # fmt: skip


def test_sampling_is_deterministic_shared_across_languages_and_nested():
    pairs = seed_pairs()
    a = build_preference_records(pairs, ["ar", "hi"], size=5, seed=1)
    shuffled = pairs[:]
    random.Random(9).shuffle(shuffled)
    assert build_preference_records(shuffled, ["ar", "hi"], size=5, seed=1) == a  # file order does not matter
    assert len(a) == 2 * 2 * 5
    items = {lang: [r["item"].split("#")[0] for r in a if r["lang"] == lang and r["direction"] == "target"]
             for lang in ("ar", "hi")}  # fmt: skip
    assert items["ar"] == items["hi"]  # the same English items in every language
    smaller = build_preference_records(pairs, ["ar"], size=3, seed=1)
    assert [r["id"] for r in smaller] == [r["id"] for r in a if r["lang"] == "ar"][:6]  # size 3 is a prefix of size 5
    other = build_preference_records(pairs, ["ar"], size=5, seed=2)
    assert {r["item"] for r in other} != {r["item"] for r in a if r["lang"] == "ar"}


def test_size_larger_than_the_data_names_the_language():
    with pytest.raises(Exception, match="'sw': 60 pair records .* 61 needed"):
        build_preference_records(seed_pairs(), ["sw"], size=61, seed=0)
    with pytest.raises(TrainDataError, match="'fr': 0 pair records"):
        CLOMethod().build_examples(seed_pairs(), settings_for(CLOMethod(), languages=["fr"]), seed=0)


# --------------------------------------------------------------------- tokenize / collate
def test_tokenize_masks_prompts_and_shares_them(tiny_tokenizer, features):
    f = features[0]
    assert len(f["chosen_input_ids"]) == len(f["rejected_input_ids"]) == 2  # target, english
    for d in range(2):
        c, r = f["chosen_labels"][d], f["rejected_labels"][d]
        n = c.index(next(x for x in c if x != -100))  # prompt length
        assert f["chosen_input_ids"][d][:n] == f["rejected_input_ids"][d][:n]  # same prompt
        assert c[n:] == f["chosen_input_ids"][d][n:] and r[n:] == f["rejected_input_ids"][d][n:]
        assert c[-1] == r[-1] == tiny_tokenizer.eos_token_id
    resp = {side: [[x for x in lab if x != -100] for lab in f[f"{side}_labels"]] for side in ("chosen", "rejected")}
    assert resp["chosen"][0] == resp["rejected"][1] != resp["chosen"][1] == resp["rejected"][0]  # y_t / y_en swapped
    text = tiny_tokenizer.decode(resp["chosen"][0], skip_special_tokens=True)
    method = CLOMethod()
    ex = method.build_examples(seed_pairs(), settings_for(method, languages=["sw", "zh"], size=3), seed=0)[0]
    assert text == ex["directions"][0]["chosen"] == ex["response"]
    assert method.tokenize(ex, tiny_tokenizer, 8, "right") is None  # truncation removed the responses
    bad = copy.deepcopy(ex)
    bad["directions"][1]["rejected"] = " "
    with pytest.raises(TrainDataError, match="empty rejected"):
        method.tokenize(bad, tiny_tokenizer, 256, "right")


def test_collate_orders_chosen_then_rejected(tiny_tokenizer, features):
    batch = CLOMethod().collate(features[:2], tiny_tokenizer)
    assert batch["input_ids"].shape[0] == 8 and "labels" not in SFTDPOMethod().collate(features[:2], tiny_tokenizer)
    # CLO's labels, the tokens the Trainer counts for the NLL: y_t given x_t rows only (chosen, target)
    assert torch.equal(batch["labels"], batch["response_labels"][[0, 2]])
    order = [features[0]["chosen_input_ids"][0], features[0]["chosen_input_ids"][1],
             features[1]["chosen_input_ids"][0], features[1]["chosen_input_ids"][1],
             features[0]["rejected_input_ids"][0]]  # fmt: skip
    for row, ids in enumerate(order):
        assert batch["input_ids"][row, : len(ids)].tolist() == ids
        assert batch["attention_mask"][row].sum() == len(ids)


# --------------------------------------------------------------------- arithmetic
def test_sequence_logprobs_equals_manual_gather():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :3] = -100
    labels[1, 5:] = -100
    got = sequence_logprobs(logits, labels)
    logp = torch.log_softmax(logits, -1)
    for b in range(3):
        want = sum(logp[b, t - 1, labels[b, t]].item() for t in range(1, 7) if labels[b, t] != -100)
        assert got[b].item() == pytest.approx(want, abs=1e-5)


def test_loss_equals_hand_computation_for_fixed_logprobs():
    pc, pr = torch.tensor([-10.0, -20.0]), torch.tensor([-12.0, -15.0])
    rc, rr = torch.tensor([-11.0, -19.0]), torch.tensor([-11.5, -16.0])
    beta, nll = 0.1, torch.tensor(2.5)
    margins = [((-10 + 11) - (-12 + 11.5)), ((-20 + 19) - (-15 + 16))]  # 1.5, -2
    hand_pref = sum(-math.log(1 / (1 + math.exp(-beta * m))) for m in margins) / 2
    pref = dpo_losses(pc, pr, rc, rr, beta).mean()
    assert pref.item() == pytest.approx(hand_pref, rel=1e-6)
    assert clo_loss(nll, pref, 0.5).item() == pytest.approx(0.5 * 2.5 + 0.5 * hand_pref, rel=1e-6)
    assert clo_loss(nll, pref, 1.0).item() == pytest.approx(2.5)
    assert clo_loss(nll, pref, 0.0).item() == pytest.approx(hand_pref, rel=1e-6)
    assert clo_loss(nll, pref, 0.3).item() == pytest.approx(0.3 * 2.5 + 0.7 * hand_pref, rel=1e-6)


def manual_logps(model, ids: list[int], labels: list[int]) -> tuple[float, int]:
    """Sequence log-prob (and response token count) of ONE unpadded sequence, by a loop over positions."""
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    targets = [t for t in range(1, len(ids)) if labels[t] != -100]
    return sum(logp[t - 1, ids[t]].item() for t in targets), len(targets)


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_compute_loss_on_a_tiny_model_equals_the_hand_formula(tiny_tokenizer, features, lam):
    model, method = tiny(tiny_tokenizer), CLOMethod()
    settings = settings_for(method, **{"lambda": lam, "beta": 0.5})
    feats = [dict(f, ref_chosen_logps=[-30.0 - i, -40.0], ref_rejected_logps=[-35.0, -38.0 + i])
             for i, f in enumerate(features[:2])]  # fixed reference log-probs  # fmt: skip
    loss = method.compute_loss(model, method.collate(feats, tiny_tokenizer), torch.nn.ModuleDict(), settings)
    prefs, nll_sum, nll_count = [], 0.0, 0
    for f in feats:
        for d in range(2):
            c, n = manual_logps(model, f["chosen_input_ids"][d], f["chosen_labels"][d])
            r, _ = manual_logps(model, f["rejected_input_ids"][d], f["rejected_labels"][d])
            m = (c - f["ref_chosen_logps"][d]) - (r - f["ref_rejected_logps"][d])
            prefs.append(math.log1p(math.exp(-0.5 * m)))  # -log sigmoid(beta m)
            if d == 0:  # NLL only on y_t given x_t
                nll_sum, nll_count = nll_sum - c, nll_count + n
    hand = lam * nll_sum / nll_count + (1 - lam) * sum(prefs) / len(prefs)
    assert loss.item() == pytest.approx(hand, rel=1e-4)


def test_concatenated_forward_equals_separate_forwards(tiny_tokenizer, features):
    model, method = tiny(tiny_tokenizer), CLOMethod()
    model.eval()
    batch = method.collate(features[:3], tiny_tokenizer)
    with torch.no_grad():
        together, _ = method.forward_logps(model, batch)
        parts = []
        for side in ("chosen", "rejected"):
            only = [{"chosen_input_ids": f[f"{side}_input_ids"], "chosen_labels": f[f"{side}_labels"],
                     "rejected_input_ids": [], "rejected_labels": []} for f in features[:3]]  # fmt: skip
            seq, _ = method.forward_logps(model, method.collate(only, tiny_tokenizer))
            parts.append(seq)
    torch.testing.assert_close(together, torch.cat(parts), rtol=1e-5, atol=1e-4)
    assert not torch.allclose(parts[0], parts[1])  # chosen and rejected really differ


# --------------------------------------------------------------------- training
def adamw_steps(method, model, dataset, tokenizer, settings, steps=3):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    for step in range(steps):
        rows = [dataset[(2 * step + i) % len(dataset)] for i in range(2)]
        loss = method.compute_loss(model, method.collate(rows, tokenizer), torch.nn.ModuleDict(), settings)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_reference_is_cached_frozen_and_only_attention_trains(tiny_tokenizer, features):
    import datasets

    method = CLOMethod()
    settings = settings_for(method, **CLOMethod.train_defaults)
    model = tiny(tiny_tokenizer)
    for name, p in model.named_parameters():
        p.requires_grad_(method.trainable(name, settings))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base = copy.deepcopy(model)

    ds = method.with_reference(model, tiny_tokenizer, datasets.Dataset.from_list(features), settings)
    assert model.training  # the reference pass restores the mode
    cached = {c: ds[c] for c in REF_COLUMNS}
    # the cache is the base model's log-probs
    f = features[0]
    want, _ = manual_logps(base, f["rejected_input_ids"][1], f["rejected_labels"][1])
    assert cached["ref_rejected_logps"][0][1] == pytest.approx(want, rel=1e-5)

    adamw_steps(method, model, ds, tiny_tokenizer, settings)

    assert {c: ds[c] for c in REF_COLUMNS} == cached
    recomputed = method.with_reference(base, tiny_tokenizer, datasets.Dataset.from_list(features), settings)
    for c in REF_COLUMNS:  # a fresh pass of the frozen base model gives the cached values
        assert sum(recomputed[c], []) == pytest.approx(sum(cached[c], []), rel=1e-6)
    # ... while the policy moved away from it
    now, _ = method.reference_logps(model, tiny_tokenizer, ds, 8)
    assert max(abs(a - b) for a, b in zip(sum(now, []), sum(cached["ref_chosen_logps"], []), strict=True)) > 1e-3

    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    attention = {k for k in before if any(re.search(p, k) for p in ATTENTION_PATTERNS)}
    assert attention and changed == attention


def test_sft_dpo_is_the_preference_term_alone(tiny_tokenizer, features):
    model = tiny(tiny_tokenizer)
    dpo, clo = SFTDPOMethod(), CLOMethod()
    assert dpo.defaults["init_from"] == "sft" and "lambda" not in dpo.defaults
    feats = dpo.with_reference(model, tiny_tokenizer, [dict(f) for f in features[:2]], {})
    batch = dpo.collate(feats, tiny_tokenizer)
    got = dpo.compute_loss(model, batch, torch.nn.ModuleDict(), settings_for(dpo))
    want = clo.compute_loss(model, batch, torch.nn.ModuleDict(), settings_for(clo, **{"lambda": 0.0}))
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    # at the reference itself every margin is 0: loss = -log sigmoid(0) = log 2
    assert got.item() == pytest.approx(math.log(2), abs=1e-4) and len(feats) == 2
    got.backward()  # ... and its gradient pushes the margins apart: -beta/2 * d(margin)
    assert sum(p.grad.abs().sum().item() for p in model.parameters() if p.grad is not None) > 0
    with pytest.raises(RuntimeError, match="reference_table"):
        dpo.compute_loss(model, dpo.collate(features[:1], tiny_tokenizer), torch.nn.ModuleDict(), settings_for(dpo))


def test_reference_pass_follows_bf16_autocast(tiny_tokenizer, features):
    model, method = tiny(tiny_tokenizer), CLOMethod()
    fp32 = method.with_reference(model, tiny_tokenizer, features[:2], {"train": {"bf16": False}})
    bf16 = method.with_reference(model, tiny_tokenizer, features[:2], {"train": {"bf16": True}})
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        seq, _ = method.forward_logps(model, method.collate(features[:2], tiny_tokenizer))
    assert [v for f in bf16 for v in f["ref_chosen_logps"]] == pytest.approx(seq[:4].tolist(), rel=1e-5)
    assert [v for f in fp32 for v in f["ref_chosen_logps"]] != pytest.approx(seq[:4].tolist(), rel=1e-5)
