"""Rule push_to_hub: upload one trained model, its card and (cc_tuning) its Transform Matrix (crosstune.hub)."""

import logging

from crosstune import hub
from crosstune.io import atomic_path, write_json
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
files = {**hub.model_files(inp.model), "README.md": inp.card}
files.update({name: inp[key] for key, name in zip(("transform", "fit"), hub.CC_FILES, strict=True) if key in inp.keys()})
record = hub.push(p.repo_id, files, private=p.private, commit_message=f"crosstune: {wc.model} / {wc.method}")
logging.info("pushed %d files to %s: %s", len(files), record["repo_id"], record["commit_url"])
with atomic_path(snakemake.output[0]) as tmp:
    write_json(tmp, record)
