"""Rule report_pages: the pairs statistics and the Transform Matrix fits as HTML pages for the report."""

from crosstune import report
from crosstune.workflow import log_to

log_to(snakemake.log[0])
model, inp, out = snakemake.wildcards.model, snakemake.input, snakemake.output
report.write_page(out.pairs, report.pairs_stats_page(inp.stats, model))
for method, fit, page in zip(snakemake.params.methods, inp.fits, out.fits, strict=True):
    report.write_page(page, report.fit_page(fit, model, method))
