"""Rule aggregate: the long table, paired gains over the baseline, wide tables, English retention, plots."""

import logging
from pathlib import Path

from crosstune.evaluate import aggregate as agg
from crosstune.io import atomic_path
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p, inp, out = snakemake.params, snakemake.input, snakemake.output
jobs = []
for job, metrics, reps, meta in zip(p.jobs, inp.metrics, inp.replicates, inp.meta, strict=True):
    assert f"/{job['model']}/eval/{job['method']}/{job['benchmark']}/" in metrics, (job, metrics)
    jobs.append({**job, "metrics": metrics, "replicates": reps, "provenance": meta})
table, reps = agg.load_scores(jobs, p.confidence)
gains = agg.paired_gains(table, reps, p.baseline, p.confidence)

with atomic_path(out.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
with atomic_path(out.parquet) as tmp:
    table.to_parquet(tmp, index=False)
with atomic_path(out.gains) as tmp:
    gains.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
for path in out.tables:
    benchmark = Path(path).stem
    text = agg.benchmark_markdown(table, gains, benchmark, p.methods, p.benchmarks[benchmark], p.baseline,
                                  p.confidence)  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
with atomic_path(out.retention) as tmp:
    text = agg.retention_markdown(table, reps, p.methods, list(p.benchmarks), p.confidence)
    tmp.write_text(text + "\n", encoding="utf-8")
for heat, gain in zip(out.heatmaps, out.gain_charts, strict=True):
    model, benchmark = Path(heat).parent.name, Path(heat).name.removesuffix("_heatmap.png")
    with atomic_path(heat) as tmp:
        agg.heatmap(table, model, benchmark, p.methods, p.benchmarks[benchmark], tmp)
    with atomic_path(gain) as tmp:
        agg.gain_chart(gains, table, model, benchmark, p.methods, p.benchmarks[benchmark], p.baseline, tmp)
logging.info("%d scores, %d gains over %s", len(table), len(gains), p.baseline)
