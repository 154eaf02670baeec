"""Checks of a config beyond its JSON schema, run before any job is scheduled.

The schema (``workflow/schemas/config.schema.yaml``) rejects unknown keys,
wrong types and unknown language codes; this module checks what a schema
cannot: that files exist and that settings fit together. Every message names
the config key at fault.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path


class ConfigError(ValueError):
    pass


# A Hugging Face hub id: "name" or "owner/name" (letters, digits, "-", "_", ".")
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def looks_local(path: str, base: str | Path = ".") -> bool:
    """Whether a hub-type ``data.sources[].path`` means a local directory, not a hub id:
    explicitly local (/, ./, ../, ~), not of the hub id form, a data file's name
    (``.parquet``, ``.json``...) or under an existing local directory (``data/mine``
    when ``data/`` exists)."""
    if path.startswith(("/", "./", "../", "~")) or not HUB_ID.fullmatch(path):
        return True
    if Path(path).suffix in (".parquet", ".json", ".jsonl", ".csv", ".arrow", ".txt"):
        return True
    return "/" in path and (Path(base) / path.split("/")[0]).is_dir()


def schema_message(error: Exception) -> str:
    """A few lines for a schema violation (snakemake's WorkflowError wrapping a jsonschema
    ValidationError): the offending key, where it is, and the nearest valid key."""
    # snakemake raises its WorkflowError while handling the ValidationError: the context
    cause = next((e for e in (error, error.__cause__, error.__context__) if hasattr(e, "validator")), None)
    if cause is None:
        return str(error)
    where = ".".join(str(p) for p in cause.absolute_path) or "the top level"
    if cause.validator == "additionalProperties":
        valid = sorted(cause.schema.get("properties", {}))
        unknown = sorted(set(cause.instance) - set(valid))
        lines = []
        for key in unknown:
            near = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
            lines.append(f"config: unknown key {key!r} in {where}; {hint}")
        return "\n".join(lines)
    return f"config: {where}: {cause.message}"


def check_baseline(baseline: str, rows: list[str]) -> None:
    """evaluation.baseline must be one of the evaluated rows, else gains.tsv would be empty."""
    if rows and baseline not in rows:
        raise ConfigError(
            f"evaluation.baseline: {baseline!r} is not an evaluated method; "
            f"evaluated: {', '.join(rows)} (set evaluation.baseline or evaluation.methods)"
        )


def check_text_file(key: str, path: str | Path) -> None:
    """A file a config key names (e.g. a chat template) exists and is UTF-8: checked before any job."""
    from .io import DataError, read_text

    if not Path(path).is_file():
        raise ConfigError(f"{key}: file not found: {path}")
    try:
        read_text(path)
    except DataError as e:
        raise ConfigError(f"{key}: {e}") from None


def check(config: dict, base: str | Path = ".") -> None:
    base = Path(base)
    if "en" not in config["languages"]:
        raise ConfigError("languages: English ('en') must be one of the languages (it is the pivot)")
    names = set()
    for i, spec in enumerate(config["data"]["sources"]):
        key = f"data.sources[{i}] ({spec['name']})"
        if spec["name"] in names:
            raise ConfigError(f"{key}.name: duplicate source name {spec['name']!r}")
        names.add(spec["name"])
        path = spec.get("path")
        # jsonl sources are local files; hub sources may be a local directory or a hub id
        if spec["type"] == "jsonl" and not (base / path).is_file():
            raise ConfigError(f"{key}.path: file not found: {path}")
        if spec["type"] != "jsonl" and path and looks_local(path, base) and not (base / path).exists():
            raise ConfigError(
                f"{key}.path: local path not found: {path} (relative to the working directory; "
                "a hub id has the form 'owner/name')"
            )
    for name, model in config["models"].items():
        src = model["source"]
        if src["type"] == "local" and not (base / src["id"]).is_dir():
            raise ConfigError(f"models.{name}.source.id: directory not found: {src['id']}")
        if src["type"] == "tiny" and src["hidden_size"] % src["num_heads"]:
            raise ConfigError(f"models.{name}.source: hidden_size must be a multiple of num_heads")
        if src["type"] == "tiny" and src["num_heads"] % src["num_kv_heads"]:
            raise ConfigError(f"models.{name}.source: num_heads must be a multiple of num_kv_heads")
    engine = config["translate"]["engine"]
    if engine.startswith("human:") and not config["translate"]["memory_only"]:
        raise ConfigError(f"translate.memory_only: engine {engine!r} can only be read from the memory; set it to true")


def read_config_file(path: str | Path) -> dict:
    """A config file's keys; DataError naming file and line when it is not UTF-8 or not YAML,
    or names no mapping of keys."""
    from .io import DataError, read_yaml

    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a config: the top level must be a mapping of keys")
    return data


def main(argv: list[str] | None = None) -> int:
    """``python -m crosstune.config FILE...``: read config files as the workflow does, naming file,
    line and byte offset of what cannot be read. Snakemake loads a --configfile before the
    workflow runs, and its own message names neither file nor line (README, "Configuration
    reference")."""
    import sys

    from .io import DataError

    failed = 0
    for path in sys.argv[1:] if argv is None else argv:
        try:
            read_config_file(path)
            print(f"{path}: readable")
        except (DataError, OSError) as e:
            print(e, file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
