"""Rule generate: greedy outputs and option log-likelihoods for every language of a benchmark."""

import logging

from crosstune.workflow import log_to, use_job_gpus

log_to(snakemake.log[0])
use_job_gpus(snakemake)  # this job's GPUs (resources: gpu) as CUDA_VISIBLE_DEVICES, before torch

import torch  # noqa: E402

from crosstune.evaluate.connection import Connection  # noqa: E402
from crosstune.evaluate.generation import check_planned_dtype, load_model  # noqa: E402
from crosstune.evaluate.predict import predict_benchmark  # noqa: E402
from crosstune.provenance import set_seed, write_provenance  # noqa: E402

p, wc = snakemake.params, snakemake.wildcards
cfg = snakemake.config["evaluation"]
torch.set_num_threads(snakemake.threads)
b = p.batching
settings = {
    "generation": {"max_new_tokens": p.max_new_tokens, "dtype": p.dtype, "batch_size": b["batch_size"],
                   "max_batch_tokens": b["max_batch_tokens"], "max_padding": b["max_padding"],
                   "decoder": p.decoder, "reuse_prefix": p.reuse_prefix},  # fmt: skip
    "likelihood": {**p.likelihood, "batch_size": b["likelihood_batch_size"]},
    "prompt_format": p.prompt_format,  # models.<model>.prompt_format: chat template or plain text
}
set_seed(snakemake.config["seed"])  # greedy decoding draws nothing; seeded for good measure
# p.dtype is `dtype` with auto resolved when planning: this machine must resolve it alike
check_planned_dtype(cfg["generation"]["dtype"], p.dtype, cfg["generation"]["device"])
model, tokenizer = load_model(snakemake.input.model, snakemake.input.base, p.dtype, cfg["generation"]["device"],
                              prompt_format=p.prompt_format, model_name=wc.model)  # fmt: skip
logging.info("%s/%s on %s: %s on %s in %s", wc.model, wc.method, wc.benchmark, type(model).__name__, model.device,
             model.dtype)  # fmt: skip
items = dict(zip(p.languages, snakemake.input.questions, strict=True))
connection = None
if p.cc_tuning:  # CC-Tuning row in mode matrix or oracle: decode with the cross-lingual connection
    transform = snakemake.input.transform or None  # matrix mode only
    settings["cc_tuning"] = {**p.cc_tuning, "transform": transform}
    connection = Connection(model, tokenizer, snakemake.input.model, transform, p.cc_tuning["layer_choice"],
                            p.cc_tuning["tau"], snakemake.config["seed"], mode=p.cc_tuning["mode"],
                            position=p.cc_tuning["connection_position"])  # fmt: skip


def finalize(tmp, stats):
    write_provenance(
        tmp, config=snakemake.config, seed=snakemake.config["seed"], stage="generate",
        extra={"model": wc.model, "method": wc.method, "benchmark": wc.benchmark, "dtype": str(model.dtype),
               "model_dir": snakemake.input.model, "settings": settings, "languages": stats},
    )  # fmt: skip


stats = predict_benchmark(model, tokenizer, snakemake.input.model, wc.benchmark, items, snakemake.output[0],
                          settings, p.resume_dir, finalize=finalize, connection=connection)  # fmt: skip
logging.info("done: %s", stats)
