"""The README's cluster and GPU commands run with what its install commands install.

Every shell command of those sections (fenced ``bash`` blocks and inline code spans that are
commands) is split into its simple commands; each program must be a shell builtin, installed
(the test environment is the README's install, `.[test]` holding `.[slurm]`), or one of the
cluster's own tools listed below. `hf` subcommands and `snakemake` flags are checked against
the installed versions' --help, so a renamed command (huggingface-cli -> hf) or flag fails here.
"""

from __future__ import annotations

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
