"""Studies: a `studies:` entry becomes one method per point, checked by name; its table and curves."""

from __future__ import annotations

import copy
import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from crosstune.config import ConfigError
from crosstune.evaluate import study as st
from crosstune.studies import expand, matrix_variants
from crosstune.train.settings import expand_per_language, resolve

from .snakemake_runner import planned_jobs, snakemake
from .train_helpers import SCHEMA, config

METHODS = {"sft": {"type": "sft"}, "clo": {"type": "clo", "size": 4},
           "sft_lora": {"type": "sft", "train": {"finetuning": {"mode": "lora", "lora_r": 4}}},
           "cc_tuning": {"type": "cc_tuning"}}  # fmt: skip


def studied(studies: dict, methods=None, evaluation=None) -> tuple[dict, dict]:
    cfg = config(copy.deepcopy(methods or METHODS))
    cfg["studies"] = studies
    if evaluation is not None:
        cfg["evaluation"]["methods"] = evaluation
    return cfg, expand(cfg, yaml.safe_load(SCHEMA.read_text()))


def test_points_are_methods_named_by_their_settings():
    cfg, studies = studied({
        "clo_size": {"methods": ["clo", "sft"], "vary": {"size": [400, 800]}},
        "lora_rank": {"method": "sft_lora", "vary": {"train.finetuning.lora_r": [8, 64]},
                      "also": {"train.learning_rate": [1e-3]}, "seeds": [1, 2]},
    }, evaluation=["base", "sft"])  # fmt: skip
    assert [p["name"] for p in studies["clo_size"]] == ["clo[size=400]", "clo[size=800]", "sft[size=400]",
                                                        "sft[size=800]"]  # fmt: skip
    assert resolve(cfg, "clo[size=800]")["size"] == 800
    assert resolve(cfg, "clo")["size"] == 4  # the base entry is left as it was
    lora = resolve(cfg, "sft_lora[lora_r=64,learning_rate=0.001,seed=2]")["train"]
    assert (lora["finetuning"]["lora_r"], lora["finetuning"]["mode"], lora["learning_rate"], lora["seed"]) == (
        64, "lora", 1e-3, 2)  # fmt: skip
    assert len(studies["lora_rank"]) == 4  # 2 ranks x 1 learning rate x 2 seeds
    # a listed evaluation gets the points of the methods it lists (a null one evaluates every
    # method anyway): clo is not evaluated, so neither are its points
    assert cfg["evaluation"]["methods"] == ["base", "sft", "sft[size=400]", "sft[size=800]"]


def test_a_study_of_a_per_language_entry_expands_through_per_language():
    methods = {"clo": {"type": "clo", "per_language": True, "languages": ["zh", "sw"]}}
    cfg, _ = studied({"s": {"method": "clo", "vary": {"size": [8]}}}, methods, evaluation=["clo"])
    expand_per_language(cfg)
    assert {"clo[size=8]-zh", "clo[size=8]-sw", "clo-zh"} <= set(cfg["methods"])
    assert resolve(cfg, "clo[size=8]-zh")["languages"] == ["zh"]
    assert "clo[size=8]-sw" in cfg["evaluation"]["methods"]


@pytest.mark.parametrize("study, message", [
    ({"method": "clo", "vary": {"sizes": [1]}}, r"studies\.s\.sizes: not a valid setting of method 'clo'"),
    ({"method": "clo", "vary": {"train.lora_r": [1]}}, r"studies\.s\.train\.lora_r: not a valid setting"),
    ({"method": "clo", "vary": {"size": ["big"]}}, r"studies\.s\.size: not a valid setting.*'big' is not of type"),
    ({"method": "cc_tuning", "vary": {"size": [8]}}, r"studies\.s: methods\.cc_tuning\[size=8\]\.size: not a setting"),
    ({"method": "clo", "vary": {"size": [8, 8]}}, r"studies\.s: point 'clo\[size=8\]' appears twice"),
    ({"method": "clo", "vary": {"size": [[8]]}}, r"studies\.s\.size: \[8\] cannot be a study value"),
    ({"method": "nope", "vary": {"size": [8]}}, r"studies\.s: method 'nope' is not configured"),
    # matrix studies: Transform-Matrix settings of a cc_tuning method, one kind of setting, no seeds
    ({"method": "cc_tuning", "vary": {"cc_tuning.n_pair": [8]}},
     r"studies\.s\.cc_tuning\.n_pair: not a Transform-Matrix setting; a matrix study varies n_pairs, ridge"),
    ({"method": "cc_tuning", "vary": {"cc_tuning.seed": [1, 2]}},
     r"studies\.s\.cc_tuning\.seed: changes the activations extraction"),
    ({"method": "cc_tuning", "vary": {"cc_tuning.ridge": ["big"]}},
     r"studies\.s\.cc_tuning\.ridge: not a valid Transform-Matrix setting \(ridge: 'big' is not of type 'number'\)"),
    ({"method": "cc_tuning", "vary": {"cc_tuning.n_pairs": [0]}},
     r"studies\.s\.cc_tuning\.n_pairs: not a valid.*0 is less than the minimum of 1"),
    ({"method": "cc_tuning", "vary": {"cc_tuning.n_pairs": [8, 8]}},
     r"point 'cc_tuning@matrix\[n_pairs=8\]' appears twice"),
    ({"method": "clo", "vary": {"cc_tuning.ridge": [0.1]}}, r"studies\.s: a matrix study .* 'clo' is clo"),
    ({"method": "cc_tuning", "vary": {"cc_tuning.ridge": [0.1]}, "also": {"tau": [0.5]}},
     r"studies\.s: vary and also mix Transform-Matrix settings"),
    ({"method": "cc_tuning", "vary": {"cc_tuning.ridge": [0.1]}, "seeds": [1, 2]},
     r"studies\.s\.seeds: a matrix study \(cc_tuning\.\*\) reuses one trained model"),
])  # fmt: skip
def test_bad_studies_are_refused_by_name(study, message):
    with pytest.raises(ConfigError, match=message):
        studied({"s": study})


def test_points_of_two_studies_that_collide_are_refused():
    # the data seed (methods.clo.seed) and the training seed (train.seed) share a short name
    with pytest.raises(ConfigError, match=r"studies\.b: point 'clo\[seed=1\]' collides with study 'a'"):
        studied({"a": {"method": "clo", "vary": {"seed": [1]}},
                 "b": {"method": "clo", "vary": {"train.seed": [1]}}})  # fmt: skip
    # the same point with the same settings is shared (trained once)
    cfg, studies = studied({"a": {"method": "clo", "vary": {"size": [8]}},
                            "c": {"method": "clo", "vary": {"size": [8, 16]}}})  # fmt: skip
    assert [p["name"] for p in studies["c"]] == ["clo[size=8]", "clo[size=16]"]


def test_a_matrix_study_names_transform_matrix_points_and_trains_nothing():
    methods = {**METHODS, "cc_pl": {"type": "cc_tuning", "per_language": True, "languages": ["zh", "sw"]}}  # fmt: skip
    before = copy.deepcopy(methods)
    cfg, studies = studied({"matrix_n": {"methods": ["cc_tuning", "cc_pl"], "vary": {"cc_tuning.n_pairs": [10, 1000]},
                                         "also": {"cc_tuning.ridge": [0, 1e-3]}}},
                           methods, evaluation=["base", "cc_tuning@none", "cc_pl"])  # fmt: skip
    grid = studies["matrix_n"]
    assert [p["name"] for p in grid[:4]] == [
        "cc_tuning@matrix[n_pairs=10,ridge=0]", "cc_tuning@matrix[n_pairs=10,ridge=0.001]",
        "cc_tuning@matrix[n_pairs=1000,ridge=0]", "cc_tuning@matrix[n_pairs=1000,ridge=0.001]"]  # fmt: skip
    p = grid[1]
    assert (p["variant"], p["matrix"], p["point"], p["also"], p["x"]) == (
        "matrix[n_pairs=10,ridge=0.001]", {"n_pairs": 10, "ridge": 1e-3}, "n_pairs=10", "ridge=0.001", 10)  # fmt: skip
    assert cfg["methods"] == before  # no method entry: the points reuse the trained model
    # the rows join the evaluation list with their base method; per_language names each variant's
    expand_per_language(cfg)
    rows = cfg["evaluation"]["methods"]
    assert "cc_tuning@matrix[n_pairs=10,ridge=0]" in rows and "cc_pl-zh@matrix[n_pairs=1000,ridge=0]" in rows  # fmt: skip
    variants = matrix_variants(studies, cfg["languages"])
    assert set(variants) >= {"cc_tuning", "cc_pl-zh", "cc_pl-sw"}
    assert variants["cc_pl-sw"]["matrix[n_pairs=10,ridge=0]"] == {"n_pairs": 10, "ridge": 0}


def _scores(values: dict[str, float], n_reps=400, spread=0.02):
    """A load_scores-like table and replicates: one row per method, avg_x accuracy."""
    rows, reps = [], {}
    for i, (method, v) in enumerate(values.items()):
        r = np.random.default_rng(i).normal(v, spread, n_reps)
        reps[("m", method, "b", "avg_x|accuracy")] = r
        rows.append({"model": "m", "method": method, "benchmark": "b", "language": "avg_x", "metric": "accuracy",
                     "value": v, "ci_low": np.quantile(r, 0.025), "ci_high": np.quantile(r, 0.975), "n": 10})  # fmt: skip
    return pd.DataFrame(rows), reps


def test_study_table_pools_seeds_with_seed_and_item_variance(tmp_path):
    scores, reps = _scores({"clo[size=8,seed=1]": 0.40, "clo[size=8,seed=2]": 0.60, "clo[size=16,seed=1]": 0.7})
    rows = [{"row": r, "method": "clo", "point": f"size={x}", "setting": "size", "x": x, "also": ""}
            for r, x in [("clo[size=8,seed=1]", 8), ("clo[size=8,seed=2]", 8), ("clo[size=16,seed=1]", 16)]]  # fmt: skip
    table = st.study_table("s", rows, scores, reps, seed=0)
    assert list(table.columns) == st.COLUMNS
    eight = table[table.point == "size=8"].iloc[0]
    assert eight.value == pytest.approx(0.5) and eight.seeds == 2
    # the seeds disagree by 0.2: the pooled interval is far wider than either seed's item interval (~0.08)
    assert eight.ci_high - eight.ci_low > 0.15
    assert eight.ci_low < 0.45 and eight.ci_high > 0.55
    sixteen = table[table.point == "size=16"].iloc[0]
    assert (sixteen.seeds, sixteen.ci_low) == (1, scores.ci_low.iloc[2])  # one seed: the item interval
    assert table.equals(st.study_table("s", rows, scores, reps, seed=0))  # same seed, same intervals
    st.curve(table, "m", "b", tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_study_table_keeps_crossed_values_apart():
    # two ridges of one N are two curves, not two seeds of one point
    rows = [{"row": f"cc_tuning@matrix[n_pairs=10,ridge={r}]", "method": "cc_tuning@matrix", "point": "n_pairs=10",
             "setting": "cc_tuning.n_pairs", "x": 10, "also": f"ridge={r}"} for r in (0, 0.1)]  # fmt: skip
    scores, reps = _scores({rows[0]["row"]: 0.4, rows[1]["row"]: 0.6})
    table = st.study_table("s", rows, scores, reps, seed=0)
    assert list(table.also) == ["ridge=0", "ridge=0.1"] and list(table.value) == [0.4, 0.6]
    assert (table.seeds == 1).all()


@pytest.mark.slow
def test_tiny_study_table_and_curves(tiny_run):
    table = pd.read_csv(tiny_run / "results/studies/clo_size/table.tsv", sep="\t")
    assert set(table.point) == {"size=2", "size=8"} and set(table.method) == {"clo"}
    scored = table.dropna(subset=["value"])  # a metric a language lacks (NaN) stays NaN, as in scores.tsv
    assert len(scored) > len(table) / 2 and (table.seeds == 1).all()
    assert scored.value.between(0, 1).all() and (scored.ci_low <= scored.ci_high + 1e-12).all()
    assert {"size=2", "size=8"} == set(scored[scored.language == "avg_x"].point)
    curves = sorted(p.name for p in (tiny_run / "results/studies/clo_size/curves").iterdir())
    assert "tiny-llama_xnli.png" in curves


@pytest.mark.slow
def test_adding_a_value_plans_only_that_point(tiny_run):
    run = snakemake(tiny_run, "-n", override={"studies": {"clo_size": {"method": "clo", "vary": {"size": [2, 8, 16]}}}})
    jobs = planned_jobs(run)
    # one training, its generate and score jobs (one per benchmark), the study and the aggregate
    n_bench = jobs["generate"]
    assert jobs["train"] == 1 and jobs["score"] == n_bench and jobs["study"] == 1
    assert "output: results/tiny-llama/train/clo[size=16]/model" in run.stdout
    # model cards: the new model's, and every card that shows the rewritten scores table
    assert set(jobs) == {"train", "model_card", "generate", "score", "study", "aggregate", "all"}


MATRIX_N = {"method": "cc_tuning", "vary": {"cc_tuning.n_pairs": [10, 40]}, "also": {"cc_tuning.ridge": [0, 0.001]}}  # fmt: skip


def test_a_matrix_study_adds_one_matrix_and_its_matrix_row_per_point(tmp_path):
    # against the same config without it: no training, no second extraction, no oracle or
    # none rows (they do not use the matrix) - a transform_point job per point, its rows' jobs
    without = planned_jobs(snakemake(tmp_path, "-n"))
    run = snakemake(tmp_path, "-n", override={"studies": {"matrix_n": MATRIX_N}})
    jobs = planned_jobs(run)
    # the benchmarks the method's own matrix row is generated for
    benchmarks = len(re.findall(r"output: results/tiny-llama/eval/cc_tuning@matrix/\w+/predictions", run.stdout))  # fmt: skip
    added = {rule: n - without.get(rule, 0) for rule, n in jobs.items() if n != without.get(rule, 0)}  # fmt: skip
    assert benchmarks == 6 and added == {"transform_point": 4, "generate": 24, "score": 24, "study": 1}  # fmt: skip
    assert (jobs["train"], jobs["activations"], jobs["transform"]) == (without["train"], 1, 1)
    assert "output: results/tiny-llama/cc_tuning/cc_tuning/matrix[n_pairs=10,ridge=0.001]/transform.safetensors" in run.stdout  # fmt: skip
    assert "output: results/tiny-llama/eval/cc_tuning@matrix[n_pairs=40,ridge=0]/xnli/predictions" in run.stdout  # fmt: skip


@pytest.mark.slow
def test_a_matrix_study_runs_from_one_extraction_and_adds_points_alone(tmp_path):
    # a small matrix study on one benchmark, only its table built (3-6 minutes on 2 cores)
    override = {"benchmarks": {"run": ["xnli"]}, "studies": {"matrix_n": MATRIX_N}}
    target = "results/studies/matrix_n/table.tsv"
    run = snakemake(tmp_path, target, override=override)
    jobs = planned_jobs(SimpleNamespace(stdout=run.stderr))  # a run logs its job stats on stderr
    assert (jobs["train"], jobs["activations"], jobs["transform_point"], jobs["generate"]) == (1, 1, 4, 4)  # fmt: skip
    table = pd.read_csv(tmp_path / target, sep="\t", keep_default_na=False)
    assert set(table.method) == {"cc_tuning@matrix"} and set(table.point) == {"n_pairs=10", "n_pairs=40"}  # fmt: skip
    assert set(table.also) == {"ridge=0", "ridge=0.001"} and (table.seeds == 1).all()
    avg = table[(table.language == "avg_x") & (table.metric == "acc_ll")]
    assert len(avg) == 4 and avg.value.astype(float).between(0, 1).all()
    assert (tmp_path / "results/studies/matrix_n/curves/tiny-llama_xnli.png").read_bytes()[:4] == b"\x89PNG"  # fmt: skip
    where = tmp_path / "results/tiny-llama/cc_tuning/cc_tuning"
    fit = json.loads((where / "matrix[n_pairs=10,ridge=0.001]/fit.json").read_text())
    assert (fit["pairs"], fit["n_pairs"], fit["ridge"]) == (10, 10, 0.001)
    # a new N below the extracted 40: that point's matrix and rows alone
    more = {**override, "studies": {"matrix_n": {**MATRIX_N, "vary": {"cc_tuning.n_pairs": [10, 20, 40]}}}}  # fmt: skip
    assert planned_jobs(snakemake(tmp_path, "-n", target, override=more)) == {
        "transform_point": 2, "generate": 2, "score": 2, "study": 1}  # fmt: skip
    # a new largest N draws more pairs: the extraction and every matrix after it rerun
    most = {**override, "studies": {"matrix_n": {**MATRIX_N, "vary": {"cc_tuning.n_pairs": [10, 40, 80]}}}}  # fmt: skip
    jobs = planned_jobs(snakemake(tmp_path, "-n", target, override=most))
    assert (jobs["activations"], jobs["transform_point"], jobs.get("train")) == (1, 6, None)
