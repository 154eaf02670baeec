"""Shared fixtures: tiny random models of every family with a locally trained tokenizer."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
CC_EVAL = SHARED / "benchmarks" / "cc-tuning-eval"
FAMILIES = ("llama", "qwen2", "mistral", "gemma")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer (vocab 512) trained on the bundled seed texts, ChatML template."""
    from crosstune.data.sources import seed_texts
    from crosstune.models import train_tokenizer

    return train_tokenizer(seed_texts(), vocab_size=512)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """Factory: ``tiny_model_dir("qwen2")`` -> a saved tiny random model directory (cached per family)."""
    from crosstune.models import build_tiny_model

    cache: dict[str, Path] = {}

    def make(family: str = "llama") -> Path:
        if family not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{family}")
            model = build_tiny_model(family, tiny_tokenizer, seed=0)
            model.save_pretrained(out)
            tiny_tokenizer.save_pretrained(out)
            cache[family] = out
        return cache[family]

    return make


@pytest.fixture
def cc_eval():
    """The CC-Tuning paper's released evaluation set, or skip when ../shared is absent."""
    if not CC_EVAL.is_dir():
        pytest.skip("../shared/benchmarks/cc-tuning-eval is not present")
    return CC_EVAL


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny DAG (config/tiny.yaml) run locally once per session: test_workflow's subject and
    test_slurm's reference."""
    from .snakemake_runner import snakemake

    workdir = tmp_path_factory.mktemp("tiny-run")
    snakemake(workdir)
    return workdir
