"""The workflow end to end on config/tiny.yaml: runs, reruns nothing, reruns exactly what a change affects."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from .conftest import REPO


def snakemake(workdir, *args, override: dict | None = None, check=True):
    """Run snakemake on config/tiny.yaml, plus an ``override`` config merged on top."""
    configs = [str(REPO / "config" / "tiny.yaml")]
    if override:
        path = workdir / "override.yaml"
        path.write_text(yaml.safe_dump(override))
        configs.append(str(path))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "-s", str(REPO / "Snakefile"),
           "--directory", str(workdir), *args, "--configfile", *configs]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    return run


def planned_jobs(run) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    counts = {}
    for rule, n in re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M):
        if rule != "total":
            counts[rule] = int(n)
    return counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny-run")
    snakemake(workdir)
    return workdir


def test_tiny_dag_produces_pairs_with_provenance(tiny_run):
    pairs = [json.loads(line) for line in (tiny_run / "results/tiny-llama/pairs/pairs.jsonl").open()]
    langs = {p["lang"] for p in pairs}
    assert langs == {"en", "ar", "hi", "sw", "zh", "ru"}
    sw = next(p for p in pairs if p["lang"] == "sw")
    en = next(p for p in pairs if p["id"] == sw["id"].split("#")[0])
    assert sw["instruction_en"] == en["instruction"] and sw["response_en"] == en["response"]
    stats = (tiny_run / "results/tiny-llama/pairs/stats.tsv").read_text().splitlines()
    assert stats[0].split("\t") == ["lang", "input", "duplicate", "too_long", "too_short", "kept", "mean_tokens"]
    for meta in ["resources/models/tiny-llama/provenance.json", "results/tiny-llama/pairs/provenance.json",
                 "results/data/translated/sw/provenance.json"]:  # fmt: skip
        record = json.loads((tiny_run / meta).read_text())
        assert record["seed"] == 42 and record["versions"]["transformers"]
        assert record["config"]["models"]["tiny-llama"]["source"]["family"] == "llama"
    assert (tiny_run / "logs/translate/sw.log").exists()


def test_second_run_schedules_nothing(tiny_run):
    run = snakemake(tiny_run, "-n")
    assert "Nothing to be done" in run.stdout + run.stderr


def test_translate_setting_reruns_translate_and_after_only(tiny_run):
    run = snakemake(tiny_run, "-n", override={"translate": {"num_beams": 2}})
    jobs = planned_jobs(run)
    assert jobs.get("translate") == 5 and jobs.get("pairs") == 1
    assert "base_model" not in jobs and "source_data" not in jobs


def test_pairs_setting_reruns_pairs_only(tiny_run):
    run = snakemake(tiny_run, "-n", override={"pairs": {"max_tokens": 300}})
    jobs = planned_jobs(run)
    assert jobs.get("pairs") == 1
    assert not {"translate", "base_model", "source_data"} & set(jobs)
