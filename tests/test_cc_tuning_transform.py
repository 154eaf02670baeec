"""Activations at p and the least-squares Transform Matrix, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from crosstune.cc_tuning import transform as tf
from crosstune.cc_tuning.connection import chat_prompt_ids

from .cc_tuning_reference import lively, manual_forward
from .conftest import REPO


def _rand(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("driver", tf.DRIVERS)
def test_recovers_planted_matrix_overdetermined(driver):
    S, X = _rand(200, 16, seed=1), _rand(16, 16, seed=2)
    assert tf.solve_transform(S.float(), (S @ X).float(), driver=driver).dtype == torch.float64  # solved in float64
    torch.testing.assert_close(tf.solve_transform(S, S @ X, driver=driver), X, rtol=1e-10, atol=1e-10)
    T = S @ X + 0.1 * _rand(200, 16, seed=3)  # with noise: the numpy solution
    ref = np.linalg.lstsq(S.numpy(), T.numpy(), rcond=None)[0]
    np.testing.assert_allclose(tf.solve_transform(S, T, driver=driver).numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("driver", tf.DRIVERS)
def test_minimum_norm_when_underdetermined(driver):
    S, T = _rand(6, 16, seed=3), _rand(6, 16, seed=4)
    got = tf.solve_transform(S, T, driver=driver)
    ref = np.linalg.lstsq(S.numpy(), T.numpy(), rcond=None)[0]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(S @ got, T, rtol=1e-9, atol=1e-9)  # exact fit with 6 < 16 rows
    # any other exact solution (plus a null-space component) has a larger norm
    null = torch.linalg.svd(S).Vh[6:].T @ _rand(10, 16, seed=5)
    assert torch.linalg.norm(got) < torch.linalg.norm(got + null)


@pytest.mark.parametrize("driver", tf.DRIVERS)
def test_rank_deficient_matches_numpy(driver):
    S = _rand(40, 4, seed=6) @ _rand(4, 16, seed=7)  # rank 4
    T = _rand(40, 16, seed=8)
    ref = np.linalg.lstsq(S.numpy(), T.numpy(), rcond=None)[0]
    np.testing.assert_allclose(tf.solve_transform(S, T, driver=driver).numpy(), ref, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="driver must be one of"):
        tf.solve_transform(S, T, driver="gesv")


def test_pinv_path_equals_gelsd():
    """The CUDA path (SVD pseudo-inverse) computed here on CPU gives the same minimum-norm solution."""
    S = _rand(40, 4, seed=6) @ _rand(4, 16, seed=7)
    T = _rand(40, 16, seed=8)
    rcond = torch.finfo(torch.float64).eps * max(S.shape)
    torch.testing.assert_close(torch.linalg.pinv(S, rtol=rcond) @ T, tf.solve_transform(S, T), rtol=1e-8, atol=1e-10)


def test_ridge_closed_form():
    S, T = _rand(30, 8, seed=9), _rand(30, 8, seed=10)
    got = tf.solve_transform(S, T, ridge=0.5)
    ref = np.linalg.solve(S.numpy().T @ S.numpy() + 0.5 * np.eye(8), S.numpy().T @ T.numpy())
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        tf.solve_transform(S, T, ridge=-1.0)


def test_fit_transform_shared_and_per_language():
    N, L, d = 12, 3, 8
    S = _rand(N, L, d, seed=11)
    Xa, Xb = _rand(d, d, seed=12), _rand(d, d, seed=13)
    langs = ["ar"] * 6 + ["hi"] * 6
    T = torch.cat([S[:6] @ Xa, S[6:] @ Xb])
    shared, rep = tf.fit_transform(S.float(), T.float())
    assert set(shared) == {"all"} and rep["matrices"]["all"]["rows"] == N * L
    assert len(rep["matrices"]["all"]["relative_residual"]) == L
    assert rep["matrices"]["all"]["relative_residual_all"] > 0.05  # two maps cannot share one matrix
    per, rep2 = tf.fit_transform(S, T, langs=langs, per_language=True)
    assert set(per) == {"ar", "hi"}
    torch.testing.assert_close(per["ar"], Xa, rtol=1e-8, atol=1e-8)
    assert max(rep2["matrices"]["hi"]["relative_residual"]) < 1e-10
    assert tf.matrix_for(per, "hi") is per["hi"] and tf.matrix_for(shared, "sw") is shared["all"]
    with pytest.raises(KeyError, match="no transform matrix for language 'sw'"):
        tf.matrix_for(per, "sw")


def test_extract_activations_batched_equals_hand_built(tiny_model_dir, tiny_tokenizer, tmp_path):
    model = lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir("gemma")), seed=3)
    prompts = ["Jambo?", "Wie spät ist es jetzt bitte?", "Hi", "¿Qué hora es?"]
    acts = tf.extract_activations(model, tiny_tokenizer, prompts, batch_size=3)
    assert acts.shape == (4, 2, 64) and acts.dtype == torch.float32
    for i, p in enumerate(prompts):
        ids = torch.tensor(chat_prompt_ids(tiny_tokenizer, p))
        _, mlp = manual_forward(model, ids)
        torch.testing.assert_close(acts[i], mlp[-1].float(), rtol=1e-5, atol=1e-5)
    path = tmp_path / "activations.safetensors"
    tf.save_activations(path, acts, acts * 2, ["a", "b", "c", "d"], ["sw", "de", "en", "es"])
    back = tf.load_activations(path)
    assert back["ids"] == ["a", "b", "c", "d"] and back["langs"] == ["sw", "de", "en", "es"]
    assert torch.equal(back["source"], acts) and torch.equal(back["target"], acts * 2)
    assert not list(tmp_path.glob("*.part"))
    mats = {"all": _rand(64, 64, seed=1)}
    tf.save_transform(tmp_path / "transform.safetensors", mats)
    assert torch.equal(tf.load_transform(tmp_path / "transform.safetensors")["all"], mats["all"])


def test_sample_pairs_is_seeded_and_skips_english():
    pairs = [{"id": f"x/{i}#{lang}", "lang": lang, "instruction": f"{lang} {i}", "instruction_en": f"en {i}"}
             for i in range(10) for lang in ("en", "sw", "de")]  # fmt: skip
    a, b, c = (tf.sample_pairs(pairs, 5, seed=s) for s in (1, 1, 2))
    assert a == b and a != c and len(a) == 5 and all(r["lang"] != "en" for r in a)
    assert len(tf.sample_pairs(pairs, 1000, seed=1)) == 20
    assert len(tf.sample_pairs(pairs, 1000, seed=1, include_english=True)) == 30
    with pytest.raises(ValueError, match="no training pairs"):
        tf.sample_pairs([p for p in pairs if p["lang"] == "en"], 5, seed=0)


@pytest.mark.parametrize("n_pool, first", [(400, 8), (400, 150), (30, 8), (30, None), (30, 1000)])
def test_draw_order_is_nested_and_keeps_sample_pairs_first(n_pool, first):
    # a matrix study's points fit on the pairs drawn first: the method's own N (first) must be
    # exactly sample_pairs' draw, whatever random.sample's algorithm is for n_pool and N
    pairs = [{"id": f"x/{i:04d}#sw", "lang": "sw", "instruction": f"sw {i}", "instruction_en": f"en {i}"}
             for i in range(n_pool)]  # fmt: skip
    order = tf.draw_order(pairs, seed=7, first=first)
    assert sorted(r["id"] for r in order) == [r["id"] for r in pairs]  # every pair, once
    head = order[: first or n_pool]
    assert sorted(head, key=lambda r: r["id"]) == tf.sample_pairs(pairs, first or n_pool, seed=7)
    assert order == tf.draw_order(pairs, seed=7, first=first) != tf.draw_order(pairs, seed=8, first=first)  # fmt: skip


def test_pair_activations(tiny_model_dir, tiny_tokenizer):
    model = lively(AutoModelForCausalLM.from_pretrained(tiny_model_dir("qwen2")), seed=3)
    pairs = [{"instruction": "Jambo?", "instruction_en": "Hello?"}, {"instruction": "Hallo", "instruction_en": "Hello?"}]
    S, T = tf.pair_activations(model, tiny_tokenizer, pairs, batch_size=2)
    assert S.shape == T.shape == (2, 2, 64)
    torch.testing.assert_close(T[0], T[1])  # the same English prompt, batched with different partners
    assert not torch.allclose(S[0], S[1])


SOLVE_IN_A_PROCESS = """
import hashlib, sys, torch
from crosstune.cc_tuning import transform as tf
torch.set_num_threads(int(sys.argv[1]))  # the rule's threads follow --cores: they must not change the bits
g = torch.Generator().manual_seed(0)
S, T = (torch.randn(1200, 96, dtype=torch.float64, generator=g) for _ in range(2))
X, report = tf.fit_transform(S.reshape(100, 12, 96), T.reshape(100, 12, 96))
assert torch.get_num_threads() == int(sys.argv[1])  # restored after the solve
print(hashlib.sha256(X["all"].numpy().tobytes()).hexdigest(), report["matrices"]["all"]["relative_residual_all"])
"""


def test_the_default_cpu_solve_has_the_same_bits_in_every_process():
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}  # this checkout's crosstune
    runs = [subprocess.run([sys.executable, "-c", SOLVE_IN_A_PROCESS, str(threads)], capture_output=True,
                           text=True, check=True, env=env).stdout for threads in (1, 2)]  # fmt: skip
    assert len(set(runs)) == 1, runs
