"""Rule study: a study's long table and its curves (crosstune.evaluate.study does the work)."""

import logging
from pathlib import Path

from crosstune.evaluate import aggregate as agg
from crosstune.evaluate import study
from crosstune.io import atomic_path
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p, inp, out = snakemake.params, snakemake.input, snakemake.output
jobs = [{**job, "metrics": m, "replicates": r, "provenance": meta}
        for job, m, r, meta in zip(p.jobs, inp.metrics, inp.replicates, inp.meta, strict=True)]  # fmt: skip
scores, reps = agg.load_scores(jobs, p.confidence)
table = study.study_table(snakemake.wildcards.study, p.rows, scores, reps, p.seed, p.confidence)
with atomic_path(out.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
with atomic_path(out.curves, directory=True) as tmp:
    for model in sorted({j["model"] for j in p.jobs}):
        for benchmark in dict.fromkeys(j["benchmark"] for j in p.jobs):
            study.curve(table, model, benchmark, Path(tmp) / f"{model}_{benchmark}.png")
logging.info("%d rows over %d score jobs", len(table), len(jobs))
