"""The README's cluster and GPU commands run with what its install commands install.

Every shell command of those sections (fenced ``bash`` blocks and inline code spans that are
commands) is split into its simple commands; each program must be a shell builtin, installed
(the test environment is the README's install, `.[test]` holding `.[slurm]`), or one of the
cluster's own tools listed below. `hf` subcommands and `snakemake` flags are checked against
the installed versions' --help, so a renamed command (huggingface-cli -> hf) or flag fails here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

SECTIONS = ["### On a SLURM cluster\n", "## Reproducing the papers\n"]
BUILTINS = {".", "source", "export", "cd", "env"}
# the cluster's or the GPU machine's own programs, never pip-installed
EXTERNAL = {"sbatch", "srun", "squeue", "scancel", "sacct", "nvidia-smi", "tmux", "screen", "awk"}
BIN = Path(sys.executable).parent


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    level = heading.split()[0]
    end = re.search(rf"^#{{1,{len(level)}}} ", text[start + len(heading):], flags=re.M)
    return text[start: start + len(heading) + end.start()] if end else text[start:]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    commands = []
    for heading in SECTIONS:
        part = section(text, heading)
        for block in re.findall(r"```bash\n(.*?)```", part, flags=re.S):
            block = re.sub(r"\\\n", " ", block)
            commands += [line.split(" #")[0] for line in block.splitlines() if line.strip()]
        prose = re.sub(r"```.*?```", "", part, flags=re.S)
        # inline spans that are commands: a program name, then arguments
        commands += [s for s in re.findall(r"`([^`\n]+)`", prose) if re.match(r"[a-z][\w.-]* ", s)]
    return commands


def simple_commands(line: str) -> list[list[str]]:
    """``a && b | c $(d)`` -> [[a...], [b...], [c...], [d...]]; leading VAR=value words dropped."""
    line = line.replace("$(", " ; ").replace(")", " ")
    out = []
    for part in re.split(r"&&|\|\||[|;]", line):
        words = shlex.split(part)
        while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
            words.pop(0)
        if words and words[0] == "env":  # env VAR=value program ...
            words = [w for w in words[1:] if not re.fullmatch(r"[A-Za-z_]\w*=.*", w)]
        if words:
            out.append(words)
    return out


COMMANDS = [c for line in readme_commands() for c in simple_commands(line)]


def test_the_sections_have_the_commands_a_cluster_user_runs():
    programs = {c[0] for c in COMMANDS}
    assert {"pip", "snakemake", "hf", "srun", "scancel"} <= programs, programs
    assert not any("huggingface-cli" in w for c in COMMANDS for w in c)


@pytest.mark.parametrize("program", sorted({c[0] for c in COMMANDS}))
def test_every_program_is_installed_or_a_cluster_tool(program):
    if program in BUILTINS | EXTERNAL:
        return
    assert shutil.which(program, path=f"{BIN}:{os.environ['PATH']}"), f"README runs {program!r}: not installed"


def test_the_slurm_extra_is_installed():
    # pip install -e '.[slurm]': the profile's executor (the `test` extra holds it too)
    assert importlib.util.find_spec("snakemake_executor_plugin_slurm")


def test_hf_subcommands_exist():
    for cmd in (c for c in COMMANDS if c[0] == "hf"):
        sub = [w for w in cmd[1:3] if not w.startswith("-") and "/" not in w][: 2 if cmd[1] == "auth" else 1]
        run = subprocess.run([str(BIN / "hf"), *sub, "--help"], capture_output=True, text=True)
        assert run.returncode == 0, f"README: {' '.join(cmd)}: {run.stderr[-500:]}"


def test_snakemake_flags_exist():
    helptext = subprocess.run([str(BIN / "snakemake"), "--help"], capture_output=True, text=True, check=True).stdout
    flags = {w.split("=")[0] for c in COMMANDS if c[0] == "snakemake" for w in c if w.startswith("--")}
    unknown = [f for f in sorted(flags) if not re.search(rf"{re.escape(f)}\b", helptext)]
    assert flags and not unknown, f"README's snakemake flags that snakemake --help lacks: {unknown}"


# ---------------------------------------------------------------- quick start and configuration
# The commands a new user copies first: each snakemake command runs here as a dry run (-n, the same
# arguments, from the repository root), with -F so the job counts the README states are the whole
# DAG's whatever results/ holds; pip/venv commands are checked for what they would install.
QUICK_SECTIONS = ["## Set up and run\n", "## Pointing it at real models and data\n", "## Rerunning one stage\n"]


def bash_lines(heading: str) -> list[str]:
    part = section((REPO / "README.md").read_text(), heading)
    return [line.split(" #")[0] for block in re.findall(r"```bash\n(.*?)```", part, flags=re.S)
            for line in re.sub(r"\\\n", " ", block).splitlines() if line.strip()]  # fmt: skip


def grid() -> list[str]:
    """The README's $GRID: the three paper recipes."""
    return re.search(r'^GRID="([^"]+)"', (REPO / "README.md").read_text(), flags=re.M).group(1).split()


QUICK = [c for h in QUICK_SECTIONS for line in bash_lines(h) for c in simple_commands(line)]
# the paper grid's dry run, as "Reproducing the papers" shows it
GRID_RUN = next(c for line in bash_lines("## Reproducing the papers\n") for c in simple_commands(line)
                if c[0] == "snakemake")  # fmt: skip


def test_the_quick_start_has_the_commands_a_new_user_runs():
    programs = [c[0] for c in QUICK]
    assert {"python3", "pip", "snakemake", "ruff", "snakefmt", "pytest"} <= set(programs), programs
    assert sum(p == "snakemake" for p in programs) >= 5


PLANNED: dict[tuple, tuple[int, str]] = {}  # one dry run per command for the tests below


def dry_run(args: list[str], tmp_path) -> tuple[int, str]:
    """(jobs in the whole DAG, output) of ``args`` run with -n -F from the repository root."""
    key = tuple(args)
    if key not in PLANNED or "my.yaml" in args:
        PLANNED[key] = _dry_run(args, tmp_path)
    return PLANNED[key]


def _dry_run(args: list[str], tmp_path) -> tuple[int, str]:
    args = [a for arg in args for a in (grid() if arg == "$GRID" else [arg])]
    if "--configfile" in args and "my.yaml" in args:  # the README's example config, as written there
        text = section((REPO / "README.md").read_text(), "## Pointing it at real models and data\n")
        (tmp_path / "my.yaml").write_text(re.search(r"```yaml\n(.*?)```", text, flags=re.S).group(1))
        args = [str(tmp_path / "my.yaml") if a == "my.yaml" else a for a in args]
    run = subprocess.run([str(BIN / "snakemake"), *args[1:], "-n", "-F"], cwd=REPO, capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"README: {' '.join(args)}: {out[-2000:]}"
    return int(re.search(r"^total\s+(\d+)", out, flags=re.M).group(1)), out


@pytest.mark.parametrize("command", [c for c in QUICK if c[0] == "snakemake" and "--lint" not in c] + [GRID_RUN],
                         ids=" ".join)  # fmt: skip
def test_every_snakemake_command_plans(command, tmp_path):
    dry_run(command, tmp_path)


def test_the_job_counts_the_readme_states(tmp_path):
    text = (REPO / "README.md").read_text()
    default = int(re.search(r"\((\d+) jobs: [\d.]+ minutes", text).group(1))
    tiny = int(re.search(r"(\d+) small jobs\)", text).group(1))
    paper = int(re.search(r"dry run: what would run \((\d+) jobs", text).group(1))
    assert dry_run(["snakemake", "--cores", "2"], tmp_path)[0] == default
    assert dry_run(["snakemake", "--cores", "2", "--configfile", "config/tiny.yaml"], tmp_path)[0] == tiny
    assert dry_run(GRID_RUN, tmp_path)[0] == paper
    assert f"({tiny} jobs," in (REPO / "config/tiny.yaml").read_text()


def test_pip_commands_name_existing_extras_and_the_installed_torch():
    import tomllib
    from packaging.requirements import Requirement

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    pips = [c for c in QUICK + COMMANDS if c[0] == "pip" and c[1] == "install"]
    assert pips
    for cmd in pips:
        for word in cmd[2:]:
            if word.startswith("-"):
                continue
            m = re.fullmatch(r"\.(?:\[([\w,]+)\])?", word)
            if m:  # the project itself, with extras that must exist
                assert set(filter(None, (m.group(1) or "").split(","))) <= extras, cmd
            elif word.startswith("torch=="):
                installed = importlib.metadata.version("torch").split("+")[0]
                assert Requirement(word).specifier.contains(installed), (word, installed)


def test_the_version_bounds_agree_and_hold_the_pinned_envs():
    """crosstune/versions.py's TESTED, pyproject.toml's dependencies and envs/*.yaml's pins agree."""
    import tomllib
    import yaml
    from packaging.requirements import Requirement

    from crosstune.versions import TESTED

    deps = {r.name: r.specifier for r in map(Requirement,
            tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])}  # fmt: skip
    for package, spec in TESTED.items():
        assert str(deps[package]) == str(Requirement(f"{package}{spec}").specifier), package
        assert deps[package].contains(importlib.metadata.version(package)), package
    for env in sorted((REPO / "envs").glob("*.yaml")):
        pins = [Requirement(p) for d in yaml.safe_load(env.read_text())["dependencies"] if isinstance(d, dict)
                for p in d["pip"]]  # fmt: skip
        for pin in pins:
            (version,) = [s.version for s in pin.specifier if s.operator == "=="]
            if pin.name.replace("_", "-").lower() in {n.replace("_", "-").lower() for n in deps}:
                name = next(n for n in deps if n.replace("_", "-").lower() == pin.name.replace("_", "-").lower())
                assert deps[name].contains(version), f"{env.name}: {pin} outside pyproject's {name}{deps[name]}"
            assert importlib.metadata.version(pin.name).split("+")[0] == version, f"{env.name}: {pin} not tested"


def test_an_untested_version_is_refused_by_name(monkeypatch):
    from crosstune import versions

    monkeypatch.setattr(versions.importlib.metadata, "version", lambda package: "99.0")
    with pytest.raises(versions.UntestedVersion, match=r"sacrebleu 99.0 is installed: pip install 'sacrebleu>=2.4,<2.7'"):
        versions.require("sacrebleu", "chrF")
