"""Atomic writes and JSONL errors that name file and line."""

from __future__ import annotations

import pytest

from crosstune.io import (
    DataError,
    atomic_path,
    iter_text_lines,
    read_jsonl,
    read_text,
    read_yaml,
    write_jsonl,
)


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(DataError, match=r"data.jsonl:3: malformed JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"data.jsonl:2: expected a JSON object"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n{"a": }\n')
    with pytest.raises(DataError) as e:
        read_jsonl(path)
    assert "at at" not in str(e.value) and "(column 7)" in str(e.value)


def test_non_utf8_line_names_file_line_and_byte(tmp_path):
    path = tmp_path / "latin1.jsonl"
    # lines 1-3 are UTF-8 (line 2 with a multi-byte character), line 4 is Latin-1
    path.write_bytes('{"a": 1}\n{"a": "caf\u00e9"}\n\n'.encode() + '{"a": "na\u00efve"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl:4: not UTF-8 \(byte 0xef at column 10, byte offset 34\)"):
        read_jsonl(path)
    lines = iter_text_lines(path)  # the lines before the bad one are read normally
    assert [next(lines), next(lines)] == [(1, '{"a": 1}\n'), (2, '{"a": "caf\u00e9"}\n')]


def test_yaml_and_text_errors_name_file_line_and_byte(tmp_path):
    """read_text / read_yaml (config.yaml, answer cues, benchmark templates, chat templates)."""
    path = tmp_path / "cues.yaml"
    path.write_bytes(b"en: {before: [answer]}\n" + "fr: {before: [r\u00e9ponse]}\n".encode("latin-1"))
    for read in (read_text, read_yaml):  # line 2 starts at byte offset 23; the byte is its 16th
        with pytest.raises(DataError, match=r"cues.yaml:2: not UTF-8 \(byte 0xe9 at column 16, byte offset 38\)"):
            read(path)
    path.write_text("en: {before: [answer]}\nfr: {before: [réponse]\nde: {}\n")
    with pytest.raises(DataError, match=r"cues.yaml:3:1: invalid YAML: expected ',' or '}', but got '<scalar>' "
                       r"\(while parsing a flow mapping from line 2, column 5\)"):
        read_yaml(path)
    path.write_text("en: {before: [answer]}\n")
    assert read_yaml(path) == {"en": {"before": ["answer"]}}


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
