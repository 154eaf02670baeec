"""The paper recipes without a cluster: dry runs (job counts per rule, resources of every job),
the sbatch arguments the SLURM plugin renders for them, and a submission through the plugin
to a fake SLURM (recorded sbatch calls, array jobs, local rules run locally).

Every dry run uses a fresh --directory, so nothing exists yet and every job is scheduled; the
hub is offline (HF_HUB_OFFLINE=1): a dry run that needed the network would fail here.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from crosstune.benchmarks import has_english_prompts, load_template

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "config" / "paper"
RECIPES = ["llama-3.1-8b.yaml", "qwen2.5-7b.yaml", "mistral-7b-v0.3.yaml"]
GPU_RULES = ("translate", "train", "activations", "generate")
TARGETS = ("all", "benchmarks", "train_all")  # rules that only name targets: no job runs
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def dry_run(tmp_path: Path, *configfiles: Path, extra: tuple = ()) -> tuple[dict, list[dict]]:
    """`snakemake -n` in a fresh directory: ({rule: job count}, [{rule, wildcards, resources, threads}])."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "256", "--directory", str(tmp_path),
           "--snakefile", str(REPO / "Snakefile"), "--configfile", *map(str, configfiles),
           "--", "all", "benchmarks", *extra]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    stats_block = out.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats_block, re.M) if m[1] != "total"}
    jobs = []
    for block in re.split(r"^(?=rule \w+:$)", out, flags=re.M)[1:]:
        head, *lines = block.splitlines()
        fields = dict(line.strip().split(": ", 1) for line in lines if re.match(r"^    \w+: ", line))
        resources = {}
        for item in fields.get("resources", "").split(", "):
            key, _, value = item.partition("=")
            resources[key] = int(value) if value.isdigit() else value
        jobs.append({
            "rule": head[len("rule "):-1],
            "wildcards": dict(w.split("=", 1) for w in fields["wildcards"].split(", ")) if "wildcards" in fields else {},
            "resources": resources,
            "threads": int(fields.get("threads", 1)),
        })  # fmt: skip
    assert sum(counts.values()) == len(jobs), "every job of the stats table is listed"
    return counts, jobs


def recipe(name: str) -> dict:
    return yaml.safe_load((PAPER / name).read_text())


def expected_counts(configs: list[dict]) -> dict:
    """Jobs per rule of a fresh dry run, from the recipe's contents."""
    cfg = configs[0]
    models = sorted({m for c in configs for m in c["models"]})
    methods = cfg["methods"]
    cc = [m for m, s in methods.items() if s["type"] == "cc_tuning"]
    benchmarks = cfg["benchmarks"]["run"]
    benchmark_pairs = sum(len(template_languages(b)) for b in benchmarks)
    # evaluated rows: base, every method but cc_tuning, and each cc_tuning method once per inference
    # mode; one generate and one score job per (model, row, benchmark), all the benchmark's languages
    # in one job; the oracle mode needs parallel benchmarks (not XL-Sum: no English version)
    modes = cfg["evaluation"]["cc_tuning"]["modes"]
    parallel = [b for b in benchmarks if has_english_prompts(b, cfg["benchmarks"][b]["source"])]
    per_model = (1 + len(methods) - len(cc)) * len(benchmarks) + len(cc) * sum(
        len(parallel) if mode == "oracle" else len(benchmarks) for mode in modes
    )
    counts = {
        "base_model": len(models),
        "source_data": 1,
        "translate": len(cfg["languages"]) - 1,
        "pairs": len(models),
        "train": len(models) * len(methods),
        "model_card": len(models) * len(methods),  # one card beside every trained model
        "report_pages": len(models),  # the pairs stats and transform fits as report pages
        "benchmark_data": benchmark_pairs,
        "activations": len(models) * len(cc),
        "transform": len(models) * len(cc),
        "all": 1,
        "benchmarks": 1,
        "generate": len(models) * per_model,
        "score": len(models) * per_model,
        "aggregate": 1,
    }
    if cc and {"matrix", "oracle"} & set(modes):  # the Decision Maker's layer choices of the connected rows
        counts["layer_choice"] = 1
    return counts


def template_languages(benchmark: str) -> list[str]:
    return list(load_template(benchmark).languages)


def test_recipes_differ_only_in_their_model():
    """So that naming all three files merges them into the grid (lists are replaced, dicts merged)."""
    bodies = [recipe(r) for r in RECIPES]
    assert [len(b["models"]) for b in bodies] == [1, 1, 1]
    for b in bodies:
        b.pop("models")
    assert bodies[0] == bodies[1] == bodies[2]


def test_recipe_values_are_the_papers():
    cfg = recipe(RECIPES[0])
    t = cfg["train"]
    assert (t["learning_rate"], t["epochs"], t["lr_scheduler"], t["warmup_ratio"]) == (1e-5, 3, "cosine", 0.1)
    assert (t["per_device_batch_size"], t["bf16"], t["max_length"], t["finetuning"]["mode"]) == (16, True, 1024, "full")
    assert t["accelerate_config"].endswith("zero3.yaml")
    assert cfg["resources"]["train"]["gpu"] == t["num_processes"]
    assert {s["type"] for s in cfg["data"]["sources"]} == {"aya"}
    assert cfg["translate"]["memory_only"] is False and "instruction" in cfg["translate"]["fields_to_en"]
    assert {b: cfg["benchmarks"][b]["source"] for b in cfg["benchmarks"]["run"]} == dict.fromkeys(
        ["xnli", "xstorycloze", "mmmlu", "xquad", "mkqa", "xlsum"], "hub"
    )
    assert cfg["methods"]["cc_tuning+mt"]["mix"] == "sft_mt"  # the paper's CC-Tuning on a data-level mix
    types = {s["type"] for s in cfg["methods"].values()}
    assert types == {"sft", "sft_en", "sft_all", "sft_mt", "crossin", "clo", "sft_dpo", "cc_tuning"}
    ids = {next(iter(recipe(r)["models"].values()))["source"]["id"] for r in RECIPES}
    assert ids == {"meta-llama/Llama-3.1-8B", "Qwen/Qwen2.5-7B", "mistralai/Mistral-7B-v0.3"}
    for r in RECIPES:  # every model's chat template exists
        spec = next(iter(recipe(r)["models"].values()))
        assert (REPO / spec["chat_template"]).is_file()


def test_recipes_use_the_releases_settings():
    """Issue 13 section 1: the released code's behaviour is the recipes' setting (README, settings and their sources)."""
    for r in RECIPES:
        cfg = recipe(r)
        spec = next(iter(cfg["models"].values()))
        assert spec["connection_position"] == "release"
        assert Path(spec["chat_template"]).name.startswith("release-")
        m = cfg["methods"]
        assert (m["crossin"]["mode"], m["crossin"]["tag_template"]) == ("x2x+translation", "{instruction}\n[{lang}]")
        assert m["sft_all"]["english_copies"] == "per_item" and m["cc_tuning"]["english"] == "self"
        assert cfg["cc_tuning"]["seed"] == 666
    qwen = (REPO / recipe("qwen2.5-7b.yaml")["models"]["qwen2.5-7b"]["chat_template"]).read_text()
    assert "You are a helpful assistant." in qwen


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_dry_run_job_counts_and_resources(tmp_path, name):
    cfg = recipe(name)
    counts, jobs = dry_run(tmp_path, PAPER / name)
    assert counts == expected_counts([cfg])
    assert counts["benchmark_data"] == 60 and counts["train"] == 9 and counts["translate"] == 21
    # (base + 7 methods) x 6 benchmarks + cc_tuning's and cc_tuning+mt's matrix and none x 6 + oracle x 5 (XL-Sum
    # from the hub has no English version)
    assert counts["generate"] == 8 * 6 + 2 * (2 * 6 + 5)
    check_resources(cfg, jobs)


def check_resources(cfg: dict, jobs: list[dict]) -> None:
    """Every job carries its rule's resources from the recipe; train asks for num_processes GPUs."""
    res = cfg["resources"]
    for job in jobs:
        rule = job["rule"]
        if rule in TARGETS:
            continue
        want = {**res["default"], **res.get(rule, {})}
        got = job["resources"]
        assert (got["mem_mb"], got["runtime"], job["threads"]) == (want["mem_mb"], want["runtime"], want["threads"]), job
        gpus = want["gpu"]
        if rule == "train":
            gpus = cfg["train"]["num_processes"]
        assert got["gpu"] == gpus, job
        if rule in GPU_RULES and rule in res:
            assert got["gpu"] >= 1, f"{rule} is a GPU rule of the recipe: {job}"


def test_grid_of_three_recipes(tmp_path):
    """The three files together: 3 models x every method, one shared translation and benchmark set."""
    configs = [recipe(r) for r in RECIPES]
    counts, jobs = dry_run(tmp_path, *(PAPER / r for r in RECIPES))
    assert counts == expected_counts(configs)
    assert counts["train"] == 27 and counts["base_model"] == 3 and counts["benchmark_data"] == 60
    assert counts["generate"] == counts["score"] == 3 * (8 * 6 + 2 * (2 * 6 + 5))
    assert {j["wildcards"]["model"] for j in jobs if j["rule"] == "train"} == {
        "llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3"}  # fmt: skip
    check_resources(configs[0], jobs)


def test_planning_a_recipe_imports_neither_torch_nor_transformers(tmp_path):
    """What keeps a dry run of the grid at a few seconds (BENCHMARKS.md): the Snakefile's own imports
    leave torch and transformers to the jobs (importing them took 4-5 s of each 8-9 s plan)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
           "--snakefile", str(REPO / "Snakefile"), "--configfile", str(PAPER / RECIPES[0])]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "crosstune.studies" in imported  # the Snakefile's crosstune modules are in the list
    assert not {"torch", "transformers"} & imported


def test_clo_recipe_dry_run(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "clo.yaml").read_text())
    counts, jobs = dry_run(tmp_path, REPO / "config" / "clo.yaml")
    # five per-language entries x six target languages; base + 30 models on six benchmarks
    assert counts["translate"] == 6 and counts["train"] == 30 and counts["generate"] == 31 * 6
    assert counts["benchmark_data"] == sum(len(cfg["benchmarks"][b]["languages"]) for b in cfg["benchmarks"]["run"])
    targets = [lang for lang in cfg["languages"] if lang != "en"]
    assert {j["wildcards"]["method"] for j in jobs if j["rule"] == "train"} == {
        f"{m}-{lang}" for m in ("sft_3200", "sft_6400", "clo_3200", "clo_6400", "sft_dpo") for lang in targets}  # fmt: skip
    # the paper's comparison: CLO-3,200 vs SFT-6,400, SFT -> DPO from its language's SFT-6,400
    from snakemake.utils import validate

    from crosstune.train.settings import expand_per_language, resolve

    full = yaml.safe_load((REPO / "config" / "clo.yaml").read_text())
    validate(full, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    expand_per_language(full)
    assert resolve(full, "sft_6400-zh")["size"] == 6400 and resolve(full, "sft_6400-zh")["languages"] == ["zh"]
    assert resolve(full, "clo_3200-zh")["size"] == 3200 and resolve(full, "sft_dpo-zh")["init_from"] == "sft_6400-zh"
    check_resources(cfg, jobs)


# ------------------------------------------------------------------ SLURM
class _Resources(dict):
    """What the plugin reads of job.resources: .get() and attribute access."""

    __getattr__ = dict.__getitem__


def sbatch_args(job: dict, account: str = "acc", partition: str = "gpu-part") -> list[str]:
    """The sbatch arguments snakemake-executor-plugin-slurm builds for one dry-run job."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    stand_in = SimpleNamespace(resources=_Resources(job["resources"]), threads=job["threads"], name=job["rule"])
    params = {"run_uuid": "uuid", "slurm_logfile": "log/%j.log", "comment_str": f"rule_{job['rule']}",
              "account": f"-A {account}", "partition": f"-p {partition}", "workdir": "/work"}  # fmt: skip
    call = get_submit_command(stand_in, params) + set_gres_string(stand_in)
    return shlex.split(call)


def test_slurm_arguments_of_every_paper_job(tmp_path):
    configs = [recipe(r) for r in RECIPES]
    _, jobs = dry_run(tmp_path, *(PAPER / r for r in RECIPES))
    res = configs[0]["resources"]
    local = localrules()
    seen = set()
    for job in jobs:
        if job["rule"] in TARGETS or job["rule"] in local:
            continue
        args = sbatch_args(job)
        want = {**res["default"], **res.get(job["rule"], {})}
        assert args[args.index("-t") + 1] == str(want["runtime"])
        assert args[args.index("--mem") + 1] == str(want["mem_mb"])
        assert f"--cpus-per-task={want['threads']}" in args
        assert "-A" in args and "-p" in args
        gpus = [a for a in args if a.startswith("--gpus=")]
        if job["rule"] == "train":
            assert gpus == ["--gpus=8"]
        elif want["gpu"]:
            assert gpus == [f"--gpus={want['gpu']}"]
        else:
            assert gpus == [] and "--ntasks=1" in args
        seen.add(job["rule"])
    assert {"translate", "train", "activations", "transform", "generate", "score"} <= seen


def localrules() -> set[str]:
    text = (REPO / "workflow" / "rules" / "cluster.smk").read_text()
    return set(re.findall(r"^    (\w+),$", text, re.M))


def test_localrules_are_the_light_rules():
    assert {"base_model", "source_data", "pairs", "benchmark_data"} <= localrules()
    assert not localrules() & set(GPU_RULES)


def test_profile_array_rules_exist():
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    rules = set(re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")), re.M))
    array = {r.strip() for r in profile["slurm-array-jobs"].split(",")}
    assert array <= rules and not array & localrules()


FAKE_SBATCH = """#!{python}
import json, os, sys
record = {{"argv": sys.argv[1:], "stdin": "" if sys.stdin.isatty() else sys.stdin.read()}}
with open(os.environ["FAKE_SLURM_LOG"], "a") as f:
    f.write(json.dumps(record) + "\\n")
sys.stderr.write("fake sbatch: recorded, not submitted\\n")
sys.exit(1)
"""


def test_slurm_profile_submits_through_the_plugin(tmp_path):
    """The real executor with the profile, on the tiny config, against a fake SLURM whose sbatch
    records its arguments and refuses: the local rules run here, the translations leave as ONE
    array job with the rule's resources, and only the base model's evaluation besides."""
    bin_dir, log = tmp_path / "bin", tmp_path / "sbatch.jsonl"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    (bin_dir / "sacctmgr").write_text("#!/bin/sh\necho acc\n")  # the account check
    for tool in ("sinfo", "sacct", "squeue", "scontrol", "sshare"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    fewer = tmp_path / "fewer.yaml"  # merged into tiny.yaml: two benchmarks, so fewer local jobs
    fewer.write_text("benchmarks: {run: [xnli, mkqa], xnli: {languages: [en, ar]}, mkqa: {languages: [en, zh]}}\n")
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", str(REPO / "workflow/profiles/slurm"),
           "--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config/tiny.yaml"), str(fewer),
           "--directory", str(work), "--default-resources", "slurm_account=acc", "slurm_partition=part",
           "--latency-wait", "1", "--retries", "0", "--slurm-init-seconds-before-status-checks", "1"]  # fmt: skip
    env = {**ENV, "PATH": f"{bin_dir}{os.pathsep}{ENV['PATH']}", "FAKE_SLURM_LOG": str(log)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0  # the fake sbatch refuses every submission
    calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    by_rule: dict[str, list] = {}
    for argv in calls:
        by_rule.setdefault(re.match(r"rule_([a-z_]+?)(_wildcards|$)", argv[argv.index("--comment") + 1])[1], []).append(argv)
    # ready first: the translations and the base model's evaluation (its benchmark items are built
    # locally); the local rules are never submitted, nothing downstream of pairs is ready yet
    assert set(by_rule) == {"translate", "generate"}, sorted(by_rule)
    assert len(by_rule["translate"]) == 1
    def tasks(argv):  # jobs in one submission: an array's size, else 1
        arr = next((re.fullmatch(r"--array=(\d+)-(\d+)", a) for a in argv if a.startswith("--array=")), None)
        return 1 if arr is None else int(arr[2]) - int(arr[1]) + 1

    assert sum(map(tasks, by_rule["generate"])) == 2  # base on xnli and on mkqa
    assert all(a.startswith("rule_generate_wildcards_tiny-llama_base_")
               for argv in by_rule["generate"] for a in [argv[argv.index("--comment") + 1]])  # fmt: skip
    args = by_rule["translate"][0]
    wrapped = next(a for a in args if a.startswith("--wrap="))
    assert "--allowed-rules translate" in wrapped and "--executor slurm-jobstep" in wrapped
    assert "--array=1-5" in args  # ar hi sw zh ru: one array job
    tiny = yaml.safe_load((REPO / "config/tiny.yaml").read_text())["resources"]["default"]
    assert args[args.index("-t") + 1] == str(tiny["runtime"])
    assert int(args[args.index("--mem") + 1]) >= tiny["mem_mb"]  # plus the plugin's array payload fudge
    assert ["-A", "acc"] == args[args.index("-A"):args.index("-A") + 2]
    assert ["-p", "part"] == args[args.index("-p"):args.index("-p") + 2]
    assert (work / "resources/models/tiny-llama/config.json").is_file()  # base_model ran locally
    assert (work / "results/data/source/records.jsonl").is_file()  # so did source_data


def test_train_gpu_count_follows_num_processes(tmp_path):
    """A method's own train.num_processes sets its job's GPUs; CPU training asks for none."""
    cfg = textwrap.dedent("""
        models:
          tiny-llama: {source: {type: tiny, family: llama}}
        resources: {train: {gpu: 2}}
        train: {num_processes: 2}
        methods:
          sft: {type: sft}
          sft4: {type: sft, train: {num_processes: 4}}
          sft_cpu: {type: sft, train: {device: cpu}}
    """)
    path = tmp_path / "c.yaml"
    path.write_text(cfg)
    work = tmp_path / "w"
    _, jobs = dry_run(work, path)
    gpus = {j["wildcards"]["method"]: j["resources"]["gpu"] for j in jobs if j["rule"] == "train"}
    assert gpus == {"sft": 2, "sft4": 4, "sft_cpu": 0}
    path.write_text(cfg.replace("{train: {gpu: 2}}", "{train: {gpu: 3}}"))
    cmd = [sys.executable, "-m", "snakemake", "-n", "--directory", str(work), "--snakefile", str(REPO / "Snakefile"),
           "--configfile", str(path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "resources.train.gpu: 3 differs from train.num_processes (2)" in done.stdout + done.stderr


def test_protected_models_are_write_protected(tmp_path):
    """storage.protect_models: the trained model directory is read-only once the job is done
    (Snakemake then refuses to overwrite it for a non-root user)."""
    cfg = {
        "languages": ["en", "ar"],
        "models": {"tiny-llama": {"source": {"type": "tiny", "family": "llama"}}},
        "resources": {"default": {"mem_mb": 2000, "runtime": 10, "gpu": 0, "threads": 1}},
        "storage": {"protect_models": True},
        "train": {"max_steps": 1, "epochs": None, "per_device_batch_size": 2, "max_length": 128, "device": "cpu",
                  "save_steps": 10},
        "methods": {"sft": {"type": "sft"}},
        "benchmarks": {"run": []},
    }  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    work = tmp_path / "w"
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(work), "--snakefile",
           str(REPO / "Snakefile"), "--configfile", str(path), "--", "results/tiny-llama/train/sft/metrics.json"]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    model = work / "results/tiny-llama/train/sft/model"
    assert (model / "config.json").is_file()
    assert not os.stat(model).st_mode & 0o222 and not os.stat(model / "config.json").st_mode & 0o222
    assert "Write-protecting output file" in done.stdout + done.stderr


class _TaggingMT:
    """Stands in for NLLB: '[tgt] text' (so translations differ from their sources)."""

    engine = key = memory_key = "fake:mt"

    def translate(self, texts, src, tgt):
        return [f"[{tgt}] {t}" for t in texts]


@pytest.mark.parametrize("name", ["config/paper/llama-3.1-8b.yaml", "config/clo.yaml"])
def test_every_method_of_a_recipe_builds_its_mix_from_its_data(tmp_path, tiny_tokenizer, name):
    """Source records shaped like the recipe's sources (Aya: native rows in every language plus
    English rows; CLO: English only) go through the real translate (the recipe's fields) and
    pairs code; every configured method then builds a non-empty data mix without error."""
    from snakemake.utils import validate

    from crosstune.methods import METHODS
    from crosstune.pairs import build_pairs
    from crosstune.train.settings import expand_per_language, resolve
    from crosstune.translate import TranslationMemory, translate_records

    cfg = yaml.safe_load((REPO / name).read_text())
    validate(cfg, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    expand_per_language(cfg)
    langs = cfg["languages"]
    source_langs = {lang for s in cfg["data"]["sources"] for lang in s.get("languages") or langs}
    records = [
        {"id": f"src/{lang}{i}", "lang": lang, "instruction": f"question {i} in {lang}: what is {i} plus {i}?",
         "response": f"answer {i} in {lang}: it is {2 * i}, and here is why.", "source": "src"}
        for lang in sorted(source_langs) for i in range(3)
    ]  # fmt: skip
    memory = TranslationMemory(tmp_path / "tm.sqlite")
    t = cfg["translate"]
    translated = [r for lang in langs if lang != "en"
                  for r in translate_records(records, lang, _TaggingMT(), memory, t["fields"], t["fields_to_en"])]  # fmt: skip
    english = [dict(r, instruction_en=r["instruction"], response_en=r["response"]) for r in records if r["lang"] == "en"]
    tokenizer = tiny_tokenizer
    pairs, _ = build_pairs(english + translated, tokenizer, langs, cfg["pairs"]["min_tokens"], cfg["pairs"]["max_tokens"])
    assert {p["lang"] for p in pairs} == set(langs)
    sizes = {}
    for method, spec in cfg["methods"].items():
        settings = resolve(cfg, method)
        if spec["type"] in ("clo", "sft_dpo", "sft") and settings["size"]:
            settings["size"] = 2  # the recipe's 3,200 / 6,400 items, scaled to the 3 items here
        examples = METHODS[spec["type"]]().build_examples(pairs, settings, cfg["seed"])
        sizes[method] = len(examples)
    assert all(sizes.values()), sizes


def test_grid_with_every_output_present_schedules_nothing(tmp_path):
    """Once every output of the grid exists (empty stand-ins, one timestamp), a dry run schedules
    zero jobs: no rule's input function or output pattern keeps a job pending. (That params and
    code do not retrigger jobs is checked on a real run of the tiny config in test_workflow.py.)"""
    configs = [PAPER / r for r in RECIPES]
    _, jobs = dry_run(tmp_path, *configs)
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
         "--configfile", *map(str, configs), "--", "all", "benchmarks"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    now = time.time()
    made = 0
    for block in re.split(r"^(?=rule \w+:$)", out, flags=re.M)[1:]:
        rule = block.splitlines()[0][len("rule "):-1]
        m = re.search(r"^    output: (.*)$", block, re.M)
        for rel in m[1].split(", ") if m else []:
            path = tmp_path / rel
            if rule in ("base_model", "generate") or rel.endswith("/model"):  # directory outputs (generate: predictions/)
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            os.utime(path, (now, now))
            made += 1
    assert made >= len([j for j in jobs if j["rule"] not in TARGETS])
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--directory", str(tmp_path), "--snakefile", str(REPO / "Snakefile"),
         "--configfile", *map(str, configs), "--", "all", "benchmarks"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0 and "Nothing to be done" in done.stdout + done.stderr, done.stdout[-3000:]


def test_crossin_recipe_is_the_release_run_script(tmp_path, tiny_tokenizer):
    """config/crossin.yaml: the values of CrossIn's sample_scripts/run_training.sh, its data, a dry run."""
    cfg = yaml.safe_load((REPO / "config" / "crossin.yaml").read_text())
    t, ft = cfg["train"], cfg["train"]["finetuning"]
    assert cfg["languages"] == ["en", "zh", "vi", "es"] and cfg["seed"] == 42
    assert (ft["mode"], ft["lora_r"], ft["lora_alpha"], ft["lora_dropout"]) == ("lora", 64, 128, 0.05)
    assert (t["warmup_ratio"], t["weight_decay"], t["lr_scheduler"], t["per_device_batch_size"] * t["gradient_accumulation"]) == (
        0.03, 0.01, "cosine", 16)  # fmt: skip
    assert {s["type"] for s in cfg["data"]["sources"]} == {"alpaca", "platypus"}
    text = (REPO / "config" / "crossin.yaml").read_text()
    for key in ("learning_rate", "epochs"):  # the run script's arguments: no published value
        assert "our choice" in next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
    counts, jobs = dry_run(tmp_path, REPO / "config" / "crossin.yaml")
    assert counts["translate"] == 3 and counts["train"] == 4 and counts["generate"] == 5 * 6
    assert {j["wildcards"]["method"] for j in jobs if j["rule"] == "train"} == {"sft_en", "sft", "crossin", "crossin_translation"}
    check_resources(cfg, jobs)
    # the release's Alpaca prompt (templates/alpaca.json, no input), response + eos after it
    tok = copy.deepcopy(tiny_tokenizer)  # the session's tokenizer keeps its own template
    tok.chat_template = (REPO / cfg["models"]["llama-2-7b"]["chat_template"]).read_text()
    prompt = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], tokenize=False,
                                                add_generation_prompt=True)  # fmt: skip
    assert prompt.endswith("Below is an instruction that describes a task. Write a response that appropriately "
                           "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n ")  # fmt: skip
