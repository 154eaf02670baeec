"""Rule score: per-item scores, per-language metrics with bootstrap intervals, consistency."""

import logging
from pathlib import Path

from crosstune.evaluate.items import read_items, read_predictions
from crosstune.evaluate.scoring import score_benchmark, write_scores
from crosstune.provenance import write_provenance
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p, wc, out = snakemake.params, snakemake.wildcards, snakemake.output
settings = {"langid": p.langid, "qa_normalize": p.qa_normalize, "consistency": p.consistency, "bootstrap": p.bootstrap}
items, preds = {}, {}
for lang, path in zip(p.languages, snakemake.input.questions, strict=True):
    items[lang] = read_items(path, wc.benchmark, lang)
    preds[lang] = read_predictions(Path(snakemake.input.predictions) / f"{lang}.jsonl", items[lang], wc.benchmark, lang)
rows, metrics, reps, info = score_benchmark(wc.benchmark, items, preds, settings)

write_scores(out.item_scores, out.metrics, out.replicates, rows, metrics, reps)
write_provenance(
    Path(out.meta).parent, config=snakemake.config, seed=p.bootstrap["seed"], stage="score",
    extra={"model": wc.model, "method": wc.method, "benchmark": wc.benchmark, "score": info, "settings": settings},
)  # fmt: skip
logging.info("%d items, %d metric rows", len(rows), len(metrics))
