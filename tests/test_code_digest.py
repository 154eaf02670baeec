"""Rule param `code`: a digest of the crosstune modules a workflow script imports."""

from __future__ import annotations

import shutil

from crosstune.code_digest import ROOT, digest, reached_files

from .conftest import REPO

SCRIPTS = REPO / "workflow" / "scripts"


def names(script, root=ROOT):
    return {str(p.relative_to(root)) for p in reached_files(SCRIPTS / script, root)}


def test_import_walk_finds_direct_relative_lazy_and_main_modules():
    score = names("score.py")
    # from crosstune.evaluate.scoring import ... -> scoring, its relative imports, package __init__s
    assert {"__init__.py", "evaluate/__init__.py", "evaluate/scoring.py", "evaluate/extract.py"} <= score
    assert "train/engine.py" not in score
    train = names("train.py")
    # workflow.use_job_gpus imports .gpus inside the function; training runs `python -m crosstune.train`
    assert {"gpus.py", "train/launch.py", "train/__main__.py", "train/engine.py", "methods/clo.py"} <= train
    assert "evaluate/extract.py" not in train


def test_a_library_change_changes_the_digest_of_the_scripts_that_run_it_only(tmp_path):
    root = tmp_path / "crosstune"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    scripts = sorted(p.name for p in SCRIPTS.glob("*.py"))
    before = {s: digest(SCRIPTS / s, root) for s in scripts}
    assert before == {s: digest(SCRIPTS / s) for s in scripts}  # the copy hashes like the original
    extract = root / "evaluate" / "extract.py"
    extract.write_text(extract.read_text() + "\n# a change\n")
    after = {s: digest(SCRIPTS / s, root) for s in scripts}
    changed = {s for s in scripts if before[s] != after[s]}
    assert "score.py" in changed and "train.py" not in changed and "translate.py" not in changed
    assert changed == {s for s in scripts if "evaluate/extract.py" in names(s, root)}
    # a new module that a reached module imports is reached too
    (root / "evaluate" / "newpart.py").write_text("X = 1\n")
    extract.write_text(extract.read_text() + "from .newpart import X\n")
    assert "evaluate/newpart.py" in names("score.py", root)
