"""Rule model_card: the Hub model card of one trained model, beside its directory (crosstune.hub)."""

import json
from pathlib import Path

from crosstune import hub
from crosstune.io import atomic_path
from crosstune.workflow import log_to

log_to(snakemake.log[0])
p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
metrics = json.loads(Path(inp.metrics).read_text(encoding="utf-8"))
provenance = json.loads((Path(inp.model) / "provenance.json").read_text(encoding="utf-8"))
card = hub.model_card(
    model=wc.model, method=wc.method, metrics=metrics, provenance=provenance,
    base=hub.base_model_facts(inp.base),
    languages=sorted({lang for counts in metrics["composition"].values() for lang in counts}),
    datasets=hub.hub_datasets(p.sources), sources=[f"{s['name']} ({s['type']})" for s in p.sources],
    evaluation=hub.evaluation_markdown(inp.get("scores"), inp.get("gains"), wc.model, wc.method, p.baseline),
    repo_id=p.repo_id, has_transform=p.repo_id is not None,
)  # fmt: skip
with atomic_path(snakemake.output[0]) as tmp:
    card.save(tmp)
