# Rules that run on the machine Snakemake runs on (an HPC login node), never as cluster jobs:
# the downloads and uploads (login nodes usually reach the internet, compute nodes often do not) and the
# light CPU stages, which would otherwise wait in the queue for seconds of work. Without a
# cluster executor this changes nothing.


localrules:
    base_model,
    source_data,
    pairs,
    benchmark_data,
    aggregate,
    layer_choice,
    report_pages,
    model_card,
    push_to_hub,
