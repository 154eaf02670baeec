# Models that travel (crosstune/hub.py): a model card beside every trained model (rule
# model_card) and, with storage.push_to_hub, the model, its card and (cc_tuning) its
# Transform Matrix uploaded to the Hugging Face Hub (rule push_to_hub).
#
#   results/{model}/train/{method}/model_card.md   the card (README.md in the pushed repository)
#   results/{model}/hub/{method}.json              the push: repository, commit, files
#
# The card is written beside the model directory, not into it: the model stays byte-identical
# (and write-protected with storage.protect_models), and a card updated after new scores
# reruns nothing downstream. Neither output is another rule's input.


include: "publish_common.smk"


rule model_card:
    input:
        unpack(card_scores),
        model=rules.train.output.model,
        metrics=rules.train.output.metrics,
        base=model_dir("{model}"),
        # the card's Markdown body (crosstune/data/model_card.md)
        template=str(crosstune.hub.CARD_TEMPLATE),
    output:
        "results/{model}/train/{method}/model_card.md",
    log:
        "logs/model_card/{model}/{method}.log",
    conda:
        "../../envs/eval.yaml"
    threads: res("model_card", "threads")
    resources:
        mem_mb=res("model_card", "mem_mb"),
        runtime=res("model_card", "runtime"),
        gpu=res("model_card", "gpu"),
    params:
        code=code("model_card.py"),
        repo_id=lambda wc: hub_repo(wc.model, wc.method),
        # the card's `datasets:` (hub ids only) and the data sources it names
        sources=config["data"]["sources"],
        baseline=config["evaluation"]["baseline"],
    script:
        "../scripts/model_card.py"


rule push_to_hub:
    input:
        unpack(cc_files),
        model=rules.train.output.model,
        card=rules.model_card.output[0],
    output:
        "results/{model}/hub/{method}.json",
    log:
        "logs/push_to_hub/{model}/{method}.log",
    conda:
        "../../envs/eval.yaml"
    threads: res("push_to_hub", "threads")
    resources:
        mem_mb=res("push_to_hub", "mem_mb"),
        runtime=res("push_to_hub", "runtime"),
        gpu=res("push_to_hub", "gpu"),
    params:
        code=code("push_to_hub.py"),
        repo_id=lambda wc: hub_repo(wc.model, wc.method),
        private=PUSH["private"] if PUSH else None,
    script:
        "../scripts/push_to_hub.py"


rule model_cards:
    input:
        card_targets(),
