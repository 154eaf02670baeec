# Helpers and targets shared by every rule file.

import os
import re

import yaml

# crosstune is importable: the Snakefile puts src/ on sys.path and PYTHONPATH.
import crosstune.code_digest  # noqa: E402
import crosstune.config  # noqa: E402
import crosstune.studies  # noqa: E402
import crosstune.train.settings  # noqa: E402
from snakemake.exceptions import WorkflowError  # noqa: E402

# The schema check fills in the defaults; a violation is reported in a few lines
# (the key, where it is, the nearest valid key) instead of snakemake's schema dump.
try:
    validate(config, "../schemas/config.schema.yaml", set_default=True)
except WorkflowError as e:
    raise crosstune.config.ConfigError(crosstune.config.schema_message(e)) from None

# each point of a study (studies:) becomes a methods entry, clo[size=800]; then a methods
# entry with per_language: true becomes one method per target language
STUDIES = crosstune.studies.expand(
    config,
    yaml.safe_load(open(f"{workflow.basedir}/workflow/schemas/config.schema.yaml")),
)
crosstune.train.settings.expand_per_language(config)
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


def code(script):
    """Digest of the crosstune code that workflow/scripts/<script> runs: every rule with a
    script has it as param `code`, so a change to that code reruns the rule (and only
    the rules that run it); see crosstune/code_digest.py."""
    return crosstune.code_digest.digest(f"{workflow.basedir}/workflow/scripts/{script}")


def model_dir(model):
    return f"resources/models/{model}"


def local_model_dir(model):
    """models.<model>.source.id of a `local` source (the directory rule base_model links), else [];
    with its files unless Snakemake made it (a trained model): a directory's own mtime does not
    change when a file in it is edited in place (save_pretrained over an old copy), a file's does.
    """
    source = config["models"][model]["source"]
    if source["type"] != "local":
        return []
    path = source["id"]
    if not os.path.isdir(path) or os.path.exists(f"{path}/.snakemake_timestamp"):
        return [path]
    return [path, *map(str, crosstune.io.files_under(path))]


def connection_position(model):
    """models.<model>.connection_position: where CC-Tuning's p sits in the templated prompt
    (rules train, activations and generate pass it to crosstune.cc_tuning.connection).
    """
    return config["models"][model].get("connection_position", "last")


def chat_template_file(model):
    """models.<model>.chat_template as a path: absolute, else relative to the working
    directory when it exists there, else to the repository (config/paper/chat_templates/).
    """
    path = config["models"][model].get("chat_template")
    if not path:
        return []
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(workflow.basedir, path)


# a chat template that is missing or not UTF-8 stops the run here, not in rule base_model
for _name in MODELS:
    if chat_template_file(_name):
        crosstune.config.check_text_file(
            f"models.{_name}.chat_template", chat_template_file(_name)
        )


def all_targets():
    """The default target: the last stage of every model, as far as the pipeline goes.
    Without `methods:` nothing is trained, so the training data (pairs) is not built either:
    the evaluation alone runs (target evaluate_only, config/eval-only.yaml)."""
    if not config["methods"]:
        return []
    targets = expand("results/{model}/pairs/pairs.jsonl", model=MODELS)
    targets += expand(
        "results/{model}/train/{method}/metrics.json",
        model=MODELS,
        method=sorted(config["methods"]),
    )
    # CC-Tuning's Transform Matrix (rules activations, transform) of each cc_tuning method
    targets += expand(
        "results/{model}/cc_tuning/{method}/transform.safetensors",
        model=MODELS,
        method=sorted(
            m for m, spec in config["methods"].items() if spec["type"] == "cc_tuning"
        ),
    )
    # the report's pages of the pairs statistics and Transform Matrix fits (rules/report.smk)
    targets += expand(rules.report_pages.output, model=MODELS)
    return targets


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    lang="|".join(TARGET_LANGS) or "none",


# ---------------------------------------------------------------- benchmarks
import crosstune.benchmarks as _bm  # noqa: E402

# {benchmark: [languages]} of config["benchmarks"]; a language a benchmark (or its
# bundled mini set) lacks is a config error here, before any job runs.
BENCHMARK_LANGS = _bm.check_config(config)


def benchmark_items(benchmark, lang):
    return f"results/benchmarks/{benchmark}/{lang}.jsonl"


def all_benchmark_items():
    return [
        benchmark_items(b, lang)
        for b, langs in BENCHMARK_LANGS.items()
        for lang in langs
    ]


def benchmark_spec(benchmark):
    """The settings that change a benchmark's items (not which languages run)."""
    spec = config["benchmarks"][benchmark]
    return {
        k: spec.get(k)
        for k in ("source", "path", "path_en", "revision", "n", "seed", "aliases")
    }


def benchmark_inputs(wildcards):
    """Files whose change rebuilds the items: the template and the bundled or released data
    (the English prompts too, when the release has them: oracle rows decode with them)
    """
    t = _bm.load_template(wildcards.benchmark)
    files = [str(t.path)]
    source = config["benchmarks"][wildcards.benchmark]["source"]
    if source == "bundled":
        dirs = {t.bundled, t.dataset.get("english", {}).get("bundled", t.bundled)}
        for d in sorted(dirs):
            files += sorted(
                str(p) for p in (_bm.MINI_DIR / d).rglob("*") if p.is_file()
            )
    elif source == "released":
        r, root = t.released, config["benchmarks"]["released_dir"]
        files += [f"{root}/{r['dir']}/{r['prompts']}/{wildcards.lang}.json",
                  f"{root}/{r['dir']}/{r['answers']}/{wildcards.lang}.json"]  # fmt: skip
        english = _bm.released_english_file(wildcards.benchmark, wildcards.lang, root)
        # optional (without it prompt_en is null): an input once it exists, so adding it reruns too
        files += [str(english)] if english and english.is_file() else []
    return files


# ---------------------------------------------------------------- training jobs
def train_gpus(method):
    """GPUs of one training job: one per process (train.num_processes, per method), all in
    ONE job that runs `accelerate launch`; 0 when resources.train.gpu is 0 or the method
    trains on the CPU (train.device: cpu)."""
    t = crosstune.train.settings.resolve(config, method)["train"]
    if res("train", "gpu") == 0 or t["device"] == "cpu":
        return 0
    return t["num_processes"]


def keep_model(path):
    """A trained model directory, write-protected when storage.protect_models is set:
    Snakemake then refuses to overwrite it (a changed setting or script stops the run
    with an error naming it) instead of silently retraining; delete it to retrain."""
    return protected(path) if config["storage"]["protect_models"] else path
