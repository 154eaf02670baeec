"""crosstune: the library behind the crosstune Snakemake workflow.

Each workflow script in ``workflow/scripts`` is a thin wrapper around one
function of this package, so everything here is importable and testable
without Snakemake.
"""

__version__ = "0.1.0"
