# Evaluation benchmarks as items (crosstune.benchmarks): one JSON Lines file per
# benchmark and language, results/benchmarks/{benchmark}/{lang}.jsonl, in the item
# schema the generate and score rules read.


rule benchmark_data:
    input:
        benchmark_inputs,
    output:
        jsonl="results/benchmarks/{benchmark}/{lang}.jsonl",
        meta="results/benchmarks/{benchmark}/{lang}.provenance.json",
    log:
        "logs/benchmark_data/{benchmark}/{lang}.log",
    benchmark:
        "logs/benchmark_data/{benchmark}/{lang}.benchmark.tsv"
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
        code=code("benchmark_data.py"),
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
