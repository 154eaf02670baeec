"""Wall time of `snakemake -n` on a config (default: the full paper grid of three recipes).

Each round runs the dry run in a fresh empty --directory (every job scheduled, as on a cluster's
first run), offline (HF_HUB_OFFLINE=1). With --nothing-to-do, a second round set is timed after
every output has been created (empty files, one timestamp): the "rerun with nothing changed"
case, which must schedule zero jobs. --cprofile prints where the parse and DAG time goes.

    python benchmarks/dry_run.py                       # the grid, 3 rounds
    python benchmarks/dry_run.py --nothing-to-do --rounds 3
    python benchmarks/dry_run.py --cprofile 25         # top 25 functions by cumulative time
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRID = [REPO / "config" / "paper" / f for f in ("llama-3.1-8b.yaml", "qwen2.5-7b.yaml", "mistral-7b-v0.3.yaml")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def dry_run(configs: list[Path], workdir: Path, prefix: list[str] | None = None) -> tuple[float, str]:
    cmd = [*(prefix or [sys.executable]), "-m", "snakemake", "-n", "--cores", "256", "--directory", str(workdir),
           "--snakefile", str(REPO / "Snakefile"), "--configfile", *map(str, configs)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stdout[-3000:] + done.stderr[-3000:])
    return elapsed, done.stdout + done.stderr


def jobs_scheduled(out: str) -> int:
    if "Nothing to be done" in out:
        return 0
    return int(re.search(r"^total\s+(\d+)$", out, re.M)[1])


def fabricate_outputs(out: str, workdir: Path) -> int:
    """Create every output the dry run lists (directories for directory outputs), one timestamp."""
    now, n = time.time(), 0
    for block in re.split(r"^(?=rule \w+:$)", out, flags=re.M)[1:]:
        rule = block.splitlines()[0][len("rule "):-1]
        m = re.search(r"^    output: (.*)$", block, re.M)
        for rel in m[1].split(", ") if m else []:
            path = workdir / rel
            if rule == "base_model" or rel.endswith("/model"):  # the directory outputs: models
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            os.utime(path, (now, now))
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", type=Path, default=GRID)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nothing-to-do", action="store_true", help="also time the dry run once every output exists")
    ap.add_argument("--cprofile", type=int, default=0, metavar="N", help="profile one dry run, print the top N")
    args = ap.parse_args()
    print(f"configs: {' '.join(str(c.relative_to(REPO)) if c.is_relative_to(REPO) else str(c) for c in args.configs)}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.cprofile:
            stats = Path(tmp) / "prof"
            dry_run(args.configs, Path(tmp) / "p", [sys.executable, "-m", "cProfile", "-o", str(stats)])
            import pstats

            pstats.Stats(str(stats)).sort_stats("cumulative").print_stats(args.cprofile)
            return
        times, out = [], ""
        for i in range(args.rounds):
            t, out = dry_run(args.configs, Path(tmp) / f"fresh{i}")
            times.append(t)
        print(f"fresh directory: {jobs_scheduled(out)} jobs scheduled; wall s per dry run: "
              f"median {statistics.median(times):.2f}, min {min(times):.2f} ({args.rounds} rounds)")  # fmt: skip
        if args.nothing_to_do:
            work = Path(tmp) / "done"
            _, first = dry_run(args.configs, work)
            made = fabricate_outputs(first, work)
            times = []
            for _ in range(args.rounds):
                t, out = dry_run(args.configs, work)
                times.append(t)
            print(f"every output present ({made} created): {jobs_scheduled(out)} jobs scheduled; wall s: "
                  f"median {statistics.median(times):.2f}, min {min(times):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
