"""Activations at p (the connection position) and the least-squares Transform Matrix.

``extract_activations`` runs prompts through the model WITHOUT connection and
returns every layer's FFN output at p: (N, L, d). Stacking samples and layers
gives S (non-English) and T (English), each (N*L, d); the Transform Matrix is

    X = argmin_X ||S X - T||_F^2

Faithful: one shared d x d matrix, no regularisation, the minimum-norm
solution when under-determined (numpy.linalg.lstsq in the released code).
Options: ``ridge`` lambda (X = (S^T S + lambda I)^-1 S^T T) and one matrix per
language. Everything is solved in float64.

Determinism: the CPU solve (and its residuals) runs on ONE thread - MKL's
results depend on the thread count (gelsd's bits differ between 1 and 2
threads), and the rule's thread count depends on ``--cores``. Then the default
driver gelsd gives the same bits in every process on the same machine and
build. gelsy does not: its bits vary between calls on the same input
(relative 1e-14, measured; tests/test_cc_tuning_transform.py), so it is an
opt-in speed option and not byte-reproducible. The CUDA path is reproducible
only on the same GPU model and library versions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from ..io import save_safetensors
from .connection import capture_mlp, chat_prompt_ids, pad_batch, pad_token_id, tokens_after_p

log = logging.getLogger(__name__)

SHARED = "all"  # key of the one shared matrix


# --------------------------------------------------------------------------- activations
@torch.no_grad()
def prompt_activations(model, prompt_ids: Sequence[Sequence[int]], pad_id: int,
                       after: int | Sequence[int] = 0) -> torch.Tensor:  # fmt: skip
    """(B, L, d) FFN outputs at p of each tokenized prompt; one right-padded batch.

    p is the last token, or ``after`` tokens before it (one count for all or one per prompt)."""
    ids, mask, _ = pad_batch(prompt_ids, pad_id, "right")
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    positions = mask.sum(1) - 1 - torch.as_tensor(after, dtype=torch.long, device=device)
    with capture_mlp(model, positions) as cap:
        model(input_ids=ids, attention_mask=mask, use_cache=False, logits_to_keep=1)
    return cap.stacked()


@torch.no_grad()
def extract_activations(model, tokenizer, prompts: Sequence[str], batch_size: int = 8,
                        progress: bool = False, position: str = "last") -> torch.Tensor:  # fmt: skip
    """(N, L, d) float32 CPU tensor: each chat-templated prompt's FFN outputs at p, in input order.

    Prompts are batched by length (less padding); no connection is applied.
    """
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    ids = [chat_prompt_ids(tokenizer, p) for p in prompts]
    after = [tokens_after_p(tokenizer, x, position) for x in ids]  # models.<m>.connection_position
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[torch.Tensor | None] = [None] * len(ids)
    pad = pad_token_id(tokenizer)
    for start in tqdm(range(0, len(order), batch_size), desc="activations", disable=not progress):
        chunk = order[start : start + batch_size]
        acts = prompt_activations(model, [ids[i] for i in chunk], pad, [after[i] for i in chunk]).float().cpu()
        for j, i in enumerate(chunk):
            out[i] = acts[j]
    model.train(was_training)
    if not out:
        raise ValueError("extract_activations: no prompts")
    return torch.stack(out)


def sample_pairs(pairs: Sequence[dict], n: int, seed: int, include_english: bool = False) -> list[dict]:
    """N parallel (x, x_en) prompt pairs drawn from the training pairs with a fixed seed (all when fewer).

    English records (x == x_en) are left out unless ``include_english``: they
    would add rows on which the map is the identity by construction.
    """
    import random

    pool = _pool(pairs, include_english)
    chosen = pool if n >= len(pool) else random.Random(seed).sample(pool, n)
    return sorted(chosen, key=lambda r: r["id"])


def _pool(pairs: Sequence[dict], include_english: bool) -> list[dict]:
    pool = [r for r in pairs if include_english or r["lang"] != "en"]
    pool = [r for r in pool if str(r.get("instruction_en") or "").strip()]
    if not pool:
        raise ValueError("transform: no training pairs with an English instruction to sample from")
    return pool


def draw_order(
    pairs: Sequence[dict], seed: int, first: int | None, include_english: bool = False
) -> list[dict]:
    """Every usable pair in a seeded draw order whose first ``first`` are exactly
    :func:`sample_pairs` (n = ``first``; None = all) and whose every prefix is a uniform sample.

    A matrix study (crosstune.studies) extracts the largest N once and fits each point on
    the pairs drawn first: its N-point is nested in its larger ones, and the method's own
    matrix (``first`` = cc_tuning.n_pairs) keeps the pairs it has without a study.
    """
    import random

    pool = _pool(pairs, include_english)
    if first is None or first >= len(pool):  # sample_pairs takes them all: any order keeps that set
        return random.Random(seed).sample(pool, len(pool))
    head = random.Random(seed).sample(pool, first)  # sample_pairs' draw, in its order
    taken = {id(r) for r in head}
    rest = [r for r in pool if id(r) not in taken]
    return head + random.Random(seed).sample(rest, len(rest))


def pair_activations(model, tokenizer, pairs: Sequence[dict], batch_size: int = 8, progress: bool = False,
                     position: str = "last") -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(source, target): FFN outputs at p of each pair's instruction and of its English instruction."""
    source = extract_activations(model, tokenizer, [r["instruction"] for r in pairs], batch_size, progress, position)
    target = extract_activations(model, tokenizer, [r["instruction_en"] for r in pairs], batch_size, progress,
                                 position)  # fmt: skip
    return source, target


def save_activations(path: str | Path, source: torch.Tensor, target: torch.Tensor, ids: Sequence[str],
                     langs: Sequence[str], extra: dict | None = None) -> None:  # fmt: skip
    """``source`` (non-English) and ``target`` (English) (N, L, d) with the pair ids and languages."""
    if source.shape != target.shape or source.shape[0] != len(ids) or len(ids) != len(langs):
        raise ValueError(f"activations: shapes {tuple(source.shape)} / {tuple(target.shape)} and "
                         f"{len(ids)} ids / {len(langs)} langs do not match")  # fmt: skip
    meta = {"ids": json.dumps(list(ids)), "langs": json.dumps(list(langs)), **(extra or {})}
    save_safetensors(path, {"source": source, "target": target}, meta)


def load_activations(path: str | Path) -> dict:
    """{"source", "target": (N, L, d) tensors, "ids", "langs": lists, "metadata": dict}."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if "ids" not in meta or {"source", "target"} - set(f.keys()):
            raise ValueError(f"{path}: not a cc_tuning activations file (needs source, target and ids)")
        return {"source": f.get_tensor("source"), "target": f.get_tensor("target"),
                "ids": json.loads(meta["ids"]), "langs": json.loads(meta.get("langs", "[]")),
                "metadata": meta}  # fmt: skip


# --------------------------------------------------------------------------- least squares
DRIVERS = ("gelsd", "gelsy")  # the first is the default


@contextmanager
def fixed_bits(device):
    """On CPU, run the linear algebra on one thread (fixed bits, see the module docstring)."""
    before = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def solve_transform(S: torch.Tensor, T: torch.Tensor, ridge: float = 0.0, device=None,
                    driver: str = DRIVERS[0]) -> torch.Tensor:  # fmt: skip
    """X (d, d) float64 minimising ||S X - T||_F^2 (+ ridge ||X||_F^2), on CPU or ``device``.

    ridge = 0: the minimum-norm least-squares solution, as numpy.linalg.lstsq in
    the released code. On CPU by LAPACK ``gelsd`` (numpy's SVD-based driver;
    deterministic on one thread) or ``gelsy`` (complete orthogonal factorisation,
    about 4x faster, not bit-reproducible); on CUDA, whose lstsq has no
    minimum-norm driver, by the SVD pseudo-inverse. Both use numpy's cut-off rcond = eps * max(n, d).
    ridge > 0: the normal equations with lambda I, solved by Cholesky.
    """
    if S.ndim != 2 or S.shape != T.shape:
        raise ValueError(f"solve_transform: S {tuple(S.shape)} and T {tuple(T.shape)} must be equal 2-D shapes")
    if ridge < 0:
        raise ValueError(f"transform ridge must be >= 0, not {ridge}")
    if driver not in DRIVERS:
        raise ValueError(f"transform driver must be one of {', '.join(DRIVERS)}, not {driver!r}")
    device = torch.device(device) if device is not None else S.device
    S = S.to(device=device, dtype=torch.float64)
    T = T.to(device=device, dtype=torch.float64)
    with fixed_bits(device):
        if ridge > 0:
            gram = S.T @ S
            gram.diagonal().add_(ridge)
            return torch.cholesky_solve(S.T @ T, torch.linalg.cholesky(gram))
        rcond = torch.finfo(torch.float64).eps * max(S.shape)
        if device.type == "cpu":
            return torch.linalg.lstsq(S, T, rcond=rcond, driver=driver).solution
        return torch.linalg.pinv(S, rtol=rcond) @ T


def stack_layers(acts: torch.Tensor) -> torch.Tensor:
    """(N, L, d) -> (N*L, d): samples and layers stacked, sample-major as the released code."""
    return acts.reshape(-1, acts.shape[-1])


def residuals(source: torch.Tensor, target: torch.Tensor, X: torch.Tensor) -> dict:
    """Relative residuals ||S_l X - T_l||_F / ||T_l||_F per layer (and over all), with the identity map's."""
    S = source.to(X.device, torch.float64)
    T = target.to(X.device, torch.float64)

    def rel(a, b, dims):
        return (torch.linalg.vector_norm(a - b, dim=dims) / torch.linalg.vector_norm(b, dim=dims).clamp_min(1e-300))

    with fixed_bits(X.device):  # the fit report's numbers are reproducible too
        mapped = S @ X  # (N, L, d)
        return {
            "relative_residual": rel(mapped, T, (0, 2)).tolist(),
            "relative_residual_identity": rel(S, T, (0, 2)).tolist(),
            "relative_residual_all": float(rel(mapped, T, (0, 1, 2))),
            "relative_residual_identity_all": float(rel(S, T, (0, 1, 2))),
        }


def fit_transform(source: torch.Tensor, target: torch.Tensor, langs: Sequence[str] | None = None,
                  per_language: bool = False, ridge: float = 0.0, device=None,
                  driver: str = DRIVERS[0]) -> tuple[dict, dict]:  # fmt: skip
    """Matrices {"all": X} (or {lang: X} with ``per_language``) and a JSON-able fit report."""
    import time

    if source.shape != target.shape or source.ndim != 3:
        raise ValueError(f"fit_transform: source {tuple(source.shape)} and target {tuple(target.shape)} "
                         "must both be (N, L, d)")  # fmt: skip
    groups: dict[str, list[int]] = {}
    if per_language:
        if langs is None or len(langs) != source.shape[0]:
            raise ValueError("fit_transform: per_language needs one language per sample")
        for i, lang in enumerate(langs):
            groups.setdefault(lang, []).append(i)
    else:
        groups[SHARED] = list(range(source.shape[0]))
    n, num_layers, d = source.shape
    on_cpu = torch.device(device if device is not None else source.device).type == "cpu"
    method = "cholesky" if ridge > 0 else driver if on_cpu else "pinv"  # what solve_transform runs
    matrices, report = {}, {"n_samples": n, "num_layers": num_layers, "hidden_size": d, "ridge": ridge,
                            "per_language": per_language, "dtype": "float64", "driver": method,
                            "matrices": {}}  # fmt: skip
    for key, idx in sorted(groups.items()):
        S, T = source[idx], target[idx]
        rows = len(idx) * num_layers
        t0 = time.perf_counter()
        X = solve_transform(stack_layers(S), stack_layers(T), ridge=ridge, device=device, driver=driver)
        seconds = time.perf_counter() - t0
        fit = residuals(S, T, X)
        report["matrices"][key] = {"samples": len(idx), "rows": rows, "underdetermined": rows < d,
                                   "solve_seconds": round(seconds, 3), "device": str(X.device), **fit}  # fmt: skip
        log.info("transform %s: %d rows, relative residual %.4f (identity %.4f), %.1fs", key, rows,
                 fit["relative_residual_all"], fit["relative_residual_identity_all"], seconds)  # fmt: skip
        matrices[key] = X.cpu()
    return matrices, report


def save_transform(path: str | Path, matrices: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    save_file({k: v.contiguous() for k, v in matrices.items()}, str(tmp), metadata={"format": "crosstune.transform"})
    tmp.replace(path)


def load_transform(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def matrix_for(matrices: dict[str, torch.Tensor], lang: str) -> torch.Tensor:
    """The language's own matrix when there is one, else the shared one."""
    if lang in matrices:
        return matrices[lang]
    if SHARED in matrices:
        return matrices[SHARED]
    raise KeyError(f"no transform matrix for language {lang!r} (have {', '.join(sorted(matrices))})")
