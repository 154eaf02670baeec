"""Checks of a config beyond its JSON schema, run before any job is scheduled.

The schema (``workflow/schemas/config.schema.yaml``) rejects unknown keys,
wrong types and unknown language codes; this module checks what a schema
cannot: that files exist and that settings fit together. Every message names
the config key at fault.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    pass


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
        if spec["type"] != "jsonl" and path and (path.startswith(("/", "./", "../"))) and not (base / path).exists():
            raise ConfigError(f"{key}.path: not found: {path}")
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
