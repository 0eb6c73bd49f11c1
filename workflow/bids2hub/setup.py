"""Parse-time set-up used by the Snakefile: config, index, column map, targets.

Kept out of the Snakefile so that the rules stay thin and this logic has
unit tests. Everything here must be cheap when the index cache is warm:
every cluster job re-parses the Snakefile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .colmap import ColumnMap, generic_map, load_map, resolve_map_path
from .config import validate_config
from .errors import ConfigError
from .index import Manifest, load_index, shard_id
from .phenotype import participants_fields


@dataclass
class WorkflowSetup:
    """Everything the rules need, derived once per parse."""

    config: dict[str, Any]
    out_dir: Path
    manifest: Manifest
    map_path: Path | None
    shards: dict[str, tuple[str, str]]  # shard id -> (sub, ses)
    index_rebuilt: bool

    @property
    def bids_dir(self) -> Path:
        """Resolved BIDS root."""
        return self.manifest.root

    @property
    def manifest_path(self) -> Path:
        """The cached index."""
        return self.out_dir / "index" / "manifest.parquet"

    def shard_path(self, shard: str) -> str:
        """Output path of one shard."""
        sub, _ses = self.shards[shard]
        return str(self.out_dir / "hub" / "data" / f"sub-{sub}" / f"{shard}.parquet")

    def shard_targets(self) -> list[str]:
        """Every shard of the run, in subject/session order."""
        return [self.shard_path(s) for s in self.shards]

    def session_inputs(self, shard: str) -> list[str]:
        """Source files of one shard: every file of its session (images, sidecars, gradients)."""
        sub, ses = self.shards[shard]
        return [str(self.manifest.absolute(r)) for r in self.manifest.files_for(sub, ses)]

    def participants_tsv(self) -> str | None:
        """participants.tsv when the dataset has one."""
        return self._top_level("participants.tsv")

    def participants_json(self) -> str | None:
        """participants.json (column types of the generic map) when present."""
        return self._top_level("participants.json")

    def _top_level(self, name: str) -> str | None:
        rec = self.manifest.top_level(name)
        return str(self.manifest.absolute(rec)) if rec else None

    def column_map(self) -> ColumnMap:
        """The dataset map, or the generic map derived from the whole dataset."""
        if self.map_path is not None:
            return load_map(self.map_path)
        tsv = self.participants_tsv()
        return generic_map(self.manifest, participants_fields(Path(tsv) if tsv else None))

    def label_pattern(self) -> str:
        """Wildcard constraint for subject labels: exactly the indexed ones."""
        subs = sorted({sub for sub, _ in self.shards.values()})
        return "|".join(re.escape(s) for s in subs) or "[a-zA-Z0-9]+"


def prepare(
    raw_config: dict[str, Any],
    *,
    config_dir: Path,
    refresh_index: bool = True,
) -> WorkflowSetup:
    """Validate the config, load (or refresh) the index and list the shards.

    Parameters
    ----------
    raw_config
        Snakemake's ``config`` dict.
    config_dir
        The repository's ``config/`` folder (dataset maps live there).
    refresh_index
        True in the main process; False in cluster jobs (reuse the cache).

    Raises
    ------
    ConfigError, BidsError
        With one line saying what is wrong.
    """
    config = validate_config(raw_config)
    out_dir = Path(config["out_dir"]).resolve()
    bids_dir = Path(config["bids_dir"]).expanduser()
    map_path = resolve_map_path(config.get("dataset"), config_dir)
    manifest, rebuilt = load_index(
        bids_dir,
        out_dir / "index" / "manifest.parquet",
        refresh=refresh_index,
        exclude=[out_dir],
    )
    keys = manifest.shard_keys()
    wanted = config.get("subjects")
    if wanted:
        known = {sub for sub, _ in keys}
        missing = [s for s in wanted if s not in known]
        if missing:
            raise ConfigError(
                f"config key 'subjects': {', '.join('sub-' + m for m in missing)} "
                f"not found in {manifest.root}"
            )
        keys = [k for k in keys if k[0] in set(wanted)]
    shards = {shard_id(sub, ses): (sub, ses) for sub, ses in keys}
    return WorkflowSetup(config, out_dir, manifest, map_path, shards, rebuilt)
