"""``crosstune``: the actions that are not Snakemake jobs (the pipeline itself runs with ``snakemake``).

crosstune export-lm-eval DIR [--benchmarks ...] [--languages ...] [--configfile config.yaml]
crosstune train JOB.json        # one training job file, as python -m crosstune.train
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from .benchmarks import BENCHMARKS


def read_config(paths: list[str]) -> dict:
    """The config of ``--configfile`` files, later files updating earlier ones (as Snakemake merges them)."""
    from .config import read_config_file
    from .train.settings import merge

    config: dict = {}
    for path in paths:
        config = merge(config, read_config_file(path))  # DataError: file, line
    return config


def export_lm_eval(args: argparse.Namespace) -> int:
    import datasets

    from .benchmarks.lmeval import export

    datasets.disable_progress_bars()  # one "Generating test split" bar per language read otherwise
    config = read_config(args.configfile) if args.configfile else None
    counts = export(args.dir, config, args.benchmarks, args.languages)
    out = Path(args.dir).resolve()
    for benchmark, langs in counts.items():
        print(
            f"{benchmark}: {', '.join(f'{lang} {n}' for lang, n in langs.items())} items -> {out / benchmark}"
        )
    print(f"run: lm_eval --model hf --model_args pretrained=MODEL --apply_chat_template "
          f"--include_path {out} --tasks crosstune_{next(iter(counts), 'xnli')}")  # fmt: skip
    return 0


def train(args: argparse.Namespace) -> int:
    # the same process as `python -m crosstune.train JOB.json` (what accelerate launch starts)
    sys.argv = ["python -m crosstune.train", *args.args]
    runpy.run_module("crosstune.train", run_name="__main__", alter_sys=True)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crosstune",
        description="crosstune's actions outside the pipeline. The pipeline itself: snakemake --cores N "
        "[--configfile config.yaml] (README.md).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    e = sub.add_parser(
        "export-lm-eval",
        help="write the benchmarks as lm-evaluation-harness tasks",
        description="Write the benchmarks' items and the paper's prompts, decoding and metrics as "
        "lm-evaluation-harness tasks (groups crosstune_<benchmark>, per language crosstune_<benchmark>_<lang>; "
        "multiple choice also crosstune_<benchmark>_ll, ranked by log-likelihood). Then: lm_eval --model hf "
        "--model_args pretrained=MODEL --apply_chat_template --include_path DIR --tasks crosstune_xnli",
    )
    e.add_argument(
        "dir", metavar="DIR", help="output directory (each benchmark's subdirectory is replaced)"
    )
    e.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, metavar="NAME",
                   help=f"benchmarks to export (default: the config's benchmarks.run, else all: {', '.join(BENCHMARKS)})")  # fmt: skip
    e.add_argument(
        "--languages",
        nargs="+",
        metavar="LANG",
        help="only these languages (default: each benchmark's configured languages)",
    )
    e.add_argument("--configfile", nargs="+", metavar="FILE",
                   help="crosstune config(s) whose benchmarks: section chooses the items (source, languages, n) "
                   "and evaluation: the answer length and QA normalisation (default: the bundled mini sets)")  # fmt: skip
    e.set_defaults(func=export_lm_eval)
    t = sub.add_parser("train", help="run one training job file (python -m crosstune.train)", add_help=False,
                       description="Run one training job file, as rule train writes it.")  # fmt: skip
    t.add_argument("args", nargs="*", help="JOB.json (or --help)")
    t.set_defaults(func=train)
    return p


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .io import DataError

    p = parser()
    # `crosstune train --help` is python -m crosstune.train's help: its options go through unparsed
    args, rest = p.parse_known_args(argv)
    if rest and args.command != "train":
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if rest:
        args.args = [*rest, *args.args]
    try:
        return args.func(args)
    except (ConfigError, DataError, OSError) as e:  # a --configfile that cannot be read included
        print(f"crosstune {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
