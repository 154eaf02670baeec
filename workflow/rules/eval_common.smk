# Helpers of the evaluation rules (eval.smk): benchmarks, methods, model directories, targets.

import crosstune.train.settings  # noqa: E402


def eval_methods():
    """Methods evaluated: evaluation.methods, or base + every method under `methods:`."""
    trained = list(config.get("methods", {}))
    chosen = config["evaluation"]["methods"]
    methods = ["base"] + trained if chosen is None else list(chosen)
    unknown = [m for m in methods if m != "base" and m not in trained]
    if unknown:
        raise ValueError(
            f"evaluation.methods: {unknown} not configured under `methods:` "
            f"(configured: {trained or 'none'}; 'base' is the untrained model)"
        )
    return methods


# {benchmark: languages} of the benchmarks to evaluate (benchmarks.run), from common.smk
EVAL_BENCHMARKS = BENCHMARK_LANGS
EVAL_METHODS = eval_methods()
EVAL_DIR = "results/{model}/eval/{method}/{benchmark}"


def eval_model_dir(model, method):
    """Model directory evaluated as `method`: the base model or rule train's output."""
    if method == "base":
        return model_dir(model)
    return f"results/{model}/train/{method}/model"


def eval_cc_tuning(method):
    """CC-Tuning evaluation settings of `method`, or None (not cc_tuning, or connection: none)."""
    spec = config.get("methods", {}).get(method)
    cc = config["evaluation"]["cc_tuning"]
    if not spec or spec["type"] != "cc_tuning" or cc["connection"] == "none":
        return None
    tau = crosstune.train.settings.resolve(config, method).get("tau", 1.0)
    return {**cc, "tau": tau}


def eval_transform(wildcards):
    """The Transform Matrix (rule transform) a cc_tuning method is evaluated with."""
    if eval_cc_tuning(wildcards.method) is None:
        return []
    return (
        f"results/{wildcards.model}/cc_tuning/{wildcards.method}/transform.safetensors"
    )


def eval_items(wildcards):
    """The benchmark's item files (rule benchmark_data), one per language."""
    return [
        benchmark_items(wildcards.benchmark, lang)
        for lang in EVAL_BENCHMARKS[wildcards.benchmark]
    ]


def eval_seed():
    seed = config["evaluation"]["bootstrap"]["seed"]
    return config["seed"] if seed is None else seed


def score_outputs(kind):
    return expand(
        f"{EVAL_DIR}/scores/{kind}",
        model=MODELS,
        method=EVAL_METHODS,
        benchmark=list(EVAL_BENCHMARKS),
    )


EVAL_WILDCARDS = dict(
    method="|".join(map(re.escape, ["base", *config.get("methods", {})])),
    benchmark="|".join(map(re.escape, EVAL_BENCHMARKS)) or "none",
)


# The default target grows by the evaluation outputs when benchmarks are
# configured (wraps the all_targets() of the rule files included before).
_targets_before_eval = all_targets


def all_targets():
    targets = _targets_before_eval()
    if EVAL_BENCHMARKS and EVAL_METHODS:
        targets += rules.aggregate.output
    return targets
