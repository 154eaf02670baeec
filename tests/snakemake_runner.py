"""Running the workflow from tests: snakemake on config/tiny.yaml plus an override, in a work directory."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import yaml

from .conftest import REPO

BUNDLED = "src/crosstune"  # the package, with its bundled data files


def snakemake(workdir, *args, override: dict | None = None, check=True, configfile=None, repo=REPO):
    """Run snakemake on ``configfile`` (default config/tiny.yaml), plus an ``override`` config
    merged on top; ``repo``: the checkout whose Snakefile runs (a copy, for a test that edits
    its files), and whose config/tiny.yaml is the default."""
    configs = [str(configfile or repo / "config" / "tiny.yaml")]
    if override:
        path = workdir / "override.yaml"
        path.write_text(yaml.safe_dump(override))
        configs.append(str(path))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "-s", str(repo / "Snakefile"),
           "--directory", str(workdir), *args, "--configfile", *configs]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True)
    if check and run.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
        )
    return run


def planned_jobs(run) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table."""
    return {
        r: int(n) for r, n in re.findall(r"^(\w+)\s+(\d+)$", run.stdout, flags=re.M) if r != "total"
    }


def copy_repo(dest):
    """The files a run reads: Snakefile, configs, rules, scripts, schema, the crosstune package."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("config", "workflow", BUNDLED):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest
