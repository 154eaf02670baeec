"""Config and data files that cannot be read: what a user sees, before any job.

Snakemake loads a --configfile itself, before the Snakefile runs, so the workflow cannot
improve that message; the README documents it and `python -m crosstune.config` names the
file, line and byte. The files the workflow reads itself (the embedded config.yaml, chat
templates, answer cues, benchmark templates) are read with crosstune.io.read_yaml/read_text.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO
from .snakemake_runner import copy_repo, snakemake

LATIN1 = "seed: 42\n# the default's caf\u00e9\n".encode("latin-1")  # byte 0xe9 at line 2, column 20
BROKEN = b"seed: 42\nlanguages: [en, ar\nmodels: {}\n"  # the bracket is never closed


def snakemake_run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", *args],
                          capture_output=True, text=True, cwd=cwd)  # fmt: skip


@pytest.mark.parametrize(
    "content, snakemake_says",
    [
        (BROKEN, "Config file is not valid JSON or YAML."),
        (LATIN1, "UnicodeDecodeError: 'utf-8' codec"),
    ],
)
def test_an_unreadable_configfile_what_snakemake_prints_and_the_check(
    tmp_path, content, snakemake_says
):
    """Snakemake's loader (README "Configuration reference" quotes it) names no file and line, and
    for a byte that is not UTF-8 prints a traceback; the checker the README points to names both."""
    path = tmp_path / "mine.yaml"
    path.write_bytes(content)
    run = snakemake_run(
        "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(path)
    )
    assert run.returncode != 0 and snakemake_says in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
    check = subprocess.run([sys.executable, "-m", "crosstune.config", str(path), str(REPO / "config" / "tiny.yaml")],
                           capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert check.returncode == 1 and f"{REPO / 'config' / 'tiny.yaml'}: readable" in check.stdout
    expected = {BROKEN: f"{path}:3:7: invalid YAML: expected ',' or ']', but got ':' "
                        "(while parsing a flow sequence from line 2, column 12)",
                LATIN1: f"{path}:2: not UTF-8 (byte 0xe9 at column 20, byte offset 28)"}[content]  # fmt: skip
    assert check.stderr.startswith(expected)


@pytest.mark.parametrize(
    "content, expected",
    [(BROKEN, "config.yaml:3:7: invalid YAML: expected ',' or ']', but got ':'"),
     (LATIN1, "config.yaml:2: not UTF-8 (byte 0xe9 at column 20, byte offset 28); save the file as UTF-8")],
)  # fmt: skip
def test_an_unreadable_embedded_config_yaml_names_file_and_line(tmp_path, content, expected):
    """config.yaml, which the Snakefile loads itself (no --configfile): file, line, a few lines."""
    repo = copy_repo(tmp_path)
    (repo / "config.yaml").write_bytes(content)
    run = snakemake_run(cwd=repo)
    out = run.stdout + run.stderr
    assert run.returncode != 0 and expected in out
    assert "Traceback" not in out and len(out.splitlines()) < 8
    assert not (repo / "results").exists()


def test_a_chat_template_that_is_missing_or_not_utf8_stops_before_any_job(tmp_path):
    template = tmp_path / "mine.jinja"
    template.write_bytes("{{ messages }}\n{# caf\u00e9 #}\n".encode("latin-1"))
    override = {"models": {"tiny-llama": {"chat_template": str(template)}}}
    run = snakemake(tmp_path, "-n", override=override, check=False)
    assert run.returncode != 0
    assert (f"models.tiny-llama.chat_template: {template}:2: not UTF-8 (byte 0xe9 at column 7, byte offset 21)"
            in run.stdout + run.stderr)  # fmt: skip
    template.unlink()
    run = snakemake(tmp_path, "-n", override=override, check=False)
    assert f"models.tiny-llama.chat_template: file not found: {template}" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
