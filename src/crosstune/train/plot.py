"""The loss curve of a training run as a PNG."""

from __future__ import annotations

import os

from ..io import atomic_path


def loss_curve(curve: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Plot training loss (and learning rate on a second axis) against the optimiser step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    steps = [e["step"] for e in curve]
    ax.plot(steps, [e["loss"] for e in curve], marker="o" if len(curve) < 30 else None, color="C0", label="loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss (response tokens)")
    ax.grid(alpha=0.3)
    if curve and "learning_rate" in curve[0]:
        lr = ax.twinx()
        lr.plot(steps, [e.get("learning_rate") for e in curve], color="C1", alpha=0.6, linestyle="--")
        lr.set_ylabel("learning rate", color="C1")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
