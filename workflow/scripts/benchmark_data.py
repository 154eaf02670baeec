"""Rule benchmark_data: the items of one benchmark in one language (crosstune.benchmarks)."""

from pathlib import Path

from crosstune.workflow import log_to

log_to(snakemake.log[0])

from crosstune.benchmarks import build_items, validate_item  # noqa: E402
from crosstune.io import write_jsonl  # noqa: E402
from crosstune.provenance import write_provenance  # noqa: E402

benchmark, lang = snakemake.wildcards.benchmark, snakemake.wildcards.lang
items, info = build_items(benchmark, lang, snakemake.params.spec, snakemake.params.released_dir)
if not items:
    raise SystemExit(f"{benchmark} {lang}: no items")
for item in items:
    validate_item(item, f"{benchmark} {lang} item {item['index']}")
write_jsonl(snakemake.output.jsonl, items)
meta = Path(snakemake.output.meta)
write_provenance(
    meta.parent, config=snakemake.config, seed=info.get("seed"), stage="benchmark_data", filename=meta.name,
    extra={"benchmark": benchmark, "lang": lang, "items": len(items), "read": info},
)  # fmt: skip
