"""Models that travel: a trained model's card, and its upload to the Hugging Face Hub.

* :func:`model_card` - the Hub's model-card format (``huggingface_hub.ModelCard``: YAML front
  matter from ``ModelCardData``, a Markdown body from ``data/model_card.md``): base model and its
  licence, method and settings, data composition, training metrics, the model's evaluation rows,
  the crosstune commit and library versions. Rule ``model_card`` writes it *beside* the model
  directory (``results/<model>/train/<method>/model_card.md``), so the model stays byte-identical
  and nothing downstream reruns when the scores change.
* :func:`push` - ``HfApi.create_repo`` + ``upload_folder`` of a folder assembled from the model
  directory, the card (as ``README.md``) and, for cc_tuning, the Transform Matrix; rule
  ``push_to_hub`` (``storage.push_to_hub``) calls it and writes a flag file.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from .config import ConfigError, looks_local

log = logging.getLogger(__name__)

CARD_TEMPLATE = Path(__file__).parent / "data" / "model_card.md"
# data.sources types read from the hub (datasets.load_dataset); seed and jsonl are local
HUB_SOURCE_TYPES = ("aya", "alpaca", "platypus", "oasst")
# the licence a card states when the base model's cannot be read: the Hub's "other" + a name
UNKNOWN_LICENSE = {"license": "other", "license_name": "unknown"}
# files of the cc_tuning pipeline pushed beside the model (rule transform's outputs)
CC_FILES = ("transform.safetensors", "fit.json")


# ------------------------------------------------------------------ the base model
def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _card_license(readme: Path) -> dict | None:
    from huggingface_hub import ModelCard

    data = ModelCard.load(readme, ignore_metadata_errors=True).data
    if not data.license:
        return None
    return {k: v for k, v in (("license", data.license), ("license_name", data.license_name),
                              ("license_link", data.license_link)) if v}  # fmt: skip


def _gguf_facts(gguf: Path) -> dict:
    """general.license of a GGUF file, and the hub id ``<general.organization>/<file stem>``
    (``HuggingFaceTB/SmolLM2-135M-Instruct`` for the default's ``SmolLM2-135M-Instruct.Q4_1.gguf``)."""
    from gguf import GGUFReader

    fields = GGUFReader(gguf).fields

    def value(key):
        return fields[key].contents() if key in fields else None

    facts = {}
    if value("general.license"):
        facts["license"] = {"license": value("general.license")}
    if value("general.organization"):
        facts["base_model"] = f"{value('general.organization')}/{gguf.name.split('.')[0]}"
    return facts


def base_model_facts(base_dir: str | Path) -> dict:
    """What a card says about the base model of ``base_dir`` (rule base_model's output):
    {"base_model": hub id or None, "license": {license, license_name?, license_link?},
    "license_from": where the licence was read, "source": models.<m>.source}.

    The licence comes from the base model's own card (README.md in the directory, or for a
    hub source the card at the recorded commit, read from the local cache or the hub), from a
    GGUF file's ``general.license``, else it is unknown (tiny random models: "other").
    """
    base_dir = Path(base_dir)
    prov = _read_json(base_dir / "provenance.json")
    source, info = prov.get("source", {}), prov.get("info", {})
    facts = {"base_model": None, "license": None, "license_from": None, "source": source}
    if source.get("type") == "hub":
        facts["base_model"] = source["id"]
    readme = base_dir / "README.md"
    if readme.exists():
        facts.update(license=_card_license(readme), license_from=str(readme))
    elif source.get("type") == "hub":
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
        )

        try:
            path = hf_hub_download(source["id"], "README.md", revision=info.get("revision") or source.get("revision"))
            facts.update(license=_card_license(Path(path)), license_from=f"{source['id']} README.md")
        except (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError) as e:
            log.warning("%s: could not read the card of %s (%s); licence unknown", base_dir, source["id"], e)
    elif source.get("type") == "pypi_gguf" and info.get("gguf") and Path(info["gguf"]).exists():
        facts.update(_gguf_facts(Path(info["gguf"])), license_from=f"{Path(info['gguf']).name} (GGUF metadata)")
    if not facts["license"]:
        facts.update(license=dict(UNKNOWN_LICENSE), license_from=None)
    return facts


def hub_datasets(sources: list[dict]) -> list[str]:
    """The data.sources read from the hub by id (not a local directory in the hub's schema)."""
    return sorted({s["path"] for s in sources if s.get("type") in HUB_SOURCE_TYPES and s.get("path")
                   and not looks_local(s["path"])})  # fmt: skip


# ------------------------------------------------------------------ the card
def _markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def composition_table(metrics: dict) -> str:
    """kind x language counts of metrics.json's ``composition``, with each kind's distinct examples."""
    comp, distinct = metrics.get("composition", {}), metrics.get("distinct_examples", {})
    langs = sorted({lang for counts in comp.values() for lang in counts})
    rows = [[f"`{kind}`", *(counts.get(lang, 0) for lang in langs), sum(counts.values()), distinct.get(kind, "–")]
            for kind, counts in comp.items()]  # fmt: skip
    return _markdown_table(["kind", *langs, "total", "distinct"], rows)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def training_rows(metrics: dict) -> list[tuple[str, str]]:
    params = metrics.get("parameters") or {}
    rows = [("steps", metrics.get("steps")), ("epochs", metrics.get("epochs")),
            ("sequences", metrics.get("sequences")), ("tokens", metrics.get("tokens")),
            ("train_loss (whole run)", metrics.get("train_loss")), ("final logged loss", metrics.get("final_loss")),
            ("trainable / total parameters", f"{params.get('trainable')} / {params.get('total')}" if params else None),
            ("processes", metrics.get("num_processes")), ("started from", metrics.get("start_model"))]  # fmt: skip
    return [(name, _fmt(v)) for name, v in rows if v is not None]


def evaluation_markdown(scores: str | Path | None, gains: str | Path | None, model: str, method: str,
                        baseline: str) -> str:  # fmt: skip
    """This model's rows of the aggregate tables (rule aggregate's scores.tsv and gains.tsv): per benchmark
    the primary metric, languages + Avg (non-en) + En, x 100; a cc_tuning method has one row per mode."""
    if not scores or not Path(scores).exists():
        return "Not evaluated (no `evaluation` of this method in the run that wrote this card)."
    import pandas as pd

    from .evaluate import aggregate as agg

    table = pd.read_csv(scores, sep="\t", keep_default_na=False, na_values=[""])
    rows = table[(table.model == model) & ((table.method == method) | table.method.str.startswith(f"{method}@"))]
    if rows.empty:
        return f"Not evaluated (`{method}` is not among `evaluation.methods`)."
    gain_table = pd.read_csv(gains, sep="\t") if gains and Path(gains).exists() else rows.iloc[:0].assign(gain=0.0)
    methods = list(dict.fromkeys(rows.method))
    parts = [f"From the pipeline's evaluation (`results/eval/scores.tsv`): values x 100; ↑ / ↓ mark a gain over "
             f"`{baseline}` whose 95% paired-bootstrap interval excludes zero."]  # fmt: skip
    for benchmark in dict.fromkeys(rows.benchmark):
        metric = agg.primary_metric(set(rows[rows.benchmark == benchmark].metric))
        parts.append(f"**{benchmark}** ({agg.METRIC_NAMES.get(metric, metric)})\n\n"
                     + agg.wide_table(rows, gain_table, model, benchmark, metric, methods, []))  # fmt: skip
    return "\n\n".join(parts)


def model_card(*, model: str, method: str, metrics: dict, provenance: dict, base: dict, languages: list[str],
               datasets: list[str], evaluation: str, sources: list[str], repo_id: str | None = None,
               has_transform: bool = False):  # fmt: skip
    """The card (``huggingface_hub.ModelCard``) of one trained model; ``str(card)`` is the README.md text."""
    from huggingface_hub import ModelCard, ModelCardData

    settings = provenance.get("settings", {})
    method_type = metrics.get("type") or settings.get("type") or method
    tags = list(dict.fromkeys(["crosstune", method_type, *(["cc-tuning"] if method_type == "cc_tuning" else [])]))
    data = ModelCardData(base_model=base["base_model"], library_name="transformers", pipeline_tag="text-generation",
                         language=sorted(languages), tags=tags, datasets=datasets or None, **base["license"])  # fmt: skip
    license_text = base["license"].get("license_name") if base["license"]["license"] == "other" else None
    license_text = license_text or base["license"]["license"]
    if base["license_from"]:
        license_text += f", from {base['license_from']}"
    source = base.get("source") or {}
    base_text = f"`{base['base_model']}`" if base["base_model"] else f"a {source.get('type', 'local')} model"
    if source.get("type") == "tiny":
        base_text = f"a tiny random {source.get('family')} model (tests the machinery, learns nothing)"
    versions = provenance.get("versions") or {}
    return ModelCard.from_template(
        data, template_path=str(CARD_TEMPLATE), title=repo_id or f"{model} / {method}", method=method,
        method_type=method_type, base_text=base_text, license_text=license_text, languages=sorted(languages),
        cc_tuning=method_type == "cc_tuning", has_transform=has_transform,
        load_path=repo_id or f"results/{model}/train/{method}/model",
        transform_path="transform.safetensors" if repo_id else f"results/{model}/cc_tuning/{method}/transform.safetensors",
        settings_yaml=yaml.safe_dump(settings, sort_keys=True, allow_unicode=True),
        examples=metrics.get("examples"), composition_table=composition_table(metrics),
        sources_text=", ".join(sources) or "-", training=training_rows(metrics), evaluation=evaluation,
        git_commit=provenance.get("git_commit"), created=provenance.get("created"), seed=provenance.get("seed"),
        versions=", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v),
    )  # fmt: skip


# ------------------------------------------------------------------ the upload
REPO_NAME = re.compile(r"[^\w.-]+")


def repo_id(prefix: str, model: str, method: str) -> str:
    """``<repo_prefix><model>-<method>``: e.g. ``me/crosstune-`` + ``smollm2-135m-cc_tuning``; characters
    the Hub refuses in names (``+``, ``@``...) become ``-``."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    namespace, _, name = prefix.rpartition("/")
    rid = f"{namespace}/{REPO_NAME.sub('-', name + model + '-' + method)}" if namespace else ""
    try:
        validate_repo_id(rid)
    except HFValidationError as e:
        raise ConfigError(f"storage.push_to_hub.repo_prefix: {prefix!r} gives repo id {rid!r}: {e}") from None
    return rid


def check_token() -> None:
    """storage.push_to_hub needs a token (``hf auth login`` or $HF_TOKEN): checked before any job runs."""
    from huggingface_hub import get_token

    if not get_token():
        raise ConfigError("storage.push_to_hub is set but no Hugging Face token was found: run `hf auth login` "
                          "or set HF_TOKEN (a token with write access), or set storage.push_to_hub: null")  # fmt: skip


def push(repo: str, files: Mapping[str, str | Path], *, private: bool = True, commit_message: str) -> dict:
    """Create ``repo`` (if needed) and upload ``files`` ({path in repo: local file}) in one commit with
    ``HfApi.upload_folder``; returns what the flag file records."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
    with tempfile.TemporaryDirectory(prefix="crosstune-push-") as tmp:
        for name, path in files.items():  # the folder upload_folder sends: links, nothing copied
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(Path(path).resolve())
        commit = api.upload_folder(repo_id=repo, folder_path=tmp, commit_message=commit_message)
    return {"repo_id": repo, "url": str(url), "private": private, "commit": commit.oid,
            "commit_url": commit.commit_url, "files": sorted(files)}  # fmt: skip


def model_files(model_dir: str | Path) -> dict[str, Path]:
    """Every file of a trained model directory, by its path inside it (adapter/ included)."""
    model_dir = Path(model_dir)
    return {p.relative_to(model_dir).as_posix(): p for p in sorted(model_dir.rglob("*")) if p.is_file()}
