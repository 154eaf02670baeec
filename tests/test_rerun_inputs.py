"""Every file a rule reads is one of its inputs: changing it reruns exactly the jobs that read it.

The workflow runs from a copy of the repository (the tests change its bundled files) on a
tiny DAG whose outputs are faked: every planned output is created with one modification
time, so that `snakemake -n --rerun-triggers mtime` plans nothing; a file made newer then
plans exactly the jobs that have it as an input, and what follows them. (A real run adds
Snakemake's input checksums: a bare touch then reruns nothing, an edit does, as
test_workflow.py's data-file test shows; here no checksum is recorded, so a touch counts.)
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter

import pytest

from .snakemake_runner import BUNDLED, copy_repo, planned_jobs, snakemake
from .test_benchmarks_released import write_released

MC = {"xnli", "xstorycloze", "mmmlu"}  # the multiple-choice benchmarks: scored with the answer cues


def planned(run) -> list[tuple[str, dict]]:
    """(rule, wildcards) of every job a dry run plans."""
    jobs = []
    for block in re.split(r"(?m)^(?=(?:local)?rule \w+:$)", run.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            pairs = [kv.split("=", 1) for kv in wc.group(1).split(", ")] if wc else []
            jobs.append((rule.group(1), dict(pairs)))
    return jobs


def outputs(run) -> list[str]:
    return [
        f for line in re.findall(r"^\s+output: (.*)$", run.stdout, re.M) for f in line.split(", ")
    ]


@pytest.fixture(scope="module")
def faked(tmp_path_factory):
    """A repository copy and a work directory holding every output of the tiny DAG (with a chat
    template from config/chat_templates/ and XL-Sum from a release directory), all of one mtime."""
    from crosstune.benchmarks import build_items

    tmp = tmp_path_factory.mktemp("rerun-inputs")
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    work = tmp / "work"
    work.mkdir()
    released = tmp / "released"
    langs = ["en", "sw"]
    items = {lang: build_items("xlsum", lang, {"source": "bundled"})[0] for lang in langs}
    write_released(
        released, "xlsum", items, {"sw": [f"English prompt {i}" for i in range(len(items["sw"]))]}
    )
    override = {
        "models": {"tiny-llama": {"chat_template": "config/chat_templates/chatml.jinja"}},
        "benchmarks": {
            "released_dir": str(released),
            "xlsum": {"source": "released", "languages": langs},
        },
    }
    run = snakemake(work, "-n", override=override, repo=repo)
    stamp = time.time() - 60
    for f in outputs(run):
        path = work / f
        if (
            path.suffix
        ):  # every output file has a suffix; the directory outputs (models, predictions) none
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("fake\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
    for path in [*work.rglob("*"), *repo.rglob("*"), *released.rglob("*")]:
        os.utime(
            path,
            (stamp - 3600, stamp - 3600) if not str(path).startswith(str(work)) else (stamp, stamp),
        )
    return {"repo": repo, "work": work, "released": released, "override": override}


def rerun_after_touching(faked, path):
    """The jobs a dry run plans once ``path`` is newer than every output (then put back)."""
    before = path.stat().st_mtime
    os.utime(path)
    try:
        return dry_run(faked)
    finally:
        os.utime(path, (before, before))


def dry_run(faked):
    run = snakemake(faked["work"], "-n", "--rerun-triggers", "mtime", override=faked["override"],
                    repo=faked["repo"])  # fmt: skip
    return run, planned(run)


def test_the_faked_run_is_up_to_date(faked):
    run, jobs = dry_run(faked)
    assert jobs == [] and "Nothing to be done" in run.stdout + run.stderr


def test_the_answer_cues_rerun_the_multiple_choice_scores_only(faked):
    run, jobs = rerun_after_touching(faked, faked["repo"] / BUNDLED / "data" / "answer_cues.yaml")
    scored = {wc["benchmark"] for rule, wc in jobs if rule == "score"}
    assert scored == MC
    counts = planned_jobs(run)
    # every evaluated row of the three benchmarks (8 rows), then the tables built from the scores
    assert counts["score"] == 3 * 8 and counts["aggregate"] == 1
    assert not {"generate", "benchmark_data", "train", "base_model"} & set(counts)


def test_the_model_card_template_reruns_the_cards_only(faked):
    run, _ = rerun_after_touching(faked, faked["repo"] / BUNDLED / "data" / "model_card.md")
    counts = planned_jobs(run)
    assert counts.pop("model_card") == 13 and counts == {"all": 1}


def test_a_chat_template_reruns_its_base_model(faked):
    run, _ = rerun_after_touching(
        faked, faked["repo"] / "config" / "chat_templates" / "chatml.jinja"
    )
    counts = planned_jobs(run)
    assert counts["base_model"] == 1 and counts["train"] == 13
    assert not {"source_data", "translate", "benchmark_data"} & set(counts)


@pytest.mark.parametrize(
    "name, expected",
    [  # the English pairs are a data source and the source of the human translations
        ("sft_en.jsonl", {"base_model": 1, "source_data": 1, "translate": 5}),
        ("translations.jsonl", {"base_model": 1, "translate": 5}),
    ],
)
def test_the_seed_data_reruns_what_reads_it(faked, name, expected):
    run, _ = rerun_after_touching(faked, faked["repo"] / BUNDLED / "data" / "seed" / name)
    counts = planned_jobs(run)
    assert {r: counts.get(r, 0) for r in ("base_model", "source_data", "translate")} == {
        "base_model": 1, "source_data": 0, "translate": 0, **expected}  # fmt: skip
    assert "benchmark_data" not in counts


def test_a_bundled_mini_file_reruns_its_benchmark_only(faked):
    """A bundled set is read as one dataset (its README.md names every language's files), so
    each of its languages is rebuilt; a generate job decodes all of a benchmark's languages anyway."""
    mini = faked["repo"] / BUNDLED / "benchmarks" / "mini" / "xnli"
    run, jobs = rerun_after_touching(faked, mini / "ar" / "test.jsonl")
    built = {wc["benchmark"] for rule, wc in jobs if rule == "benchmark_data"}
    assert built == {"xnli"} and planned_jobs(run)["benchmark_data"] == 6
    assert {wc["benchmark"] for rule, wc in jobs if rule in ("generate", "score")} == {"xnli"}
    assert not {"train", "base_model"} & set(planned_jobs(run))


@pytest.mark.parametrize(
    "sub, langs",
    [  # sw's prompts and answers; the English translations of sw's prompts (prompt_en, oracle rows)
        ("XLSum/split_sample/sw.json", ["sw"]),
        ("XLSum/ans_sample/sw.json", ["sw"]),
        ("XLSum/split_sample_en/sw.json", ["sw"]),
        ("XLSum/split_sample/en.json", ["en"]),
    ],
)
def test_a_released_benchmark_file_reruns_its_items(faked, sub, langs):
    run, jobs = rerun_after_touching(faked, faked["released"] / sub)
    built = Counter((wc["benchmark"], wc["lang"]) for rule, wc in jobs if rule == "benchmark_data")
    assert built == Counter(("xlsum", lang) for lang in langs)
    assert "train" not in planned_jobs(run)


def test_a_local_model_directory_reruns_its_base_model(tmp_path):
    """models.<name>.source: {type: local}: the directory (linked into the model directory) is an input."""
    local = tmp_path / "mine"
    local.mkdir()
    for name in ("config.json", "model.safetensors"):
        (local / name).write_text("{}\n")
    override = {"models": {"mine": {"source": {"type": "local", "id": str(local)}}}}
    target = "resources/models/mine"
    run = snakemake(tmp_path, "-n", target, "--rerun-triggers", "mtime", override=override)
    assert planned_jobs(run) == {"base_model": 1}
    (tmp_path / target).mkdir(parents=True)
    stamp = time.time() - 60
    for path in [local, *local.rglob("*")]:
        os.utime(path, (stamp - 60, stamp - 60))
    os.utime(tmp_path / target, (stamp, stamp))
    run = snakemake(tmp_path, "-n", target, "--rerun-triggers", "mtime", override=override)
    assert planned_jobs(run) == {}
    os.utime(local / "model.safetensors")
    run = snakemake(tmp_path, "-n", target, "--rerun-triggers", "mtime", override=override)
    assert planned_jobs(run) == {"base_model": 1}
