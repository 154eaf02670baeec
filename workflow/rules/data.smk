# Data stages: the base model, the source data, translations, parallel pairs.

import crosstune.data.sources


rule base_model:
    input:
        chat_template=lambda wc: chat_template_file(wc.model),
        # a tiny model's tokenizer is trained on the bundled seed texts
        seed=lambda wc: (
            crosstune.data.sources.seed_files()
            if config["models"][wc.model]["source"]["type"] == "tiny"
            else []
        ),
        # source local: the model directory (e.g. a trained results/<model>/train/<method>/model),
        # so a retrained one is linked again and its rows re-evaluated
        local=lambda wc: local_model_dir(wc.model),
    output:
        directory("resources/models/{model}"),
    log:
        "logs/base_model/{model}.log",
    benchmark:
        "logs/base_model/{model}.benchmark.tsv"
    conda:
        "../../envs/train.yaml"
    threads: res("base_model", "threads")
    resources:
        mem_mb=res("base_model", "mem_mb"),
        runtime=res("base_model", "runtime"),
        gpu=res("base_model", "gpu"),
    params:
        code=code("base_model.py"),
        # what builds the model files (connection_position is CC-Tuning's, prompt_format rule
        # generate's: each a param of the rules it changes)
        spec=lambda wc: {
            k: v
            for k, v in config["models"][wc.model].items()
            if k not in ("connection_position", "prompt_format")
        },
        # the seed only matters for random (tiny) models
        seed=lambda wc: (
            config["seed"]
            if config["models"][wc.model]["source"]["type"] == "tiny"
            else None
        ),
    script:
        "../scripts/base_model.py"


rule source_data:
    input:
        # the local files the sources read (jsonl files, local dataset directories): an edit reruns
        crosstune.data.sources.local_inputs(config["data"]["sources"]),
    output:
        records="results/data/source/records.jsonl",
        meta="results/data/source/provenance.json",
    log:
        "logs/source_data.log",
    benchmark:
        "logs/source_data.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: res("source_data", "threads")
    resources:
        mem_mb=res("source_data", "mem_mb"),
        runtime=res("source_data", "runtime"),
        gpu=res("source_data", "gpu"),
    params:
        code=code("source_data.py"),
        sources=config["data"]["sources"],
        languages=LANGS,
    script:
        "../scripts/source_data.py"


rule translate:
    input:
        records=rules.source_data.output.records,
        # the bundled human translations, imported into the translation memory
        seed=crosstune.data.sources.seed_files(),
    output:
        records="results/data/translated/{lang}/records.jsonl",
        meta="results/data/translated/{lang}/provenance.json",
    log:
        "logs/translate/{lang}.log",
    benchmark:
        "logs/translate/{lang}.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: res("translate", "threads")
    resources:
        mem_mb=res("translate", "mem_mb"),
        runtime=res("translate", "runtime"),
        gpu=res("translate", "gpu"),
    params:
        code=code("translate.py"),
        # everything that changes the translations (not the memory's location)
        engine=config["translate"]["engine"],
        memory_only=config["translate"]["memory_only"],
        fields=config["translate"]["fields"],
        fields_to_en=config["translate"]["fields_to_en"],
        batch_size=config["translate"]["batch_size"],
        max_new_tokens=config["translate"]["max_new_tokens"],
        num_beams=config["translate"]["num_beams"],
    script:
        "../scripts/translate.py"


rule pairs:
    input:
        model=model_dir("{model}"),
        source=rules.source_data.output.records,
        translated=expand(rules.translate.output.records, lang=TARGET_LANGS),
    output:
        pairs="results/{model}/pairs/pairs.jsonl",
        stats="results/{model}/pairs/stats.tsv",
        meta="results/{model}/pairs/provenance.json",
    log:
        "logs/pairs/{model}.log",
    benchmark:
        "logs/pairs/{model}.benchmark.tsv"
    conda:
        "../../envs/data.yaml"
    threads: res("pairs", "threads")
    resources:
        mem_mb=res("pairs", "mem_mb"),
        runtime=res("pairs", "runtime"),
        gpu=res("pairs", "gpu"),
    params:
        code=code("pairs.py"),
        languages=LANGS,
        min_tokens=config["pairs"]["min_tokens"],
        max_tokens=config["pairs"]["max_tokens"],
        dedup=config["pairs"]["dedup"],
    script:
        "../scripts/pairs.py"
