# Training: one job per (model, method) on the one training engine (crosstune.train).
# Methods are the entries of config["methods"]; each job's params are the method's
# resolved settings, so changing a setting reruns exactly the affected trainings.

import crosstune.train.settings

crosstune.train.settings.check(config, workflow.basedir)

TRAIN_METHODS = sorted(config["methods"])


if res("train", "gpu") not in (0, config["train"]["num_processes"]):
    raise crosstune.config.ConfigError(
        f"resources.train.gpu: {res('train', 'gpu')} differs from train.num_processes "
        f"({config['train']['num_processes']}); a training job uses one GPU per process: "
        "set resources.train.gpu to 0 (CPU) or to train.num_processes"
    )


wildcard_constraints:
    method="|".join(map(re.escape, TRAIN_METHODS)) or "none",


rule train:
    input:
        # the base model, or for a method with init_from (sft_dpo) that method's trained model,
        # which is then also the reference of its preference loss
        model=lambda wc: (
            f"results/{wc.model}/train/{source}/model"
            if (source := crosstune.train.settings.init_from(config, wc.method))
            else model_dir(wc.model)
        ),
        pairs="results/{model}/pairs/pairs.jsonl",
    output:
        # storage.protect_models: read-only once trained (paper recipes: GPU-days each)
        model=keep_model(directory("results/{model}/train/{method}/model")),
        metrics="results/{model}/train/{method}/metrics.json",
        loss=report(
            "results/{model}/train/{method}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            subcategory="{model}",
            labels={"model": "{model}", "method": "{method}", "figure": "loss curve"},
        ),
    log:
        "logs/train/{model}/{method}.log",
    benchmark:
        "logs/train/{model}/{method}.benchmark.tsv"
    conda:
        "../../envs/train.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
        gpu=lambda wc: train_gpus(wc.method),
    params:
        code=code("train.py"),
        # what can change the weights; the script resolves the full settings (with
        # save_steps, logging_steps...) from the config, so those rerun nothing
        settings=lambda wc: crosstune.train.settings.weight_settings(config, wc.method),
        # cc_tuning only: the base model's connection position (None leaves other methods alone)
        connection_position=lambda wc: (
            connection_position(wc.model)
            if config["methods"][wc.method]["type"] == "cc_tuning"
            else None
        ),
        # the method's train.seed (a study's seeds:), else the global seed
        seed=lambda wc: crosstune.train.settings.resolve(config, wc.method)[
            "train"
        ].get("seed", config["seed"]),
        # the resume source: not an output, so a failed job leaves it for the rerun
        checkpoints=lambda wc: f"results/{wc.model}/train/{wc.method}/checkpoints",
    script:
        "../scripts/train.py"


rule train_all:
    input:
        expand(rules.train.output.metrics, model=MODELS, method=TRAIN_METHODS),
