"""Rule benchmark_data in the workflow: items for the configured benchmarks, reruns, config errors."""

from __future__ import annotations

import json

import pytest

from crosstune.benchmarks import validate_item

from .snakemake_runner import planned_jobs as planned
from .snakemake_runner import snakemake

TARGETS = ["results/benchmarks/xnli/ar.jsonl", "results/benchmarks/mkqa/zh.jsonl"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("benchmarks-run")
    snakemake(workdir, *TARGETS)
    return workdir


def test_default_plans_every_benchmark_language(tmp_path):
    run = snakemake(tmp_path, "-n", "benchmarks")
    assert planned(run)["benchmark_data"] == 6 + 6 + 4 + 5 + 4 + 5  # the mini sets' languages


def test_rule_writes_items_and_provenance(built):
    for target in TARGETS:
        items = [json.loads(line) for line in (built / target).open()]
        assert len(items) >= 8
        for item in items:
            validate_item(item)
        meta = json.loads((built / target.replace(".jsonl", ".provenance.json")).read_text())
        assert meta["stage"] == "benchmark_data" and meta["items"] == len(items)
        assert meta["read"]["source"] == "bundled" and meta["seed"] == 666
    assert (built / "logs/benchmark_data/xnli/ar.log").exists()


def test_sample_setting_reruns_that_benchmark_only(built):
    assert "Nothing to be done" in snakemake(built, "-n", *TARGETS).stdout
    jobs = planned(snakemake(built, "-n", *TARGETS, override={"benchmarks": {"xnli": {"n": 4}}}))
    assert jobs == {"benchmark_data": 1}
    run = snakemake(built, "-n", *TARGETS, override={"benchmarks": {"mkqa": {"aliases": True}}})
    assert planned(run) == {"benchmark_data": 1} and "mkqa/zh.jsonl" in run.stdout


def test_unknown_language_fails_before_any_job(tmp_path):
    run = snakemake(tmp_path, "-n", "benchmarks", override={"benchmarks": {"xquad": {"languages": ["en", "sw"]}}},
                    check=False)  # fmt: skip
    assert run.returncode != 0
    assert "benchmarks.xquad.languages: xquad has no language 'sw'" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
