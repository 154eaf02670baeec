# CC-Tuning after training (docs/methods.md section 2): for every configured method of type
# cc_tuning, the FFN outputs at p of N parallel (non-English, English) training prompts
# (rule activations), then the least-squares Transform Matrix X with S X ~ T (rule transform).
# Settings: the top-level cc_tuning: section; the pairs come from the method's languages.


include: "cc_tuning_common.smk"


rule activations:
    input:
        model="results/{model}/train/{method}/model",
        pairs="results/{model}/pairs/pairs.jsonl",
    output:
        activations="results/{model}/cc_tuning/{method}/activations.safetensors",
        meta="results/{model}/cc_tuning/{method}/activations.provenance.json",
    log:
        "logs/activations/{model}/{method}.log",
    benchmark:
        "logs/activations/{model}/{method}.benchmark.tsv"
    wildcard_constraints:
        method="|".join(map(re.escape, CC_METHODS)) or "none",
    conda:
        "../../envs/train.yaml"
    threads: res("activations", "threads")
    resources:
        mem_mb=res("activations", "mem_mb"),
        runtime=res("activations", "runtime"),
        gpu=res("activations", "gpu"),
    params:
        code=code("activations.py"),
        n_pairs=CC["n_pairs"],
        study_n_pairs=study_n_pairs,
        seed=CC["seed"] if CC["seed"] is not None else config["seed"],
        # the pairs are drawn from the method's training languages
        languages=lambda wc: crosstune.train.settings.resolve(config, wc.method)[
            "languages"
        ],
        batch_size=CC["batch_size"],
        device=CC["device"],
        connection_position=lambda wc: connection_position(wc.model),
    script:
        "../scripts/activations.py"


rule transform:
    input:
        activations=rules.activations.output.activations,
    output:
        transform="results/{model}/cc_tuning/{method}/transform.safetensors",
        fit="results/{model}/cc_tuning/{method}/fit.json",
        meta="results/{model}/cc_tuning/{method}/provenance.json",
    log:
        "logs/transform/{model}/{method}.log",
    benchmark:
        "logs/transform/{model}/{method}.benchmark.tsv"
    wildcard_constraints:
        method="|".join(map(re.escape, CC_METHODS)) or "none",
    conda:
        "../../envs/train.yaml"
    threads: res("transform", "threads")
    resources:
        mem_mb=res("transform", "mem_mb"),
        runtime=res("transform", "runtime"),
        gpu=res("transform", "gpu"),
    params:
        code=code("transform.py"),
        n_pairs=matrix_setting("n_pairs"),  # the pairs drawn first (all, without a study)
        ridge=matrix_setting("ridge"),
        per_language=matrix_setting("per_language"),
        driver=matrix_setting("driver"),
        device=CC["device"],
    script:
        "../scripts/transform.py"


# a matrix study's point: its Transform Matrix from the method's one activations file
use rule transform as transform_point with:
    output:
        transform="results/{model}/cc_tuning/{method}/{matrix}/transform.safetensors",
        fit="results/{model}/cc_tuning/{method}/{matrix}/fit.json",
        meta="results/{model}/cc_tuning/{method}/{matrix}/provenance.json",
    log:
        "logs/transform/{model}/{method}/{matrix}.log",
    benchmark:
        "logs/transform/{model}/{method}/{matrix}.benchmark.tsv"
    wildcard_constraints:
        method="|".join(map(re.escape, MATRIX_VARIANTS)) or "none",
        matrix="|".join(re.escape(v) for vs in MATRIX_VARIANTS.values() for v in vs)
        or "none",
