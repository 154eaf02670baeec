# Helpers of the publishing rules (publish.smk): the push setting, repository ids, card inputs, targets.

import crosstune.hub

# storage.push_to_hub, or None when its repo_prefix is null (the default: no upload)
PUSH = config["storage"]["push_to_hub"]
PUSH = PUSH if PUSH["repo_prefix"] else None
if PUSH:  # a missing token stops the run here, before any job
    crosstune.hub.check_token()


def hub_repo(model, method):
    """The repository a model goes to: <repo_prefix><model>-<method>; None without push_to_hub."""
    return crosstune.hub.repo_id(PUSH["repo_prefix"], model, method) if PUSH else None


def card_scores(wildcards):
    """The aggregate tables, when the evaluation has a row of this method (else the card says so)."""
    rows = {row.partition(MODE_SEP)[0] for row in EVAL_METHODS}
    if not (EVAL_BENCHMARKS and wildcards.method in rows):
        return {}
    return {
        "scores": rules.aggregate.output.table,
        "gains": rules.aggregate.output.gains,
    }


def cc_files(wildcards):
    """A cc_tuning model travels with its Transform Matrix and its fit (rule transform)."""
    if not is_cc_tuning(wildcards.method):
        return {}
    out = rules.transform.output
    return {"transform": out.transform, "fit": out.fit}


# The default target grows by the cards, and the pushes when storage.push_to_hub is set.
_targets_before_publish = all_targets


def card_targets():
    return expand(
        "results/{model}/train/{method}/model_card.md",
        model=MODELS,
        method=TRAIN_METHODS,
    )


def all_targets():
    targets = _targets_before_publish() + card_targets()
    if PUSH:
        targets += expand(
            "results/{model}/hub/{method}.json", model=MODELS, method=TRAIN_METHODS
        )
    return targets
