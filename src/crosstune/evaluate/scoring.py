"""The score stage: per-item scores, per-language metrics with bootstrap intervals, consistency.

Metrics (all fractions in [0, 1]) by task:

* multiple_choice (XNLI, XStoryCloze, MMMLU): ``accuracy`` of the generated
  answer (:mod:`.extract`; no answer = wrong), ``no_answer`` (share of outputs
  matching no option), and from the option log-likelihoods lm-evaluation-harness's
  ``acc_ll`` (argmax of the summed log-likelihood), ``acc_norm_ll`` (divided by
  the continuation's length in characters - lm-eval's ``acc_norm``) and
  ``acc_bytes_ll`` (divided by its UTF-8 length - lm-eval's ``acc_bytes``);
* extractive_qa / open_qa (XQuAD, MKQA): ``accuracy`` (a gold answer occurs in
  the normalised output), ``exact_match``, ``f1`` (:func:`.metrics.qa_scores`;
  punctuation deleted as SQuAD/MLQA do, or made a space: ``evaluation.qa_normalize``);
* summarisation (XL-Sum): ``rouge_l`` (mean per-summary F) and ``chrf``
  (sacrebleu corpus chrF, its signature in the score stage's provenance);
* every task: ``fidelity``, the share of outputs py3langid identifies as the
  prompt's language (outputs with too few letters to identify are left out: n
  counts the rest).

Language ``avg`` is the unweighted mean over the benchmark's languages (the
papers' "Avg" column). Language ``all`` holds ``consistency_k`` and ``ac3_k``
for parallel benchmarks (:mod:`.consistency`), over the items present in every
language. Each value has a percentile-bootstrap interval; the replicates are
returned so the aggregate stage can pair methods (:mod:`.bootstrap`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import warnings
from collections import defaultdict

import numpy as np

from ..io import atomic_path, write_jsonl
from . import bootstrap as bs
from . import metrics as M
from .consistency import ac3, item_consistency
from .extract import extract_choice
from .text import tokens

log = logging.getLogger(__name__)

QA_TASKS = ("extractive_qa", "open_qa")
PRIMARY = {"multiple_choice": "accuracy", "extractive_qa": "accuracy", "open_qa": "accuracy",
           "summarisation": "rouge_l"}  # fmt: skip


def _golds(item: dict) -> list[str]:
    answer = item["answer"]
    return [a for a in ([answer] if isinstance(answer, str) else answer) if a.strip()]


def score_item(item: dict, pred: dict, lang: str, langid: dict, qa_normalize: str) -> dict:
    """Every per-item score of one prediction (NaN where a score does not apply)."""
    out, task = pred["output"], item["task"]
    row = {"id": item["id"], "index": item["index"], "lang": lang, "task": task, "output": out}
    found = M.identify(out, M.langid_candidates(langid["candidates"]), langid["min_letters"])
    row["identified_lang"] = found
    row["fidelity"] = float("nan") if found is None else float(found == lang)
    if task == "multiple_choice":
        choice = extract_choice(out, item["options"])
        row.update(choice=choice, accuracy=float(choice == str(item["answer"])), no_answer=float(choice is None))
        lls = pred.get("option_loglik")
        if lls:
            labels = [str(o["label"]) for o in item["options"]]
            conts = [str(o["text"]) for o in item["options"]] if pred.get("continuation", "text") == "text" else labels
            lls = np.asarray(lls, dtype=float)
            chars = np.array([len(c) for c in conts], dtype=float)
            nbytes = np.array([len(c.encode("utf-8")) for c in conts], dtype=float)
            gold = labels.index(str(item["answer"]))
            row["choice_ll"] = labels[int(np.argmax(lls))]
            row["acc_ll"] = float(np.argmax(lls) == gold)
            row["acc_norm_ll"] = float(np.argmax(lls / chars) == gold)
            row["acc_bytes_ll"] = float(np.argmax(lls / nbytes) == gold)
    elif task in QA_TASKS:
        row.update(M.qa_scores(out, _golds(item), lang, qa_normalize))
        # the answer compared across languages by the consistency score
        row["choice"] = "<gold>" if row["accuracy"] else (" ".join(tokens(out, lang, punctuation=qa_normalize)) or None)
    else:
        row["rouge_l"] = M.rouge_l(out, item["answer"], lang)
    return row


def _order_hash(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def _mean_nan(values: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if len(values) else float("nan")


def score_benchmark(benchmark: str, items: dict[str, list[dict]], preds: dict[str, list[dict]],
                    settings: dict) -> tuple[list[dict], list[dict], dict[str, np.ndarray], dict]:  # fmt: skip
    """(item rows, metric rows, bootstrap replicates by "language|metric", info) of one benchmark."""
    boot = settings["bootstrap"]
    samples, seed, conf = boot["samples"], boot["seed"], boot["confidence"]
    rows, metric_rows, reps, info = [], [], {}, {"order": {}}
    per_lang = defaultdict(dict)  # metric -> lang -> replicates

    def add(language: str, metric: str, value: float, r: np.ndarray, n: int):
        lo, hi = bs.interval(r, conf)
        metric_rows.append({"benchmark": benchmark, "language": language, "metric": metric,
                            "value": value, "ci_low": lo, "ci_high": hi, "n": n})  # fmt: skip
        reps[f"{language}|{metric}"] = r

    tasks = {it["task"] for its in items.values() for it in its}
    if len(tasks) != 1:
        raise ValueError(f"benchmark {benchmark}: items of several tasks {sorted(tasks)}")
    task = tasks.pop()
    for lang, its in items.items():
        lang_rows = [score_item(it, p, lang, settings["langid"], settings["qa_normalize"]) for it, p in zip(its, preds[lang], strict=True)]
        rows += lang_rows
        info["order"][lang] = _order_hash([r["id"] for r in lang_rows])
        idx = bs.resample_indices(len(lang_rows), samples, seed, benchmark, lang)
        names = [m for m in ("accuracy", "no_answer", "acc_ll", "acc_norm_ll", "acc_bytes_ll",
                             "exact_match", "f1", "rouge_l", "fidelity") if m in lang_rows[0]]  # fmt: skip
        for metric in names:
            values = np.array([r.get(metric, np.nan) for r in lang_rows], dtype=float)
            r = bs.replicates(values, idx)
            n = int((~np.isnan(values)).sum())
            add(lang, metric, _mean_nan(values), r, n)
            per_lang[metric][lang] = (r, n)
        if task == "summarisation":
            stats = M.chrf_statistics([r["output"] for r in lang_rows], [it["answer"] for it in its])
            for r, s in zip(lang_rows, stats, strict=True):
                r["chrf"] = M.chrf_from_statistics(s[None])  # sentence chrF, for reading
            r = bs.replicates(stats, idx, M.chrf_from_statistics)
            add(lang, "chrf", M.chrf_from_statistics(stats), r, len(lang_rows))
            per_lang["chrf"][lang] = (r, len(lang_rows))
    # unweighted mean over languages, replicate by replicate
    for metric, by_lang in per_lang.items():
        values = [v["value"] for v in metric_rows if v["metric"] == metric and v["language"] in by_lang]
        stacked = np.vstack([r for r, _ in by_lang.values()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            add("avg", metric, _mean_nan(np.array(values)), np.nanmean(stacked, axis=0),
                sum(n for _, n in by_lang.values()))
    if task != "summarisation" and len(items) >= 2:
        _consistency(benchmark, rows, list(items), settings, add)
    info["task"] = task
    info["chrf_signature"] = M.chrf_signature() if task == "summarisation" else None
    return rows, metric_rows, reps, info


def _consistency(benchmark: str, rows: list[dict], langs: list[str], settings: dict, add) -> None:
    """consistency_k and ac3_k over the items (by index) present in every language."""
    by_index = defaultdict(dict)
    for r in rows:
        by_index[r["index"]][r["lang"]] = r
    shared = sorted(i for i, d in by_index.items() if len(d) == len(langs))
    if len(shared) < len(by_index):
        log.warning("%s: consistency over the %d of %d items present in every language",
                    benchmark, len(shared), len(by_index))  # fmt: skip
    if not shared:
        return
    boot = settings["bootstrap"]
    idx = bs.resample_indices(len(shared), boot["samples"], boot["seed"], benchmark, "all")
    acc = np.array([np.mean([by_index[i][lang]["accuracy"] for lang in langs]) for i in shared])
    acc_reps = bs.replicates(acc, idx)
    for k in settings["consistency"]["k"]:
        if k > len(langs):
            log.warning("%s: consistency_%d needs %d languages, the benchmark has %d", benchmark, k, k, len(langs))
            continue
        cons = np.array([item_consistency([by_index[i][lang]["choice"] for lang in langs], k) for i in shared])
        cons_reps = bs.replicates(cons, idx)
        add("all", f"consistency_{k}", float(cons.mean()), cons_reps, len(shared))
        ac3_reps = np.array([ac3(a, c) for a, c in zip(acc_reps, cons_reps, strict=True)])
        add("all", f"ac3_{k}", ac3(float(acc.mean()), float(cons.mean())), ac3_reps, len(shared))


def write_scores(item_path, metrics_path, replicates_path, rows: list[dict], metrics: list[dict],
                 reps: dict[str, np.ndarray]) -> None:  # fmt: skip
    """Per-item scores (JSON Lines), the metric table (TSV) and the replicates (npz), each atomically."""
    write_jsonl(item_path, rows)
    with atomic_path(metrics_path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(metrics[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(metrics)
    with atomic_path(replicates_path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **reps)
