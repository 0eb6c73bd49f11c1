"""Validation of a converted dataset: the checks behind ``validation/report.{json,html}``.

The work is split so that a rerun rechecks only what changed:

* :mod:`.sources` - per session, from the source files: full integrity of every NIfTI
  (gzip CRC, header sanity), DWI volumes against ``.bval``/``.bvec``, lesion masks on the
  grid of their reference image, DICOM identifying keys in sidecars and TSVs
  (``validation/sessions/sub-X/<shard>.json``);
* :mod:`.roundtrip` - per shard: columns and types as the column map says, list lengths
  aligned, every cell's sha256 equal to its source file's, one cell per column decoded
  with ``datasets`` (``validation/shards/sub-X/<shard>.json``);
* :mod:`.bidsvalidator` - the official BIDS validator, once per dataset;
* :mod:`.counts` - expected counts of the dataset map against what the index holds;
* :mod:`.report` and :mod:`.html` - the aggregate ``report.json`` and ``report.html``.

Every per-session and per-shard result is deterministic JSON (no timestamps, paths
relative to the dataset root), so unchanged inputs give byte-identical results.
"""

from __future__ import annotations

#: Version of the layout of the JSON files written by this package.
RESULT_VERSION = 1
