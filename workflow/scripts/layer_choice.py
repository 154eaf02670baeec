"""Rule layer_choice: the Decision Maker's chosen layers of every connected cc_tuning row, as a table and plots."""

import logging
from pathlib import Path

from crosstune import report
from crosstune.evaluate import layers
from crosstune.io import atomic_path
from crosstune.provenance import write_provenance
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p, inp, out = snakemake.params, snakemake.input, snakemake.output
jobs = []
for job, predictions, model_dir in zip(p.jobs, inp.predictions, p.model_dirs, strict=True):
    assert f"/{job['model']}/eval/{job['method']}/{job['benchmark']}/" in predictions, (job, predictions)
    jobs.append({**job, "predictions": predictions, "num_layers": layers.num_layers(model_dir)})
table = layers.layer_counts(jobs)
with atomic_path(out.table) as tmp:
    table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
text = layers.layers_markdown(table)
with atomic_path(out.markdown) as tmp:
    tmp.write_text(text + "\n", encoding="utf-8")
report.write_page(out.html, report.markdown_page(text, "layer choice"))
for path in out.figures:
    with atomic_path(path) as tmp:
        layers.layers_figure(table, Path(path).parent.name, tmp)
write_provenance(
    Path(out.meta).parent, config=snakemake.config, seed=snakemake.config["seed"], stage="layer_choice",
    extra={"predictions": list(inp.predictions)}, filename=Path(out.meta).name,
)  # fmt: skip
logging.info("%d predictions' layer choices, %d (row, benchmark) jobs", int(table["count"].sum()), len(jobs))
