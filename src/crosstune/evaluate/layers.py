"""Layer-choice analysis: which layer CC-Tuning's Decision Maker picked, per language and benchmark.

Every prediction of a cc_tuning row decoded with a connection (modes ``matrix``
and ``oracle``) records ``layer``: the decoder layer (0-based) whose FFN output
at p the Decision Maker chose for that prompt. This module counts them:

* long table (``layers.tsv``): model, method (the row, e.g. ``cc_tuning@matrix``),
  benchmark, language, layer, count, share - every layer of the model, chosen or
  not, so the shares of one (model, row, benchmark, language) sum to 1;
* Markdown (``tables/layers.md``): per model and row, one line per benchmark and
  language: n, the most chosen layer and its share, the mean layer, the share of
  every layer (x 100);
* a figure per model: one heatmap per row, (benchmark, language) x layer, colour
  the share of predictions choosing that layer.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import DataError, read_jsonl

COLUMNS = ["model", "method", "benchmark", "language", "layer", "count", "share"]


def num_layers(model_dir: str | Path) -> int:
    """Decoder layers of a saved model (``num_hidden_layers`` of its config.json)."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    if "num_hidden_layers" not in config:
        raise DataError(f"{path}: no num_hidden_layers")
    return int(config["num_hidden_layers"])


def layer_counts(jobs: list[dict]) -> pd.DataFrame:
    """The long table from jobs ``{model, method, benchmark, predictions (a directory), num_layers}``."""
    rows = []
    for job in jobs:
        files = sorted(Path(job["predictions"]).glob("*.jsonl"))
        if not files:
            raise DataError(f"{job['predictions']}: no predictions")
        for path in files:
            counts: Counter = Counter()
            for i, record in enumerate(read_jsonl(path), 1):
                layer = record.get("layer")
                if not isinstance(layer, int) or not 0 <= layer < job["num_layers"]:
                    raise DataError(f"{path} line {i}: layer {layer!r} is not one of the model's "
                                    f"{job['num_layers']} layers (a prediction without a connection?)")  # fmt: skip
                counts[layer] += 1
            n = sum(counts.values())
            for layer in range(job["num_layers"]):
                rows.append({"model": job["model"], "method": job["method"], "benchmark": job["benchmark"],
                             "language": path.stem, "layer": layer, "count": counts[layer],
                             "share": counts[layer] / n if n else float("nan")})  # fmt: skip
    return pd.DataFrame(rows, columns=COLUMNS)


def _groups(table: pd.DataFrame, model: str):
    """(row, [(benchmark, language, per-layer counts)]) of one model, in table order."""
    sub = table[table.model == model]
    for method in dict.fromkeys(sub.method):
        m = sub[sub.method == method]
        keys = list(dict.fromkeys(zip(m.benchmark, m.language, strict=True)))
        yield method, [(b, lang, m[(m.benchmark == b) & (m.language == lang)].sort_values("layer")["count"].to_numpy())
                       for b, lang in keys]  # fmt: skip


def layers_markdown(table: pd.DataFrame) -> str:
    """The Markdown report: one table per model and row (see the module docstring)."""
    out = ["# Layer choice of the Decision Maker", "",
           "Share of the predictions (x 100) whose connection took each decoder layer's FFN output "
           "(0-based); mode: the most chosen layer; mean: the mean chosen layer.", ""]  # fmt: skip
    for model in dict.fromkeys(table.model):
        for method, groups in _groups(table, model):
            layers = len(groups[0][2])
            out += [f"## {model} - {method}", "",
                    "| Benchmark | Language | n | mode | mean | " + " | ".join(f"L{i}" for i in range(layers)) + " |",
                    "|---|---|---:|---:|---:|" + "---:|" * layers]  # fmt: skip
            for benchmark, lang, counts in groups:
                n = int(counts.sum())
                shares = counts / n
                mean = float((np.arange(layers) * shares).sum())
                cells = [f"{100 * s:.0f}" for s in shares]
                out.append(f"| {benchmark} | {lang} | {n} | L{int(counts.argmax())} ({100 * shares.max():.0f}) | "
                           f"{mean:.1f} | " + " | ".join(cells) + " |")  # fmt: skip
            out.append("")
    return "\n".join(out).rstrip()


def layers_figure(table: pd.DataFrame, model: str, path: str | Path) -> None:
    """One heatmap per row of ``model``: (benchmark/language) x layer, colour = share of predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(_groups(table, model))
    if not panels:
        raise DataError(f"no layer choices of model {model!r}")
    height = max(len(g) for _, g in panels)
    layers = len(panels[0][1][0][2])
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(1.5 + (1.5 + 0.25 * layers) * len(panels), 1.2 + 0.3 * height))  # fmt: skip
    for ax, (method, groups) in zip(axes[0], panels, strict=True):
        data = np.stack([c / c.sum() for _, _, c in groups])
        im = ax.imshow(data, cmap="magma", aspect="auto", vmin=0, vmax=1)
        ax.set_yticks(range(len(groups)), [f"{b}/{lang}" for b, lang, _ in groups], fontsize=7)
        ax.set_xticks(range(layers), [str(i) if layers <= 16 or i % 4 == 0 else "" for i in range(layers)])
        ax.set_xlabel("layer (0-based)")
        ax.set_title(f"{model} - {method}", fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, label="share of predictions")
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
