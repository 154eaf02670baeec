"""Rule source_data: load every configured data source into one JSONL of source records."""

from collections import Counter
from pathlib import Path

from crosstune.data import load_sources
from crosstune.io import write_jsonl
from crosstune.provenance import write_provenance
from crosstune.workflow import log_to

log_to(snakemake.log[0])

records = [r for r in load_sources(snakemake.params.sources) if r["lang"] in snakemake.params.languages]
if not records:
    raise SystemExit("data.sources: no records in the configured languages")
write_jsonl(snakemake.output.records, records)
counts = Counter(r["lang"] for r in records)
write_provenance(
    Path(snakemake.output.meta).parent, config=snakemake.config, seed=snakemake.config["seed"],
    stage="source_data", extra={"records_per_language": dict(sorted(counts.items()))},
)  # fmt: skip
