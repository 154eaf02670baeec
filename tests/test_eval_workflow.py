"""Rules generate -> score -> aggregate end to end on a tiny model, and --report.

The benchmark items come from files written here (rule benchmark_data is not
part of this test): a test Snakefile includes the project's rule files and
sets the `benchmarks:` section itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from .conftest import REPO
from .eval_items import write_items

SNAKEFILE = """
from snakemake.utils import validate

configfile: "{tiny}"
config.setdefault("evaluation", {{}}).update(
    generation={{"max_new_tokens": 4}}, bootstrap={{"samples": 50}}, baseline="base"
)
validate(config, "{schema}", set_default=True)
config["benchmarks"] = {{"xnli": {{"languages": ["en", "zh"]}}, "xlsum": {{"languages": ["en", "ar"]}}}}

include: "{rules}/common.smk"
include: "{rules}/data.smk"
include: "{rules}/eval.smk"

rule eval_all:
    input: rules.aggregate.output
    default_target: True
"""


def snakemake(workdir, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "-s", str(workdir / "Snakefile"),
           "--directory", str(workdir), *args]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eval-run")
    (workdir / "Snakefile").write_text(SNAKEFILE.format(
        tiny=REPO / "config" / "tiny.yaml", schema=REPO / "workflow" / "schemas" / "config.schema.yaml",
        rules=REPO / "workflow" / "rules"))  # fmt: skip
    write_items(workdir, "xnli", langs=("en", "zh"))
    write_items(workdir, "xlsum", langs=("en", "ar"))
    snakemake(workdir)
    return workdir


def test_generate_score_aggregate(eval_run):
    pred = [json.loads(x) for x in (eval_run / "results/tiny-llama/eval/base/xnli/predictions/zh.jsonl").open()]
    assert [p["id"] for p in pred] == ["xnli/zh/0000", "xnli/zh/0001", "xnli/zh/0002"]
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
    for fig in ("xnli_heatmap.png", "xlsum_gain.png"):
        assert (eval_run / "results/eval/figures/tiny-llama" / fig).stat().st_size > 1000


def test_rerun_plans_nothing_and_report_builds(eval_run):
    assert "Nothing to be done" in snakemake(eval_run, "-n").stdout
    snakemake(eval_run, "--report", "report.html")
    html = (eval_run / "report.html").read_text(errors="replace")
    assert "xnli_heatmap.png" in html and "scores.tsv" in html
