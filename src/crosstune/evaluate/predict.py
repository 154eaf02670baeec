"""The generate stage: predictions (and option likelihoods) for every language of a benchmark.

One call loads nothing: the caller loads the model once and passes it in, and
:func:`predict_benchmark` runs every language with it. Each finished language
is kept in a resume directory with a fingerprint of everything that determines
it (settings, items file, model files), so a crashed job restarts at the first
unfinished language; the complete set is moved into the output directory at
the end and the resume directory removed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..io import atomic_path, read_jsonl, sha256_file, write_jsonl
from ..resume import digest, keep_part, model_fingerprint
from . import generation as gen
from .items import read_items

log = logging.getLogger(__name__)

CONTINUATIONS = ("text", "label")


def option_continuations(item: dict, mode: str) -> list[str]:
    """What is scored after the prompt for each option: its text (default) or its label."""
    if mode not in CONTINUATIONS:
        raise ValueError(f"evaluation.likelihood.continuation: {mode!r} is not one of {CONTINUATIONS}")
    return [str(o["text"] if mode == "text" else o["label"]) for o in item["options"]]


def english_prompt_ids(
    tokenizer, items: list[dict], desc: str = "", prompt_format: str = "chat"
) -> list[list[int]]:
    """The formatted English prompt of every item (CC-Tuning's oracle mode)."""
    missing = [it["id"] for it in items if not it.get("prompt_en")]
    if missing:
        raise ValueError(f"{desc}: cc_tuning oracle mode needs each item's English prompt (prompt_en); "
                         f"{len(missing)} items have none, e.g. {missing[0]} (not a parallel benchmark?)")  # fmt: skip
    texts = gen.prompt_texts(tokenizer, [it["prompt_en"] for it in items], prompt_format)
    return [gen.encode(tokenizer, t) for t in texts]


def _connected_generate(connection, ids, english, lang, g, limits, desc) -> tuple[list, list]:
    """CC-Tuning generation in the same batches as :func:`.generation.greedy_generate`."""
    from tqdm.auto import tqdm

    outputs, layers = [None] * len(ids), [None] * len(ids)
    with tqdm(total=len(ids), desc=f"{desc} (connection)", unit="prompt", mininterval=5) as bar:
        for batch in gen.batches([len(x) for x in ids], g["batch_size"], limits["max_batch_tokens"],
                                 g["max_new_tokens"], limits["max_padding"]):  # fmt: skip
            english_ids = [english[i] for i in batch] if english is not None else None
            out = connection.generate([ids[i] for i in batch], lang, g["max_new_tokens"], english_ids)
            for j, i in enumerate(batch):
                toks = out["tokens"][j]  # cut before the first eos
                outputs[i] = (toks, "eos" if len(toks) < g["max_new_tokens"] else "length")
                layers[i] = out["layers"][j]
            bar.update(len(batch))
    return outputs, layers


def predict_language(model, tokenizer, items: list[dict], settings: dict, desc: str = "",
                     connection=None) -> list[dict]:  # fmt: skip
    """Greedy outputs for ``items`` and, for multiple-choice items, option log-likelihoods.

    ``connection`` (:class:`.connection.Connection`): evaluate with CC-Tuning's connection;
    each record then also holds the Decision Maker's chosen ``layer``. In oracle mode
    the connection comes from each item's English prompt (``prompt_en``).
    """
    prompt_format = settings.get("prompt_format", "chat")  # models.<name>.prompt_format
    texts = gen.prompt_texts(tokenizer, [it["prompt"] for it in items], prompt_format)
    ids = [gen.encode(tokenizer, t) for t in texts]
    g = settings["generation"]
    lang = items[0].get("lang")
    limits = {"max_batch_tokens": g.get("max_batch_tokens"), "max_padding": g.get("max_padding")}
    english = None
    if connection is not None and connection.needs_english:
        english = english_prompt_ids(tokenizer, items, desc, prompt_format)
    ll = settings["likelihood"]
    mc = [i for i, it in enumerate(items) if it["task"] == "multiple_choice"] if ll["enabled"] else []
    options = {i: option_continuations(items[i], ll["continuation"]) for i in mc}
    scores = layers = None
    decoder = g.get("decoder", "exact")
    if connection is None or gen.exact_decoding(model, tokenizer, ids, g["max_new_tokens"], decoder):
        # options scored on each prompt's cache, right after its prompt pass (with the connection's
        # c at p for a CC-Tuning row)
        pairs = {i: [gen.encode_pair(tokenizer, texts[i], o) for o in opts] for i, opts in options.items()}
        conts = [[c for _, c in pairs.get(i, [])] for i in range(len(items))]
        for i, ps in pairs.items():  # the context is the prompt, encoded the same way
            if any(ctx != ids[i] or not cont for ctx, cont in ps):
                raise ValueError(f"{items[i]['id']}: an option encodes to no tokens after the prompt")
        prompt_pass = None
        if connection is not None:
            prompt_pass, chosen = connection.prompt_pass(lang, english)
        outputs, scores = gen.generate_and_score(model, tokenizer, ids, conts if mc else None, g["max_new_tokens"],
                                                 g["batch_size"], desc, **limits,
                                                 score_batch_size=ll["batch_size"], decoder=decoder,
                                                 reuse_prefix=g.get("reuse_prefix", False),
                                                 prompt_pass=prompt_pass)  # fmt: skip
        if connection is not None:
            layers = [chosen[i] for i in range(len(items))]
    else:
        outputs, layers = _connected_generate(connection, ids, english, lang, g, limits, desc)
    records = []
    for k, (it, (new_tokens, stopped), n_prompt) in enumerate(zip(items, outputs, map(len, ids), strict=True)):
        records.append({
            "id": it["id"], "index": it["index"], "lang": it.get("lang"),
            "output": tokenizer.decode(new_tokens, skip_special_tokens=True),
            "n_tokens": len(new_tokens), "stopped": stopped, "prompt_tokens": n_prompt,
            "option_loglik": None, "option_greedy": None,
        })  # fmt: skip
        if layers is not None:
            records[-1]["layer"] = layers[k]
    if scores is not None:
        for i in mc:
            records[i].update(option_loglik=[s for s, _ in scores[i]], option_greedy=[b for _, b in scores[i]],
                              continuation=ll["continuation"])  # fmt: skip
    elif mc:
        requests, owner = [], []
        for i in mc:
            for cont in options[i]:
                requests.append((texts[i], cont))
                owner.append(i)
        hook = None
        if connection is not None:  # the scored contexts are the prompts: map each to its English prompt
            english_of = {tuple(x): e for x, e in zip(ids, english, strict=True)} if english is not None else None
            hook = connection.prompt_hook(lang, english_of)
        scores = gen.option_logliks(model, tokenizer, requests, ll["batch_size"], f"{desc} options", **limits,
                                    prompt_hook=hook)  # fmt: skip
        for i in mc:
            records[i].update(option_loglik=[], option_greedy=[], continuation=ll["continuation"])
        for i, (total, greedy) in zip(owner, scores, strict=True):
            records[i]["option_loglik"].append(total)
            records[i]["option_greedy"].append(greedy)
    return records


def fingerprint(settings: dict, items_path: Path, model_dir: Path) -> str:
    """Settings (CC-Tuning's transform file included, by content), items and model files."""
    extra = settings.get("cc_tuning") or {}
    transform = sha256_file(Path(extra["transform"])) if extra.get("transform") else None
    return digest(settings, sha256_file(items_path), model_fingerprint(model_dir), transform)


def predict_benchmark(model, tokenizer, model_dir: str | Path, benchmark: str, items_paths: dict[str, str],
                      outdir: str | Path, settings: dict, resume_dir: str | Path,
                      finalize=None, connection=None) -> dict:  # fmt: skip
    """Write ``outdir/{lang}.jsonl`` for every language; return per-language counts.

    ``finalize(tmpdir, stats)`` may add files (provenance) before the directory is moved into place.
    """
    done = {}
    for lang, path in items_paths.items():
        key = fingerprint(settings, Path(path), Path(model_dir))

        def compute(part, path=path, lang=lang):
            records = predict_language(model, tokenizer, read_items(path, benchmark, lang), settings,
                                       f"{benchmark}/{lang}", connection)  # fmt: skip
            write_jsonl(part, records)

        label = f"{benchmark}/{lang}"
        done[lang] = keep_part(resume_dir, lang, ".jsonl", key, compute, "generate.language", label)
    stats = {}
    with atomic_path(outdir, directory=True) as tmp:
        for lang, part in done.items():
            records = read_jsonl(part)
            shutil.copyfile(part, tmp / f"{lang}.jsonl")
            stats[lang] = {
                "items": len(records),
                "stopped_eos": sum(r["stopped"] == "eos" for r in records),
                "mean_tokens": sum(r["n_tokens"] for r in records) / max(len(records), 1),
            }
        if finalize is not None:
            finalize(tmp, stats)
    shutil.rmtree(resume_dir, ignore_errors=True)
    return stats
