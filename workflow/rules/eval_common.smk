# Helpers of the evaluation rules (eval.smk): benchmarks, methods, model directories, targets.

import crosstune.cc_tuning  # noqa: E402
import crosstune.evaluate.extract  # noqa: E402
import crosstune.evaluate.scoring  # noqa: E402
import crosstune.train.settings  # noqa: E402

# A cc_tuning method is evaluated once per inference mode (evaluation.cc_tuning.modes),
# each its own row and path: results/{model}/eval/cc_tuning@matrix/...
MODE_SEP = "@"
CC_MODES = crosstune.cc_tuning.MODES  # matrix, oracle, none


def is_cc_tuning(method):
    return config.get("methods", {}).get(method, {}).get("type") == "cc_tuning"


def split_row(row):
    """(method, mode, variant) of a row: a matrix study's point cc_tuning@matrix[n_pairs=10]
    is mode matrix with the Transform Matrix variant matrix[n_pairs=10] (MATRIX_VARIANTS).
    """
    method, _, mode = row.partition(MODE_SEP)
    if mode in MATRIX_VARIANTS.get(method, {}):
        return method, "matrix", mode
    return method, mode, None


def eval_methods():
    """Rows evaluated: evaluation.methods, or base + every method under `methods:`;
    a cc_tuning method expands to one row per mode (`cc_tuning@oracle` picks one) and
    one per Transform-Matrix point of its matrix studies (`cc_tuning@matrix[n_pairs=10]`).
    """
    trained = list(config.get("methods", {}))
    chosen = config["evaluation"]["methods"]
    names = ["base"] + trained if chosen is None else list(chosen)
    rows = []
    for name in names:
        method, _, mode = name.partition(MODE_SEP)
        if method != "base" and method not in trained:
            raise ValueError(
                f"evaluation.methods: {name!r} not configured under `methods:` "
                f"(configured: {trained or 'none'}; 'base' is the untrained model)"
            )
        variants = MATRIX_VARIANTS.get(method, {})
        if mode and (not is_cc_tuning(method) or mode not in [*CC_MODES, *variants]):
            raise ValueError(
                f"evaluation.methods: {name!r}: only cc_tuning methods take a mode, "
                f"one of {', '.join([*CC_MODES, *variants])}"
            )
        if is_cc_tuning(method) and not mode:
            modes = config["evaluation"]["cc_tuning"]["modes"]
            rows += [f"{method}{MODE_SEP}{m}" for m in [*modes, *variants]]
        else:
            rows.append(name)
    return list(dict.fromkeys(rows))


# {benchmark: languages} of the benchmarks to evaluate (benchmarks.run), from common.smk
EVAL_BENCHMARKS = BENCHMARK_LANGS
EVAL_METHODS = eval_methods()
if EVAL_BENCHMARKS:  # gains are taken against the baseline: it must be one of the rows
    crosstune.config.check_baseline(config["evaluation"]["baseline"], EVAL_METHODS)
EVAL_DIR = "results/{model}/eval/{method}/{benchmark}"


def eval_model_dir(model, row):
    """Model directory evaluated as `row`: the base model or rule train's output."""
    method = row.partition(MODE_SEP)[0]
    if method == "base":
        return model_dir(model)
    return f"results/{model}/train/{method}/model"


def eval_cc_tuning(row, model=None):
    """CC-Tuning inference settings of an evaluation row, or None (not cc_tuning, or mode none)."""
    method, mode, _ = split_row(row)
    if not is_cc_tuning(method) or mode in ("", "none"):
        return None
    tau = crosstune.train.settings.resolve(config, method).get("tau", 1.0)
    layer_choice = config["evaluation"]["cc_tuning"]["layer_choice"]
    position = connection_position(model) if model is not None else None
    return {
        "mode": mode,
        "layer_choice": layer_choice,
        "tau": tau,
        "connection_position": position,
        # gumbel draws from the global seed: then it changes the outputs, so it is a param
        **({"seed": config["seed"]} if layer_choice == "gumbel" else {}),
    }


def eval_transform(wildcards):
    """The Transform Matrix a cc_tuning row in matrix mode decodes with: the method's (rule
    transform) or a matrix study point's (rule transform_point)."""
    cc = eval_cc_tuning(wildcards.method)
    if cc is None or cc["mode"] != "matrix":
        return []
    method, _, variant = split_row(wildcards.method)
    where = f"results/{wildcards.model}/cc_tuning/{method}"
    return (
        f"{where}/{variant}/transform.safetensors"
        if variant
        else f"{where}/transform.safetensors"
    )


def evaluated(row, benchmark):
    """Oracle rows need each item's English prompt: parallel benchmarks, and XL-Sum
    from the release (source: released, which ships English translations of its prompts).
    """
    source = config["benchmarks"][benchmark]["source"]
    return not row.endswith(f"{MODE_SEP}oracle") or _bm.has_english_prompts(
        benchmark, source
    )


def eval_items(wildcards):
    """The benchmark's item files (rule benchmark_data), one per language."""
    return [
        benchmark_items(wildcards.benchmark, lang)
        for lang in EVAL_BENCHMARKS[wildcards.benchmark]
    ]


def answer_cues(wildcards):
    """The answer cues (crosstune/data/answer_cues.yaml) of a multiple-choice benchmark: they decide
    which option an output chose, so an edit reruns those score jobs only."""
    task = _bm.load_template(wildcards.benchmark).task
    return str(crosstune.evaluate.extract.CUE_FILE) if task == "multiple_choice" else []


def qa_normalize(wildcards):
    """evaluation.qa_normalize for QA benchmarks (XQuAD, MKQA); None elsewhere, so changing it reruns only their scores."""
    task = _bm.load_template(wildcards.benchmark).task
    return (
        config["evaluation"]["qa_normalize"]
        if task in crosstune.evaluate.scoring.QA_TASKS
        else None
    )


def eval_seed():
    seed = config["evaluation"]["bootstrap"]["seed"]
    return config["seed"] if seed is None else seed


EVAL_JOBS = [
    {"model": m, "method": row, "benchmark": b}
    for m in MODELS
    for row in EVAL_METHODS
    for b in EVAL_BENCHMARKS
    if evaluated(row, b)
]


def generate_dtype():
    """evaluation.generation.dtype as the jobs will decode in it: ``auto`` resolves on this machine."""
    gen = config["evaluation"]["generation"]
    if gen["dtype"] != "auto":
        return gen["dtype"]  # without importing torch: planning a recipe stays quick
    import crosstune.evaluate.generation

    return crosstune.evaluate.generation.planned_dtype(
        gen["dtype"], gen["device"], res("generate", "gpu")
    )


def check_prompt_formats():
    """The connection sits at a position of the chat-templated prompt the method was trained on."""
    for job in EVAL_JOBS:
        if (
            eval_cc_tuning(job["method"])
            and config["models"][job["model"]]["prompt_format"] == "plain"
        ):
            raise crosstune.config.ConfigError(
                f"models.{job['model']}.prompt_format: plain prompts cannot be evaluated with "
                f"CC-Tuning's connection (row {job['method']}): set it to chat, or evaluate mode none"
            )


check_prompt_formats()


# rows decoded with a connection (cc_tuning in mode matrix or oracle): their predictions
# record the Decision Maker's layer, which rule layer_choice tabulates and plots
LAYER_JOBS = [
    job
    for job in EVAL_JOBS
    if (eval_cc_tuning(job["method"]) or {}).get("mode") in ("matrix", "oracle")
]
LAYER_MODELS = sorted({job["model"] for job in LAYER_JOBS})


def score_outputs(kind):
    return [f"{EVAL_DIR}/scores/{kind}".format(**job) for job in EVAL_JOBS]


def eval_row_names():
    """Every row a path may name: base, the methods, each cc_tuning method with each mode."""
    for method in config.get("methods", {}):
        if is_cc_tuning(method):
            modes = [*CC_MODES, *MATRIX_VARIANTS.get(method, {})]
            yield from (f"{method}{MODE_SEP}{mode}" for mode in modes)
        else:
            yield method


EVAL_WILDCARDS = dict(
    method="|".join(map(re.escape, ["base", *eval_row_names()])),
    benchmark="|".join(map(re.escape, EVAL_BENCHMARKS)) or "none",
)


STUDY_KEYS = ("point", "setting", "x", "also")


def study_rows(study):
    """The evaluation rows of a study's points (crosstune.studies): each variant's rows
    (cc_tuning modes, per-language variants <point>-<lang>) with the point they belong to.
    """
    rows = []
    for p in STUDIES[study]:
        for row in EVAL_METHODS:
            name, sep, mode = row.partition(MODE_SEP)
            if p.get("variant"):  # a matrix point: the rows <method>[-<lang>]@<variant>
                point, sep, mode = p["method"], sep, "matrix"
                if row.partition(MODE_SEP)[2] != p["variant"]:
                    continue
            else:
                point = p["name"]
            if name == point or name.startswith(f"{point}-"):
                suffix = name[len(point) :]  # "-zh" for a per-language variant
                method = p["method"] + suffix + sep + mode
                rows.append(
                    {"row": row, "method": method, **{k: p[k] for k in STUDY_KEYS}}
                )
    return rows


STUDY_JOBS = {
    study: [
        j for j in EVAL_JOBS if j["method"] in {r["row"] for r in study_rows(study)}
    ]
    for study in STUDIES
}


def study_scores(kind):
    return lambda wc: [
        f"{EVAL_DIR}/scores/{kind}".format(**j) for j in STUDY_JOBS[wc.study]
    ]


def eval_targets():
    """The evaluation outputs: the tables (rule aggregate), the layer choice, each study's table
    and curves; the target `evaluate_only` (eval.smk) and part of the default target."""
    targets = []
    if EVAL_BENCHMARKS and EVAL_METHODS:
        targets += rules.aggregate.output
    if LAYER_JOBS:
        targets += rules.layer_choice.output
    # each study with scores: its table and curves (rule study)
    targets += [f"results/studies/{s}/table.tsv" for s in STUDIES if STUDY_JOBS[s]]
    return targets


# The default target grows by the evaluation outputs when benchmarks are
# configured (wraps the all_targets() of the rule files included before).
_targets_before_eval = all_targets


def all_targets():
    return _targets_before_eval() + eval_targets()
