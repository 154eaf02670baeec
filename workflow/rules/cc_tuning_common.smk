# Helpers of cc_tuning.smk: the cc_tuning methods, the Transform-Matrix points of matrix studies.

CC_METHODS = sorted(m for m, s in config["methods"].items() if s["type"] == "cc_tuning")
CC = config["cc_tuning"]
# the Transform-Matrix points of matrix studies (crosstune.studies), {method: {variant:
# settings}}: e.g. matrix[n_pairs=10,ridge=0] -> results/{model}/cc_tuning/{method}/matrix[...]/
MATRIX_VARIANTS = {
    m: variants
    for m, variants in crosstune.studies.matrix_variants(STUDIES, LANGS).items()
    if m in CC_METHODS
}


def matrix_setting(key):
    """cc_tuning.<key> of a job's Transform Matrix: its study point's value, else the section's."""
    return (
        lambda wc: MATRIX_VARIANTS.get(wc.method, {})
        .get(wc.get("matrix"), {})
        .get(key, CC[key])
    )


def study_n_pairs(wc):
    """[N] when a matrix study point needs more pairs than cc_tuning.n_pairs, else []: the
    extraction draws the largest N once; a smaller new point reruns nothing upstream."""
    ns = [
        s["n_pairs"]
        for s in MATRIX_VARIANTS.get(wc.method, {}).values()
        if "n_pairs" in s
    ]
    own = CC["n_pairs"]
    return [max(ns)] if ns and own is not None and max(ns) > own else []
