# Helpers and targets shared by every rule file.

import os
import re
import sys

# Scripts import the crosstune library from src/ (also inside --sdm conda envs).
SRC = os.path.join(workflow.basedir, "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
)

import crosstune.config  # noqa: E402

crosstune.config.check(config)

MODELS = sorted(config["models"])
LANGS = config["languages"]
TARGET_LANGS = [lang for lang in LANGS if lang != "en"]

# Resources a job gets when the config names none: a rule's entry in
# config["resources"], else config["resources"]["default"], else these.
BUILTIN_RESOURCES = {"mem_mb": 4000, "runtime": 60, "gpu": 0, "threads": 1}


def res(rule, key):
    """Resource ``key`` (mem_mb, runtime, gpu, threads) of ``rule`` from the config."""
    spec = {
        **BUILTIN_RESOURCES,
        **config["resources"].get("default", {}),
        **config["resources"].get(rule, {}),
    }
    return spec[key]


def model_dir(model):
    return f"resources/models/{model}"


def all_targets():
    """The default target: the last stage of every model, as far as the pipeline goes."""
    return expand("results/{model}/pairs/pairs.jsonl", model=MODELS)


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    lang="|".join(TARGET_LANGS) or "none",
