"""Rule translate: records of one target language with their English counterparts."""

import logging
from pathlib import Path

from crosstune import translate
from crosstune.data.sources import SEED_ENGINE, seed_translations
from crosstune.io import read_jsonl, write_jsonl
from crosstune.provenance import write_provenance
from crosstune.workflow import log_to, use_job_gpus

log_to(snakemake.log[0])
use_job_gpus(snakemake)  # this job's GPUs (resources: gpu) as CUDA_VISIBLE_DEVICES
p = snakemake.params
lang = snakemake.wildcards.lang

memory = translate.TranslationMemory(snakemake.config["translate"]["memory"])
memory.import_entries(SEED_ENGINE, seed_translations())  # the bundled human translations
backend = translate.make_backend(
    p.engine, p.memory_only, batch_size=p.batch_size, max_new_tokens=p.max_new_tokens,
    num_beams=p.num_beams, device=snakemake.config["translate"]["device"],
)  # fmt: skip
records = read_jsonl(snakemake.input.records)
out = translate.translate_records(
    records, lang, backend, memory, p.fields, p.fields_to_en, snakemake.config["translate"]["shard_size"]
)
logging.info("%s: %d records", lang, len(out))
write_jsonl(snakemake.output.records, out)
write_provenance(
    Path(snakemake.output.meta).parent, config=snakemake.config, seed=snakemake.config["seed"],
    stage="translate", extra={"lang": lang, "engine": p.engine, "records": len(out)},
)  # fmt: skip
