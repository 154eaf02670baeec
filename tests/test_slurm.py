"""The SLURM profile on a real (single-node) SLURM: the README's rehearsal, word for word.

tests/slurm_cluster.py starts munge, MariaDB + slurmdbd, slurmctld and slurmd (installing
Debian's packages with apt when missing, as root); the README's rehearsal commands then run the
tiny DAG through workflow/profiles/slurm with the executor plugin, freezing one training so that
its time limit ends it. Checked: the DAG completes, its scores.tsv equals the local run's byte
for byte, the array jobs, the localrules, the resources as sbatch options, and the resubmitted
training resuming from its checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from .conftest import REPO
from .slurm_cluster import ACCOUNT, PARTITION, SlurmCluster, install, missing_binaries

pytestmark = pytest.mark.slow
LOCALRULES = {"base_model", "source_data", "pairs", "benchmark_data", "aggregate"}
ARRAY_RULES = {"translate", "generate", "score"}


def readme_rehearsal() -> list[str]:
    """The shell commands of the README's "Rehearse on the tiny DAG" step, continuations joined."""
    text = (REPO / "README.md").read_text()
    step = text[text.index("**Rehearse on the tiny DAG**"):]
    block = re.search(r"```bash\n(.*?)```", step, flags=re.S).group(1)
    return [" ".join(c.split()) for c in re.sub(r"\\\n", " ", block).splitlines() if c.strip()]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if missing_binaries():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            # CI runs as root (.ci/run sets CROSSTUNE_REQUIRE_SLURM): there this fails, never skips
            if os.environ.get("CROSSTUNE_REQUIRE_SLURM"):
                pytest.fail(f"SLURM is not installed ({', '.join(missing_binaries())}) and apt-get is not usable")
            pytest.skip("SLURM is not installed and installing it needs root and apt-get")
        install()
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


def checkout(workdir):
    """The repository as the README's commands expect it (they run from its root), outputs apart."""
    for name in ("Snakefile", "config.yaml", "config", "workflow", "src", "envs"):
        (workdir / name).symlink_to(REPO / name)
    return workdir


def run_rehearsal(slurm, workdir):
    """The README's commands: the snakemake run, and the freeze once sft_en has a checkpoint."""
    submit, freeze = (c.replace("<ACCOUNT>", ACCOUNT).replace("<PARTITION>", PARTITION) for c in readme_rehearsal())
    env = {**slurm.env, "HF_HUB_OFFLINE": "1"}
    with (workdir / "snakemake.out").open("w") as out:
        run = subprocess.Popen(["bash", "-c", f"exec {submit}"], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        checkpoints = workdir / "results/tiny-llama/train/sft_en/checkpoints"
        deadline = time.monotonic() + 1500
        froze = False
        try:
            while run.poll() is None and time.monotonic() < deadline:
                if not froze and list(checkpoints.glob("checkpoint-*/trainer_state.json")):
                    frozen = subprocess.run(["bash", "-c", freeze], cwd=workdir, env=env, capture_output=True, text=True)
                    assert frozen.returncode == 0, frozen.stderr
                    froze = True
                time.sleep(0.2)
        finally:
            if run.poll() is None:  # a failed test: stop submitting (the cluster's stop cancels the jobs)
                run.kill()
                run.wait()
    log = (workdir / "snakemake.out").read_text()
    assert run.wait() == 0, f"the SLURM run failed:\n{log[-6000:]}"
    assert froze, "sft_en's training finished before it could be frozen"
    return log


def jobs(slurm):
    """Every job SLURM accounted for: one dict per job or array task."""
    fields = ["JobID", "Comment", "ReqMem", "Timelimit", "ReqCPUS", "State"]
    out = slurm.check(["sacct", "-X", "-n", "-P", "-a", "-o", ",".join(fields)])
    return [dict(zip(fields, line.split("|"), strict=True)) for line in out.splitlines()]


def rule_of(job):
    return re.match(r"rule_(\w+?)(?:_wildcards_|$)", job["Comment"]).group(1)


@pytest.fixture(scope="module")
def rehearsal(slurm, tmp_path_factory):
    """(work directory, SLURM's accounting of every job) after the README's rehearsal."""
    workdir = checkout(tmp_path_factory.mktemp("rehearsal"))
    run_rehearsal(slurm, workdir)
    return workdir, jobs(slurm)


def test_rehearsal_scores_equal_the_local_run(rehearsal, tiny_run):
    workdir, _ = rehearsal
    scores = "results/eval/scores.tsv"
    assert (workdir / scores).read_bytes() == (tiny_run / scores).read_bytes()


def test_localrules_stay_local_and_array_rules_go_as_arrays(rehearsal):
    _, accounted = rehearsal
    rules = {rule_of(j) for j in accounted}
    assert not rules & LOCALRULES  # run by Snakemake on the "login node", never submitted
    assert {"train", "activations", "transform"} | ARRAY_RULES <= rules
    # array tasks are <array job id>_<index>; the jobs of a rule that become ready together go as
    # one array (the 5 translations at once; generate/score jobs as their inputs appear)
    for rule in ARRAY_RULES:
        tasks = [j["JobID"] for j in accounted if rule_of(j) == rule]
        assert any(re.fullmatch(r"\d+_\d+", t) for t in tasks), (rule, tasks)


def test_resources_become_sbatch_options(rehearsal):
    _, accounted = rehearsal
    # config/tiny.yaml's default: 2000 MB, 10 minutes, 1 thread; slurm-drill.yaml: train 3 minutes
    # (an array job asks a few MB more: the plugin adds the size of its tasks' command payload)
    for j in accounted:
        limit = "00:03:00" if rule_of(j) == "train" else "00:10:00"
        assert (j["Timelimit"], j["ReqCPUS"]) == (limit, "1"), j
        mem = int(j["ReqMem"].removesuffix("M"))
        assert mem == 2000 or ("_" in j["JobID"] and 2000 < mem <= 2016), j


def test_a_job_ended_by_its_time_limit_is_resubmitted_and_resumes(rehearsal):
    workdir, accounted = rehearsal
    sft_en = [j["State"] for j in accounted if j["Comment"] == "rule_train_wildcards_tiny-llama_sft_en"]
    assert sft_en == ["TIMEOUT", "COMPLETED"]
    log = (workdir / "logs/train/tiny-llama/sft_en.log").read_text()
    resumed = json.loads((workdir / "results/tiny-llama/train/sft_en/metrics.json").read_text())
    assert re.fullmatch(r"checkpoint-\d+", resumed["resumed_from"] or "")
    assert f"resuming sft_en from results/tiny-llama/train/sft_en/checkpoints/{resumed['resumed_from']}" in log
    assert resumed["steps"] == 200
