"""Fault injection: kill -9 at fixed points (crosstune.faults), a full disk, a damaged checkpoint.

Each killed job leaves no output that looks complete; its rerun resumes (the log
says so) and ends byte-identical to an uninterrupted run. The README's
"Reliability" table lists these cases.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crosstune.train.engine import train

from .conftest import REPO
from .test_train_engine import Crash, base, job, pairs  # noqa: F401 (fixtures, through `inputs`)
from .test_translate import mt_dirs  # noqa: F401 (a fixture, used by name)
from .train_helpers import settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(request):
    """(base model, pairs file): the training tests' tiny model and seed pairs."""
    return request.getfixturevalue("base"), request.getfixturevalue("pairs")


def run_job(j: dict, fault: str | None = None) -> subprocess.CompletedProcess:
    """``python -m crosstune.train`` on job ``j`` in a fresh process, with ``CROSSTUNE_FAULT=fault``."""
    path = os.path.join(os.path.dirname(j["output"]), "job.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(j, f)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("CROSSTUNE_FAULT", None)
    # one thread, as the references trained in this process (conftest): with two, sft_dpo's
    # weights differ from them in the last bits (killed or not)
    env["OMP_NUM_THREADS"] = "1"
    if fault:
        env["CROSSTUNE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "crosstune.train", path], capture_output=True, text=True, env=env)


def files(model_dir) -> dict[str, bytes]:
    """The weight files of a saved model (provenance.json holds times: left out)."""
    return {p.name: p.read_bytes() for p in sorted(Path(model_dir).glob("*.safetensors"))}


SAME = ("steps", "epochs", "tokens", "train_loss", "loss_curve", "examples", "composition")


def assert_same_run(out, ref):
    assert files(os.path.join(out, "model")) == files(os.path.join(ref, "model"))
    a, b = (json.load(open(os.path.join(d, "metrics.json"))) for d in (out, ref))
    assert {k: a[k] for k in SAME} == {k: b[k] for k in SAME}


# Kill points: before the first checkpoint, right after a mid-run one, right after
# the last one, and after training with the model not yet moved into place.
TRAIN_CASES = [
    ("sft", "train.step:1", None),
    ("sft", "train.checkpoint:2", "checkpoint-2"),
    ("sft", "train.checkpoint:3", "checkpoint-3"),
    ("sft", "train.before_move", "checkpoint-3"),
    ("cc_tuning", "train.checkpoint:2", "checkpoint-2"),
    ("clo", "train.checkpoint:3", "checkpoint-3"),
    ("crossin", "train.checkpoint:2", "checkpoint-2"),
    ("sft_mt", "train.checkpoint:2", "checkpoint-2"),
    ("sft_dpo", "train.checkpoint:2", "checkpoint-2"),
]
SPECS = {"sft": {"type": "sft"}, "cc_tuning": {"type": "cc_tuning"}, "clo": {"type": "clo", "size": 2},
         "crossin": {"type": "crossin", "mode": "x2x"}, "sft_mt": {"type": "sft_mt"},
         # the reference of the preference loss is the start model (the rule passes sft's trained model)
         "sft_dpo": {"type": "sft_dpo", "size": 2, "init_from": None}}  # fmt: skip


@pytest.fixture(scope="module")
def references(tmp_path_factory, inputs):
    """Uninterrupted runs, one per method type."""
    root = tmp_path_factory.mktemp("reference")
    refs = {}
    for kind, spec in SPECS.items():
        s = settings(spec, name=kind, max_steps=3, save_steps=1, save_total_limit=2)
        train(**job(root, *inputs, s, kind))
        refs[kind] = (s, str(root / kind))
    return refs


@pytest.mark.parametrize(("kind", "fault", "resumes"), TRAIN_CASES)
def test_killed_training_resumes_to_identical_weights(tmp_path, inputs, references, kind, fault, resumes):
    s, ref = references[kind]
    j = job(tmp_path, *inputs, s)
    killed = run_job(j, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not os.path.exists(j["output"]) and not os.path.exists(j["metrics"])  # nothing looks complete
    rerun = run_job(j)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    if resumes:
        assert f"resuming {kind} from" in rerun.stderr and resumes in rerun.stderr
    else:
        assert "resuming" not in rerun.stderr
    assert json.load(open(j["metrics"]))["resumed_from"] == resumes
    assert_same_run(str(tmp_path / "run"), ref)


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_a_truncated_checkpoint_is_discarded_and_the_run_resumes_before_it(tmp_path, inputs, references, damaged,
                                                                           caplog):  # fmt: skip
    s, ref = references["sft"]
    j = job(tmp_path, *inputs, s)
    with pytest.raises(RuntimeError, match="killed"):
        train(**j, callbacks=[Crash(3)])
    path = tmp_path / "run" / "checkpoints" / "checkpoint-2" / damaged
    os.truncate(path, path.stat().st_size // 2)
    with caplog.at_level("WARNING", logger="crosstune.train.engine"):
        assert train(**j)["resumed_from"] == "checkpoint-1"
    assert f"checkpoint-2: {damaged} is damaged" in caplog.text
    assert_same_run(str(tmp_path / "run"), ref)


def test_disk_full_while_saving_a_checkpoint_is_an_error_and_the_rerun_recovers(tmp_path, inputs, references,
                                                                                monkeypatch):  # fmt: skip
    from crosstune.train.trainer import MethodTrainer

    s, ref = references["sft"]
    j = job(tmp_path, *inputs, s)
    save = MethodTrainer._save

    def full_disk(self, output_dir=None, state_dict=None):  # the write of checkpoint-2 stops half way
        save(self, output_dir, state_dict)
        if str(output_dir).endswith("checkpoint-2"):
            model = Path(output_dir) / "model.safetensors"
            os.truncate(model, model.stat().st_size // 2)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(model))

    with monkeypatch.context() as m:
        m.setattr(MethodTrainer, "_save", full_disk)
        with pytest.raises(OSError, match="No space left on device"):
            train(**j)
    assert not os.path.exists(j["output"]) and not os.path.exists(j["metrics"])
    assert train(**j)["resumed_from"] == "checkpoint-1"  # the unfinished checkpoint-2 is discarded
    assert_same_run(str(tmp_path / "run"), ref)


TRANSLATE = """
import json, logging, sys
from crosstune.mt import TransformersBackend
from crosstune.translate import TranslationMemory, translate_texts
logging.basicConfig(level=logging.INFO, force=True)
model, memory, out = sys.argv[1:4]
texts = json.loads(sys.argv[4])
backend = TransformersBackend(model, batch_size=3, max_new_tokens=6, device="cpu")
result = translate_texts(texts, "en", "fr", backend, TranslationMemory(memory), shard_size=2)
open(out + ".part", "w").write(json.dumps(result))
import os; os.replace(out + ".part", out)
"""


def test_killed_translation_resumes_from_its_memory(tmp_path, request):
    from .test_translate import TEXTS

    model = request.getfixturevalue("mt_dirs")["m2m100"]  # a tiny random M2M100 (tests/test_translate.py)
    unique = list(dict.fromkeys(t for t in TEXTS if t))
    texts = json.dumps(unique)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def translate(memory, out, fault=None):
        e = {**env, "CROSSTUNE_FAULT": fault} if fault else env
        return subprocess.run([sys.executable, "-c", TRANSLATE, str(model), str(tmp_path / memory),
                               str(tmp_path / out), texts], capture_output=True, text=True, env=e)  # fmt: skip

    killed = translate("memory.sqlite", "out.json", "translate.shard:2")  # 2 shards of 2 strings kept
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "out.json").exists()
    rerun = translate("memory.sqlite", "out.json")
    assert rerun.returncode == 0 and f"{len(unique)} strings, 4 in memory" in rerun.stderr, rerun.stderr[-2000:]
    assert translate("fresh.sqlite", "fresh.json").returncode == 0
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "fresh.json").read_bytes()


GENERATE = """
import json, logging, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
from crosstune.evaluate.predict import predict_benchmark
logging.basicConfig(level=logging.INFO, force=True)
model_dir, paths, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
settings = {"generation": {"max_new_tokens": 5, "batch_size": 2, "dtype": "float32"},
            "likelihood": {"enabled": True, "continuation": "text", "batch_size": 4}}
model, tok = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
predict_benchmark(model, tok, model_dir, "xnli", paths, out, settings, out + ".resume")
"""


def test_killed_generation_resumes_at_the_first_unfinished_language(tmp_path, tiny_model_dir):
    from .eval_items import write_items

    paths = json.dumps({k: str(v) for k, v in write_items(tmp_path, "xnli", langs=("en", "zh")).items()})
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def generate(out, fault=None):
        e = {**env, "CROSSTUNE_FAULT": fault} if fault else env
        return subprocess.run([sys.executable, "-c", GENERATE, str(tiny_model_dir("llama")), paths,
                               str(tmp_path / out)], capture_output=True, text=True, env=e)  # fmt: skip

    killed = generate("pred", "generate.language:en")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "pred").exists()  # nothing looks complete
    rerun = generate("pred")
    assert rerun.returncode == 0 and "xnli/en: resumed from" in rerun.stderr, rerun.stderr[-2000:]
    assert generate("fresh").returncode == 0
    for lang in ("en", "zh"):
        assert (tmp_path / "pred" / f"{lang}.jsonl").read_bytes() == (tmp_path / "fresh" / f"{lang}.jsonl").read_bytes()


ACTIVATIONS = """
import json, logging, sys
from crosstune.cc_tuning.stages import activations_stage
logging.basicConfig(level=logging.INFO, force=True)
model, pairs, out = sys.argv[1:4]
activations_stage(model, pairs, out, n_pairs=10, seed=3, batch_size=2, device="cpu", shard_size=4)
"""


def test_killed_activations_resume_at_the_first_unfinished_shard(tmp_path, inputs):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}

    def activations(out, fault=None):
        e = {**env, "CROSSTUNE_FAULT": fault} if fault else env
        return subprocess.run([sys.executable, "-c", ACTIVATIONS, *map(str, inputs), str(tmp_path / out)],
                              capture_output=True, text=True, env=e)  # fmt: skip

    killed = activations("acts.safetensors", "activations.shard:1")  # shard 1 of 3 (4 + 4 + 2 pairs) kept
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "acts.safetensors").exists()  # nothing looks complete
    assert sorted(p.name for p in (tmp_path / "acts.safetensors.resume").iterdir()) == ["1.key", "1.safetensors"]
    rerun = activations("acts.safetensors")
    assert rerun.returncode == 0 and "activations shard 1/3: resumed from" in rerun.stderr, rerun.stderr[-2000:]
    assert "shard 2/3: resumed" not in rerun.stderr and not (tmp_path / "acts.safetensors.resume").exists()
    assert activations("fresh.safetensors").returncode == 0
    assert (tmp_path / "acts.safetensors").read_bytes() == (tmp_path / "fresh.safetensors").read_bytes()


# score and aggregate in the workflow (one benchmark, the untrained model): the job is killed
# right after its first output is moved into place; Snakemake removes the failed job's outputs
EVAL = {
    "benchmarks": {"run": ["xnli"], "xnli": {"source": "bundled", "languages": ["en", "zh"]}},
    "evaluation": {"methods": ["base"], "baseline": "base", "generation": {"max_new_tokens": 4},
                   "bootstrap": {"samples": 50}},
}  # fmt: skip
SCORES = "results/tiny-llama/eval/base/xnli/scores"
EVAL_OUTPUTS = [f"{SCORES}/items.jsonl", f"{SCORES}/metrics.tsv", f"{SCORES}/replicates.npz", "results/eval/scores.tsv",
                "results/eval/scores.parquet", "results/eval/gains.tsv", "results/eval/tables/xnli.md",
                "results/eval/tables/retention.html"]  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from .snakemake_runner import snakemake

    workdir = tmp_path_factory.mktemp("eval")
    snakemake(workdir, "results/eval/scores.tsv", override=EVAL)
    return workdir


@pytest.mark.parametrize(("rule", "fault", "first"), [("score", "write:items.jsonl", f"{SCORES}/items.jsonl"),
                                                      ("aggregate", "write:scores.tsv", "results/eval/scores.tsv")])
def test_killed_score_and_aggregate_leave_no_output_and_rerun_to_identical_files(tmp_path, evaluated, monkeypatch,
                                                                                 rule, fault, first):  # fmt: skip

    from .snakemake_runner import snakemake

    workdir = tmp_path / "run"
    shutil.copytree(evaluated, workdir, symlinks=True)
    for gone in {"score": [SCORES, "results/eval"], "aggregate": ["results/eval"]}[rule]:
        shutil.rmtree(workdir / gone)  # the killed job and what follows it run for the first time
    with monkeypatch.context() as m:
        m.setenv("CROSSTUNE_FAULT", fault)
        killed = snakemake(workdir, "results/eval/scores.tsv", override=EVAL, check=False)
    assert killed.returncode != 0 and f"Error in rule {rule}" in killed.stderr, killed.stderr[-3000:]
    assert not (workdir / first).exists()  # it was complete when the job died: removed with the failed job
    assert not (workdir / "results/eval/scores.tsv").exists()
    rerun = snakemake(workdir, "results/eval/scores.tsv", override=EVAL)
    ran = set(re.findall(r"^(?:local)?rule (\w+):", rerun.stderr, flags=re.M))
    assert ran == {"score": {"score", "aggregate"}, "aggregate": {"aggregate"}}[rule]  # only what is missing
    for path in EVAL_OUTPUTS:
        assert (workdir / path).read_bytes() == (evaluated / path).read_bytes(), path
