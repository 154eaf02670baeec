# Helpers of the evaluation rules (eval.smk): benchmarks, methods, model directories, targets.


def eval_benchmarks():
    """{benchmark: languages} of the benchmarks configured under `benchmarks:`."""
    out = {}
    for name, spec in config.get("benchmarks", {}).items():
        if isinstance(spec, dict) and not spec.get("enabled", True):
            continue
        langs = spec.get("languages") if isinstance(spec, dict) else spec
        if not langs:
            raise ValueError(f"benchmarks.{name}.languages: no languages to evaluate")
        out[name] = list(langs)
    return out


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


EVAL_BENCHMARKS = eval_benchmarks()
EVAL_METHODS = eval_methods()
EVAL_DIR = "results/{model}/eval/{method}/{benchmark}"


def eval_model_dir(model, method):
    """Model directory evaluated as `method`: the base model or rule train's output."""
    if method == "base":
        return model_dir(model)
    return f"results/{model}/train/{method}/model"


def benchmark_items(wildcards):
    return expand(
        "results/benchmarks/{benchmark}/{lang}.jsonl",
        benchmark=wildcards.benchmark,
        lang=EVAL_BENCHMARKS[wildcards.benchmark],
    )


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
