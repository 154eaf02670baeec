"""Atomic writes and JSONL errors that name file and line."""

from __future__ import annotations

import pytest

from crosstune.io import DataError, atomic_path, read_jsonl, write_jsonl


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(DataError, match=r"data.jsonl:3: malformed JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"data.jsonl:2: expected a JSON object"):
        read_jsonl(path)


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "out.jsonl"

    def records():
        yield {"a": 1}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert list(tmp_path.iterdir()) == []
    assert write_jsonl(path, [{"a": "ü"}]) == 1
    assert read_jsonl(path) == [{"a": "ü"}]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others like any file, not mkstemp's 0600


def test_atomic_directory_replaces_only_on_success(tmp_path):
    out = tmp_path / "model"
    with atomic_path(out, directory=True) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(ValueError), atomic_path(out, directory=True) as tmp:
        (tmp / "x").write_text("2")
        raise ValueError
    assert (out / "x").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
