"""evaluation.qa_normalize is a param of rule score for QA benchmarks only: changing it reruns their scores."""

from __future__ import annotations

import pytest

from .snakemake_runner import planned_jobs
from .snakemake_runner import snakemake as run_snakemake

OVERRIDE = {
    "benchmarks": {"run": ["mkqa", "xnli"], "mkqa": {"source": "bundled", "languages": ["en"]},
                   "xnli": {"source": "bundled", "languages": ["en"]}},
    "evaluation": {"methods": ["base"], "baseline": "base", "generation": {"max_new_tokens": 2},
                   "likelihood": {"enabled": False}, "bootstrap": {"samples": 10}},
}  # fmt: skip
TARGET = "results/eval/scores.tsv"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("qa-normalize")
    run_snakemake(workdir, TARGET, override=OVERRIDE)
    return workdir


def test_qa_normalize_reruns_only_qa_scores(run_dir):
    def plan(mode):
        override = {**OVERRIDE, "evaluation": {**OVERRIDE["evaluation"], "qa_normalize": mode}}
        return planned_jobs(run_snakemake(run_dir, TARGET, "-n", override=override))

    assert plan("squad") == {}  # the default: nothing to do
    jobs = plan("ours")
    assert jobs.get("score") == 1 and "generate" not in jobs  # mkqa's score, not xnli's
    assert '"qa_normalize": "squad"' in (run_dir / "results/tiny-llama/eval/base/mkqa/scores/provenance.json").read_text()
