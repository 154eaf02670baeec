"""The workflow end to end on config/tiny.yaml: runs, reruns nothing, reruns exactly what a change affects."""

from __future__ import annotations

import json
import os
import re
import shutil

import pandas as pd
import pytest
import yaml

from .conftest import REPO
from .snakemake_runner import planned_jobs, snakemake


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
    # the hardware a model's bits depend on: tiny.yaml gives every job one thread (resources: default)
    hardware = json.loads((tiny_run / "results/tiny-llama/train/sft/model/provenance.json").read_text())["hardware"]
    assert hardware["torch_threads"] == 1 and hardware["cpu_count"] == os.cpu_count() and hardware["gpus"] == []
    assert hardware["cpu"] and hardware["machine"]


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


def test_checkpoint_and_logging_cadence_rerun_nothing(tiny_run):
    override = {"train": {"save_steps": 1, "logging_steps": 2, "save_total_limit": 3}}
    run = snakemake(tiny_run, "-n", override=override)
    assert "Nothing to be done" in run.stdout + run.stderr


def test_every_script_rule_has_its_code_digest_as_a_param():
    """The param that reruns a rule when the crosstune code its script runs changes."""
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"(?m)^(?=rule )", smk.read_text()):
            script = re.search(r'script:\n\s+"\.\./scripts/(\w+\.py)"', block)
            if script:
                assert f'code=code("{script.group(1)}")' in block, f"{smk.name}: {block.split(':')[0]}"


def test_editing_a_local_data_file_reruns_source_data(tmp_path):
    """A jsonl source and a local hub-schema directory are inputs of rule source_data."""
    (tmp_path / "data").mkdir()
    mine = tmp_path / "data" / "mine.jsonl"
    mine.write_text('{"instruction": "Say hi.", "response": "Hi."}\n')
    shutil.copytree(REPO / "tests" / "fixtures" / "hub" / "alpaca", tmp_path / "data" / "alpaca")
    override = {"data": {"sources": [{"name": "mine", "type": "jsonl", "path": "data/mine.jsonl"},
                                     {"name": "alpaca", "type": "alpaca", "path": "data/alpaca"}]}}  # fmt: skip
    target = "results/data/source/records.jsonl"
    snakemake(tmp_path, target, override=override)
    assert "Say hi." in (tmp_path / target).read_text()
    assert "Nothing to be done" in snakemake(tmp_path, "-n", target, override=override).stdout
    # Snakemake compares input checksums too: a new mtime alone reruns nothing, new content does
    mine.write_text('{"instruction": "Say bye.", "response": "Bye."}\n')
    assert planned_jobs(snakemake(tmp_path, "-n", target, override=override)) == {"source_data": 1}
    snakemake(tmp_path, target, override=override)
    assert "Say bye." in (tmp_path / target).read_text() and "Say hi." not in (tmp_path / target).read_text()
    parquet = next((tmp_path / "data" / "alpaca").rglob("*.parquet"))
    pd.read_parquet(parquet).iloc[1:].to_parquet(parquet)  # one row fewer
    assert planned_jobs(snakemake(tmp_path, "-n", target, override=override)) == {"source_data": 1}


def test_tiny_dag_trains_every_configured_method(tiny_run):
    from transformers import AutoModelForCausalLM

    methods = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())["methods"]
    for name in methods:
        out = tiny_run / f"results/tiny-llama/train/{name}"
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["method"] == name and metrics["steps"] == 3 and metrics["loss_curve"]
        assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((out / "model" / "provenance.json").read_text())["settings"]["name"] == name
        assert "loss" in (tiny_run / f"logs/train/tiny-llama/{name}.log").read_text()
    for name in ("sft", "sft_lora"):  # full fine-tuning and a merged LoRA model
        AutoModelForCausalLM.from_pretrained(tiny_run / f"results/tiny-llama/train/{name}/model")
    # sft_dpo starts from (and is referenced to) the trained sft model, not the base model
    dpo = json.loads((tiny_run / "results/tiny-llama/train/sft_dpo/metrics.json").read_text())
    assert dpo["init_from"] == "sft" and dpo["start_model"] == "results/tiny-llama/train/sft/model"
    assert (tiny_run / "results/tiny-llama/train/cc_tuning/model/decision_maker.safetensors").is_file()


def test_method_setting_reruns_that_training_only(tiny_run):
    run = snakemake(tiny_run, "-n", override={"methods": {"crossin": {"size": 30}}})
    assert planned_jobs(run).get("train") == 1
    assert "results/tiny-llama/train/crossin/metrics.json" in run.stdout
    run = snakemake(tiny_run, "-n", override={"methods": {"sft": {"languages": ["en", "sw"]}}})
    assert planned_jobs(run).get("train") == 2  # sft and sft_dpo, which starts from it
    assert "results/tiny-llama/train/sft_dpo/metrics.json" in run.stdout
    run = snakemake(tiny_run, "-n", override={"train": {"learning_rate": 0.002}})
    jobs = planned_jobs(run)
    trained = [d for d in (tiny_run / "results/tiny-llama/train").iterdir() if (d / "model").is_dir()]
    assert jobs.get("train") == len(trained) >= len(yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())["methods"])
    assert not {"pairs", "translate", "base_model"} & set(jobs)


def test_tiny_dag_fits_the_cc_tuning_transform(tiny_run):
    from crosstune.cc_tuning.transform import load_activations, load_transform

    out = tiny_run / "results/tiny-llama/cc_tuning/cc_tuning"
    acts = load_activations(out / "activations.safetensors")
    assert tuple(acts["source"].shape) == (40, 2, 64) and len(set(acts["ids"])) == 40  # tiny.yaml: n_pairs 40
    assert "en" not in acts["langs"] and acts["metadata"]["model"] == "results/tiny-llama/train/cc_tuning/model"
    matrices = load_transform(out / "transform.safetensors")
    assert set(matrices) == {"all"} and tuple(matrices["all"].shape) == (64, 64)  # one shared d x d matrix
    fit = json.loads((out / "fit.json").read_text())
    assert {"n_samples", "num_layers", "hidden_size", "ridge", "per_language", "driver", "matrices"} <= set(fit)
    assert (fit["n_samples"], fit["num_layers"], fit["hidden_size"], fit["ridge"]) == (40, 2, 64, 0.0)
    m = fit["matrices"]["all"]
    assert m["rows"] == 80 and len(m["relative_residual"]) == 2 and 0 <= m["relative_residual_all"] < 1
    for meta, stage in (("activations.provenance.json", "activations"), ("provenance.json", "transform")):
        record = json.loads((out / meta).read_text())
        assert record["stage"] == stage and record["method"] == "cc_tuning" and record["versions"]["torch"]
    assert "transform all" in (tiny_run / "logs/transform/tiny-llama/cc_tuning.log").read_text()


def test_cc_tuning_settings_rerun_their_stages_only(tiny_run):
    jobs = planned_jobs(snakemake(tiny_run, "-n", override={"cc_tuning": {"ridge": 0.1}}))
    assert jobs.get("transform") == 1 and not {"activations", "train", "pairs"} & set(jobs)
    # only the matrix mode decodes with the Transform Matrix: its six generate jobs rerun, not oracle's or none's
    assert jobs.get("generate") == 6 and jobs.get("score") == 6
    jobs = planned_jobs(snakemake(tiny_run, "-n", override={"cc_tuning": {"n_pairs": 30}}))
    assert jobs.get("activations") == 1 and jobs.get("transform") == 1 and "train" not in jobs


def test_cc_tuning_is_scored_in_three_inference_modes(tiny_run):
    """cc_tuning@matrix, @oracle (parallel benchmarks only) and @none: separate predictions and rows."""
    import pandas as pd

    evals = tiny_run / "results/tiny-llama/eval"
    outputs = {}
    for mode in ("matrix", "oracle", "none"):
        records = [json.loads(x) for x in (evals / f"cc_tuning@{mode}/xnli/predictions/sw.jsonl").open()]
        assert len(records) >= 8
        assert all(("layer" in r) == (mode != "none") for r in records)
        outputs[mode] = [r["option_loglik"] for r in records]
        meta = json.loads((evals / f"cc_tuning@{mode}/xnli/predictions/provenance.json").read_text())
        cc = meta["settings"].get("cc_tuning")
        assert (cc or {}).get("mode") == (None if mode == "none" else mode)
        assert bool((cc or {}).get("transform")) == (mode == "matrix")
    assert (evals / "cc_tuning@matrix/xlsum/scores/metrics.tsv").is_file()
    assert not (evals / "cc_tuning@oracle/xlsum").exists()  # XL-Sum has no English version of its items
    # each connection changes what the model scores (the tiny model's greedy answers are all "\n")
    assert outputs["none"] != outputs["matrix"] and outputs["none"] != outputs["oracle"]
    assert outputs["matrix"] != outputs["oracle"]
    table = pd.read_csv(tiny_run / "results/eval/scores.tsv", sep="\t")
    rows = set(table.method)
    assert {"base", "sft", "cc_tuning@matrix", "cc_tuning@oracle", "cc_tuning@none"} <= rows
    assert "cc_tuning" not in rows
    assert set(table[table.method == "cc_tuning@oracle"].benchmark) == {"xnli", "xstorycloze", "mmmlu", "xquad", "mkqa"}
    assert "cc_tuning@oracle" in (tiny_run / "results/eval/tables/xnli.md").read_text()


def test_xlsum_from_the_release_gets_its_oracle_row(tiny_run, cc_eval):
    """The release ships English translations of XL-Sum's prompts: with source released the oracle row runs."""
    override = {"benchmarks": {"released_dir": str(cc_eval), "xlsum": {"source": "released", "languages": ["en", "sw"], "n": 4}}}
    run = snakemake(tiny_run, "-n", override=override)
    jobs = planned_jobs(run)
    assert jobs.get("benchmark_data") == 2  # xlsum en, sw from the release
    # every row re-generates xlsum (new items), now including cc_tuning@oracle: base, sft, clo and its two
    # study points (clo[size=2], clo[size=8]), and cc_tuning's three modes
    assert jobs.get("generate") == 8 and jobs.get("score") == 8
    from crosstune.benchmarks import build_items

    items, _ = build_items("xlsum", "sw", {"source": "released"}, str(cc_eval))
    assert all(it["prompt_en"] and it["prompt_en"] != it["prompt"] for it in items)  # the English articles


def test_layer_choice_table_and_plot(tiny_run):
    """Rule layer_choice: the Decision Maker's layer of every connected prediction, per benchmark and language."""
    import pandas as pd

    table = pd.read_csv(tiny_run / "results/eval/layers.tsv", sep="\t")
    assert set(table.method) == {"cc_tuning@matrix", "cc_tuning@oracle"}  # mode none has no connection
    assert set(table.layer) == {0, 1}  # the tiny model's two layers, chosen or not
    shares = table.groupby(["method", "benchmark", "language"]).share.sum()
    assert shares.to_numpy() == pytest.approx(1.0)
    # the counts are the predictions' own layers
    records = [json.loads(x) for x in (tiny_run / "results/tiny-llama/eval/cc_tuning@matrix/xnli/predictions/sw.jsonl").open()]
    sub = table[(table.method == "cc_tuning@matrix") & (table.benchmark == "xnli") & (table.language == "sw")]
    assert sub.set_index("layer")["count"].to_dict() == {i: sum(r["layer"] == i for r in records) for i in (0, 1)}
    assert set(table[table.method == "cc_tuning@oracle"].benchmark) == {"xnli", "xstorycloze", "mmmlu", "xquad", "mkqa"}
    text = (tiny_run / "results/eval/tables/layers.md").read_text()
    assert "## tiny-llama - cc_tuning@matrix" in text and "| xnli | sw | " in text
    assert (tiny_run / "results/eval/figures/tiny-llama/layers.png").stat().st_size > 1000


def test_connection_position_reruns_cc_tuning_only(tiny_run):
    """models.<m>.connection_position reaches rules train (cc_tuning only), activations and generate."""
    run = snakemake(tiny_run, "-n", override={"models": {"tiny-llama": {"connection_position": "release"}}})
    jobs = planned_jobs(run)
    assert jobs.get("train") == 1 and "results/tiny-llama/train/cc_tuning/metrics.json" in run.stdout
    assert jobs.get("activations") == 1 and jobs.get("transform") == 1
    # generate/score rerun for cc_tuning's rows only (aggregate lists every row among its inputs)
    outputs = re.findall(r"^    output: (\S+)", run.stdout, flags=re.M)
    assert not [o for o in outputs if "/eval/sft/" in o or "/eval/base/" in o], outputs  # @none: retrained
    assert any("/eval/cc_tuning@matrix/" in o for o in outputs) and any("@oracle/" in o for o in outputs)


def test_the_report_shows_tables_inline_with_the_training_pages(tiny_run):
    """snakemake --report: the front page, tables as HTML (inline, not downloads), the loss curves, the pairs
    statistics and the Transform Matrix fit; results/eval has its provenance."""
    import zipfile

    for meta, stage in (("results/eval/provenance.json", "aggregate"),
                        ("results/eval/layers.provenance.json", "layer_choice")):  # fmt: skip
        record = json.loads((tiny_run / meta).read_text())
        assert record["stage"] == stage and record["versions"]["sacrebleu"] and record["config"]["seed"] == 42
    assert len(json.loads((tiny_run / "results/eval/provenance.json").read_text())["score_provenance"]) > 0
    snakemake(tiny_run, "--report", "report.zip")
    with zipfile.ZipFile(tiny_run / "report.zip") as z:
        names = z.namelist()
        front = z.read(next(n for n in names if n.endswith("/report.html"))).decode()
        pages = {n.rsplit("/", 1)[-1]: z.read(n).decode() for n in names if n.endswith(".html") and "/raw/" in n}
    assert "crosstune" in front and "tiny-llama" in front  # workflow.rst, rendered with this run's config
    assert {"xnli.html", "retention.html", "layers.html", "pairs.html", "transform_fit_cc_tuning.html"} <= set(pages)
    assert "<table>" in pages["xnli.html"] and "Avg (non-en)" in pages["xnli.html"]
    assert "<td>sw</td>" in pages["pairs.html"] and "identity" in pages["transform_fit_cc_tuning.html"]
    mimes = re.findall(r'"mime_type": "([^"]+)"', front)
    assert mimes.count("text/html") >= 8 and "text/markdown" not in mimes
    assert front.count("loss.png") > 0 and re.search(r'"Training"', front)
