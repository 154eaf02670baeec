"""HTML pages of the pipeline's tables for ``snakemake --report``.

Snakemake's report shows HTML pages and images inline and offers every other
file (Markdown, TSV, JSON) only as a download, so each table that belongs in
the report is also written as a small self-contained HTML page: the Markdown
tables of rule aggregate rendered by markdown-it-py, the TSV and JSON
statistics of rules pairs and transform by pandas.
"""

from __future__ import annotations

import html
import json
import os

import pandas as pd
from markdown_it import MarkdownIt

from .io import atomic_path

STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; }
th { background: #f2f2f2; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td:first-child { text-align: left; }
"""


def page(title: str, body: str) -> str:
    """A complete HTML document (UTF-8, the style inline: the report embeds it as it is)."""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")  # fmt: skip


def markdown_page(text: str, title: str) -> str:
    """Markdown with GitHub-style tables (the form aggregate writes) as an HTML page."""
    return page(title, MarkdownIt("commonmark").enable("table").render(text))


def frame_page(frame: pd.DataFrame, title: str, note: str = "") -> str:
    """A table as an HTML page under a heading and an optional note."""
    body = f"<h1>{html.escape(title)}</h1>\n"
    if note:
        body += f"<p>{html.escape(note)}</p>\n"
    return page(title, body + frame.to_html(index=False, na_rep="–", float_format="{:.4g}".format))


def pairs_stats_page(stats_tsv: str | os.PathLike, model: str) -> str:
    """Rule pairs' ``stats.tsv`` (per-language record counts and token lengths) as a page."""
    frame = pd.read_csv(stats_tsv, sep="\t", keep_default_na=False)
    return frame_page(frame, f"{model}: training pairs per language",
                      "Records kept after deduplication and the length filter (pairs.min_tokens, "
                      "pairs.max_tokens), counted in the base model's tokens with its chat template.")  # fmt: skip


def fit_page(fit_json: str | os.PathLike, model: str, method: str) -> str:
    """Rule transform's ``fit.json`` as a page: per matrix (``all``, or one per language) and
    layer, the relative residual ||S_l X - T_l|| / ||T_l|| beside the identity map's (X = I)."""
    with open(fit_json, encoding="utf-8") as f:
        fit = json.load(f)
    frames = []
    for key, m in fit["matrices"].items():
        layers = range(len(m["relative_residual"]))
        frames.append(pd.DataFrame({"matrix": key, "layer": layers, "relative residual": m["relative_residual"],
                                    "identity's": m["relative_residual_identity"]}))  # fmt: skip
        frames.append(pd.DataFrame({"matrix": [key], "layer": ["all"], "relative residual": [m["relative_residual_all"]],
                                    "identity's": [m["relative_residual_identity_all"]]}))  # fmt: skip
    note = (f"{fit['pairs']} prompt pairs ({', '.join(f'{k} {v}' for k, v in fit['languages'].items())}), "
            f"{fit['num_layers']} layers, d = {fit['hidden_size']}, ridge {fit['ridge']}, solver {fit['driver']}.")
    return frame_page(pd.concat(frames, ignore_index=True), f"{model} / {method}: Transform Matrix fit", note)


def write_page(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
