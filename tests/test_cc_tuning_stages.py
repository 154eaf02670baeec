"""The activations and transform stages (files in, files out) on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crosstune.cc_tuning import transform as tf
from crosstune.cc_tuning.stages import activations_stage, transform_stage

from .train_helpers import seed_pairs, write_pairs


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_pairs(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", seed_pairs(items=10, langs=("sw", "zh", "ar")))


@pytest.fixture(scope="module")
def acts(tmp_path_factory, tiny_model_dir, pairs):
    out = tmp_path_factory.mktemp("acts") / "activations.safetensors"
    info = activations_stage(tiny_model_dir("llama"), pairs, out, n_pairs=12, seed=3, batch_size=5, device="cpu")
    return out, info


def test_activations_are_drawn_with_the_seed_and_match_a_direct_extraction(acts, tiny_model_dir, pairs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, info = acts
    got = tf.load_activations(path)
    assert got["source"].shape == got["target"].shape == (12, 2, 64) and got["source"].dtype == torch.float32
    assert len(set(got["ids"])) == 12 and all("#" in i for i in got["ids"])  # non-English records only
    assert info["n"] == 12 and info["n_available"] == 30 and sum(info["languages"].values()) == 12
    assert got["metadata"]["seed"] == "3"
    again = activations_stage(tiny_model_dir("llama"), pairs, tmp_path / "a.safetensors", n_pairs=12, seed=3, device="cpu")
    assert tf.load_activations(tmp_path / "a.safetensors")["ids"] == got["ids"] and again["n"] == 12
    other = activations_stage(tiny_model_dir("llama"), pairs, tmp_path / "b.safetensors", n_pairs=12, seed=4, device="cpu")
    assert tf.load_activations(tmp_path / "b.safetensors")["ids"] != got["ids"] and other["n"] == 12
    # row i: the instruction of pair i and its English instruction, as one-at-a-time extraction gives them
    by_id = {json.loads(line)["id"]: json.loads(line) for line in pairs.open()}
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir("llama"))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir("llama"))
    record = by_id[got["ids"][5]]
    source = tf.extract_activations(model, tok, [record["instruction"]])[0]
    target = tf.extract_activations(model, tok, [record["instruction_en"]])[0]
    assert torch.allclose(got["source"][5], source, atol=1e-5) and torch.allclose(got["target"][5], target, atol=1e-5)


def test_languages_and_all_pairs(tiny_model_dir, pairs, tmp_path, caplog):
    info = activations_stage(tiny_model_dir("llama"), pairs, tmp_path / "sw.safetensors", n_pairs=1000, seed=0,
                             languages=["en", "sw"], device="cpu")  # fmt: skip
    assert info["languages"] == {"sw": 10} and info["n"] == 10 and "all used" in caplog.text
    assert activations_stage(tiny_model_dir("llama"), pairs, tmp_path / "all.safetensors", n_pairs=None, seed=0,
                             device="cpu")["n"] == 30  # fmt: skip
    with pytest.raises(ValueError, match="no non-English training pairs in hi"):
        activations_stage(tiny_model_dir("llama"), pairs, tmp_path / "x.safetensors", n_pairs=5, seed=0,
                          languages=["hi"], device="cpu")  # fmt: skip


def test_transform_is_the_least_squares_fit_of_the_stacked_layers(acts, tmp_path):
    path, _ = acts
    report = transform_stage(path, tmp_path / "transform.safetensors", tmp_path / "fit.json", device="cpu")
    X = tf.load_transform(tmp_path / "transform.safetensors")
    assert set(X) == {"all"} and X["all"].shape == (64, 64) and X["all"].dtype == torch.float64
    got = tf.load_activations(path)
    S, T = (tf.stack_layers(got[k]).double().numpy() for k in ("source", "target"))
    want = np.linalg.lstsq(S, T, rcond=None)[0]  # 24 rows < 64: under-determined, minimum norm
    assert np.allclose(X["all"].numpy(), want, atol=1e-8)
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit == json.loads(json.dumps(report))
    m = fit["matrices"]["all"]
    assert (fit["pairs"], fit["num_layers"], fit["hidden_size"], fit["ridge"], fit["driver"]) == (12, 2, 64, 0.0, "gelsd")
    assert m["rows"] == 24 and m["underdetermined"] and len(m["relative_residual"]) == 2
    assert max(m["relative_residual"]) < 1e-6 < min(m["relative_residual_identity"])  # exact fit of 24 rows


def test_transform_per_language_and_ridge(acts, tmp_path):
    path, info = acts
    report = transform_stage(path, tmp_path / "t.safetensors", tmp_path / "fit.json", per_language=True, ridge=0.5,
                             device="cpu")  # fmt: skip
    X = tf.load_transform(tmp_path / "t.safetensors")
    assert set(X) == set(info["languages"]) == set(report["matrices"]) and report["driver"] == "cholesky"
    got = tf.load_activations(path)
    lang = sorted(X)[0]
    idx = [i for i, x in enumerate(got["langs"]) if x == lang]
    S, T = (tf.stack_layers(got[k][idx]).double() for k in ("source", "target"))
    want = torch.linalg.solve(S.T @ S + 0.5 * torch.eye(64, dtype=torch.float64), S.T @ T)
    assert torch.allclose(X[lang], want, atol=1e-8)


def test_a_matrix_study_draws_the_largest_n_once_and_fits_each_point_on_the_pairs_drawn_first(
        acts, tiny_model_dir, pairs, tmp_path):  # fmt: skip
    path, _ = acts  # n_pairs=12 alone: what the method's matrix is fitted on without a study
    own = tf.load_activations(path)
    study = tmp_path / "study.safetensors"
    info = activations_stage(tiny_model_dir("llama"), pairs, study, n_pairs=12, seed=3, batch_size=5, device="cpu",
                             study_n_pairs=[20])  # fmt: skip
    drawn = tf.load_activations(study)
    assert info["n"] == 20 and set(own["ids"]) < set(drawn["ids"])
    assert sorted(json.loads(drawn["metadata"]["ranks"])) == list(range(20))
    # the method's matrix (N = 12) of the study's extraction: the same pairs, the same fit
    report = transform_stage(study, tmp_path / "t12.safetensors", tmp_path / "f12.json", n_pairs=12, device="cpu")  # fmt: skip
    alone = transform_stage(path, tmp_path / "t.safetensors", tmp_path / "f.json", n_pairs=12, device="cpu")  # fmt: skip
    assert (report["pairs"], report["n_pairs"], alone["pairs"]) == (12, 12, 12)
    X12, X = (tf.load_transform(tmp_path / f)["all"] for f in ("t12.safetensors", "t.safetensors"))
    assert torch.allclose(X12, X, atol=1e-6)
    # a smaller point: the 5 drawn first, nested in the 12; all 20 when N is above the file's
    five = transform_stage(study, tmp_path / "t5.safetensors", tmp_path / "f5.json", n_pairs=5, device="cpu")  # fmt: skip
    ranks = dict(zip(drawn["ids"], json.loads(drawn["metadata"]["ranks"]), strict=True))
    assert five["pairs"] == 5 and {i for i, r in ranks.items() if r < 5} < set(own["ids"])
    assert transform_stage(study, tmp_path / "t.safetensors", tmp_path / "f.json", n_pairs=99, device="cpu")["pairs"] == 20  # fmt: skip
    # without the draw ranks (an older file) a subsample is refused, not guessed
    from safetensors.torch import save_file

    meta = {k: v for k, v in drawn["metadata"].items() if k != "ranks"}
    save_file({"source": drawn["source"], "target": drawn["target"]}, str(tmp_path / "old.safetensors"), metadata=meta)  # fmt: skip
    with pytest.raises(ValueError, match="no draw ranks to take 5 of its 20 pairs; rerun rule activations"):  # fmt: skip
        transform_stage(tmp_path / "old.safetensors", tmp_path / "x.safetensors", tmp_path / "x.json", n_pairs=5)  # fmt: skip
