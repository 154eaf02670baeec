"""benchmarks/gpu_rehearsal.py: its config is the paper recipe apart from the declared shrunk keys,
and the whole rehearsal (every method, activations, transform, both decoders, score) runs on the
CPU with the tiny shape."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from .conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_rehearsal", REPO / "benchmarks" / "gpu_rehearsal.py")
rehearsal = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rehearsal)


def differences(a, b, path=()) -> dict[tuple, tuple]:
    """{path: (a's value, b's value)} of every leaf where two YAML trees differ (dicts key by key)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = {}
        for key in a.keys() | b.keys():
            out.update(differences(a.get(key, "<absent>"), b.get(key, "<absent>"), (*path, key)))
        return out
    return {} if a == b else {path: (a, b)}


@pytest.mark.parametrize("shape", ["gpu", "tiny"])
def test_rehearsal_differs_from_the_recipe_only_in_shrunk_keys(shape):
    recipe = yaml.safe_load(rehearsal.RECIPE.read_text())
    cfg = rehearsal.rehearsal_config(shape)
    declared = dict(rehearsal.shrunk(shape))
    diff = differences(recipe, cfg)
    # a difference below a shrunk key (e.g. inside models.<name>.source) belongs to that key
    undeclared = {p: v for p, v in diff.items() if not any(p[: len(k)] == k for k in declared)}
    assert not undeclared, f"the rehearsal drifted from {rehearsal.RECIPE.name}: {undeclared}"
    for key, value in declared.items():  # and every shrunk key has the declared value
        node = cfg
        for part in key:
            node = node[part]
        assert node == value, key
    # what must stay the recipe's: the methods, their settings, precision, batch shapes, the accelerate config
    assert cfg["methods"] == recipe["methods"] and cfg["train"]["per_device_batch_size"] == 16
    assert cfg["train"]["accelerate_config"].endswith("zero3.yaml")
    assert cfg["train"]["bf16"] is (shape == "gpu")


def test_the_diff_catches_a_drift():
    cfg = rehearsal.rehearsal_config("tiny")
    cfg["methods"]["clo"]["beta"] = 0.2
    diff = differences(yaml.safe_load(rehearsal.RECIPE.read_text()), cfg)
    assert ("methods", "clo", "beta") in diff


def test_a_shrunk_key_the_recipe_lacks_is_an_error(monkeypatch):
    monkeypatch.setattr(rehearsal, "shrunk", lambda shape: [(("train", "no_such_key"), 1)])
    with pytest.raises(KeyError, match="train.no_such_key"):
        rehearsal.rehearsal_config("tiny")


def test_peak_gpu_memory_line_reads_back(tmp_path, monkeypatch):
    """The line a CUDA job logs at exit (crosstune.workflow) is what the rehearsal parses."""
    from crosstune.workflow import log_peak_gpu_memory

    mib = 2**20
    cuda = SimpleNamespace(is_initialized=lambda: True, device_count=lambda: 2,
                           max_memory_allocated=lambda d: (100 + d) * mib, max_memory_reserved=lambda d: 300 * mib)  # fmt: skip
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    log = tmp_path / "job.log"
    logger, handler = logging.getLogger("crosstune.workflow"), logging.FileHandler(log)
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        log_peak_gpu_memory()
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert rehearsal.peak_gpu_mib(log) == 201.0  # 100 + 101 MiB over the two devices
    assert rehearsal.peak_gpu_mib(tmp_path / "absent.log") is None


def test_template_special_tokens():
    from crosstune.models import template_special_tokens

    template = (REPO / "config/chat_templates/llama3.jinja").read_text()
    assert template_special_tokens(template, "<|eot_id|>") == ["<|end_header_id|>", "<|eot_id|>", "<|start_header_id|>"]
    assert template_special_tokens(None, None) == []


def test_rehearsal_runs_on_cpu(tmp_path):
    """The tiny shape end to end: every stage has its jobs in the table, both decoders ran."""
    out = tmp_path / "result.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_rehearsal.py"), "--shape", "tiny", "--cores", "2",
                           "--workdir", str(tmp_path / "run"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    result = json.loads(out.read_text())
    jobs = {r["stage"]: r["jobs"] for r in result["rows"]}
    methods = yaml.safe_load(rehearsal.RECIPE.read_text())["methods"]
    evaluated = 5  # base, sft, cc_tuning@matrix, @oracle, @none on xnli
    cc_tuning = [m for m, spec in methods.items() if spec["type"] == "cc_tuning"]  # cc_tuning, cc_tuning+mt
    assert jobs["train"] == len(methods) and len(methods) >= 8  # every method of the recipe
    assert jobs["activations"] == jobs["transform"] == len(cc_tuning) >= 1
    assert jobs["generate"] == jobs["score"] == jobs["generate [padded]"] == jobs["score [padded]"] == evaluated
    assert jobs["aggregate"] == jobs["aggregate [padded]"] == 1
    assert all(r["sum_s"] > 0 and r["gpu_mib"] is None for r in result["rows"])  # timed; no CUDA on the CPU
    assert f"| train | {len(methods)} |" in done.stdout and "wall:" in done.stdout
    run = tmp_path / "run"
    for method in methods:
        assert json.loads((run / f"results/llama-3.1-8b/train/{method}/metrics.json").read_text())["steps"] == 3
    provenance = (run / "results/llama-3.1-8b/eval/sft/xnli/predictions/provenance.json").read_text()
    assert '"decoder": "padded"' in provenance  # the second pass decoded with the padded decoder
    assert (run / "results/eval/scores.tsv").is_file()


def test_zero3_stage_launches_accelerate_with_the_recipes_zero3_config(tmp_path, monkeypatch):
    """--zero3 (needs a GPU and deepspeed, so only its command is checked here): sft through
    `accelerate launch` with the recipe's zero3.yaml, one process, a job file crosstune.train reads."""
    calls = []

    def fake_run(cmd, **kw):
        calls.append((cmd, kw))
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(rehearsal.subprocess, "run", fake_run)
    (tmp_path / "logs").mkdir()
    row = rehearsal.train_zero3(rehearsal.rehearsal_config("gpu"), tmp_path)
    (cmd, kw), = calls
    assert cmd[cmd.index("--config_file") + 1].endswith("workflow/profiles/accelerate/zero3.yaml")
    assert cmd[cmd.index("--num_processes") + 1] == "1" and cmd[-3:-1] == ["-m", "crosstune.train"]
    job = json.loads((tmp_path / "results/llama-3.1-8b/zero3/sft/job.json").read_text())
    assert job["settings"]["train"]["bf16"] is True and job["settings"]["name"] == "sft"
    assert kw["cwd"] == tmp_path and row["stage"].startswith("train sft (ZeRO-3")
