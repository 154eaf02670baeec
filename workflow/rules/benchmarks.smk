# Evaluation benchmarks as items (crosstune.benchmarks): one JSON Lines file per
# benchmark and language, results/benchmarks/{benchmark}/{lang}.jsonl, in the item
# schema the generate and score rules read.

import crosstune.benchmarks as _bm

# {benchmark: [languages]} of config["benchmarks"]; a language a benchmark (or its
# bundled mini set) lacks is a config error here, before any job runs.
BENCHMARK_LANGS = _bm.check_config(config)


def benchmark_items(benchmark, lang):
    return f"results/benchmarks/{benchmark}/{lang}.jsonl"


def all_benchmark_items():
    return [
        benchmark_items(b, lang)
        for b, langs in BENCHMARK_LANGS.items()
        for lang in langs
    ]


def benchmark_spec(benchmark):
    """The settings that change a benchmark's items (not which languages run)."""
    spec = config["benchmarks"][benchmark]
    return {
        k: spec.get(k)
        for k in ("source", "path", "path_en", "revision", "n", "seed", "aliases")
    }


def benchmark_inputs(wildcards):
    """Files whose change rebuilds the items: the template and the bundled or released data."""
    t = _bm.load_template(wildcards.benchmark)
    files = [str(t.path)]
    source = config["benchmarks"][wildcards.benchmark]["source"]
    if source == "bundled":
        dirs = {t.bundled, t.dataset.get("english", {}).get("bundled", t.bundled)}
        for d in sorted(dirs):
            files += sorted(
                str(p) for p in (_bm.MINI_DIR / d).rglob("*") if p.is_file()
            )
    elif source == "released":
        r, root = t.released, config["benchmarks"]["released_dir"]
        files += [f"{root}/{r['dir']}/{r['prompts']}/{wildcards.lang}.json",
                  f"{root}/{r['dir']}/{r['answers']}/{wildcards.lang}.json"]  # fmt: skip
    return files


rule benchmark_data:
    input:
        benchmark_inputs,
    output:
        jsonl="results/benchmarks/{benchmark}/{lang}.jsonl",
        meta="results/benchmarks/{benchmark}/{lang}.provenance.json",
    log:
        "logs/benchmark_data/{benchmark}/{lang}.log",
    wildcard_constraints:
        benchmark="|".join(_bm.BENCHMARKS),
        lang="[a-z]{2}",
    conda:
        "../../envs/data.yaml"
    threads: res("benchmark_data", "threads")
    resources:
        mem_mb=res("benchmark_data", "mem_mb"),
        runtime=res("benchmark_data", "runtime"),
        gpu=res("benchmark_data", "gpu"),
    params:
        spec=lambda wc: benchmark_spec(wc.benchmark),
        released_dir=lambda wc: (
            config["benchmarks"]["released_dir"]
            if config["benchmarks"][wc.benchmark]["source"] == "released"
            else None
        ),
    script:
        "../scripts/benchmark_data.py"


rule benchmarks:
    input:
        all_benchmark_items(),
    localrule: True
