"""Reading and writing the pipeline's files safely.

Every writer goes through :func:`atomic_path`: data is written to a temporary
file beside the target and renamed into place only when complete, so a crash
never leaves a partial file that looks finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import faults


class DataError(ValueError):
    """Bad input data; the message names the file and line."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create owner-only files; give the result the usual permissions
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod((0o777 if directory else 0o666) & ~umask)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        faults.point("write", path.name)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """All records of a JSON Lines file; a bad line raises DataError naming file:line."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    for _, record in iter_numbered_jsonl(path):
        yield record


def iter_numbered_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSON Lines file; blank lines are skipped but counted."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    for lineno, line in iter_text_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: malformed JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        yield lineno, record


def iter_text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, line) of a UTF-8 text file; bytes that are not UTF-8 raise DataError
    naming file, line, column and byte offset (lines are decoded one by one, so the number is exact)."""
    offset = 0
    with Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _not_utf8(path, lineno, raw, e.start, offset) from None
            offset += len(raw)


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 text file; bytes that are not UTF-8 raise DataError as in :func:`iter_text_lines`."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        start = raw.rfind(b"\n", 0, e.start) + 1  # where the bad byte's line starts
        lineno = raw.count(b"\n", 0, e.start) + 1
        raise _not_utf8(path, lineno, raw[start:], e.start - start, start) from None


def _not_utf8(path, lineno: int, line: bytes, column: int, line_offset: int) -> DataError:
    return DataError(
        f"{path}:{lineno}: not UTF-8 (byte 0x{line[column]:02x} at column {column + 1}, "
        f"byte offset {line_offset + column}); save the file as UTF-8"
    )


def read_yaml(path: str | os.PathLike):
    """A YAML file's content; a file that is not UTF-8 or not valid YAML raises DataError naming
    file, line and column (PyYAML's own message names ``<unicode string>`` when given the text)."""
    import yaml

    try:
        return yaml.safe_load(read_text(path))
    except yaml.MarkedYAMLError as e:
        mark, start = e.problem_mark or e.context_mark, e.context_mark
        # where the unclosed bracket or block began: often the line to fix
        context = f" ({e.context} from line {start.line + 1}, column {start.column + 1})" if start else ""
        where = f"{path}:{mark.line + 1}:{mark.column + 1}"
        raise DataError(f"{where}: invalid YAML: {e.problem}{context}") from None
    except yaml.YAMLError as e:
        raise DataError(f"{path}: invalid YAML: {e}") from None


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write records atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def files_under(root: str | os.PathLike) -> list[Path]:
    """Every file under directory ``root``, sorted, except hidden ones (a download's ``.cache/``):
    the files a rule reads from a local directory, made its inputs so that an edit reruns it."""
    root = Path(root)
    return sorted(
        f for f in root.rglob("*")
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts)
    )  # fmt: skip


def require_fields(record: dict, fields: Iterable[str], where: str) -> None:
    """Raise DataError naming ``where`` if a field is missing or not a non-empty string."""
    for field in fields:
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: field {field!r} is missing or empty")


def save_safetensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """A safetensors file with the same bytes for the same tensors, written atomically.

    safetensors keeps the metadata in a hash map whose order varies between processes,
    so its header is rewritten here with the metadata sorted (the format allows the
    header to be padded with spaces to a multiple of 8 bytes; the data is unchanged).
    """
    from safetensors.torch import save

    blob = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with atomic_path(path) as tmp:
        tmp.write_bytes(len(text).to_bytes(8, "little") + text + blob[8 + size :])


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
