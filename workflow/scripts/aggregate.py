"""Rule aggregate: the long table, paired gains over the baseline, wide tables, English retention, plots."""

import logging
from pathlib import Path

from crosstune import report
from crosstune.evaluate import aggregate as agg
from crosstune.io import atomic_path
from crosstune.provenance import write_provenance
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
markdown = {path: agg.benchmark_markdown(table, gains, Path(path).stem, p.methods, p.benchmarks[Path(path).stem],
                                        p.baseline, p.confidence) for path in out.tables}  # fmt: skip
markdown[out.retention] = agg.retention_markdown(table, reps, p.methods, list(p.benchmarks), p.confidence)
for (path, text), page in zip(markdown.items(), [*out.tables_html, out.retention_html], strict=True):
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    report.write_page(page, report.markdown_page(text, Path(path).stem))
for heat, gain in zip(out.heatmaps, out.gain_charts, strict=True):
    model, benchmark = Path(heat).parent.name, Path(heat).name.removesuffix("_heatmap.png")
    with atomic_path(heat) as tmp:
        agg.heatmap(table, model, benchmark, p.methods, p.benchmarks[benchmark], tmp)
    with atomic_path(gain) as tmp:
        agg.gain_chart(gains, table, model, benchmark, p.methods, p.benchmarks[benchmark], p.baseline, tmp)
write_provenance(
    Path(out.meta).parent, config=snakemake.config, seed=snakemake.config["seed"], stage="aggregate",
    extra={"score_provenance": list(inp.meta),
           "baseline": p.baseline, "confidence": p.confidence},
)  # fmt: skip
logging.info("%d scores, %d gains over %s", len(table), len(gains), p.baseline)
