"""The two workflow stages after CC-Tuning training: ``activations`` and ``transform`` (files in, files out).

* :func:`activations_stage` - N parallel (non-English, English) prompt pairs drawn
  with a fixed seed from the training pairs (the method's ``languages``), every
  layer's FFN output at p for both sides from the trained model without
  connection -> ``activations.safetensors`` (``source``, ``target``: (N, L, d)
  float32; metadata: pair ids, languages, how they were drawn).
* :func:`transform_stage` - the least-squares Transform Matrix from that file
  (faithful: one shared d x d matrix, no ridge) -> ``transform.safetensors``
  (key ``all``, or one key per language) and ``fit.json`` (relative residual per
  layer, per matrix, beside the identity map's).

Both run on ``device`` (``auto``: the GPU when there is one); the solve is float64.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..io import read_jsonl, sha256_file, write_json
from ..mt import resolve_device
from ..resume import digest, keep_part, model_fingerprint
from . import transform as tf

log = logging.getLogger(__name__)

SHARD_PAIRS = 256  # pairs per kept shard: what a killed activations job can lose


def activations_stage(model_dir: str | Path, pairs: str | Path, output: str | Path, *, n_pairs: int | None,
                      seed: int, languages: list[str] | None = None, batch_size: int = 8,
                      device: str = "auto", position: str = "last", shard_size: int = SHARD_PAIRS,
                      resume_dir: str | Path | None = None, study_n_pairs: Sequence[int | None] = ()) -> dict:  # fmt: skip
    """Write the activations file; return what was drawn (``n``, ``n_available``, ``langs``...).

    ``study_n_pairs``: the N of a matrix study's points (crosstune.studies); the largest N is
    drawn (tf.draw_order: nested, its first ``n_pairs`` those drawn without a study) and each
    pair's draw rank stored, so that :func:`transform_stage` fits N pairs on a subsample.

    The pairs are extracted in shards of ``shard_size``; each finished shard is kept in
    ``resume_dir`` (default ``<output>.resume``) with a fingerprint (crosstune.resume), so a
    killed job's rerun extracts only the rest and writes the same bytes.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    records = read_jsonl(pairs)
    pool = [r for r in records if r["lang"] != "en" and (languages is None or r["lang"] in languages)]
    if not pool:
        raise ValueError(f"{pairs}: no non-English training pairs" + (f" in {', '.join(languages)}" if languages else ""))
    wanted = [n_pairs, *study_n_pairs]
    n = len(pool) if None in wanted else max(wanted)
    order = tf.draw_order(pool, seed, first=n_pairs)[:n]
    rank = {id(r): i for i, r in enumerate(order)}
    # without a study: exactly tf.sample_pairs(pool, n_pairs, seed), in its order
    chosen = sorted(order, key=lambda r: r["id"])
    if n > len(chosen):
        log.warning("cc_tuning.n_pairs %d: only %d non-English training pairs have an English instruction; all used",
                    n, len(chosen))  # fmt: skip
    device = resolve_device(device)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    t0 = time.perf_counter()
    resume_dir = Path(resume_dir or f"{output}.resume")
    # the shard boundaries follow from the drawn pairs and shard_size, both in the key
    key = digest([n_pairs, sorted(study_n_pairs, key=str), seed, languages, batch_size, position, device, shard_size], sha256_file(pairs),
                 model_fingerprint(model_dir))  # fmt: skip
    shards = [chosen[i : i + shard_size] for i in range(0, len(chosen), shard_size)]
    parts = []
    for k, shard in enumerate(shards, 1):

        def extract(path, shard=shard):
            source, target = tf.pair_activations(model, tokenizer, shard, batch_size=batch_size, progress=True,
                                                 position=position)  # fmt: skip
            ids, langs = [r["id"] for r in shard], [r["lang"] for r in shard]
            tf.save_activations(path, source, target, ids, langs)

        label = f"activations shard {k}/{len(shards)}"
        parts.append(tf.load_activations(keep_part(resume_dir, str(k), ".safetensors", key, extract,
                                                   "activations.shard", label)))  # fmt: skip
    source, target = (torch.cat([p[side] for p in parts]) for side in ("source", "target"))
    study = {"study_n_pairs": list(study_n_pairs)} if study_n_pairs else {}
    info = {"n": len(chosen), "n_requested": n_pairs, **study, "n_available": len(pool), "seed": seed,
            "languages": dict(sorted(Counter(r["lang"] for r in chosen).items())),
            "connection_position": position, "num_layers": source.shape[1], "hidden_size": source.shape[2], "device": device,
            "shards": len(shards), "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
    log.info("activations of %d pairs (%s): (N, L, d) = %s in %.1fs", len(chosen), info["languages"],
             tuple(source.shape), info["seconds"])  # fmt: skip
    meta = {"model": str(model_dir), "pairs": str(pairs), "seed": str(seed), "n_requested": str(n_pairs),
            "n_available": str(len(pool)), "connection_position": position,
            "ranks": json.dumps([rank[id(r)] for r in chosen])}  # fmt: skip
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    tf.save_activations(output, source, target, [r["id"] for r in chosen], [r["lang"] for r in chosen], meta)
    shutil.rmtree(resume_dir, ignore_errors=True)
    return info


def transform_stage(activations: str | Path, transform: str | Path, fit: str | Path, *, ridge: float = 0.0,
                    per_language: bool = False, driver: str = tf.DRIVERS[0], device: str = "auto",
                    n_pairs: int | None = None) -> dict:  # fmt: skip
    """Write the matrices and the fit report (returned). ``n_pairs``: fit on the pairs drawn
    first (draw rank < N; see :func:`activations_stage`); None = every pair of the file."""
    acts = subsample(tf.load_activations(activations), n_pairs, activations)
    device = resolve_device(device)
    matrices, report = tf.fit_transform(acts["source"], acts["target"], acts["langs"], per_language=per_language,
                                        ridge=ridge, device=device, driver=driver)  # fmt: skip
    report = {"activations": str(activations), "pairs": len(acts["ids"]), "n_pairs": n_pairs,
              "languages": dict(sorted(Counter(acts["langs"]).items())), **report}  # fmt: skip
    Path(transform).parent.mkdir(parents=True, exist_ok=True)
    tf.save_transform(transform, matrices)
    write_json(fit, report)
    return report


def subsample(acts: dict, n_pairs: int | None, path) -> dict:
    """The activations of the pairs drawn first (rank < ``n_pairs``), in the file's order; all when
    the file has no more (then the rows are the file's own tensors: the same bits as before)."""
    if n_pairs is None or n_pairs >= len(acts["ids"]):
        return acts
    if "ranks" not in acts["metadata"]:
        n = len(acts["ids"])
        raise ValueError(
            f"{path}: no draw ranks to take {n_pairs} of its {n} pairs; rerun rule activations"
        )
    keep = [i for i, r in enumerate(json.loads(acts["metadata"]["ranks"])) if r < n_pairs]
    picked = {k: [acts[k][i] for i in keep] for k in ("ids", "langs")}
    return {**acts, **picked, "source": acts["source"][keep], "target": acts["target"][keep]}
