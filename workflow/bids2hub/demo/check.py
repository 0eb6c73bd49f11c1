"""``python -m bids2hub.demo.check OUT_DIR``: read the demo's shards back with ``datasets``.

The last step of ``make demo``: it loads every shard with
``datasets.load_dataset("parquet")``, decodes each Nifti cell and prints one
line per session, so a new user sees the result the way a Hub user would.
"""

from __future__ import annotations

import glob
import sys


def main(argv: list[str] | None = None) -> int:
    """Load every shard of OUT_DIR (default: the config's default) and summarise every row."""
    import datasets

    from bids2hub.config import schema_defaults
    from bids2hub.layout import Layout

    out = (argv or sys.argv[1:] or [schema_defaults("out_dir")])[0]
    pattern = Layout.of(out).shard("*", "*")
    files = sorted(glob.glob(pattern))
    if not files:
        print(f"no shards {pattern}", file=sys.stderr)
        return 1
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    print(f"{ds.num_rows} sessions, {len(ds.column_names)} columns, from {len(files)} shards")
    image_cols = [
        name
        for name, feat in ds.features.items()
        if isinstance(feat, datasets.Nifti)
        or (isinstance(feat, datasets.List) and isinstance(feat.feature, datasets.Nifti))
    ]
    for row in ds:
        parts = []
        for col in image_cols:
            cells = row[col] if isinstance(row[col], list) else [row[col]]
            shapes = [tuple(img.shape) for img in cells if img is not None]
            if shapes:
                parts.append(f"{col}={shapes}")
        print(f"  {row['subject_id']} {row['session_id'] or '-'}: " + ", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
