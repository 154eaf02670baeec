"""How many rows a half-precision CPU matrix product takes before a row's bits differ from its one-row product.

    python benchmarks/bf16_rows.py                      # SmolLM2-135M's linear shapes, bfloat16, 1 thread
    python benchmarks/bf16_rows.py --threads 2 --seeds 50

The decode loop (``evaluate/decode.py``) runs each decode step's matrix products on all rows at
once; its outputs equal the one-prompt-at-a-time loop's only where such a product rounds each row
as a one-row product. The float32 sums are rounded to bfloat16's 8 bits, so a different order of
summation shows only in some outputs: one random input proves little. For each shape this draws
``--seeds`` random weights and inputs and reports, per seed, the first row count whose product
differs from the rows computed alone (``decode.exact_rows`` caps the decode batch accordingly).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from crosstune.provenance import cpu_info  # noqa: E402

SMOLLM2 = "576x576,576x192,576x1536,1536x576,576x49152"  # q/o, k/v, gate/up, down, lm_head (in x out)


def first_difference(n_in: int, n_out: int, rows: int, seed: int, dtype: torch.dtype) -> int | None:
    gen = torch.Generator().manual_seed(seed)
    w = (torch.randn(n_out, n_in, generator=gen) / n_in**0.5).to(dtype)
    x = torch.randn(rows, 1, n_in, generator=gen).to(dtype)
    alone = torch.cat([torch.nn.functional.linear(x[i : i + 1], w) for i in range(rows)])
    return next((m for m in range(2, rows + 1) if not torch.equal(torch.nn.functional.linear(x[:m], w), alone[:m])),
                None)  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=SMOLLM2, help="in x out, comma-separated")
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    cpu, flags = cpu_info()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    print(f"{cpu}; flags {' '.join(flags)}; torch sees AMX: {amx}; {args.dtype}, {args.threads} thread(s), "
          f"{args.seeds} seeds, up to {args.rows} rows")  # fmt: skip
    print("| shape (in x out) | seeds with a difference | first differing row count: min | median | seeds differing at 2 rows |")
    print("|---|---:|---:|---:|---:|")
    for shape in args.shapes.split(","):
        n_in, n_out = map(int, shape.split("x"))
        firsts = [first_difference(n_in, n_out, args.rows, s, dtype) for s in range(args.seeds)]
        hit = [f for f in firsts if f is not None]
        print(f"| {shape} | {len(hit)}/{args.seeds} | {min(hit) if hit else '-'} | "
              f"{statistics.median(hit) if hit else '-'} | {sum(f == 2 for f in hit)}/{args.seeds} |")  # fmt: skip


if __name__ == "__main__":
    main()
