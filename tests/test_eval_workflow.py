"""Rules benchmark_data -> generate -> score -> aggregate end to end on the tiny model, and --report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from .snakemake_runner import planned_jobs
from .snakemake_runner import snakemake as run_snakemake

# two bundled benchmarks, the untrained model only (training is tested elsewhere)
OVERRIDE = {
    "benchmarks": {"run": ["xnli", "xlsum"], "xnli": {"source": "bundled", "languages": ["en", "zh"]},
                   "xlsum": {"source": "bundled", "languages": ["en", "ar"]}},
    "evaluation": {"methods": ["base"], "baseline": "base", "generation": {"max_new_tokens": 4},
                   "bootstrap": {"samples": 50}},
}  # fmt: skip
TARGET = "results/eval/scores.tsv"


def snakemake(workdir, *args):
    return run_snakemake(workdir, TARGET, *args, override=OVERRIDE)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eval-run")
    snakemake(workdir)
    return workdir


def test_generate_score_aggregate(eval_run):
    pred = [json.loads(x) for x in (eval_run / "results/tiny-llama/eval/base/xnli/predictions/zh.jsonl").open()]
    items = [json.loads(x) for x in (eval_run / "results/benchmarks/xnli/zh.jsonl").open()]
    assert [p["id"] for p in pred] == [it["id"] for it in items] and len(items) >= 8
    assert all(p["n_tokens"] <= 4 and len(p["option_loglik"]) == 3 for p in pred)
    meta = json.loads((eval_run / "results/tiny-llama/eval/base/xnli/predictions/provenance.json").read_text())
    assert meta["stage"] == "generate" and meta["settings"]["generation"]["max_new_tokens"] == 4
    table = pd.read_csv(eval_run / "results/eval/scores.tsv", sep="\t")
    assert list(table.columns) == ["model", "method", "benchmark", "language", "metric", "value", "ci_low",
                                   "ci_high", "n"]  # fmt: skip
    assert set(table.benchmark) == {"xnli", "xlsum"} and set(table.method) == {"base"}
    assert {"accuracy", "acc_ll", "acc_norm_ll", "no_answer", "fidelity", "consistency_3"} - set(
        table[table.benchmark == "xnli"].metric
    ) == {"consistency_3"}  # k = 3 needs three languages; this run has two
    assert {"rouge_l", "chrf"} <= set(table[table.benchmark == "xlsum"].metric)
    assert pd.read_parquet(eval_run / "results/eval/scores.parquet").shape == table.shape
    assert (eval_run / "results/eval/tables/xnli.md").read_text().startswith("# xnli")
    # xnli has en and zh: its non-English average is zh's score
    xnli = table[table.benchmark == "xnli"].set_index(["language", "metric"]).value
    assert xnli.loc["avg_x"].to_dict() == pytest.approx(xnli.loc["zh"].to_dict(), nan_ok=True)
    assert "| tiny-llama | base | " in (eval_run / "results/eval/tables/retention.md").read_text()
    for fig in ("xnli_heatmap.png", "xlsum_gain.png"):
        assert (eval_run / "results/eval/figures/tiny-llama" / fig).stat().st_size > 1000


def test_rerun_plans_nothing_and_report_builds(eval_run):
    assert "Nothing to be done" in snakemake(eval_run, "-n").stdout
    snakemake(eval_run, "--report", "report.html")
    html = (eval_run / "report.html").read_text(errors="replace")
    assert "xnli_heatmap.png" in html and "scores.tsv" in html


def test_decoding_settings_that_can_change_outputs_rerun_generate(eval_run):
    """decoder, reuse_prefix and the batch limits are rule params (in bfloat16 they can change outputs)."""

    def plan(**generation):
        evaluation = {**OVERRIDE["evaluation"], "generation": {**OVERRIDE["evaluation"]["generation"], **generation}}
        return planned_jobs(run_snakemake(eval_run, TARGET, "-n", override={**OVERRIDE, "evaluation": evaluation}))

    assert plan(decoder="padded").get("generate") == 2  # base on xnli and xlsum
    assert plan(reuse_prefix=True).get("generate") == 2
    assert plan(batch_size=3).get("generate") == 2
    assert plan(max_batch_tokens=1000).get("generate") == 2
