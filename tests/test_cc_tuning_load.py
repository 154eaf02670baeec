"""crosstune.cc_tuning.load: a trained cc_tuning model with its connection, outside the pipeline."""

from __future__ import annotations

import json
import shutil

import pytest

from crosstune.cc_tuning import inference, load
from crosstune.cc_tuning.stages import activations_stage, transform_stage
from crosstune.train import engine

from .train_helpers import seed_pairs, settings, write_pairs

# non-English training prompts and their English versions (the oracle's input)
PAIRS = [p for p in seed_pairs(items=6, langs=("sw", "zh")) if p["lang"] != "en"][:6]
PROMPTS, ENGLISH = [p["instruction"] for p in PAIRS], [p["instruction_en"] for p in PAIRS]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A tiny cc_tuning model trained by the engine (3 steps, lr 1e-2 so the connection matters), and
    its Transform Matrix from rule activations' and rule transform's functions."""
    out = tmp_path_factory.mktemp("cc-load")
    pairs = write_pairs(out / "pairs.jsonl", seed_pairs(items=6, langs=("sw", "zh")))
    s = settings({"type": "cc_tuning"}, name="cc_tuning", learning_rate=1.0e-2)
    engine.train(model_dir=str(tiny_model_dir("llama")), pairs=str(pairs), output=str(out / "model"),
                 checkpoint_dir=str(out / "checkpoints"), settings=s, seed=42, metrics=str(out / "metrics.json"),
                 plot=str(out / "loss.png"))  # fmt: skip
    activations_stage(out / "model", pairs, out / "activations.safetensors", n_pairs=12, seed=0, device="cpu")
    transform_stage(out / "activations.safetensors", out / "transform.safetensors", out / "fit.json", device="cpu")
    return out


def test_load_generates_with_the_connection(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cc = load(trained / "model", transform=trained / "transform.safetensors", mode="matrix", device="cpu")
    got = cc.generate(PROMPTS, max_new_tokens=8)
    # the connection's own reference: batched fast-path decoding one prompt at a time
    conn = cc.connection
    ref = inference.generate(cc.model, cc.tokenizer, PROMPTS, mode="matrix", dm=conn.dm, matrices=conn.matrices,
                             langs=["all"] * len(PROMPTS), batch_size=1, max_new_tokens=8)  # fmt: skip
    assert got == [r["text"] for r in ref]
    assert [r["layer"] for r in cc.records(PROMPTS, max_new_tokens=8)] == [r["layer"] for r in ref]
    # plain from_pretrained + generate: the @none model, other outputs
    model = AutoModelForCausalLM.from_pretrained(trained / "model").eval()
    tok = AutoTokenizer.from_pretrained(trained / "model")
    plain_text = []
    for prompt in PROMPTS:  # one at a time: generate stops at the eos, which decoding drops
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)  # fmt: skip
        seq = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
        plain_text.append(tok.decode(seq[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    assert plain_text == load(trained / "model", mode="none", device="cpu").generate(PROMPTS, max_new_tokens=8)
    assert got != plain_text


def test_oracle_mode_takes_the_english_prompts(trained):
    cc = load(trained / "model", mode="oracle", device="cpu")
    got = cc.generate(PROMPTS, english_prompts=ENGLISH, max_new_tokens=8)
    ref = inference.generate(cc.model, cc.tokenizer, PROMPTS, mode="oracle", dm=cc.connection.dm,
                             english_prompts=ENGLISH, batch_size=1, max_new_tokens=8)  # fmt: skip
    assert got == [r["text"] for r in ref]
    with pytest.raises(ValueError, match="prompt_en"):
        cc.generate(PROMPTS, max_new_tokens=8)


def test_the_transform_beside_the_model_and_the_trained_position(trained, tmp_path):
    """A pushed repository's layout: transform.safetensors in the model directory is found; p is the
    connection_position the model was trained with (its provenance.json)."""
    repo = tmp_path / "repo"
    shutil.copytree(trained / "model", repo)
    shutil.copy(trained / "transform.safetensors", repo)
    assert load(repo, device="cpu").generate(PROMPTS[:2], max_new_tokens=6) == load(
        trained / "model", transform=trained / "transform.safetensors", device="cpu").generate(
        PROMPTS[:2], max_new_tokens=6)  # fmt: skip
    prov = json.loads((repo / "provenance.json").read_text())
    prov["settings"]["connection_position"] = "release"
    (repo / "provenance.json").write_text(json.dumps(prov))
    assert load(repo, device="cpu").connection.position == "release"


def test_errors_name_the_problem(trained, tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="Transform Matrix"):
        load(trained / "model", mode="matrix", device="cpu")
    with pytest.raises(ValueError, match="mode must be one of"):
        load(trained / "model", mode="gumbel", device="cpu")
    with pytest.raises(FileNotFoundError, match="decision_maker.safetensors"):
        load(tiny_model_dir("llama"), transform=trained / "transform.safetensors", device="cpu")
