"""bids2hub: turn a BIDS dataset into Hugging Face Hub parquet shards.

The Snakemake rules in ``workflow/rules`` stay thin and call this package,
either through its functions or through the ``bids2hub`` command line.
"""

import functools
import re
from pathlib import Path


def _source_version() -> str:
    """Version from the repository's pyproject.toml (package not installed, e.g. conda jobs)."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M)
    except OSError:
        match = None
    return match.group(1) if match else "0.0.0+unknown"


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("neuroimaging-go-brrrr")
    except PackageNotFoundError:  # running from a source tree without installation
        return _source_version()


def __getattr__(name: str) -> str:
    """``__version__``, looked up when first asked for: importlib.metadata scans every
    installed distribution (~0.1 s), which every job's ``python -m bids2hub`` paid."""
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'bids2hub' has no attribute {name!r}")


__all__ = ["__version__"]
