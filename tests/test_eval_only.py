"""Evaluating models as they are: target evaluate_only, config/eval-only.yaml, prompt_format plain."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from crosstune.evaluate import generation as G
from crosstune.models import build_tiny_model

from .conftest import REPO
from .snakemake_runner import planned_jobs, snakemake
from .test_readme_commands import section

EVAL_ONLY = REPO / "config" / "eval-only.yaml"
EVAL_RULES = {"base_model", "benchmark_data", "generate", "score", "aggregate"}
MODEL = "plain-tiny"


@pytest.fixture(scope="module")
def plain_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny random Llama whose tokenizer has no chat template (a base model's)."""
    out = tmp_path_factory.mktemp("plain-tiny")
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = None
    build_tiny_model("llama", tokenizer, seed=0).save_pretrained(out)
    tokenizer.save_pretrained(out)
    assert not (out / "chat_template.jinja").exists()
    return out


def eval_only_config(path, models: dict) -> None:
    """config/eval-only.yaml with other models, two small benchmarks and short answers."""
    cfg = yaml.safe_load(EVAL_ONLY.read_text())
    cfg["models"] = models
    cfg["benchmarks"] = {"run": ["xnli", "xquad"], "xnli": {"source": "bundled", "languages": ["en", "sw"], "n": 4},
                         "xquad": {"source": "bundled", "languages": ["en", "zh"], "n": 4}}  # fmt: skip
    cfg["evaluation"]["generation"].update(max_new_tokens=4, dtype="float32")
    cfg["evaluation"]["bootstrap"] = {"samples": 50}
    cfg["resources"] = {"default": {"mem_mb": 2000, "runtime": 10, "gpu": 0, "threads": 1}}
    path.write_text(yaml.safe_dump(cfg))


def readme_eval_only() -> tuple[list[list[str]], dict]:
    """The commands and the example config of the README's section on evaluating any model."""
    part = section((REPO / "README.md").read_text(), "### lm-eval and evaluating any model\n")
    blocks = re.findall(r"```bash\n(.*?)```", part, flags=re.S)
    commands = [
        line.split(" #")[0].split() for b in blocks for line in b.splitlines() if line.strip()
    ]
    return commands, yaml.safe_load(re.search(r"```yaml\n(.*?)```", part, flags=re.S).group(1))


def dry_run(workdir, args: list[str]) -> tuple[dict[str, int], str]:
    """(jobs per rule, output) of a README snakemake command, planned in ``workdir``."""
    cmd = [sys.executable, "-m", "snakemake", *args, "-n", "-s", str(REPO / "Snakefile"),
           "--directory", str(workdir)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return planned_jobs(run), run.stdout


def test_the_readme_commands_plan_no_data_or_training_jobs(tmp_path, plain_model_dir):
    """config/eval-only.yaml and the README's example (with a model crosstune trained, here a
    directory at its results/ path) plan the evaluation's rules only, one base_model job per
    model; with no methods the default target plans the same."""
    commands, example = readme_eval_only()
    assert [c[:4] for c in commands] == [["snakemake", "--cores", "2", "evaluate_only"]] * 2
    trained = tmp_path / example["models"]["smollm2-135m-clo"]["source"]["id"]
    trained.parent.mkdir(parents=True)
    trained.symlink_to(plain_model_dir, target_is_directory=True)
    (tmp_path / "my-eval.yaml").write_text(yaml.safe_dump(example))
    plans = {}
    for cmd in commands + [[*commands[0][:3], "--configfile", "config/eval-only.yaml"]]:
        args = [str(tmp_path / a) if a == "my-eval.yaml" else a for a in cmd[1:] if a != "-n"]
        jobs, out = dry_run(tmp_path, args)
        target = "evaluate_only" if "evaluate_only" in args else "all"
        assert set(jobs) == EVAL_RULES | {target}, (cmd, jobs)
        n_models = len(yaml.safe_load((REPO / args[-1]).read_text())["models"])
        assert jobs["base_model"] == n_models and jobs["generate"] == n_models * 6, (cmd, jobs)
        plans[f"{args[-1]} {target}"] = {k: n for k, n in jobs.items() if k != target}
        if args[-1].endswith("my-eval.yaml"):  # the trained model is evaluated as row base
            assert "results/smollm2-135m-clo/eval/base/xnli/predictions" in out
    assert plans["config/eval-only.yaml evaluate_only"] == plans["config/eval-only.yaml all"]


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, plain_model_dir):
    workdir = tmp_path_factory.mktemp("eval-only-run")
    eval_only_config(workdir / "eval.yaml", {MODEL: {"source": {"type": "local", "id": str(plain_model_dir)},
                                                      "prompt_format": "plain"}})  # fmt: skip
    run = snakemake(workdir, "evaluate_only", configfile=workdir / "eval.yaml")
    # a real run prints its job stats on stderr
    ran = planned_jobs(SimpleNamespace(stdout=run.stderr))
    assert set(ran) == EVAL_RULES | {"evaluate_only"}, ran
    return workdir


def test_a_model_without_a_chat_template_is_scored_with_plain_prompts(plain_run, plain_model_dir):
    table = pd.read_csv(plain_run / "results/eval/scores.tsv", sep="\t")
    assert set(table.model) == {MODEL} and set(table.method) == {"base"}
    assert set(table.benchmark) == {"xnli", "xquad"}
    assert {"en", "sw"} <= set(table[table.benchmark == "xnli"].language)
    assert {"accuracy", "acc_ll"} <= set(table[table.benchmark == "xnli"].metric)
    # the prompt the model saw is the item's text itself: as many tokens as the text alone
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(plain_model_dir)
    preds = plain_run / f"results/{MODEL}/eval/base/xnli/predictions"
    items = [json.loads(x) for x in (plain_run / "results/benchmarks/xnli/sw.jsonl").open()]
    records = [json.loads(x) for x in (preds / "sw.jsonl").open()]
    assert [r["prompt_tokens"] for r in records] == [
        len(G.encode(tokenizer, it["prompt"])) for it in items
    ]
    settings = json.loads((preds / "provenance.json").read_text())["settings"]
    assert settings["prompt_format"] == "plain"


def test_prompt_format_is_a_param_of_generate_only(plain_run):
    cfg = yaml.safe_load((plain_run / "eval.yaml").read_text())
    cfg["models"][MODEL]["prompt_format"] = "chat"
    (plain_run / "chat.yaml").write_text(yaml.safe_dump(cfg))
    jobs = planned_jobs(
        snakemake(plain_run, "evaluate_only", "-n", configfile=plain_run / "chat.yaml")
    )
    assert jobs == {"generate": 2, "score": 2, "aggregate": 1, "evaluate_only": 1}


def test_chat_prompts_without_a_chat_template_name_the_key(tmp_path, plain_model_dir):
    """The default prompt_format (chat) on a model without a template stops generate, naming the key."""
    eval_only_config(
        tmp_path / "eval.yaml", {MODEL: {"source": {"type": "local", "id": str(plain_model_dir)}}}
    )
    target = f"results/{MODEL}/eval/base/xquad/predictions"
    run = snakemake(tmp_path, target, configfile=tmp_path / "eval.yaml", check=False)
    assert run.returncode != 0
    log = (tmp_path / f"logs/generate/{MODEL}/base/xquad.log").read_text()
    assert f"models.{MODEL}.prompt_format: chat (the default)" in log
    assert f"set models.{MODEL}.prompt_format: plain" in log


def test_prompt_text_plain_is_the_prompt_after_the_tokenizers_bos(tiny_tokenizer):
    from tokenizers.processors import TemplateProcessing

    # this tokenizer adds no BOS: the prompt is the text itself
    assert G.prompt_text(tiny_tokenizer, "Swali?", "plain") == "Swali?"
    assert G.prompt_text(tiny_tokenizer, "Swali?", "chat").endswith("<|im_start|>assistant\n")
    # as Llama's and Gemma's tokenizers: BOS before every text
    with_bos = copy.deepcopy(tiny_tokenizer)
    bos = with_bos.bos_token
    with_bos.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, with_bos.bos_token_id)]
    )
    text = G.prompt_text(with_bos, "Swali?", "plain")
    assert text == f"{bos}Swali?"
    assert G.encode(with_bos, text) == with_bos("Swali?")["input_ids"]  # the tokenizer's own
    with pytest.raises(ValueError, match="prompt_format: 'raw' is not one of chat, plain"):
        G.prompt_text(tiny_tokenizer, "Swali?", "raw")


def test_plain_prompts_are_refused_for_cc_tunings_connection(tmp_path):
    """The connection sits in the chat-templated prompt cc_tuning trained on: refused when planning."""
    override = {"models": {"tiny-llama": {"prompt_format": "plain"}}}
    run = snakemake(tmp_path, "-n", override=override, check=False)  # config/tiny.yaml
    assert run.returncode != 0
    assert "models.tiny-llama.prompt_format: plain prompts cannot be evaluated with CC-Tuning" in (
        run.stdout + run.stderr
    )
