"""The GPU device pool (crosstune.gpus) with fake device ids: no GPU needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from crosstune import gpus

REPO = Path(__file__).resolve().parent.parent


def test_claims_are_exclusive_and_all_or_nothing(tmp_path):
    pool = ["0", "1", "2"]
    a = gpus.try_claim(2, pool, tmp_path)
    assert a is not None and a.devices == ["0", "1"]
    assert gpus.try_claim(2, pool, tmp_path) is None  # only "2" is free: nothing is held
    b = gpus.try_claim(1, pool, tmp_path)
    assert b is not None and b.devices == ["2"]
    a.release()
    c = gpus.try_claim(2, pool, tmp_path)
    assert c is not None and c.devices == ["0", "1"]
    c.release()
    b.release()


def test_pool_sources_in_order(monkeypatch):
    env = {"CROSSTUNE_GPU_POOL": "4,5", "CUDA_VISIBLE_DEVICES": "0,1,2"}
    assert gpus.pool_ids(env) == ["4", "5"]
    assert gpus.pool_ids({"CUDA_VISIBLE_DEVICES": "0, 2"}) == ["0", "2"]
    assert gpus.pool_ids({"CUDA_VISIBLE_DEVICES": ""}) == []
    monkeypatch.setattr(gpus, "detect_gpus", lambda: ["0", "1", "2", "3"])
    assert gpus.pool_ids({}) == ["0", "1", "2", "3"]


def test_lock_dir_is_per_slurm_job(tmp_path):
    assert gpus.lock_dir({"CROSSTUNE_GPU_LOCK_DIR": str(tmp_path)}) == tmp_path
    assert gpus.lock_dir({"SLURM_JOB_ID": "123"}).name == "slurm-123"
    assert gpus.lock_dir({}).name == f"crosstune-gpus-{os.getuid()}"


def test_use_gpus_sets_visible_devices(tmp_path):
    env = {"CROSSTUNE_GPU_POOL": "0,1,2,3", "CROSSTUNE_GPU_LOCK_DIR": str(tmp_path)}
    assert gpus.use_gpus(0, env) == [] and env["CUDA_VISIBLE_DEVICES"] == ""
    env.pop("CUDA_VISIBLE_DEVICES")
    assert gpus.use_gpus(3, env) == ["0", "1", "2"] and env["CUDA_VISIBLE_DEVICES"] == "0,1,2"
    assert gpus.try_claim(1, ["0", "1", "2", "3"], tmp_path).devices == ["3"]
    gpus._held.pop().release()


def test_too_many_or_timeout_is_a_clear_error(tmp_path):
    with pytest.raises(gpus.GpuPoolError, match="asks for 3 GPU.*pool has 2"):
        gpus.claim(3, ["0", "1"], tmp_path, what="train m=x")
    with gpus.claim(2, ["0", "1"], tmp_path):
        with pytest.raises(gpus.GpuPoolError, match="no 1 free GPU"):
            gpus.claim(1, ["0", "1"], tmp_path, timeout=0.2, poll=0.05)
    assert gpus.claim(1, ["0", "1"], tmp_path, timeout=0.2).devices == ["0"]


def test_killed_process_releases_its_devices(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from crosstune import gpus
        c = gpus.claim(2, ["0", "1"], __import__("pathlib").Path({str(tmp_path)!r}))
        print("held", flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert gpus.try_claim(1, ["0", "1"], tmp_path) is None
    finally:
        proc.kill()
        proc.wait()
    got = gpus.claim(2, ["0", "1"], tmp_path, timeout=5, poll=0.05)
    assert got.devices == ["0", "1"]
    got.release()


SNAKEFILE = """
rule all:
    input: expand("out/{i}.txt", i=range(6))

rule job:
    output: "out/{i}.txt"
    resources: gpu=lambda wc: 2 if wc.i == "0" else 1
    script: "job.py"
"""

JOB = """
import os, time
from crosstune.workflow import use_job_gpus
devices = use_job_gpus(snakemake)
start = time.time()
time.sleep(1.0)
with open(snakemake.output[0], "w") as f:
    f.write(f"{os.environ['CUDA_VISIBLE_DEVICES']} {start} {time.time()}\\n")
"""


def test_snakemake_jobs_get_disjoint_devices(tmp_path):
    """Six jobs (one asks for 2 GPUs) on a fake 3-GPU pool with --resources gpu=3: at no
    moment do two running jobs share a device, and each job sees exactly its count."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(JOB)
    env = {**os.environ, "CROSSTUNE_GPU_POOL": "0,1,2", "CROSSTUNE_GPU_LOCK_DIR": str(tmp_path / "locks"),
           "PYTHONPATH": str(REPO / "src")}  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--cores", "4", "--resources", "gpu=3", "--quiet", "all"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = []
    for i in range(6):
        devices, start, end = (tmp_path / "out" / f"{i}.txt").read_text().split()
        runs.append((devices.split(","), float(start), float(end)))
        assert len(runs[-1][0]) == (2 if i == 0 else 1)
    overlaps = 0
    for i, (da, sa, ea) in enumerate(runs):
        for db, sb, eb in runs[i + 1 :]:
            if sa < eb and sb < ea:  # ran at the same time
                overlaps += 1
                assert not set(da) & set(db)
    assert overlaps > 0  # the pool was shared by concurrent jobs
    assert {d for r in runs for d in r[0]} == {"0", "1", "2"}
