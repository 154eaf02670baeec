"""GPU rehearsal of the paper recipe: config/paper/llama-3.1-8b.yaml with only the model size,
the data size, the step counts and the device counts shrunk (SHRUNK below; a test diffs the
rehearsal config against the recipe and fails on any other difference), run end to end by
Snakemake on one machine: every method trains, activations, transform, generate with both
decoders (exact, then padded), score, aggregate. Prints per stage the jobs, their time (from
each rule's `benchmark:` file), peak RSS and peak GPU memory (the jobs' "peak GPU memory" log
line, crosstune.workflow.log_peak_gpu_memory).

    python benchmarks/gpu_rehearsal.py                         # one GPU: Llama-3-8B layer shapes, 2 layers, bf16
    python benchmarks/gpu_rehearsal.py --shape tiny --cores 2  # CPU: the tiny shape (tests/test_gpu_rehearsal.py)
    python benchmarks/gpu_rehearsal.py --zero3                 # also sft once more, through `accelerate launch`
                                                               # with DeepSpeed ZeRO-3 (zero3.yaml) on 1 process
    python benchmarks/gpu_rehearsal.py --print-config          # the rehearsal config, nothing run

On one GPU the recipe's 8-process ZeRO-3 training becomes one in-process job (train.num_processes
1: crosstune.train.launch runs it without accelerate, so without DeepSpeed); --zero3 adds the
ZeRO-3 path as its own stage. No downloads: a random-weight model (models.*.source: tiny), the
bundled seed data and its human translations, the bundled mini benchmarks.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from crosstune.workflow import PEAK_GPU  # noqa: E402

RECIPE = REPO / "config" / "paper" / "llama-3.1-8b.yaml"
MODEL = "llama-3.1-8b"  # the recipe's model name, kept: the paths are the recipe's
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

# Llama-3-8B's layer shapes (hidden 4096, 32 heads, 8 KV heads, MLP 14336) with 2 of its 32 layers;
# the vocabulary is the BPE trained on the bundled seed texts, which stops at ~10.5k tokens of
# the 128,256 asked (so embedding and LM head are ~12x smaller than Llama-3's).
SHAPES = {
    "gpu": dict(hidden_size=4096, num_layers=2, num_heads=32, num_kv_heads=8, intermediate_size=14336, vocab_size=128256),
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128, vocab_size=1024),
}
SEED_LANGUAGES = ["en", "ar", "hi", "sw", "zh", "ru"]  # the bundled seed data and its human translations
BENCHMARKS = ["xnli", "xstorycloze", "mmmlu", "xquad", "mkqa", "xlsum"]
GPU_RULES = ["translate", "train", "activations", "generate"]  # the recipe's rules with gpu >= 1


def shrunk(shape: str) -> list[tuple[tuple, object]]:
    """The keys (paths into the recipe) the rehearsal changes, and their values. Nothing else differs."""
    gpu = shape == "gpu"
    keys = [
        # model size: the real architecture, random weights, fewer layers (no download)
        (("models", MODEL, "source"), {"type": "tiny", "family": "llama", **SHAPES[shape]}),
        # data size: the bundled seed data (60 English pairs, human translations into 5 languages)
        # instead of Aya (hub) and NLLB; so the seed's languages instead of the 22
        (("languages",), SEED_LANGUAGES),
        (("data", "sources"), [{"name": "seed", "type": "seed"}]),
        (("translate", "engine"), "human:crosstune-seed"),
        (("translate", "memory_only"), True),
        # benchmarks: the bundled mini sets (8-9 items a language) instead of the hub's; on the GPU two
        # of the six (multiple choice with log-likelihoods, extractive QA with long contexts), one on the CPU
        *((("benchmarks", b, "source"), "bundled") for b in BENCHMARKS),
        (("benchmarks", "run"), ["xnli", "xquad"] if gpu else ["xnli"]),
        # evaluated rows: base, the baseline and cc_tuning (all three inference modes); every method trains
        (("evaluation", "methods"), ["base", "sft", "cc_tuning"]),
        # step counts
        (("train", "epochs"), None),
        (("train", "max_steps"), 10 if gpu else 3),
        (("train", "logging_steps"), 1),  # the recipe's 10 would leave a 3-step run without a loss point
        (("cc_tuning", "n_pairs"), 300 if gpu else 40),  # 300: every non-English seed pair
        # device counts: one GPU (the recipe: 8 processes), or none on the CPU
        (("train", "num_processes"), 1),
        (("resources", "train", "gpu"), 1 if gpu else 0),
    ]
    if not gpu:  # the CPU: no GPUs, no bf16 training (transformers refuses it there), 8 decoded tokens not 40
        keys += [(("resources", rule, "gpu"), 0) for rule in GPU_RULES if rule != "train"]
        keys += [(("train", "bf16"), False), (("evaluation", "generation", "max_new_tokens"), 8)]
    return keys


def rehearsal_config(shape: str) -> dict:
    """The recipe with the shrunk keys set; a shrunk key the recipe lacks is an error (it would add, not shrink)."""
    cfg = copy.deepcopy(yaml.safe_load(RECIPE.read_text(encoding="utf-8")))
    for path, value in shrunk(shape):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        if path[-1] not in node:
            raise KeyError(f"{RECIPE.name} has no key {'.'.join(path)}: SHRUNK is out of date")
        node[path[-1]] = copy.deepcopy(value)
    return cfg


def snakemake(workdir: Path, configs: list[Path], cores: int, gpus: int, log: Path) -> float:
    """One Snakemake run of the default target; returns its wall time."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(cores), "--resources", f"gpu={gpus}",
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", *map(str, configs)]  # fmt: skip
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"snakemake failed ({done.returncode}); the last lines of {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-40:]))  # fmt: skip
    return time.perf_counter() - start


def peak_gpu_mib(log: Path) -> float | None:
    """The job's peak allocated GPU memory from its log (None: it never used CUDA)."""
    pattern = re.escape(PEAK_GPU).replace(r"\{allocated:\.0f\}", r"(?P<a>[\d.]+)").replace(r"\{reserved:\.0f\}", r"[\d.]+")
    found = re.findall(pattern, log.read_text(errors="replace")) if log.is_file() else []
    return max(map(float, found)) if found else None


def stage_rows(workdir: Path, since: float, label: str = "") -> list[dict]:
    """One row per rule from the benchmark files written since ``since``: jobs, summed and longest
    job seconds, peak RSS, peak GPU memory (the log beside each benchmark file)."""
    rows: dict[str, dict] = {}
    for tsv in sorted((workdir / "logs").rglob("*.benchmark.tsv")):
        if tsv.stat().st_mtime < since:
            continue
        rule = tsv.relative_to(workdir / "logs").parts[0].removesuffix(".benchmark.tsv")
        with tsv.open() as f:
            rec = next(csv.DictReader(f, delimiter="\t"))
        row = rows.setdefault(rule, {"stage": rule + label, "jobs": 0, "sum_s": 0.0, "max_s": 0.0,
                                     "max_rss_mb": 0.0, "gpu_mib": None})  # fmt: skip
        seconds, rss = float(rec["s"]), float(rec["max_rss"]) if rec["max_rss"] != "NA" else 0.0
        row["jobs"] += 1
        row["sum_s"] += seconds
        row["max_s"] = max(row["max_s"], seconds)
        row["max_rss_mb"] = max(row["max_rss_mb"], rss)
        gpu = peak_gpu_mib(tsv.with_name(tsv.name.removesuffix(".benchmark.tsv") + ".log"))
        if gpu is not None:
            row["gpu_mib"] = max(row["gpu_mib"] or 0.0, gpu)
    order = ["base_model", "source_data", "translate", "pairs", "benchmark_data", "train", "activations",
             "transform", "generate", "score", "aggregate"]  # fmt: skip
    return sorted(rows.values(), key=lambda r: (order.index(r["stage"].split(" ")[0]) if r["stage"].split(" ")[0] in order else 99))


def train_zero3(cfg: dict, workdir: Path) -> dict:
    """The `--zero3` stage: method sft once more, as the recipe trains it (accelerate launch with
    train.accelerate_config, DeepSpeed ZeRO-3), on one process; needs `pip install deepspeed` and a GPU."""
    from snakemake.utils import validate

    from crosstune.train.launch import accelerate_command
    from crosstune.train.settings import resolve

    cfg = copy.deepcopy(cfg)
    validate(cfg, str(REPO / "workflow/schemas/config.schema.yaml"), set_default=True)
    settings = resolve(cfg, "sft")
    out = workdir / "results" / MODEL / "zero3" / "sft"
    out.mkdir(parents=True, exist_ok=True)
    job = {"model_dir": str(workdir / "resources/models" / MODEL), "pairs": str(workdir / f"results/{MODEL}/pairs/pairs.jsonl"),
           "output": str(out / "model"), "checkpoint_dir": str(out / "checkpoints"), "settings": settings,
           "seed": cfg["seed"], "metrics": str(out / "metrics.json"), "plot": str(out / "loss.png"), "config": cfg}  # fmt: skip
    job_file = out / "job.json"
    job_file.write_text(json.dumps(job))
    log = workdir / "logs" / "zero3-sft.log"
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(accelerate_command(job_file, settings), cwd=workdir, stdout=f, stderr=subprocess.STDOUT,
                              env={**ENV, "PYTHONPATH": str(REPO / "src")})  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ZeRO-3 training failed ({done.returncode}); see {log}")
    return {"stage": "train sft (ZeRO-3, accelerate, 1 process)", "jobs": 1, "sum_s": seconds, "max_s": seconds,
            "max_rss_mb": None, "gpu_mib": peak_gpu_mib(log)}  # fmt: skip


def table(rows: list[dict]) -> str:
    def cell(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = ["| stage | jobs | job s (sum) | longest job s | max RSS MB | peak GPU MiB |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['jobs']} | {r['sum_s']:.1f} | {r['max_s']:.1f} | "
                     f"{cell(r['max_rss_mb'], '.0f')} | {cell(r['gpu_mib'], '.0f')} |")  # fmt: skip
    return "\n".join(lines)


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"CPU, {os.cpu_count()} cores (torch {torch.__version__})"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="gpu", help="gpu: Llama-3-8B layers on one GPU; tiny: CPU")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--workdir", type=Path, help="run directory (default: a new temporary one, kept)")
    ap.add_argument("--zero3", action="store_true", help="also train sft through accelerate + DeepSpeed ZeRO-3, 1 process")
    ap.add_argument("--print-config", action="store_true", help="print the rehearsal config and exit")
    ap.add_argument("--json", type=Path, help="also write the result (passes, rows) here")
    args = ap.parse_args(argv)

    cfg = rehearsal_config(args.shape)
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False))
        return {}
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="rehearsal-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "rehearsal.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    padded = workdir / "padded.yaml"  # the second decoder: generate (and what follows) rerun with it
    padded.write_text(yaml.safe_dump({"evaluation": {"generation": {"decoder": "padded"}}}))
    gpus = 1 if args.shape == "gpu" else 0

    start = time.time()
    wall = {"exact": snakemake(workdir, [config], args.cores, gpus, workdir / "snakemake-exact.log")}
    rows = stage_rows(workdir, start)
    start = time.time()
    wall["padded"] = snakemake(workdir, [config, padded], args.cores, gpus, workdir / "snakemake-padded.log")
    rows += stage_rows(workdir, start, label=" [padded]")
    if args.zero3:
        rows.append(train_zero3(cfg, workdir))
    total = sum(wall.values()) + sum(r["sum_s"] for r in rows if "ZeRO-3" in r["stage"])

    print(f"GPU rehearsal, shape {args.shape} ({', '.join(f'{k} {v}' for k, v in SHAPES[args.shape].items())}), "
          f"{device()}, --cores {args.cores}; run directory {workdir}")  # fmt: skip
    print(table(rows))
    print(f"wall: {wall['exact']:.0f} s (every stage, decoder exact) + {wall['padded']:.0f} s (generate, score, "
          f"aggregate with decoder padded) = {total:.0f} s" + (" (target on one H100: 480 s)" if args.shape == "gpu" else ""))  # fmt: skip
    result = {"shape": args.shape, "device": device(), "wall_s": wall, "total_s": total, "rows": rows, "workdir": str(workdir)}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
