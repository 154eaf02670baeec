"""crosstune.report: the report's HTML pages; the loss plot's title; the heatmap's wrapped column header."""

from __future__ import annotations

import json

import torch

from crosstune import report
from crosstune.cc_tuning.transform import fit_transform
from crosstune.evaluate.aggregate import _label
from crosstune.train.data import label


def test_a_markdown_table_becomes_an_html_table():
    page = report.markdown_page("# xnli\n\n| Method | ar | Avg (non-en) |\n|---|---:|---:|\n| sft | 40.0↑ | 38.5 |\n", "x")
    assert "<table>" in page and "<td>sft</td>" in page and '<td style="text-align:right">40.0↑</td>' in page
    assert page.startswith("<!DOCTYPE html>") and 'charset="utf-8"' in page


def test_the_fit_page_lists_every_layer_beside_the_identity(tmp_path):
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(6, 3, 4, generator=g), torch.randn(6, 3, 4, generator=g)
    _, fit = fit_transform(source, target)
    (tmp_path / "fit.json").write_text(json.dumps({"pairs": 6, "languages": {"sw": 6}, **fit}))
    page = report.fit_page(tmp_path / "fit.json", "m", "cc_tuning")
    m = fit["matrices"]["all"]
    assert page.count("<tr") == 1 + 3 + 1  # header, three layers, all
    assert f"{m['relative_residual'][2]:.4g}" in page and f"{m['relative_residual_identity_all']:.4g}" in page
    assert "6 prompt pairs (sw 6), 3 layers, d = 4" in page


def test_the_pairs_page(tmp_path):
    (tmp_path / "stats.tsv").write_text("lang\tinput\tkept\tmean_tokens\nen\t60\t58\t109.6\nsw\t60\t60\t115.4\n")
    page = report.pairs_stats_page(tmp_path / "stats.tsv", "m")
    assert "<td>sw</td>" in page and "<td>115.4</td>" in page and "m: training pairs per language" in page


def test_plot_labels():
    assert label({"name": "sft", "type": "sft"}) == "sft"
    assert label({"name": "sft_lora", "type": "sft"}) == "sft_lora (sft)"  # no quotes in a figure title
    assert _label("avg_x", wrap=True) == "Avg\n(non-en)" and _label("sw", wrap=True) == "sw"
