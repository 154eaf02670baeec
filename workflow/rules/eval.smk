# Evaluation stages: generate -> score -> aggregate (docs/methods.md, "Evaluation").
#
#   results/{model}/eval/{method}/{benchmark}/predictions/{lang}.jsonl   (generate)
#   results/{model}/eval/{method}/{benchmark}/scores/                    (score)
#       items.jsonl (per-item scores), metrics.tsv (per language, with 95% CIs),
#       replicates.npz (bootstrap replicates), provenance.json
#   results/eval/scores.tsv|.parquet, gains.tsv, tables/{benchmark}.md|.html, provenance.json,
#   tables/retention.md|.html, figures/{model}/{benchmark}_heatmap.png|_gain.png  (aggregate)
#
# Method "base" is the untrained base model; every other method is a model
# trained by rule train (results/{model}/train/{method}/model).


include: "eval_common.smk"


# One job per (model, method, benchmark), all of the benchmark's languages in it:
# loading a model costs far more than decoding the 8-1000 prompts of one
# language, so per-language jobs (60 per model and method) would mostly load
# models. Finished languages are kept in .resume/ with a fingerprint, so a
# crashed job restarts at the first unfinished language. Batching and the dtype
# are params: in bfloat16 a batch's rows round differently from one-by-one
# decoding, and `dtype: auto` depends on the hardware (resolved when planning).
rule generate:
    input:
        model=lambda wc: eval_model_dir(wc.model, wc.method),
        base=model_dir("{model}"),
        questions=eval_items,
        transform=eval_transform,
    output:
        directory(f"{EVAL_DIR}/predictions"),
    log:
        "logs/generate/{model}/{method}/{benchmark}.log",
    benchmark:
        "logs/generate/{model}/{method}/{benchmark}.benchmark.tsv"
    wildcard_constraints:
        **EVAL_WILDCARDS,
    conda:
        "../../envs/eval.yaml"
    threads: res("generate", "threads")
    resources:
        mem_mb=res("generate", "mem_mb"),
        runtime=res("generate", "runtime"),
        gpu=res("generate", "gpu"),
    params:
        code=code("generate.py"),
        languages=lambda wc: EVAL_BENCHMARKS[wc.benchmark],
        max_new_tokens=config["evaluation"]["generation"]["max_new_tokens"],
        dtype=generate_dtype(),
        batching={
            **{
                k: config["evaluation"]["generation"][k]
                for k in ("batch_size", "max_batch_tokens", "max_padding")
            },
            "likelihood_batch_size": config["evaluation"]["likelihood"]["batch_size"],
        },
        # these two may change outputs (in bfloat16), so a change reruns the job
        decoder=config["evaluation"]["generation"]["decoder"],
        reuse_prefix=config["evaluation"]["generation"]["reuse_prefix"],
        likelihood={
            k: config["evaluation"]["likelihood"][k]
            for k in ("enabled", "continuation")
        },
        cc_tuning=lambda wc: eval_cc_tuning(wc.method, wc.model),
        # chat template or plain text (crosstune.evaluate.generation.prompt_text)
        prompt_format=lambda wc: config["models"][wc.model]["prompt_format"],
        resume_dir=f"{EVAL_DIR}/.resume",
    script:
        "../scripts/generate.py"


rule score:
    input:
        predictions=rules.generate.output[0],
        questions=eval_items,
        cues=answer_cues,
    output:
        item_scores=f"{EVAL_DIR}/scores/items.jsonl",
        metrics=f"{EVAL_DIR}/scores/metrics.tsv",
        replicates=f"{EVAL_DIR}/scores/replicates.npz",
        meta=f"{EVAL_DIR}/scores/provenance.json",
    log:
        "logs/score/{model}/{method}/{benchmark}.log",
    benchmark:
        "logs/score/{model}/{method}/{benchmark}.benchmark.tsv"
    wildcard_constraints:
        **EVAL_WILDCARDS,
    conda:
        "../../envs/eval.yaml"
    threads: res("score", "threads")
    resources:
        mem_mb=res("score", "mem_mb"),
        runtime=res("score", "runtime"),
        gpu=res("score", "gpu"),
    params:
        code=code("score.py"),
        languages=lambda wc: EVAL_BENCHMARKS[wc.benchmark],
        langid=config["evaluation"]["langid"],
        qa_normalize=qa_normalize,
        consistency=config["evaluation"]["consistency"],
        bootstrap={**config["evaluation"]["bootstrap"], "seed": eval_seed()},
    script:
        "../scripts/score.py"


AGG = "results/eval"


rule aggregate:
    input:
        metrics=score_outputs("metrics.tsv"),
        replicates=score_outputs("replicates.npz"),
        meta=score_outputs("provenance.json"),
    output:
        table=report(
            f"{AGG}/scores.tsv",
            caption="../report/scores.rst",
            category="Evaluation",
            labels={"table": "all scores (long)"},
        ),
        parquet=f"{AGG}/scores.parquet",
        gains=report(
            f"{AGG}/gains.tsv",
            caption="../report/gains.rst",
            category="Evaluation",
            labels={"table": "gains over the baseline (long)"},
        ),
        tables=[f"{AGG}/tables/{b}.md" for b in EVAL_BENCHMARKS],
        retention=f"{AGG}/tables/retention.md",
        # the same tables as HTML pages, which the report shows inline (crosstune.report)
        tables_html=[
            report(
                f"{AGG}/tables/{b}.html",
                caption="../report/table.rst",
                category="Evaluation",
                subcategory=b,
                labels={"benchmark": b, "figure": "tables"},
            )
            for b in EVAL_BENCHMARKS
        ],
        retention_html=report(
            f"{AGG}/tables/retention.html",
            caption="../report/retention.rst",
            category="Evaluation",
            labels={"table": "English retention"},
        ),
        meta=f"{AGG}/provenance.json",
        heatmaps=[
            report(
                f"{AGG}/figures/{m}/{b}_heatmap.png",
                caption="../report/heatmap.rst",
                category="Evaluation",
                subcategory=b,
                labels={"benchmark": b, "model": m, "figure": "heatmap"},
            )
            for m in MODELS
            for b in EVAL_BENCHMARKS
        ],
        gain_charts=[
            report(
                f"{AGG}/figures/{m}/{b}_gain.png",
                caption="../report/gain.rst",
                category="Evaluation",
                subcategory=b,
                labels={"benchmark": b, "model": m, "figure": "gain over baseline"},
            )
            for m in MODELS
            for b in EVAL_BENCHMARKS
        ],
    log:
        "logs/aggregate.log",
    benchmark:
        "logs/aggregate.benchmark.tsv"
    conda:
        "../../envs/eval.yaml"
    threads: res("aggregate", "threads")
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
        gpu=res("aggregate", "gpu"),
    params:
        code=code("aggregate.py"),
        jobs=EVAL_JOBS,
        methods=EVAL_METHODS,
        benchmarks=EVAL_BENCHMARKS,
        baseline=config["evaluation"]["baseline"],
        confidence=config["evaluation"]["bootstrap"]["confidence"],
    script:
        "../scripts/aggregate.py"


rule layer_choice:
    input:
        predictions=[f"{EVAL_DIR}/predictions".format(**job) for job in LAYER_JOBS],
        # the evaluated models (their config.json gives the number of layers)
        models=[eval_model_dir(job["model"], job["method"]) for job in LAYER_JOBS],
    output:
        table=report(
            f"{AGG}/layers.tsv",
            caption="../report/layers.rst",
            category="Evaluation",
            labels={"table": "layer choice (long)"},
        ),
        markdown=f"{AGG}/tables/layers.md",
        html=report(
            f"{AGG}/tables/layers.html",
            caption="../report/layers.rst",
            category="Evaluation",
            labels={"table": "layer choice"},
        ),
        meta=f"{AGG}/layers.provenance.json",
        figures=[
            report(
                f"{AGG}/figures/{m}/layers.png",
                caption="../report/layers.rst",
                category="Evaluation",
                subcategory="layer choice",
                labels={"model": m, "figure": "layer choice"},
            )
            for m in LAYER_MODELS
        ],
    log:
        "logs/layer_choice.log",
    conda:
        "../../envs/eval.yaml"
    threads: res("layer_choice", "threads")
    resources:
        mem_mb=res("layer_choice", "mem_mb"),
        runtime=res("layer_choice", "runtime"),
        gpu=res("layer_choice", "gpu"),
    params:
        code=code("layer_choice.py"),
        jobs=LAYER_JOBS,
        model_dirs=[eval_model_dir(job["model"], job["method"]) for job in LAYER_JOBS],
    script:
        "../scripts/layer_choice.py"


# ---------------------------------------------------------------- evaluate_only
# `snakemake --cores N evaluate_only`: the evaluation outputs alone (eval_targets), none of the
# default target's data-stage products. With no `methods:` (config/eval-only.yaml: any hub id,
# local or trained model directory as a `models:` entry, its row `base`) the DAG is benchmark_data,
# base_model, generate, score and aggregate; an evaluated trained method still needs its training.
rule evaluate_only:
    input:
        eval_targets(),


# ---------------------------------------------------------------- studies
# one job per study (crosstune.studies): its long table and curves
rule study:
    input:
        metrics=study_scores("metrics.tsv"),
        replicates=study_scores("replicates.npz"),
        meta=study_scores("provenance.json"),
    output:
        table=report(
            "results/studies/{study}/table.tsv",
            caption="../report/study.rst",
            category="Studies",
            subcategory="{study}",
            labels={"study": "{study}", "figure": "table (long)"},
        ),
        curves=report(
            directory("results/studies/{study}/curves"),
            patterns=["{model}_{benchmark}.png"],
            caption="../report/study.rst",
            category="Studies",
            subcategory="{study}",
            labels={"study": "{study}", "figure": "curves"},
        ),
    log:
        "logs/study/{study}.log",
    wildcard_constraints:
        study="|".join(map(re.escape, STUDIES)) or "none",
    conda:
        "../../envs/eval.yaml"
    threads: res("aggregate", "threads")
    resources:
        mem_mb=res("aggregate", "mem_mb"),
        runtime=res("aggregate", "runtime"),
        gpu=res("aggregate", "gpu"),
    params:
        code=code("study.py"),
        jobs=lambda wc: STUDY_JOBS[wc.study],
        rows=lambda wc: study_rows(wc.study),
        confidence=config["evaluation"]["bootstrap"]["confidence"],
        seed=eval_seed(),
    script:
        "../scripts/study.py"
