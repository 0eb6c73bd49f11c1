"""bids2hub: turn a BIDS dataset into Hugging Face Hub parquet shards.

The Snakemake rules in ``workflow/rules`` stay thin and call this package,
either through its functions or through the ``bids2hub`` command line.
"""

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _source_version() -> str:
    """Version from the repository's pyproject.toml (package not installed, e.g. conda jobs)."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
    except OSError:
        match = None
    return match.group(1) if match else "0.0.0+unknown"


try:
    __version__ = version("neuroimaging-go-brrrr")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = _source_version()

__all__ = ["__version__"]
