"""Studies: one ``studies:`` entry turns a method setting into a grid of trained variants.

A study names its base methods (``methods: [clo, sft]`` or ``method: clo``), one setting
to vary (``vary: {size: [400, 800]}``), optionally a second one crossed with it
(``also: {...}``) and training seeds (``seeds: [1, 2, 3]``). Each point of the grid
becomes an ordinary ``methods:`` entry named ``<method>[<key>=<value>,...]``
(``clo[size=800]``, ``sft_lora[lora_r=8,seed=2]``) - the base entry with the point's
settings - so Snakemake trains, evaluates, caches and reruns each point like any
other method: adding a value adds exactly that point's jobs. The expansion runs
before ``per_language`` expansion (crosstune.train.settings.expand_per_language), so a
study of a per-language entry gives ``clo[size=800]-zh`` variants through that same
mechanism.

A setting path is relative to the method entry: ``size`` is ``methods.<m>.size``,
``train.finetuning.lora_r`` is ``methods.<m>.train.finetuning.lora_r``. A seed sets
the variant's ``train.seed`` (the training seed: initialisation, data order; the
data sample is the method's own ``seed`` setting, which a study may vary too).

A matrix study varies only Transform-Matrix settings (``cc_tuning.n_pairs``, ``ridge``,
``per_language``, ``driver``) of a cc_tuning method: its points are not trained. Each is
a Transform Matrix ``matrix[n_pairs=10,ridge=0]`` fitted from the method's one
activations extraction (the largest N drawn once, each point on the pairs drawn first:
crosstune.cc_tuning.stages) and the evaluation row ``cc_tuning@matrix[n_pairs=10,ridge=0]``
decoding in mode matrix with it (modes oracle and none do not use the matrix).
"""

from __future__ import annotations

import copy
import re

import jsonschema

from .config import ConfigError
from .train.settings import merge, resolve, variant_name

SEED = "seed"  # the name of the seed axis in point names and tables
MATRIX = "cc_tuning"  # the config section of the Transform-Matrix settings (a matrix study's paths)
# what a matrix study may vary: each point refits the matrix from the one activations
# extraction; seed and batch_size change the extraction itself, device only the hardware
MATRIX_SETTINGS = ("n_pairs", "ridge", "per_language", "driver")
# what a point's value may look like in a path (no "/", spaces, brackets or commas)
VALUE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def _fmt(value) -> str:
    """A value as it appears in a point name: 800, 0.001, true, x2en."""
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


def _nested(path: str, value) -> dict:
    out = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def _label(path: str, value) -> str:
    return f"{path.rsplit('.', 1)[-1]}={_fmt(value)}"


def point_name(method: str, settings: dict[str, object]) -> str:
    """``clo[size=800]``: the method and each varied setting by its last path component."""
    return f"{method}[{','.join(_label(path, v) for path, v in settings.items())}]"


def points(name: str, study: dict) -> list[dict]:
    """The grid of one study: dicts with method, settings ({path: value}), name (the
    variant), setting (the varied path), x (its value), point (``size=800``) and also
    (the crossed setting's ``beta=0.5``, "" when none); the seed is only in the name."""
    methods = study.get("methods") or ([study["method"]] if study.get("method") else [])
    if not methods:
        raise ConfigError(f"studies.{name}: give `method:` or `methods:` (the base methods)")
    axes = [*study["vary"].items(), *(study.get("also") or {}).items()]
    if len(axes) > 2:
        raise ConfigError(f"studies.{name}: vary and also name {len(axes)} settings; a study has at most two")
    setting, also = axes[0][0], [path for path, _ in axes[1:]]
    matrix = [path.split(".")[0] == MATRIX for path, _ in axes]
    if any(matrix) and not all(matrix):
        raise ConfigError(f"studies.{name}: vary and also mix Transform-Matrix settings ({MATRIX}.*) with "
                          "method settings; a study varies one kind (a matrix study reuses one model)")  # fmt: skip
    if all(matrix):
        if study.get("seeds"):
            raise ConfigError(f"studies.{name}.seeds: a matrix study ({MATRIX}.*) reuses one trained "
                              "model; training seeds need a study of a method setting")  # fmt: skip
        return _matrix_points(methods, axes, setting, also)
    if study.get("seeds"):
        axes.append((f"train.{SEED}", study["seeds"]))
    grid = _grid(axes)
    return [{"method": method, "settings": settings, "name": point_name(method, settings), "setting": setting,
             "x": settings[setting], "point": _label(setting, settings[setting]),
             "also": ",".join(_label(path, settings[path]) for path in also)}
            for method in methods for settings in grid]  # fmt: skip


def _grid(axes) -> list[dict]:
    grid = [{}]
    for path, values in axes:
        grid = [{**g, path: v} for g in grid for v in values]
    return grid


def _matrix_points(methods, axes, setting, also) -> list[dict]:
    """A matrix study's points: name is the evaluation row ``cc_tuning@matrix[n_pairs=10]``,
    variant the Transform Matrix (``matrix[n_pairs=10]``), matrix its {setting: value}."""
    out = []
    for method in methods:
        for settings in _grid(axes):
            variant = point_name("matrix", settings)
            out.append({"method": method, "settings": settings, "name": f"{method}@{variant}", "variant": variant,
                        "matrix": {path.split(".", 1)[1]: v for path, v in settings.items()},
                        "setting": setting, "x": settings[setting], "point": _label(setting, settings[setting]),
                        "also": ",".join(_label(path, settings[path]) for path in also)})  # fmt: skip
    return out


def matrix_variants(studies: dict[str, list[dict]], languages) -> dict[str, dict[str, dict]]:
    """{method: {variant: {setting: value}}}: the Transform-Matrix points of the matrix studies
    (:func:`expand`'s result), under their base method and its per-language variants."""
    out: dict[str, dict[str, dict]] = {}
    for grid in studies.values():
        for p in grid:
            if p.get("variant"):
                per_language = [variant_name(p["method"], lang) for lang in languages]
                for method in [p["method"], *per_language]:
                    out.setdefault(method, {})[p["variant"]] = p["matrix"]
    return out


def _check_matrix(name: str, grid: list[dict], methods: dict, schema: dict) -> None:
    """A matrix study: cc_tuning base methods, known Transform-Matrix settings of the right type."""
    section = schema["properties"][MATRIX]["properties"]  # the section's own types (reused)
    for p in grid:
        base = p["method"]
        kind = (methods.get(base) or {}).get("type")
        if kind != MATRIX:
            raise ConfigError(f"studies.{name}: a matrix study ({MATRIX}.*) needs a configured method of type "
                              f"{MATRIX}; {base!r} is {kind or 'not configured under `methods:`'}")  # fmt: skip
        for path, value in p["settings"].items():
            key, setting = f"studies.{name}.{path}", path.split(".", 1)[1]
            _check_value(key, value)
            if setting not in MATRIX_SETTINGS:
                why = ("not a Transform-Matrix setting" if setting not in section
                       else "changes where the jobs run, not the matrix" if setting == "device"
                       else "changes the activations extraction, not the matrix")  # fmt: skip
                raise ConfigError(f"{key}: {why}; a matrix study varies {', '.join(MATRIX_SETTINGS)}")  # fmt: skip
            validator = jsonschema.Draft202012Validator(section[setting])
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                raise ConfigError(f"{key}: not a valid Transform-Matrix setting ({setting}: {error.message})")  # fmt: skip
        if sum(q["name"] == p["name"] for q in grid) > 1:
            raise ConfigError(f"studies.{name}: point {p['name']!r} appears twice (a repeated value)")  # fmt: skip


def _check_value(key: str, value) -> None:
    if isinstance(value, (list, dict)) or value is None or not VALUE.match(_fmt(value)):
        raise ConfigError(f"{key}: {value!r} cannot be a study value; use numbers, booleans or names "
                          "of letters, digits, '_', '.', '+', '-'")  # fmt: skip


def _base(grid: list[dict], variant: str) -> str:
    return next(p["method"] for p in grid if p["name"] == variant)


def expand(config: dict, schema: dict) -> dict[str, list[dict]]:
    """Add each study point to ``config["methods"]`` (and to ``evaluation.methods`` when it
    is a list naming the point's base method); returns {study: its points}. ``schema``: the config schema, whose
    ``$defs/method`` every variant must satisfy (an unknown setting path or a value of
    the wrong type is refused naming the study key). In place, before per_language
    expansion and before anything reads ``methods:`` (common.smk)."""
    studies = config.get("studies") or {}
    methods = config.setdefault("methods", {})
    method_schema = {"$ref": "#/$defs/method", "$defs": schema["$defs"]}
    validator = jsonschema.Draft202012Validator(method_schema)
    added: dict[str, tuple[str, dict]] = {}  # variant name -> (study, spec)
    result = {}
    for name, study in studies.items():
        grid = result[name] = points(name, study)
        # a matrix study: no method entries; its rows join evaluation.methods below
        if grid[0].get("variant"):
            _check_matrix(name, grid, {m: s for m, s in methods.items() if m not in added}, schema)
            continue
        for p in grid:
            base = p["method"]
            if base not in methods or base in added:
                raise ConfigError(f"studies.{name}: method {base!r} is not configured under `methods:` "
                                  f"(configured: {', '.join(sorted(m for m in methods if m not in added))})")  # fmt: skip
            spec = copy.deepcopy(methods[base])
            for path, value in p["settings"].items():
                key = f"studies.{name}.{'seeds' if path == f'train.{SEED}' else path}"
                _check_value(key, value)
                spec = merge(spec, _nested(path, value))
                error = jsonschema.exceptions.best_match(validator.iter_errors(spec))
                if error is not None:
                    where = ".".join(map(str, error.absolute_path)) or path
                    # snakemake's --config reads nested values as strings (its yaml BaseLoader)
                    hint = ("; --config passes nested values as strings: put the study in a YAML file "
                            "given after the recipe (--configfile recipe.yaml study.yaml)"
                            if isinstance(value, str) and re.fullmatch(r"[-+.\de]+|true|false", value) else "")
                    raise ConfigError(f"{key}: not a valid setting of method {base!r} "
                                      f"({where}: {error.message}){hint}")  # fmt: skip
            if p["name"] in added and added[p["name"]][1] != spec:
                raise ConfigError(f"studies.{name}: point {p['name']!r} collides with study "
                                  f"{added[p['name']][0]!r}'s point of that name with other settings")  # fmt: skip
            if p["name"] in methods and p["name"] not in added:
                raise ConfigError(f"studies.{name}: point {p['name']!r} collides with the configured method")
            if sum(q["name"] == p["name"] for q in grid) > 1:
                raise ConfigError(f"studies.{name}: point {p['name']!r} appears twice (a repeated value)")
            added[p["name"]] = (name, spec)
            methods[p["name"]] = spec
    # a type-specific setting (size of cc_tuning...) is refused by resolve(), naming the study
    # (per_language is expanded after this: left out of the check)
    bare = {m: {k: v for k, v in spec.items() if k != "per_language"} for m, spec in methods.items()}
    for variant, (name, _) in added.items():
        try:
            resolve({**config, "methods": bare}, variant)
        except ConfigError as e:
            raise ConfigError(f"studies.{name}: {e}") from None
    # an explicit evaluation.methods list gains the points of the methods it evaluates (a row
    # "cc_tuning@matrix" evaluates cc_tuning), so a study of a method left out is not evaluated
    chosen = (config.get("evaluation") or {}).get("methods")
    if chosen is not None:
        evaluated = {row.split("@")[0] for row in chosen}
        chosen_points = [v for v, (study, _) in added.items() if _base(result[study], v) in evaluated]
        chosen_points += [p["name"] for grid in result.values() for p in grid
                          if p.get("variant") and p["method"] in evaluated]  # fmt: skip
        config["evaluation"]["methods"] = list(dict.fromkeys([*chosen, *chosen_points]))
    return result
