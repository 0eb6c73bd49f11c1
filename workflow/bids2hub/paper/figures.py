"""Figures of the paper artifacts, PNG and SVG with deterministic bytes.

matplotlib runs on the Agg backend. PNGs are written without the ``Software``
text chunk, SVGs without ``Date`` and with a fixed ``svg.hashsalt`` (the ids of
clip paths), so the same data give the same bytes. Jittered points use a seeded
generator.

The lesion-overlap map places every mask on the MNI152 2009 template's 2 mm grid
that nilearn ships (no download) through the masks' affines, nearest neighbour,
without registration: it is a frequency map in scanner (world) coordinates,
meaningful as far as the subjects' images are aligned with that space (the
demo's are, up to a small head transform; ARC's native-space masks only roughly).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.fsutil import atomic_path
from bids2hub.index.manifest import Manifest
from bids2hub.paper.cohort import Volume
from bids2hub.validate.counts import count_kind, count_names, found_counts

#: rcParams that make the output independent of the machine's matplotlibrc.
RC = {
    "svg.hashsalt": "bids2hub",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "image.interpolation": "nearest",
    "path.simplify": True,
}
PNG_METADATA = {"Software": None}
SVG_METADATA = {"Date": None, "Creator": None}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(RC)
    return plt


def save_figure(fig: Any, stem: Path, *, svg: bool = True) -> list[Path]:
    """Write ``stem.png`` (and ``stem.svg``) atomically and close the figure."""
    plt = _plt()
    written = []
    formats = (("png", PNG_METADATA), ("svg", SVG_METADATA)) if svg else (("png", PNG_METADATA),)
    try:
        for fmt, meta in formats:
            dest = stem.with_name(f"{stem.name}.{fmt}")
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, metadata=meta, bbox_inches=None)
            with atomic_path(dest) as tmp:
                tmp.write_bytes(buf.getvalue())
            written.append(dest)
    finally:
        plt.close(fig)
    return written


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------- sessions


def plot_sessions(manifest: Manifest, keys: Sequence[tuple[str, str]], stem: Path) -> list[Path]:
    """Sessions per subject (histogram) and modality coverage (sessions and images per kind)."""
    plt = _plt()
    per_subject: dict[str, int] = {}
    for sub, _ses in keys:
        per_subject[sub] = per_subject.get(sub, 0) + 1
    counts = found_counts(manifest, keys)
    kinds = [
        n.removeprefix("n_sessions_")
        for n in count_names(
            {count_kind(r) or "" for k in keys for r in manifest.files_for(*k)} - {""}
        )
        if n.startswith("n_sessions_")
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    if per_subject:
        values = np.array(sorted(per_subject.values()))
        bins = np.arange(0.5, values.max() + 1.5)
        ax1.hist(values, bins=bins, color="#4c72b0", edgecolor="white")
        ax1.set_xticks(np.arange(1, values.max() + 1))
    else:
        _empty(ax1, "no sessions")
    ax1.set_xlabel("sessions per subject")
    ax1.set_ylabel("subjects")
    ax1.set_title(f"{len(per_subject)} subjects, {len(keys)} sessions")
    n_sess = [counts.get(f"n_sessions_{k}", 0) for k in kinds]
    n_runs = [counts.get(f"n_runs_{k}", 0) for k in kinds]
    y = np.arange(len(kinds))
    ax2.barh(y - 0.2, n_sess, height=0.4, color="#4c72b0", label="sessions with ≥1 image")
    ax2.barh(y + 0.2, n_runs, height=0.4, color="#dd8452", label="images (runs)")
    ax2.set_yticks(y, kinds)
    ax2.invert_yaxis()
    ax2.set_xlabel("count")
    ax2.set_title("modality coverage")
    ax2.legend(loc="lower right", fontsize=7, frameon=False)
    return save_figure(fig, stem)


# ------------------------------------------------------------------ volumes


def _jitter(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.12, 0.12, n)


def plot_lesion_volumes(volumes: Sequence[Volume], stem: Path) -> list[Path]:
    """Distribution of lesion volumes, expert and predicted (box plot and points)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 3.4), layout="constrained")
    groups = [(s, [v.volume_ml for v in volumes if v.source == s]) for s in ("expert", "predicted")]
    groups = [(s, vals) for s, vals in groups if vals]
    if not groups:
        _empty(ax, "no lesion masks")
    else:
        ax.boxplot(
            [vals for _, vals in groups],
            positions=range(1, len(groups) + 1),
            widths=0.5,
            showfliers=False,
            medianprops={"color": "black"},
        )
        for i, (source, vals) in enumerate(groups, start=1):
            colour = "#55a868" if source == "expert" else "#c44e52"
            ax.scatter(i + _jitter(len(vals), i), vals, s=14, color=colour, alpha=0.8, zorder=3)
        ax.set_xticks(range(1, len(groups) + 1), [f"{s}\n(n={len(v)})" for s, v in groups])
        ax.set_ylabel("lesion volume (mL)")
    ax.set_title("lesion volume")
    return save_figure(fig, stem)


def plot_volume_agreement(volumes: Sequence[Volume], stem: Path) -> list[Path]:
    """Predicted against expert volume (coloured by Dice) and the Dice of each subject."""
    plt = _plt()
    experts = {(v.subject, v.session): v.volume_ml for v in volumes if v.source == "expert"}
    pairs = [
        (v, experts[(v.subject, v.session)])
        for v in volumes
        if v.source == "predicted" and v.dice is not None and (v.subject, v.session) in experts
    ]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    if not pairs:
        _empty(ax1, "no subject with an expert mask of the segmented session")
        _empty(ax2, "no Dice")
    else:
        ex = np.array([e for _, e in pairs])
        pr = np.array([v.volume_ml for v, _ in pairs])
        dice = np.array([v.dice for v, _ in pairs], dtype=float)
        top = float(max(ex.max(), pr.max())) * 1.1 or 1.0
        ax1.plot([0, top], [0, top], color="0.6", lw=1, ls="--", label="identity")
        sc = ax1.scatter(ex, pr, c=dice, cmap="viridis", vmin=0, vmax=1, s=22, zorder=3)
        fig.colorbar(sc, ax=ax1, label="Dice")
        ax1.set_xlim(0, top)
        ax1.set_ylim(0, top)
        ax1.set_xlabel("expert volume (mL)")
        ax1.set_ylabel("predicted volume (mL)")
        ax1.set_title(f"predicted vs expert (n={len(pairs)})")
        order = np.argsort(-dice, kind="stable")
        labels = [f"sub-{pairs[i][0].subject}" for i in order]
        ax2.bar(np.arange(len(order)), dice[order], color="#4c72b0")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("Dice")
        ax2.set_title(f"Dice per subject (median {np.median(dice):.3f})")
        if len(labels) <= 40:
            ax2.set_xticks(np.arange(len(labels)), labels, rotation=90, fontsize=7)
        else:
            ax2.set_xticks([])
            ax2.set_xlabel("subjects, by Dice")
    return save_figure(fig, stem)


# ------------------------------------------------------------------ overlap


def template() -> Any:
    """The MNI152 2009 template on its 2 mm grid (nilearn package data, no download)."""
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2)


def overlap_map(masks: Sequence[Path], ref: Any) -> np.ndarray:
    """Number of masks covering each voxel of ``ref``'s grid (nearest neighbour, by affines)."""
    from bids2hub.segment.prepare import read_image
    from bids2hub.segment.qc import resample_nearest

    total = np.zeros(ref.shape[:3], dtype=np.uint16)
    for path in masks:
        img, _ = read_image(Path(path), str(path))
        total += resample_nearest(img, ref).astype(np.uint16)
    return total


def write_overlap_nifti(total: np.ndarray, ref: Any, dest: Path) -> None:
    """The frequency map as a NIfTI on the template grid (gzip without a timestamp)."""
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(total.astype(np.uint16), ref.affine)
    img.header.set_xyzt_units("mm")
    with atomic_path(dest) as tmp:
        raw = img.to_bytes()
        tmp.write_bytes(gzip.compress(raw, compresslevel=6, mtime=0))


def plot_overlap(
    maps: Sequence[tuple[str, np.ndarray, int]], ref: Any, stem: Path, n_slices: int = 7
) -> list[Path]:
    """Axial slices of each frequency map (label, counts, number of masks) over the template."""
    plt = _plt()
    anat = np.asanyarray(ref.dataobj).astype(np.float32)
    rows = max(len(maps), 1)
    fig, axes = plt.subplots(
        rows, n_slices, figsize=(1.35 * n_slices + 0.8, 1.7 * rows + 0.4), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    vmax = max([int(m.max()) for _, m, _ in maps] + [2])
    image = None
    for r, (label, counts, n) in enumerate(maps or [("no masks", np.zeros(anat.shape), 0)]):
        zs = np.nonzero(counts.sum(axis=(0, 1)))[0]
        lo, hi = (int(zs.min()), int(zs.max())) if zs.size else (20, anat.shape[2] - 20)
        picks = np.linspace(lo, hi, n_slices).round().astype(int)
        for c, z in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(anat[:, :, z].T, cmap="gray", origin="lower")
            over = np.ma.masked_equal(counts[:, :, z].T, 0)
            image = ax.imshow(over, cmap="autumn", vmin=1, vmax=vmax, origin="lower", alpha=0.9)
            zmm = float((ref.affine @ np.array([0, 0, z, 1]))[2])
            ax.set_title(f"z={zmm:.0f}", fontsize=7)
            ax.set_axis_off()
        axes[r, 0].text(
            -0.1, 0.5, f"{label}\n(n={n})", transform=axes[r, 0].transAxes,
            rotation=90, ha="right", va="center", fontsize=8,
        )  # fmt: skip
    if image is not None:
        fig.colorbar(image, ax=axes[:, -1], shrink=0.8, label="masks")
    fig.suptitle("lesion overlap (MNI152 2 mm grid, by affines; L on the left)", fontsize=9)
    return save_figure(fig, stem)


# --------------------------------------------------------------- QC overlay


def plot_qc_overlay(trace: Path, mask: Path, title: str, dest: Path) -> list[Path]:
    """Mask contour on the b~1000 trace: sagittal, coronal, axial slices through the
    lesion's centroid (the volume's centre for an empty mask). PNG only."""
    import nibabel as nib

    from bids2hub.segment.prepare import read_image

    plt = _plt()
    t_img, _ = read_image(trace, str(trace))
    m_img, _ = read_image(mask, str(mask))
    t_img, m_img = nib.as_closest_canonical(t_img), nib.as_closest_canonical(m_img)
    t = np.asarray(t_img.dataobj, dtype=np.float32)
    m = np.asarray(m_img.dataobj) > 0
    if t.shape[:3] != m.shape[:3]:
        from bids2hub.errors import BidsError

        raise BidsError(f"{mask}: shape {m.shape} differs from the trace {trace} {t.shape}")
    t, m = t.reshape(t.shape[:3]), m.reshape(m.shape[:3])
    zooms = t_img.header.get_zooms()[:3]
    if m.any():
        centre = [round(float(c)) for c in np.argwhere(m).mean(axis=0)]
        note = f"{int(m.sum())} voxels"
    else:
        centre = [s // 2 for s in m.shape]
        note = "empty mask"
    lo, hi = np.percentile(t[t > 0], (1, 99.9)) if (t > 0).any() else (0.0, 1.0)
    views = (
        ("sagittal", t[centre[0], :, :], m[centre[0], :, :], zooms[2] / zooms[1]),
        ("coronal", t[:, centre[1], :], m[:, centre[1], :], zooms[2] / zooms[0]),
        ("axial", t[:, :, centre[2]], m[:, :, centre[2]], zooms[1] / zooms[0]),
    )
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3), layout="constrained")
    for ax, (name, img, msk, aspect) in zip(axes, views, strict=True):
        ax.imshow(img.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect)
        if msk.any():
            ax.contour(msk.T.astype(np.uint8), levels=[0.5], colors="#ff3030", linewidths=1.0)
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    fig.suptitle(f"{title}: {note}, centroid voxel {tuple(centre)} (RAS)", fontsize=9)
    return save_figure(fig, dest.with_suffix(""), svg=False)
