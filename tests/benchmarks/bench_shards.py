"""Shard-writing throughput and peak memory of ``bids2hub.shards.writer.write_shard``.

What is measured
----------------
A synthetic ARC-shaped BIDS dataset (default 2.2 GB of ``.nii.gz`` in 9 sessions of
~70-550 MB, ARC file names, T1w/T2w/FLAIR, several 4-D DWI runs with
``.bval``/``.bvec``/``.json``, single-band references and a few lesion masks under
``derivatives/lesion_masks``) is written once under ``--workdir``. Every image is a
real gzip stream (level-6 deflate) of smooth int16 phantom data with noise, so it
compresses like MRI (about 2:1). To keep generation fast, a small pool of slabs is
compressed once (each as an independent, full-flushed deflate segment) and every file
splices its own random sequence of slabs behind its own header (unique ``descrip``),
with a correct CRC32/ISIZE trailer: every file is different and valid.

All files are then read once (page cache warm for every method; sha256 of every
source file is taken during that pass and every image passes ``check_nifti``). Then
each method writes every session, ``--repeats`` times (medians reported). Like a
Snakemake job per shard, every (method, session) runs in a fresh child interpreter,
which times only the write call (interpreter start, imports and index loading are
excluded for every method alike) and reports its own peak RSS (``VmHWM`` of
``/proc/self/status``, which unlike ``ru_maxrss`` does not inherit the parent's peak
across fork/exec):

* ``copy+fsync``  -- baseline 1: ``shutil.copyfile`` of every file of the session,
  then ``fsync`` of each copy (``write_shard`` fsyncs its output, so this is the
  like-for-like baseline; ``copy`` without fsync is shown for information).
* ``ours``       -- ``write_shard`` with the ds004884 map (includes its fsync).
* ``ours+cdc``   -- the same with ``ShardOptions(content_defined_chunking=True)``.
* ``ours[sys-alloc]`` -- ``ours`` with ``ARROW_DEFAULT_MEMORY_POOL=system`` (glibc
  malloc instead of pyarrow's default mimalloc), for information.
* ``datasets``   -- baseline 2, what ``Dataset.push_to_hub`` does: ``Dataset.from_dict``
  of one row of paths, ``.cast`` to ``List(Nifti())``/``Nifti()`` features,
  ``.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True)``,
  ``.to_parquet`` (datasets' defaults: CDC on, images uncompressed), then ``fsync``.

The outputs of the first repeat of the ``ours*`` methods and ``datasets`` are read
back with pyarrow and every embedded cell's sha256 is compared with its source file,
so a broken writer cannot produce a good number. ``--no-fsync`` turns fsync off for
every method (``os.fsync`` is a no-op in the ``ours`` children) to see CPU-side costs.

Run
---
    .venv/bin/python tests/benchmarks/bench_shards.py               # 2.2 GB, 3 repeats
    .venv/bin/python tests/benchmarks/bench_shards.py --size-gb 0.3 --repeats 1
    .venv/bin/python tests/benchmarks/bench_shards.py --workdir /tmp/bs --keep  # reuse data

Targets printed with PASS/FAIL: ours >= 0.5x copy+fsync, ours >= 2x datasets path,
peak RSS of ours <= 2 x largest session + 300 MB.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import gzip
import hashlib
import json
import os
import pstats
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import MB, peak_rss_mb

REPO = Path(__file__).resolve().parents[2]
MAP_PATH = REPO / "config" / "datasets" / "ds004884.yaml"

#: Method keys, in display order, with their labels.
METHODS = {
    "copy_fsync": "copy+fsync",
    "copy": "copy",
    "ours": "ours",
    "ours_cdc": "ours+cdc",
    "ours_syspool": "ours+sysalloc",
    "datasets": "datasets",
}
VERIFIED = ("ours", "ours_cdc", "ours_syspool", "datasets")
_PARAMS_FILE = ".bench_shards_params.json"

# --------------------------------------------------------------------------------------
# Synthetic data: spliced level-6 deflate segments of phantom volumes
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """One kind of 3-D volume (a 4-D image repeats volumes of one geometry)."""

    shape: tuple[int, int, int]
    zoom: float
    signal: float
    noise: float
    dtype: str = "int16"
    slab: int = 16  # slices per independently compressed segment
    variants: int = 2  # distinct noise realisations in the pool


GEOMETRIES: dict[str, Geometry] = {
    "T1w": Geometry((192, 256, 256), 1.0, 900.0, 14.0),
    "T2w": Geometry((176, 256, 256), 1.0, 700.0, 14.0),
    "FLAIR": Geometry((176, 256, 256), 1.0, 500.0, 12.0),
    "b0": Geometry((140, 140, 80), 1.5, 600.0, 16.0, slab=20, variants=3),
    "dwi": Geometry((140, 140, 80), 1.5, 250.0, 16.0, slab=20, variants=8),
    "sbref": Geometry((140, 140, 80), 1.5, 550.0, 16.0, slab=20, variants=2),
    "mask": Geometry((176, 256, 256), 1.0, 1.0, 0.0, dtype="uint8", slab=256, variants=1),
}
#: Volumes of the DWI runs of ARC's biggest session (sub-M2181/ses-2085).
ARC_DWI_RUNS = (
    ("epb0p2", "AP", 65),
    ("epb0p2", "AP", 61),
    ("epb5m2", "AP", 43),
    ("epb5m2", "PA", 43),
    ("epb0p2m2", "AP", 11),
    ("epb0p2m2", "PA", 7),
)
SESSIONS = (
    ("M2181", "2085"),
    ("M2001", "1253"),
    ("M2001", "1538"),
    ("M2002", "1441"),
    ("M2003", "3870"),
    ("M2004", "1210"),
    ("M2005", "399"),
    ("M2005", "1009"),
    ("M2007", "540"),
    ("M2008", "975"),
    ("M2009", "2221"),
    ("M2010", "87"),
)
PARTICIPANTS = (
    "participant_id\tsex\tage_at_stroke\trace\twab_days\twab_aq\twab_type",
    "sub-M2001\tF\t38\tw\t1253\t62.5\tBroca",
    "sub-M2002\tM\t56\tb\t1441\t81.2\tAnomic",
    "sub-M2003\tM\t61\tw\t3870\t45.9\tConduction",
    "sub-M2004\tF\t44\tw\t1210\t93.3\tNone",
    "sub-M2005\tM\t70\tn/a\t399\t30.1\tGlobal",
    "sub-M2007\tF\t52\tw\t540\t71.0\tWernicke",
    "sub-M2008\tM\t49\tb\t975\t88.4\tAnomic",
    "sub-M2009\tF\t66\tw\t2221\tn/a\tn/a",
    "sub-M2010\tM\t35\tw\t87\t55.5\tBroca",
    "sub-M2181\tM\t58\tw\t2085\t76.8\tAnomic",
)


@dataclass
class Segment:
    """One independently compressed slab: raw bytes (for the CRC) and deflate bytes."""

    raw: bytes
    deflate: bytes


def _phantom(geom: Geometry, seed: int) -> Any:
    """A smooth ellipsoid 'head' with a low-frequency bias field and Rician-like noise."""
    import numpy as np
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = geom.shape
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    radius = sum(((g - (s - 1) / 2) / (0.42 * s)) ** 2 for g, s in zip(grids, shape, strict=True))
    head = radius < 1.0
    if geom.dtype == "uint8":  # lesion mask: a blob, 0/1
        blob = sum(((g - 0.6 * s) / (0.08 * s)) ** 2 for g, s in zip(grids, shape, strict=True))
        return np.asfortranarray((blob < 1.0).astype(np.uint8))
    low = rng.standard_normal((8, 8, 8))
    field = ndimage.zoom(low, [s / 8 for s in shape], order=1)[: shape[0], : shape[1], : shape[2]]
    img = np.where(head, geom.signal * (1.0 + 0.25 * field), 0.0)
    img += np.abs(rng.normal(0.0, geom.noise, shape))
    return np.asfortranarray(np.clip(img, 0, 32767).astype(np.int16))


def _deflate(raw: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(raw) + comp.flush(zlib.Z_FULL_FLUSH)


def _segments(geom: Geometry, seed: int) -> list[Segment]:
    vol = _phantom(geom, seed)
    raw = vol.tobytes(order="F")
    step = geom.shape[0] * geom.shape[1] * geom.slab * vol.dtype.itemsize
    return [Segment(raw[i : i + step], b"") for i in range(0, len(raw), step)]


def build_pool(threads: int = 2) -> dict[str, list[list[Segment]]]:
    """Compress the slab pool: ``pool[kind][variant][slab]``."""
    pool = {
        kind: [_segments(geom, 1000 * i + v) for v in range(geom.variants)]
        for i, (kind, geom) in enumerate(GEOMETRIES.items())
    }
    segs = [s for variants in pool.values() for var in variants for s in var]
    with ThreadPoolExecutor(threads) as ex:  # zlib releases the GIL
        for seg, comp in zip(segs, ex.map(lambda s: _deflate(s.raw), segs), strict=True):
            seg.deflate = comp
    return pool


def _header(geom: Geometry, n_vols: int, uid: str, tr: float) -> bytes:
    import nibabel as nib
    import numpy as np

    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.dtype(geom.dtype))
    shape = geom.shape + ((n_vols,) if n_vols > 1 else ())
    hdr.set_data_shape(shape)
    hdr.set_zooms((geom.zoom,) * 3 + ((tr,) if n_vols > 1 else ()))
    affine = np.diag([geom.zoom] * 3 + [1.0])
    affine[:3, 3] = [-(s - 1) * geom.zoom / 2 for s in geom.shape]
    hdr.set_sform(affine, code=1)
    hdr.set_qform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    hdr["descrip"] = f"bench_shards {uid}"[:79].encode()
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\x00" * 4


def write_nifti_gz(
    path: Path,
    pool: dict[str, list[list[Segment]]],
    kinds: list[str],
    uid: str,
    rng: Any,
    tr: float = 0.0,
) -> int:
    """Write a valid ``.nii.gz``: header, then one volume per entry of ``kinds``.

    Each slab of each volume is a randomly chosen variant from the pool; the deflate
    segments are concatenated (each ends with a full flush, so none refers to another)
    and closed with an empty final block and the gzip CRC32/ISIZE trailer.
    """
    geom = GEOMETRIES[kinds[0]]
    head = _header(geom, len(kinds), uid, tr)
    crc = zlib.crc32(head)
    size = len(head)
    with open(path, "wb") as fh:
        fh.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip, mtime 0
        fh.write(_deflate(head))
        for kind in kinds:
            variants = pool[kind]
            for j in range(len(variants[0])):
                seg = variants[int(rng.integers(len(variants)))][j]
                fh.write(seg.deflate)
                crc = zlib.crc32(seg.raw, crc)
                size += len(seg.raw)
        fh.write(b"\x03\x00")  # empty final fixed-Huffman block
        fh.write(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    return path.stat().st_size


def _sidecar(**extra: Any) -> bytes:
    base = {"Modality": "MR", "MagneticFieldStrength": 3, "Manufacturer": "Siemens"}
    return json.dumps({**base, **extra}, indent=2).encode()


def _dwi_volume_kinds(n: int) -> list[str]:
    return ["b0" if i % 16 == 0 else "dwi" for i in range(n)]


def _session_weights(n: int) -> list[float]:
    raw = [0.78**i for i in range(n)]
    return [w / sum(raw) for w in raw]


def generate_dataset(root: Path, size_gb: float, n_sessions: int, seed: int) -> None:
    """Write the synthetic BIDS dataset (see module docstring)."""
    import numpy as np

    t0 = time.perf_counter()
    pool = build_pool()
    mean_seg = {k: sum(len(s.deflate) for var in v for s in var) / len(v) for k, v in pool.items()}
    print(
        f"  slab pool compressed in {time.perf_counter() - t0:.1f} s; compressed volume sizes: "
        + ", ".join(f"{k} {v / MB:.1f} MB" for k, v in mean_seg.items()),
        flush=True,
    )
    raw_sizes = {k: sum(len(s.raw) for s in v[0]) for k, v in pool.items()}
    ratio = sum(raw_sizes.values()) / sum(mean_seg.values())
    print(f"  pool compression ratio (raw/gzip-6): {ratio:.2f}", flush=True)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "bench_shards synthetic ARC", "BIDSVersion": "1.8.0"}, indent=2)
    )
    (root / "participants.tsv").write_text("\n".join(PARTICIPANTS) + "\n")
    deriv = root / "derivatives" / "lesion_masks"
    deriv.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text(
        json.dumps({"Name": "lesion masks", "BIDSVersion": "1.8.0", "DatasetType": "derivative"})
    )
    budget_total = size_gb * 1e9
    written = 0
    for i, (weight, (sub, ses)) in enumerate(
        zip(_session_weights(n_sessions), SESSIONS[:n_sessions], strict=True)
    ):
        budget = weight * budget_total
        stem = f"sub-{sub}_ses-{ses}"
        anat = root / f"sub-{sub}" / f"ses-{ses}" / "anat"
        dwi = anat.parent / "dwi"
        anat.mkdir(parents=True)
        dwi.mkdir()
        used = 0
        for kind, acq, run in (
            ("T1w", "tfl3p2", 5),
            ("T2w", "spc3p2", 6),
            ("FLAIR", "spcir2p2", 7),
        ):
            name = f"{stem}_acq-{acq}_run-{run}_{kind}"
            used += write_nifti_gz(anat / f"{name}.nii.gz", pool, [kind], f"{stem} {kind}", rng)
            (anat / f"{name}.json").write_bytes(_sidecar(SeriesDescription=kind))
        if i % 2 == 0:  # a lesion mask drawn on the T2w
            mdir = deriv / f"sub-{sub}" / f"ses-{ses}" / "anat"
            mdir.mkdir(parents=True)
            name = f"{stem}_acq-spc3p2_run-6_T2w_desc-lesion_mask"
            used += write_nifti_gz(mdir / f"{name}.nii.gz", pool, ["mask"], f"{stem} mask", rng)
            (mdir / f"{name}.json").write_bytes(_sidecar(Description="lesion mask"))
        # DWI runs fill the rest of the budget, ARC's volume counts scaled to fit.
        vol_bytes = (mean_seg["dwi"] * 15 + mean_seg["b0"]) / 16
        n_sbref = 2 if budget > 150 * MB else 1
        left = budget - used - n_sbref * mean_seg["sbref"]
        n_vols = max(2, int(left / vol_bytes))
        runs = ARC_DWI_RUNS[: min(len(ARC_DWI_RUNS), 1 + n_vols // 50)]
        scale = n_vols / sum(r[2] for r in runs)
        run_no = 14
        for r, (acq, pe, vols) in enumerate(runs):
            count = max(2, round(vols * scale))
            name = f"{stem}_acq-{acq}_dir-{pe}_run-{run_no + r}_dwi"
            kinds = _dwi_volume_kinds(count)
            used += write_nifti_gz(dwi / f"{name}.nii.gz", pool, kinds, name, rng, tr=5.5)
            bvals = " ".join("0" if k == "b0" else "1000" for k in kinds)
            (dwi / f"{name}.bval").write_text(bvals + "\n")
            vecs = rng.standard_normal((3, count))
            vecs /= np.linalg.norm(vecs, axis=0)
            vecs[:, [k == "b0" for k in kinds]] = 0.0
            (dwi / f"{name}.bvec").write_text(
                "\n".join(" ".join(f"{x:.6f}" for x in row) for row in vecs) + "\n"
            )
            (dwi / f"{name}.json").write_bytes(
                _sidecar(PhaseEncodingDirection="j-" if pe == "AP" else "j", RepetitionTime=5.5)
            )
        for s in range(n_sbref):
            name = f"{stem}_acq-epse2p2_dir-AP_run-{30 + s}_sbref"
            used += write_nifti_gz(dwi / f"{name}.nii.gz", pool, ["sbref"], name, rng)
            (dwi / f"{name}.json").write_bytes(_sidecar(SeriesDescription="sbref"))
        written += used
        print(f"  {stem}: {used / MB:7.1f} MB", flush=True)
    del pool
    gc.collect()
    print(
        f"  generated {written / 1e9:.2f} GB of .nii.gz in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )


# --------------------------------------------------------------------------------------
# Child processes: one method over every session, timed per session
# --------------------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    method = spec["method"]
    if method == "rss_pyarrow":
        import pyarrow
        import pyarrow.parquet

        return {"imports_mb": peak_rss_mb(), "peak_mb": peak_rss_mb(), "times": {}}
    import pyarrow  # noqa: F401
    from bids2hub.index.manifest import load_index, shard_id
    from bids2hub.index.phenotype import read_participants
    from bids2hub.shards.colmap import load_map
    from bids2hub.shards.writer import ShardOptions, write_shard

    root, out = Path(spec["root"]), Path(spec["out"])
    fsync = spec["fsync"]
    manifest, _ = load_index(root, Path(spec["cache"]), refresh=False)
    cmap = load_map(MAP_PATH)
    participants = read_participants(root / "participants.tsv")
    keys = [(sub, ses) for sub, ses in spec["sessions"]]
    run_one: Any
    if method in ("copy", "copy_fsync"):

        def run_one(sub: str, ses: str) -> None:
            dest = out / shard_id(sub, ses)
            dest.mkdir(parents=True)
            for rec in manifest.files_for(sub, ses):
                target = dest / rec.name
                shutil.copyfile(root / rec.path, target)
                if method == "copy_fsync" and fsync:
                    _fsync(target)

    elif method in ("ours", "ours_cdc", "ours_syspool"):
        if not fsync:
            os.fsync = lambda fd: None  # bids2hub.fsutil.atomic_path calls os.fsync
        options = ShardOptions(content_defined_chunking=method == "ours_cdc")

        def run_one(sub: str, ses: str) -> None:
            dest = out / f"{shard_id(sub, ses)}.parquet"
            write_shard(manifest, cmap, sub, ses, participants, dest, options)

    elif method == "datasets":
        run_one = _datasets_runner(manifest, cmap, participants, out, fsync)
    else:
        raise SystemExit(f"unknown method {method}")
    out.mkdir(parents=True, exist_ok=True)
    imports_mb = peak_rss_mb()
    times: dict[str, float] = {}
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    profiler = cProfile.Profile() if spec.get("profile") else None
    for sub, ses in keys:
        t0 = time.perf_counter()
        if profiler:
            profiler.runcall(run_one, sub, ses)
        else:
            run_one(sub, ses)
        times[shard_id(sub, ses)] = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    if profiler:
        profiler.dump_stats(spec["profile"])
    return {
        "imports_mb": imports_mb,
        "peak_mb": peak_rss_mb(),
        "times": times,
        "cpu": {
            "user": ru1.ru_utime - ru0.ru_utime,
            "sys": ru1.ru_stime - ru0.ru_stime,
            "minflt": ru1.ru_minflt - ru0.ru_minflt,
        },
    }


def _session_children(
    method: str, base: dict[str, Any], sessions: list[SessionInfo]
) -> dict[str, Any]:
    """One fresh child per session (as one Snakemake job per shard); merged results."""
    merged: dict[str, Any] = {"times": {}, "peak_mb": {}, "imports_mb": {}, "cpu": {}}
    env = {"ARROW_DEFAULT_MEMORY_POOL": "system"} if method == "ours_syspool" else {}
    for info in sessions:
        sub, ses = info.shard.split("_", 1)
        spec = {**base, "method": method, "sessions": [[sub[4:], ses[4:]]], "env": env}
        res = run_child(spec)
        merged["times"][info.shard] = res["times"][info.shard]
        merged["peak_mb"][info.shard] = res["peak_mb"]
        merged["imports_mb"][info.shard] = res["imports_mb"]
        merged["cpu"][info.shard] = res["cpu"]
    return merged


def _datasets_runner(manifest: Any, cmap: Any, participants: Any, out: Path, fsync: bool) -> Any:
    """``push_to_hub``'s embedding and parquet writing, one file per session."""
    import datasets
    from bids2hub.index.manifest import shard_id
    from bids2hub.index.phenotype import convert
    from bids2hub.shards.colmap import sidecar_name
    from bids2hub.shards.writer import plan_session
    from datasets import Dataset, Features, List, Nifti, Value
    from datasets.arrow_writer import get_writer_batch_size_from_features
    from datasets.table import embed_table_storage

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    root = manifest.root
    as_paths: dict[str, Any] = {}
    final: dict[str, Any] = {}
    for col in cmap.columns:
        if col.kind == "images":
            as_paths[col.name], final[col.name] = List(Value("string")), List(Nifti())
        elif col.kind == "image":
            as_paths[col.name], final[col.name] = Value("string"), Nifti()
        elif col.kind == "companion":
            as_paths[col.name] = final[col.name] = List(Value("string"))
        elif col.kind == "phenotype":
            as_paths[col.name] = final[col.name] = Value(col.dtype)
        else:
            as_paths[col.name] = final[col.name] = Value("string")
    for col in cmap.image_columns():
        name = sidecar_name(col)
        typ = List(Value("string")) if col.kind == "images" else Value("string")
        as_paths[name] = final[name] = typ
    path_features, features = Features(as_paths), Features(final)
    batch_size = get_writer_batch_size_from_features(features)

    def text(path: Path) -> str | None:
        return path.read_text(encoding="utf-8") if path.is_file() else None

    def run_one(sub: str, ses: str) -> None:
        plan = plan_session(manifest, cmap, sub, ses)
        pheno = participants.get(sub, {})
        row: dict[str, list[Any]] = {}
        for col in cmap.columns:
            if col.kind == "subject":
                row[col.name] = [f"sub-{sub}"]
            elif col.kind == "session":
                row[col.name] = [f"ses-{ses}"]
            elif col.kind == "images":
                row[col.name] = [[str(root / r.path) for r in plan.images[col.name]]]
            elif col.kind == "image":
                recs = plan.images[col.name]
                row[col.name] = [str(root / recs[0].path) if recs else None]
            elif col.kind == "companion":
                row[col.name] = [
                    [
                        (root / f"{r.path[: -len(r.extension)]}{col.extension}").read_text().strip()
                        for r in plan.images[col.of]
                    ]
                ]
            elif col.kind == "entity":
                recs = plan.images[col.of]
                value = recs[0].entity(col.entity) if recs else ""
                row[col.name] = [col.mapping.get(value, value) or None]
            elif col.kind == "phenotype":
                row[col.name] = [convert(pheno.get(col.source), col.dtype, col.name)]
        for col in cmap.image_columns():
            texts = [
                text(root / f"{r.path[: -len(r.extension)]}.json") for r in plan.images[col.name]
            ]
            value = texts if col.kind == "images" else (texts[0] if texts else None)
            row[sidecar_name(col)] = [value]
        ds = Dataset.from_dict(row, features=path_features)
        ds = ds.cast(features)
        fmt = ds.format
        ds = ds.with_format("arrow").map(
            embed_table_storage, batched=True, batch_size=batch_size, keep_in_memory=True
        )
        ds = ds.with_format(**fmt)
        dest = out / f"{shard_id(sub, ses)}.parquet"
        ds.to_parquet(dest, batch_size=batch_size)
        if fsync:
            _fsync(dest)

    return run_one


# --------------------------------------------------------------------------------------
# Parent: warm-up, verification, repeats, report
# --------------------------------------------------------------------------------------


@dataclass
class SessionInfo:
    """Source bytes of one session."""

    shard: str
    nbytes: int
    nfiles: int
    image_sha: dict[str, str]  # file name -> sha256 of the NIfTI files


def warm_and_hash(root: Path, cache: Path) -> list[SessionInfo]:
    """Index the tree, read every session file once (page cache), hash and check images."""
    from bids2hub.index.manifest import load_index, shard_id
    from bids2hub.nifti import check_nifti

    manifest, _ = load_index(root, cache)
    out = []
    for sub, ses in manifest.shard_keys():
        shas: dict[str, str] = {}
        nbytes = 0
        recs = manifest.files_for(sub, ses)
        for rec in recs:
            data = (root / rec.path).read_bytes()
            nbytes += len(data)
            if rec.is_image:
                check_nifti(data, rec.path)
                shas[rec.name] = hashlib.sha256(data).hexdigest()
        out.append(SessionInfo(shard_id(sub, ses), nbytes, len(recs), shas))
    # One full decompression: CRC, ISIZE and nibabel agree with the spliced streams.
    import nibabel as nib

    smallest = min(
        (r for r in manifest.records if r.is_image and r.suffix == "dwi"), key=lambda r: r.size
    )
    raw = gzip.decompress((root / smallest.path).read_bytes())
    img = nib.Nifti1Image.from_bytes(raw)
    assert img.get_fdata().shape == img.shape, smallest.path
    return out


def verify_shards(out: Path, sessions: list[SessionInfo]) -> str:
    """Read every shard back and compare each embedded image's sha256 with its source."""
    import pyarrow.parquet as pq

    checked = 0
    for info in sessions:
        table = pq.read_table(out / f"{info.shard}.parquet")
        found: dict[str, str] = {}
        for name in table.column_names:
            for cell in _nifti_cells(table.column(name).to_pylist()):
                if cell.get("bytes") is None:
                    raise AssertionError(f"{info.shard}/{name}: cell without bytes {cell}")
                base = os.path.basename(cell["path"])
                found[base] = hashlib.sha256(cell["bytes"]).hexdigest()
        if found != info.image_sha:
            bad = sorted(set(found.items()) ^ set(info.image_sha.items()))[:3]
            raise AssertionError(f"{out.name}/{info.shard}: embedded bytes differ: {bad}")
        checked += len(found)
        del table
    return f"{checked} images byte-identical"


def _nifti_cells(values: list[Any]) -> Iterator[dict[str, Any]]:
    for v in values:
        if isinstance(v, dict) and set(v) == {"bytes", "path"}:
            yield v
        elif isinstance(v, list):
            yield from _nifti_cells(v)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one method in a fresh interpreter; return its JSON result."""
    env = dict(os.environ)
    hf = Path(spec.get("workdir", tempfile.gettempdir())) / "hf_home"
    env.update(HF_HOME=str(hf), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.update(spec.get("env", {}))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['method']} failed:\n{proc.stdout}\n{proc.stderr}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _fmt_ratio(x: float) -> str:
    return f"{x:5.2f}x"


def main(argv: list[str] | None = None) -> int:
    """Entry point (see module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.2, help="total .nii.gz size")
    parser.add_argument("--sessions", type=int, default=9, help=f"1..{len(SESSIONS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method (median)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a new /tmp dir")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (and reuse data)")
    parser.add_argument("--no-fsync", action="store_true", help="no fsync in any method")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile 'ours' (one more pass) and print it"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(_child(json.loads(args.child))), flush=True)
        return 0
    if not 1 <= args.sessions <= len(SESSIONS):
        parser.error(f"--sessions must be 1..{len(SESSIONS)}")
    methods = [m for m in args.methods.split(",") if m]
    if unknown := set(methods) - set(METHODS):
        parser.error(f"unknown methods {sorted(unknown)}")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_shards_", dir="/tmp"))
    workdir.mkdir(parents=True, exist_ok=True)
    root, cache = workdir / "bids", workdir / "index" / "manifest.parquet"
    params = {"size_gb": args.size_gb, "sessions": args.sessions, "seed": args.seed, "v": 1}
    try:
        t_start = time.perf_counter()
        stamp = root / _PARAMS_FILE
        if not (stamp.is_file() and json.loads(stamp.read_text()) == params):
            shutil.rmtree(root, ignore_errors=True)
            cache.unlink(missing_ok=True)
            print(f"generating {args.size_gb} GB synthetic BIDS dataset in {root}", flush=True)
            generate_dataset(root, args.size_gb, args.sessions, args.seed)
            stamp.write_text(json.dumps(params))
        else:
            print(f"reusing the dataset in {root}", flush=True)
        t0 = time.perf_counter()
        sessions = warm_and_hash(root, cache)
        total = sum(s.nbytes for s in sessions)
        print(
            f"page cache warmed: read all {sum(s.nfiles for s in sessions)} files "
            f"({total / 1e9:.2f} GB) once, sha256 + check_nifti of every image, "
            f"{time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        results: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
        verified: dict[str, str] = {}
        fsync = not args.no_fsync
        rss_base = run_child({"method": "rss_pyarrow", "workdir": str(workdir)})
        for rep in range(args.repeats):
            for method in methods:
                out = workdir / "out" / method
                shutil.rmtree(out, ignore_errors=True)
                base = {
                    "root": str(root),
                    "cache": str(cache),
                    "out": str(out),
                    "fsync": fsync,
                    "workdir": str(workdir),
                }
                res = _session_children(method, base, sessions)
                results[method].append(res)
                secs = sum(res["times"].values())
                print(
                    f"  repeat {rep + 1}/{args.repeats} {METHODS[method]:<14} "
                    f"{secs:7.2f} s  {total / MB / secs:7.1f} MB/s  "
                    f"max peak RSS {max(res['peak_mb'].values()):7.1f} MB",
                    flush=True,
                )
                if rep == 0 and method in VERIFIED:
                    verified[method] = verify_shards(out, sessions)
                shutil.rmtree(out, ignore_errors=True)
        report(args, sessions, results, verified, rss_base, fsync)
        if args.profile:
            profile_ours(workdir, root, cache, sessions, fsync)
        print(f"\nbenchmark wall time {time.perf_counter() - t_start:.0f} s")
    finally:
        if args.keep:
            shutil.rmtree(workdir / "out", ignore_errors=True)
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def profile_ours(
    workdir: Path, root: Path, cache: Path, sessions: list[SessionInfo], fsync: bool
) -> None:
    """cProfile ``write_shard`` (fresh child per session); print the top functions."""
    out, prof = workdir / "out" / "profile", workdir / "profile"
    prof.mkdir(exist_ok=True)
    stats: pstats.Stats | None = None
    for info in sessions:
        sub, ses = info.shard.split("_", 1)
        dump = prof / f"{info.shard}.prof"
        spec = {
            "method": "ours",
            "root": str(root),
            "cache": str(cache),
            "out": str(out),
            "fsync": fsync,
            "workdir": str(workdir),
            "sessions": [[sub[4:], ses[4:]]],
            "profile": str(dump),
        }
        run_child(spec)
        if stats is None:
            stats = pstats.Stats(str(dump))
        else:
            stats.add(str(dump))
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(prof, ignore_errors=True)
    assert stats is not None
    print("\n== cProfile of ours (all sessions, one fresh process each), top 10 by own time ==")
    stats.files = []  # do not list the dump files
    stats.strip_dirs().sort_stats("tottime").print_stats(10)


def report(
    args: argparse.Namespace,
    sessions: list[SessionInfo],
    results: dict[str, list[dict[str, Any]]],
    verified: dict[str, str],
    rss_base: dict[str, Any],
    fsync: bool,
) -> None:
    """Print the throughput and memory tables."""
    methods = list(results)

    def med(method: str, shard: str | None, key: str = "times") -> float:
        runs = results[method]
        if shard is None:
            return statistics.median(sum(r[key].values()) for r in runs)
        return statistics.median(r[key][shard] for r in runs)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    total = sum(s.nbytes for s in sessions)
    print(
        f"\n== shard writing throughput, MB/s (source bytes / seconds in the call), median of "
        f"{args.repeats}; one fresh process per session; page cache warm; "
        f"fsync {'on' if fsync else 'off'} =="
    )
    ratios = [
        (label, a, b)
        for label, a, b in (
            ("ours/copy+fs", "ours", "copy_fsync"),
            ("ours/datasets", "ours", "datasets"),
            ("cdc/datasets", "ours_cdc", "datasets"),
        )
        if a in results and b in results
    ]
    head = f"{'session':<20}{'MB':>7}{'files':>6}" + "".join(f"{METHODS[m]:>14}" for m in methods)
    print(head + "".join(f"{r[0]:>14}" for r in ratios))
    rows: list[tuple[str, int, int, str | None]] = [
        (s.shard, s.nbytes, s.nfiles, s.shard) for s in sessions
    ]
    rows.append(("TOTAL", total, sum(s.nfiles for s in sessions), None))
    for label, nbytes, nfiles, key in rows:
        line = f"{label:<20}{nbytes / MB:7.1f}{nfiles:6d}"
        line += "".join(f"{nbytes / MB / med(m, key):14.1f}" for m in methods)
        line += "".join(f"{_fmt_ratio(med(b, key) / med(a, key)):>14}" for _, a, b in ratios)
        print(line)

    print("\n== total seconds of each repeat ==")
    for m in methods:
        secs = [sum(r["times"].values()) for r in results[m]]
        print(f"{METHODS[m]:<16}" + " ".join(f"{s:7.2f}" for s in secs))

    print("\n== CPU of the write calls, all sessions, median of the repeats (seconds) ==")
    print(f"{'method':<16}{'wall':>8}{'user':>8}{'sys':>8}{'minor faults':>14}")
    for m in methods:
        cpu = [
            {k: sum(c[k] for c in r["cpu"].values()) for k in ("user", "sys", "minflt")}
            for r in results[m]
        ]
        print(
            f"{METHODS[m]:<16}{med(m, None):8.2f}"
            f"{statistics.median(c['user'] for c in cpu):8.2f}"
            f"{statistics.median(c['sys'] for c in cpu):8.2f}"
            f"{statistics.median(c['minflt'] for c in cpu):14.0f}"
        )

    print(
        f"\n== peak RSS in MB (VmHWM of the fresh child that wrote the session), "
        f"median of {args.repeats} =="
    )
    print(
        f"python + import pyarrow: {rss_base['peak_mb']:.1f} MB; after the imports of each "
        "method: "
        + ", ".join(
            f"{METHODS[m]} {statistics.median(v for r in results[m] for v in r['imports_mb'].values()):.0f}"
            for m in methods
        )
    )
    print(
        f"{'session':<20}{'MB':>7}{'2xMB+300':>9}"
        + "".join(f"{METHODS[m]:>14}" for m in methods)
        + f"{'ours/MB':>9}"
    )
    for s in sessions:
        size = s.nbytes / MB
        line = f"{s.shard:<20}{size:7.1f}{2 * size + 300:9.0f}"
        line += "".join(f"{med(m, s.shard, 'peak_mb'):14.1f}" for m in methods)
        if "ours" in results:
            line += f"{med('ours', s.shard, 'peak_mb') / size:8.2f}x"
        print(line)

    largest = max(sessions, key=lambda s: s.nbytes)
    big = largest.nbytes / MB
    print("\n== targets ==")
    # (label, baseline, measured, target ratio or None): ratio = measured / baseline throughput
    ratios = [
        ("ours / copy+fsync throughput", "copy_fsync", "ours", 0.5),
        ("ours / copy (no fsync)", "copy", "ours", None),
        ("ours / datasets path", "datasets", "ours", 2.0),
        ("ours+cdc / datasets (both CDC)", "datasets", "ours_cdc", 2.0),
    ]
    for label, base, ours, target in ratios:
        if base in results and ours in results:
            r = med(base, None) / med(ours, None)
            tail = "(information)" if target is None else f"(target >= {target:g}x)"
            mark = "" if target is None else f"  {verdict(r >= target)}"
            print(f"{label:<33}{r:5.2f}x  {tail}{mark}")
    for m in ("ours", "ours_cdc", "ours_syspool"):
        if m in results:
            peak = med(m, largest.shard, "peak_mb")
            limit = 2 * big + 300
            print(
                f"{METHODS[m] + ' peak RSS (largest session)':<40}{peak:5.0f} MB "
                f"(target <= 2 x {big:.0f} + 300 = {limit:.0f} MB)  {verdict(peak <= limit)}"
            )
    if "datasets" in results:
        peak = med("datasets", largest.shard, "peak_mb")
        label = "datasets peak RSS (largest session)"
        print(f"{label:<40}{peak:5.0f} MB ({peak / big:.2f} x the session)")
    if "ours" in results and "ours_cdc" in results:
        cost = 100 * (1 - med("ours", None) / med("ours_cdc", None))
        print(f"content-defined chunking cost    {cost:5.1f} % of ours' throughput")
    if "ours" in results and "ours_syspool" in results:
        r = med("ours", None) / med("ours_syspool", None)
        print(f"ours with the system allocator   {r:5.2f}x ours' throughput (information)")
    for m, msg in verified.items():
        print(f"verified {METHODS[m]:<9} (read back with pyarrow, sha256 per cell): {msg}")


if __name__ == "__main__":
    sys.exit(main())
