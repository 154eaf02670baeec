"""`crosstune` console entry point and `crosstune export-lm-eval` (lm-evaluation-harness tasks)."""

import importlib
from pathlib import Path

import pytest
import yaml

from crosstune.benchmarks import BENCHMARKS, benchmark_languages, build_items
from crosstune.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_project_scripts_entry_is_importable():
    import tomllib  # Python 3.11+

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["crosstune"].partition(":")
    assert getattr(importlib.import_module(module), attr) is main


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "export-lm-eval" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # python -m crosstune.train's own help
        main(["train", "--help"])
    assert e.value.code == 0
    assert "JSON job file" in capsys.readouterr().out


def test_export_layout_and_config(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "benchmarks": {"run": ["xnli", "xquad"], "xnli": {"languages": ["en", "sw"]}},
        "evaluation": {"generation": {"max_new_tokens": 12}, "qa_normalize": "ours"},
    }))  # fmt: skip
    out = tmp_path / "tasks"
    assert main(["export-lm-eval", str(out), "--configfile", str(config)]) == 0
    template = yaml.safe_load(
        (out / "xnli" / "_template_yaml").read_text().replace("!function", "")
    )
    assert template["generation_kwargs"] == {
        "until": [],
        "do_sample": False,
        "temperature": 0.0,
        "max_gen_toks": 12,
    }
    group = yaml.safe_load((out / "xnli" / "_crosstune_xnli.yaml").read_text())
    assert group["task"] == ["crosstune_xnli_en", "crosstune_xnli_sw"]
    assert (out / "xnli" / "_crosstune_xnli_ll.yaml").is_file() and not (
        out / "xquad" / "_template_ll_yaml"
    ).exists()
    task = yaml.safe_load((out / "xquad" / "crosstune_xquad_hi.yaml").read_text())
    data = Path(task["dataset_kwargs"]["data_files"]["test"])
    assert task["include"] == "_template_yaml" and data.is_absolute() and data.is_file()
    assert '"qa_normalize": "ours"' in data.read_text(encoding="utf-8").splitlines()[0]
    top = yaml.safe_load((out / "_crosstune.yaml").read_text())
    assert top["task"] == ["crosstune_xnli", "crosstune_xquad"]
    # narrowing: languages a benchmark lacks are left out of it; one no benchmark has is an error
    assert (
        main(
            ["export-lm-eval", str(out), "--benchmarks", "mkqa", "xlsum", "--languages", "hi", "ar"]
        )
        == 0
    )
    assert sorted(p.name for p in (out / "mkqa" / "data").iterdir()) == ["ar.jsonl"]
    assert sorted(p.name for p in (out / "xlsum" / "data").iterdir()) == ["ar.jsonl", "hi.jsonl"]
    capsys.readouterr()
    assert main(["export-lm-eval", str(out), "--benchmarks", "mkqa", "--languages", "hi"]) == 2
    assert "--languages: no exported benchmark has hi" in capsys.readouterr().err


def _leaves(tasks: dict):
    for value in tasks.values():
        yield from (_leaves(value) if isinstance(value, dict) else [value])


def test_lm_eval_loads_the_same_items_and_prompts(tmp_path):
    pytest.importorskip(
        "lm_eval", reason="lm-evaluation-harness is the [dev] extra (pip install -e '.[dev]')"
    )
    from lm_eval.tasks import TaskManager, get_task_dict

    assert main(["export-lm-eval", str(tmp_path)]) == 0
    manager = TaskManager(include_path=str(tmp_path), include_defaults=False)
    groups = [f"crosstune_{b}" for b in BENCHMARKS] + ["crosstune_xnli_ll", "crosstune_xstorycloze_ll",
                                                       "crosstune_mmmlu_ll"]  # fmt: skip
    tasks = {t.config.task: t for t in _leaves(get_task_dict(groups, manager))}
    seen = 0
    for benchmark in BENCHMARKS:
        for lang in benchmark_languages(benchmark, {}):
            items = build_items(benchmark, lang, {})[0]
            names = [f"crosstune_{benchmark}_{lang}"] + (
                [f"crosstune_{benchmark}_ll_{lang}"] if items[0]["options"] else []
            )
            for name in names:
                task = tasks[name]
                docs = list(task.test_docs())
                assert len(docs) == len(items), name
                assert task.doc_to_text(docs[0]) == items[0]["prompt"], name
                seen += 1
            doc, item = docs[0], items[0]
            if item["options"]:  # the log-likelihood task: the options' texts, the gold one's index
                assert task.doc_to_choice(doc) == [o["text"] for o in item["options"]]
                assert task.doc_to_choice(doc)[task.doc_to_target(doc)] == next(
                    o["text"] for o in item["options"] if o["label"] == item["answer"])  # fmt: skip
            gen = tasks[f"crosstune_{benchmark}_{lang}"]
            assert (
                gen.config.generation_kwargs["max_gen_toks"] == 40
                and gen.config.generation_kwargs["do_sample"] is False
            )
            # crosstune's scoring through lm-eval: the gold answer as the output scores 1, a wrong one 0
            if item["task"] == "multiple_choice":
                gold_text = next(o["text"] for o in item["options"] if o["label"] == item["answer"])
                assert gen.process_results(doc, [gold_text]) == {"acc": 1.0, "no_answer": 0.0}
                assert gen.process_results(doc, ["?"])["no_answer"] == 1.0
            elif item["task"] == "summarisation":
                scores = gen.process_results(doc, [item["answer"]])
                assert scores["rougeL"] == 1.0 and scores["chrf"] == (
                    item["answer"],
                    item["answer"],
                )
            else:
                gold = item["answer"] if isinstance(item["answer"], str) else item["answer"][0]
                assert gen.process_results(doc, [gold]) == {
                    "acc": 1.0,
                    "exact_match": 1.0,
                    "f1": 1.0,
                }
                assert gen.process_results(doc, ["zzzz"])["acc"] == 0.0
    # every exported task checked: 30 languages over the six bundled sets, 16 of them multiple choice (also _ll)
    assert seen == len(tasks) == 30 + 16


def test_lm_eval_run_equals_crosstune_generation(tmp_path, tiny_model_dir):
    """lm_eval on the exported tasks decodes and scores as crosstune's generate stage (tiny random model)."""
    lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness is the [dev] extra")
    from lm_eval.tasks import TaskManager

    from crosstune.evaluate import generation as G

    model_dir, n = tiny_model_dir("llama"), 3
    assert main(["export-lm-eval", str(tmp_path), "--benchmarks", "xnli", "--languages", "en"]) == 0
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={model_dir},dtype=float32", device="cpu", batch_size=1,
        tasks=["crosstune_xnli_en", "crosstune_xnli_ll_en"], limit=n, apply_chat_template=True, log_samples=True,
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
    )  # fmt: skip
    items = build_items("xnli", "en", {})[0][:n]
    model, tok = G.load_model(model_dir, dtype="float32", device="cpu")
    chats = [G.chat_text(tok, it["prompt"]) for it in items]
    ours = G.greedy_generate(model, tok, [G.encode(tok, c) for c in chats], max_new_tokens=40)
    gen = sorted(res["samples"]["crosstune_xnli_en"], key=lambda s: s["doc_id"])
    assert [s["arguments"][0][0] for s in gen] == chats  # the same chat-templated prompt
    assert [s["resps"][0][0] for s in gen] == [
        tok.decode(t, skip_special_tokens=True) for t, _ in ours
    ]
    # the options ranked as HFLM encodes them (the prompt's trailing "\n" moved into each option)
    requests = [(c, o["text"]) for c, it in zip(chats, items, strict=True) for o in it["options"]]
    expected = G.option_logliks(model, tok, requests, move_whitespace=True)
    ll = sorted(res["samples"]["crosstune_xnli_ll_en"], key=lambda s: s["doc_id"])
    got = [r[0] for s in ll for r in s["resps"]]
    assert [g[0] for g in got] == pytest.approx([e[0] for e in expected], abs=1e-4)


def test_the_readme_export_commands_run_as_written(tmp_path, monkeypatch):
    """Every `crosstune ...` line of the README's lm-eval section runs (from the repository root,
    writing into a scratch copy of its target directory); the `lm_eval` line names tasks it wrote."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    part = text[text.index("### Exporting the benchmarks to lm-evaluation-harness\n") :]
    part = part[: part.index("\n## ")]
    lines = re.sub(r"\\\n", " ", "".join(re.findall(r"```bash\n(.*?)```", part, flags=re.S)))
    lines = [shlex.split(line.split(" #")[0]) for line in lines.splitlines() if line.strip()]
    exports = [w for w in lines if w[0] == "crosstune"]
    assert len(exports) == 2 and all(w[1] == "export-lm-eval" for w in exports)
    monkeypatch.chdir(ROOT)  # --configfile config.yaml, as a user in the checkout types it
    for words in exports:
        assert main([words[1], str(tmp_path / words[2]), *words[3:]]) == 0
    (lm_eval,) = [w for w in lines if w[0] == "lm_eval"]
    out = tmp_path / lm_eval[lm_eval.index("--include_path") + 1]
    wanted = lm_eval[lm_eval.index("--tasks") + 1].split(",")
    written = {yaml.safe_load(p.read_text().replace("!function", "")).get("group")
               for p in out.rglob("_crosstune*.yaml")}  # fmt: skip
    assert set(wanted) <= written, (wanted, written)
