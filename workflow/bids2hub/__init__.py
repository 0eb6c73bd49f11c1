"""bids2hub: turn a BIDS dataset into Hugging Face Hub parquet shards.

The Snakemake rules in ``workflow/rules`` stay thin and call this package,
either through its functions or through the ``bids2hub`` command line.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neuroimaging-go-brrrr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
