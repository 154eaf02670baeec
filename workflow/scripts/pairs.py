"""Rule pairs: deduplicated, length-filtered parallel records for every language."""

import csv
from pathlib import Path

from transformers import AutoTokenizer

from crosstune.io import atomic_path, read_jsonl, write_jsonl
from crosstune.pairs import build_pairs, english_pairs
from crosstune.provenance import write_provenance
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p = snakemake.params

tokenizer = AutoTokenizer.from_pretrained(snakemake.input.model)
records = english_pairs(read_jsonl(snakemake.input.source))
for path in snakemake.input.translated:
    records += read_jsonl(path)
pairs, stats = build_pairs(records, tokenizer, p.languages, p.min_tokens, p.max_tokens, p.dedup)

write_jsonl(snakemake.output.pairs, pairs)
with atomic_path(snakemake.output.stats) as tmp, tmp.open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(stats[0]), delimiter="\t")
    writer.writeheader()
    writer.writerows(stats)
write_provenance(
    Path(snakemake.output.meta).parent, config=snakemake.config, seed=snakemake.config["seed"],
    stage="pairs", extra={"model": snakemake.wildcards.model, "stats": stats},
)  # fmt: skip
