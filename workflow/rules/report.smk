# Pages for `snakemake --report`: the report shows HTML and images inline and other files
# only as downloads, so the training-data statistics (rule pairs) and each Transform Matrix
# fit (rule transform) are rendered as HTML here, one light job per model.


rule report_pages:
    input:
        stats="results/{model}/pairs/stats.tsv",
        fits=[f"results/{{model}}/cc_tuning/{m}/fit.json" for m in CC_METHODS],
    output:
        pairs=report(
            "results/{model}/report/pairs.html",
            caption="../report/pairs.rst",
            category="Training",
            subcategory="{model}",
            labels={"model": "{model}", "method": "-", "figure": "training pairs"},
        ),
        fits=[
            report(
                f"results/{{model}}/report/transform_fit_{m}.html",
                caption="../report/fit.rst",
                category="Training",
                subcategory="{model}",
                labels={
                    "model": "{model}",
                    "method": m,
                    "figure": "Transform Matrix fit",
                },
            )
            for m in CC_METHODS
        ],
    log:
        "logs/report_pages/{model}.log",
    conda:
        "../../envs/eval.yaml"
    threads: res("report_pages", "threads")
    resources:
        mem_mb=res("report_pages", "mem_mb"),
        runtime=res("report_pages", "runtime"),
        gpu=res("report_pages", "gpu"),
    params:
        code=code("report_pages.py"),
        methods=CC_METHODS,
    script:
        "../scripts/report_pages.py"
