"""The benchmarks as lm-evaluation-harness tasks (``crosstune export-lm-eval DIR``).

For each benchmark, ``DIR/<benchmark>/`` holds, in lm-eval's own layout:

* ``_template_yaml``: the shared task settings - the item's prompt (rendered by
  crosstune from ``templates/<benchmark>.yaml``, so it is the paper's prompt
  word for word), greedy decoding of at most ``evaluation.generation.max_new_tokens``
  tokens, stopping only at EOS as rule ``generate`` does, and the scoring;
* ``crosstune_<benchmark>_<lang>.yaml``: one task per language, ``include:`` of
  the template, reading ``data/<lang>.jsonl`` (the crosstune items, as rule
  ``benchmark_data`` writes them) with ``dataset_path: json``;
* ``_crosstune_<benchmark>.yaml``: the group ``crosstune_<benchmark>``, whose
  score is the unweighted mean over languages (the paper's "Avg");
* for the multiple-choice benchmarks also ``crosstune_<benchmark>_ll``: the options
  ranked by log-likelihood (lm-eval's ``acc``, ``acc_norm``, ``acc_bytes``; crosstune's
  ``acc_ll``, ``acc_norm_ll``, ``acc_bytes_ll``);
* ``utils.py``: the hooks below, so lm-eval scores with crosstune's own answer
  extraction and QA/summary metrics.

``DIR/_crosstune.yaml`` is the group ``crosstune`` of every exported benchmark.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..io import atomic_path, write_jsonl
from . import BENCHMARKS, build_items, check_config, load_template

TAG = "crosstune"
# lm-eval metric names (as the literature names them) per crosstune task type
METRICS = {
    "multiple_choice": ("acc", "no_answer"),  # acc: the paper's accuracy of the generated answer
    "extractive_qa": (
        "acc",
        "exact_match",
        "f1",
    ),  # acc: a gold answer occurs in the output (the paper's)
    "open_qa": ("acc", "exact_match", "f1"),
    "summarisation": ("rougeL", "chrf"),
}
LOWER_IS_BETTER = {"no_answer"}
LL_METRICS = ("acc", "acc_norm", "acc_bytes")  # lm-eval's built-in multiple-choice metrics


# --------------------------------------------------------------------------- hooks (DIR/*/utils.py)
def doc_to_choice(doc: dict) -> list[str]:
    """The options' texts: what crosstune's likelihood scoring continues the prompt with (continuation: text)."""
    return [o["text"] for o in doc["options"]]


def doc_to_target(doc: dict) -> int:
    return [str(o["label"]) for o in doc["options"]].index(str(doc["answer"]))


def process_results(doc: dict, results: list[str]) -> dict:
    """Score one generated output as crosstune's score stage does (:func:`crosstune.evaluate.scoring.score_item`)."""
    from ..evaluate import metrics as M
    from ..evaluate.extract import extract_choice

    output, task = results[0], doc["task"]
    if task == "multiple_choice":
        choice = extract_choice(output, doc["options"])
        return {"acc": float(choice == str(doc["answer"])), "no_answer": float(choice is None)}
    if task in ("extractive_qa", "open_qa"):
        golds = [doc["answer"]] if isinstance(doc["answer"], str) else list(doc["answer"])
        s = M.qa_scores(output, [g for g in golds if g.strip()], doc["lang"], doc["qa_normalize"])
        return {"acc": s["accuracy"], "exact_match": s["exact_match"], "f1": s["f1"]}
    # chrf: lm-eval's corpus-level aggregation (sacrebleu's defaults, as crosstune's; scale 0-100)
    return {
        "rougeL": M.rouge_l(output, doc["answer"], doc["lang"]),
        "chrf": (doc["answer"], output),
    }


UTILS = '''"""Hooks of the crosstune tasks (written by `crosstune export-lm-eval`): crosstune scores the outputs."""

from crosstune.benchmarks.lmeval import doc_to_choice, doc_to_target, process_results  # noqa: F401
'''


# --------------------------------------------------------------------------- export
class Function(str):
    """A ``!function utils.name`` value of an lm-eval YAML file."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(Function, lambda d, v: d.represent_scalar("!function", str(v)))


def _dump(obj: dict) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _metric(name: str, aggregation: str = "mean") -> dict:
    return {
        "metric": name,
        "aggregation": aggregation,
        "higher_is_better": name not in LOWER_IS_BETTER,
    }


def template_config(benchmark: str, max_new_tokens: int, loglik: bool = False) -> dict:
    """The shared ``_template_yaml`` (``loglik``: the multiple-choice log-likelihood variant)."""
    t = load_template(benchmark)
    common = {
        "dataset_path": "json",
        "test_split": "test",
        "doc_to_text": "prompt",  # the rendered prompt, verbatim (lm-eval reads a doc field by name)
    }
    meta = {"version": 1.0, "crosstune_template": f"crosstune/benchmarks/templates/{benchmark}.yaml",
            "prompt": "the paper's; use --apply_chat_template as crosstune's evaluation does"}  # fmt: skip
    if loglik:
        return {**common, "output_type": "multiple_choice",
                "doc_to_choice": Function("utils.doc_to_choice"), "doc_to_target": Function("utils.doc_to_target"),
                "target_delimiter": "",  # crosstune scores the option text right after the prompt
                "metric_list": [_metric(m) for m in LL_METRICS], "metadata": meta}  # fmt: skip
    metrics = [_metric(m, "chrf" if m == "chrf" else "mean") for m in METRICS[t.task]]
    return {**common, "output_type": "generate_until", "doc_to_target": "answer",
            # the paper's decoding: greedy, at most max_new_tokens, stopped by EOS only ([] -> lm-eval adds EOS)
            "generation_kwargs": {"until": [], "do_sample": False, "temperature": 0.0,
                                  "max_gen_toks": max_new_tokens},
            "process_results": Function("utils.process_results"), "metric_list": metrics,
            "metadata": meta}  # fmt: skip


def task_name(benchmark: str, lang: str | None = None, loglik: bool = False) -> str:
    name = f"{TAG}_{benchmark}" + ("_ll" if loglik else "")
    return f"{name}_{lang}" if lang else name


def _group_config(benchmark: str, langs: list[str], loglik: bool) -> dict:
    t = load_template(benchmark)
    metrics = LL_METRICS if loglik else METRICS[t.task]
    return {
        "group": task_name(benchmark, loglik=loglik),
        "task": [task_name(benchmark, lang, loglik) for lang in langs],
        # the paper's "Avg": every language counts the same, whatever its item count
        "aggregate_metric_list": [
            {"metric": m, "aggregation": "mean", "weight_by_size": False} for m in metrics
        ],
        "metadata": {"version": 1.0},
    }


def export_benchmark(out_dir: Path, benchmark: str, items: dict[str, list[dict]], max_new_tokens: int,
                     qa_normalize: str) -> list[str]:  # fmt: skip
    """Write ``out_dir/<benchmark>/`` for ``items`` ({lang: items}); return the groups it defines."""
    final = (out_dir / benchmark).resolve()
    t = load_template(benchmark)
    variants = [False, True] if t.task == "multiple_choice" else [False]
    with atomic_path(final, directory=True) as tmp:
        (tmp / "utils.py").write_text(UTILS, encoding="utf-8")
        for lang, its in items.items():
            docs = [
                {**it, "qa_normalize": qa_normalize} if t.task.endswith("qa") else it for it in its
            ]
            write_jsonl(tmp / "data" / f"{lang}.jsonl", docs)
        for loglik in variants:
            suffix = "_ll" if loglik else ""
            template = f"_template{suffix}_yaml"
            (tmp / template).write_text(
                _dump(template_config(benchmark, max_new_tokens, loglik)), encoding="utf-8"
            )
            for lang in items:
                # data_files must be absolute: lm-eval hands them to datasets.load_dataset, which
                # reads relative paths from the working directory, not from this file's
                task = {"include": template, "task": task_name(benchmark, lang, loglik), "task_alias": lang,
                        "dataset_kwargs": {"data_files": {"test": str(final / "data" / f"{lang}.jsonl")}}}  # fmt: skip
                (tmp / f"{task['task']}.yaml").write_text(_dump(task), encoding="utf-8")
            group = _group_config(benchmark, list(items), loglik)
            (tmp / f"_{group['group']}.yaml").write_text(_dump(group), encoding="utf-8")
    return [task_name(benchmark, loglik=v) for v in variants]


def _write_top_group(out_dir: Path) -> None:
    """``DIR/_crosstune.yaml``: the group of every benchmark exported into ``out_dir`` so far."""
    groups = [task_name(b) for b in BENCHMARKS if (out_dir / b / f"_{task_name(b)}.yaml").is_file()]
    with atomic_path(out_dir / "_crosstune.yaml") as tmp:
        tmp.write_text(
            _dump({"group": TAG, "task": groups, "metadata": {"version": 1.0}}), encoding="utf-8"
        )


def export(out_dir: str | Path, config: dict | None = None, benchmarks: list[str] | None = None,
           languages: list[str] | None = None) -> dict[str, dict[str, int]]:  # fmt: skip
    """Export benchmarks as lm-eval tasks into ``out_dir``; return {benchmark: {lang: items}}.

    ``config``: a crosstune config (its ``benchmarks`` and ``evaluation`` sections; None: the
    bundled mini sets with every language they have). ``benchmarks``/``languages`` narrow it
    (a language a benchmark lacks is left out of that benchmark, unless no benchmark has it).
    """
    from ..config import ConfigError

    config = config or {}
    section = dict(config.get("benchmarks") or {})
    if benchmarks:
        unknown = [b for b in benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ConfigError(
                f"--benchmarks: unknown {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}"
            )
        section["run"] = list(benchmarks)
    chosen = check_config({"benchmarks": section})
    if languages:
        chosen = {b: [lang for lang in langs if lang in languages] for b, langs in chosen.items()}
        missing = sorted(set(languages) - {lang for langs in chosen.values() for lang in langs})
        if missing:
            raise ConfigError(f"--languages: no exported benchmark has {', '.join(missing)} "
                              f"(benchmarks.<name>.languages in the config, or the bundled sets' languages)")  # fmt: skip
        chosen = {b: langs for b, langs in chosen.items() if langs}
    evaluation = config.get("evaluation") or {}
    max_new_tokens = (evaluation.get("generation") or {}).get(
        "max_new_tokens", 40
    )  # schema default
    qa_normalize = evaluation.get("qa_normalize", "squad")  # schema default
    out_dir = Path(out_dir)
    counts = {}
    for benchmark, langs in chosen.items():
        spec = section.get(benchmark) or {}
        items = {
            lang: build_items(benchmark, lang, spec, section.get("released_dir"))[0]
            for lang in langs
        }
        export_benchmark(out_dir, benchmark, items, max_new_tokens, qa_normalize)
        counts[benchmark] = {lang: len(its) for lang, its in items.items()}
    _write_top_group(out_dir)
    return counts
