"""The config is checked before any job runs; bad configs name the key at fault."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from crosstune.config import ConfigError, check

from .conftest import REPO

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
