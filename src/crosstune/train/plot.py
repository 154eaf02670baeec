"""The loss curve of a training run as a PNG, with a panel per group of method metrics.

Panels (each only when the run logged its values):

* loss: training loss (and the held-out ``eval_loss``, ``train.eval_fraction``),
  learning rate on a second axis;
* rewards (CLO, sft_dpo): TRL's ``rewards/chosen``, ``rewards/rejected``,
  ``rewards/margins``, with ``rewards/accuracies`` on a second axis;
* loss terms (CLO, sft_dpo): ``nll_loss`` and ``dpo_loss``;
* layer choice (cc_tuning): the share of rows whose connection took each layer,
  per logging step (``layer_choice/<layer>``), as a heat map.

Held-out values (``eval_<name>``) are dashed, in the colour of their training line.
"""

from __future__ import annotations

import os
import re

from ..io import atomic_path

REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/margins")
TERMS = ("nll_loss", "dpo_loss")
LAYER = re.compile(r"layer_choice/(\d+)$")


def lines(ax, curve: list[dict], eval_curve: list[dict], names, first_colour: int = 0) -> None:
    """Plot ``names`` from both curves on ``ax``: training solid, held-out (``eval_<name>``) dashed."""
    for i, name in enumerate(names):
        for points, key, style in ((curve, name, "-"), (eval_curve, f"eval_{name}", "--")):
            pts = [e for e in points if key in e]
            if pts:
                ax.plot([e["step"] for e in pts], [e[key] for e in pts], linestyle=style, label=key,
                        marker="o" if len(pts) < 30 else None, color=f"C{first_colour + i}")  # fmt: skip


def loss_curve(curve: list[dict], path: str | os.PathLike, title: str = "",
               eval_curve: list[dict] | None = None) -> None:  # fmt: skip
    """Plot training loss (learning rate on a second axis) and the method metrics against the optimiser step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    eval_curve = eval_curve or []
    keys = {k for e in curve for k in e}
    layers = sorted({int(m.group(1)) for k in keys if (m := LAYER.match(k))})
    panels = ["loss"] + [name for name, group in (("rewards", REWARDS), ("terms", TERMS)) if keys & set(group)]
    panels += ["layers"] if layers else []
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 3.5 * len(panels)), dpi=120, sharex=True, squeeze=False)
    axes = dict(zip(panels, axes[:, 0], strict=True))

    ax = axes["loss"]
    lines(ax, curve, eval_curve, ["loss"])
    ax.set_ylabel("loss (response tokens)")
    if eval_curve:
        ax.legend(loc="upper right", fontsize="small")
    if curve and "learning_rate" in curve[0]:
        lr = ax.twinx()
        lr.plot([e["step"] for e in curve], [e.get("learning_rate") for e in curve], color="C1", alpha=0.6,
                linestyle=":")  # fmt: skip
        lr.set_ylabel("learning rate", color="C1")
    ax.set_title(title)
    if "rewards" in panels:
        ax = axes["rewards"]
        lines(ax, curve, eval_curve, [k for k in REWARDS if k in keys], first_colour=2)
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_ylabel("reward (beta x log-ratio)")
        ax.legend(loc="upper left", fontsize="small")
        acc = ax.twinx()
        lines(acc, curve, eval_curve, ["rewards/accuracies"], first_colour=5)
        acc.set_ylim(-0.05, 1.05)
        acc.set_ylabel("rewards/accuracies", color="C5")
    if "terms" in panels:
        ax = axes["terms"]
        lines(ax, curve, eval_curve, [k for k in TERMS if k in keys], first_colour=6)
        ax.set_ylabel("loss terms")
        ax.legend(loc="upper right", fontsize="small")
    if layers:
        ax = axes["layers"]
        steps = [e["step"] for e in curve]
        share = [[e.get(f"layer_choice/{i}", 0.0) for e in curve] for i in range(layers[-1] + 1)]
        image = ax.imshow(share, aspect="auto", origin="lower", cmap="viridis", vmin=0, interpolation="nearest",
                          extent=(min(steps) - 0.5, max(steps) + 0.5, -0.5, layers[-1] + 0.5))  # fmt: skip
        ax.set_ylabel("chosen layer")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        # the colour bar inside the panel's figure space: every panel keeps the same width (shared steps)
        fig.colorbar(image, cax=ax.inset_axes((1.02, 0, 0.03, 1)), label="share of rows")
    for ax in axes.values():
        ax.grid(alpha=0.3)
    axes[panels[-1]].set_xlabel("optimiser step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
