"""The config is checked before any job runs; bad configs name the key at fault."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from crosstune.config import ConfigError, check, schema_message

from .conftest import REPO
from .snakemake_runner import snakemake

SCHEMA = str(REPO / "workflow" / "schemas" / "config.schema.yaml")


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def validated(config: dict) -> dict:
    config = copy.deepcopy(config)
    validate(config, SCHEMA, set_default=True)
    return config


def test_default_config_is_valid_and_defaults_fill_in():
    config = validated(default_config())
    check(config, REPO)
    assert config["translate"]["engine"] == "human:crosstune-seed"
    # a minimal config (models only) gets every other key from the schema
    minimal = validated({"models": {"m": {"source": {"type": "tiny", "family": "qwen2"}}}})
    assert minimal["languages"] == ["en", "ar", "hi", "sw", "zh", "ru"]
    assert minimal["pairs"] == {"min_tokens": 8, "max_tokens": 512, "dedup": True}
    assert minimal["models"]["m"]["source"]["hidden_size"] == 64
    assert [(s["name"], s["type"], s["max_per_language"]) for s in minimal["data"]["sources"]] == [("seed", "seed", None)]


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda c: c.update(colour="blue"), ["colour"]),  # unknown top-level key
        (lambda c: c["translate"].update(batchsize=4), ["batchsize"]),  # unknown nested key (typo)
        (lambda c: c["pairs"].update(max_tokens="many"), ["many", "max_tokens"]),  # wrong type
        (lambda c: c.update(languages=["en", "xx"]), ["xx"]),  # unknown language code
        (lambda c: c["models"]["smollm2-135m"]["source"].pop("file"), ["file"]),  # missing required
        (lambda c: c["translate"].update(engine="google"), ["google"]),  # not <backend>:<model>
    ],
)
def test_schema_rejects(mutate, words):
    config = default_config()
    mutate(config)
    with pytest.raises(WorkflowError) as e:
        validated(config)
    message = str(e.value)
    for word in words:
        assert word in message


def test_check_names_missing_data_file(tmp_path):
    config = validated(default_config())
    config["data"]["sources"].append({"name": "mine", "type": "jsonl", "path": "data/missing.jsonl"})
    with pytest.raises(ConfigError, match=r"data.sources\[1\] \(mine\).path: file not found: data/missing.jsonl"):
        check(config, tmp_path)


def test_check_rejects_contradictions():
    config = validated(default_config())
    config["translate"]["memory_only"] = False
    with pytest.raises(ConfigError, match="translate.memory_only"):
        check(config, REPO)
    config = validated(default_config())
    config["languages"] = ["ar", "sw"]
    with pytest.raises(ConfigError, match="English"):
        check(config, REPO)


def test_snakemake_stops_before_any_job(tmp_path):
    """A bad config file given to snakemake fails the dry run with the key in the message."""
    bad = default_config()
    bad["languages"] = ["en", "klingon"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "-s", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode != 0
    assert "klingon" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c["translate"].update(batchsize=4), "config: unknown key 'batchsize' in translate; did you mean 'batch_size'?"),
        (lambda c: c.update(langauges=["en"]), "config: unknown key 'langauges' in the top level; did you mean 'languages'?"),
        (lambda c: c["pairs"].update(max_tokens="many"), "config: pairs.max_tokens: 'many' is not of type 'integer'"),
    ],
)
def test_schema_errors_are_a_few_lines_with_the_nearest_key(mutate, expected):
    config = default_config()
    mutate(config)
    with pytest.raises(WorkflowError) as e:
        validated(config)
    assert schema_message(e.value) == expected


def test_snakemake_names_an_unknown_key_without_the_schema(tmp_path):
    run = snakemake(tmp_path, "-n", override={"evaluation": {"baseline_method": "sft"}}, check=False)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "unknown key 'baseline_method' in evaluation; did you mean 'baseline'?" in out
    assert "$schema" not in out and len(out.splitlines()) < 15


def test_missing_local_hub_path_is_an_error_naming_the_key(tmp_path):
    """A hub-type path that looks local (explicitly, or under an existing directory, or not
    of the 'owner/name' form) must exist; a hub id passes to datasets."""
    (tmp_path / "data").mkdir()
    config = validated(default_config())
    for path in ("data/alpaca_local", "./alpaca", "corpora/v1/alpaca", "alpaca.parquet"):
        config["data"]["sources"] = [{"name": "a", "type": "alpaca", "path": path}]
        with pytest.raises(ConfigError, match=rf"data.sources\[0\] \(a\).path: local path not found: {path}"):
            check(config, tmp_path)
    for path in ("tatsu-lab/alpaca", "squad"):  # hub ids
        config["data"]["sources"] = [{"name": "a", "type": "alpaca", "path": path}]
        check(config, tmp_path)
    (tmp_path / "data" / "alpaca_local").mkdir()
    config["data"]["sources"] = [{"name": "a", "type": "alpaca", "path": "data/alpaca_local"}]
    check(config, tmp_path)


def test_baseline_must_be_an_evaluated_method(tmp_path):
    run = snakemake(tmp_path, "-n", override={"evaluation": {"baseline": "sft_xx"}}, check=False)
    assert run.returncode != 0
    assert "evaluation.baseline: 'sft_xx' is not an evaluated method; evaluated: base, sft," in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
    # a row of a cc_tuning method names its mode: `cc_tuning@none` is a row, `cc_tuning` is not
    run = snakemake(tmp_path, "-n", override={"evaluation": {"baseline": "cc_tuning"}}, check=False)
    assert "evaluation.baseline: 'cc_tuning' is not an evaluated method" in run.stdout + run.stderr
