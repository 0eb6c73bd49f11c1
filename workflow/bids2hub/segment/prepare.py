"""Job-time preparation of the DWI a segmenter reads: the b~1000 trace and the ADC.

:func:`prepare_dwi`, run by a job, turns the run the segmentation plan chose
(:mod:`bids2hub.segment.plan`) into the 3D images DeepISLES reads: the b~1000 trace
(geometric mean of the shell's volumes) and the ADC in mm^2/s, on the DWI's grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path
from bids2hub.segment.plan import Shell, find_shells, parse_bvals

#: ADC values are clipped to [0, ADC_MAX] mm^2/s (free water is ~3e-3 at 37 C).
ADC_MAX = 0.005


def read_image(path: Path, name: str, dtype: Any = None) -> tuple[Any, np.ndarray]:
    """Load a NIfTI image and its data; a broken file raises :class:`BidsError` naming ``name``.

    ``dtype`` None keeps the stored type (int16 DWI stays int16: half the memory).
    """
    import nibabel as nib

    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj) if dtype is None else np.asarray(img.dataobj, dtype)
    except Exception as exc:  # nibabel, gzip and zlib raise many unrelated types
        raise BidsError(f"{name}: unreadable image ({type(exc).__name__}: {exc})") from None
    return img, data


def _save_3d(data: np.ndarray, ref: Any, dest: Path) -> None:
    """Write float32 ``data`` on the grid of nibabel image ``ref`` (3D), atomically."""
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(data.astype(np.float32), ref.affine)
    img.set_qform(ref.get_qform(), code=int(ref.header["qform_code"]) or 1)
    img.set_sform(ref.get_sform(), code=int(ref.header["sform_code"]) or 1)
    img.header.set_xyzt_units(*ref.header.get_xyzt_units())
    with atomic_path(dest) as tmp:
        tmp.write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))


def compute_trace_adc(
    data: np.ndarray, bvals: Sequence[float], shell: Shell, b0: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace, ADC (mm^2/s) and S0 from a 4D DWI array.

    trace = geometric mean of the shell's volumes, S0 = mean of the b0 volumes,
    ADC = -ln(trace / S0) / b with b the shell's mean b-value; where either
    signal is not positive the ADC is 0; clipped to [0, ADC_MAX]. Works one
    volume at a time in float32, so memory is the input plus a few volumes.
    """
    shape = data.shape[:3]
    s0 = np.zeros(shape, np.float32)
    for i in b0:
        s0 += data[..., i]
    s0 /= len(b0)
    log_sum = np.zeros(shape, np.float32)
    positive = np.ones(shape, bool)
    for i in shell.volumes:
        vol = data[..., i].astype(np.float32)
        positive &= vol > 0
        np.maximum(vol, np.float32(1e-6), out=vol)
        log_sum += np.log(vol)
    log_trace = log_sum / len(shell.volumes)
    trace = np.exp(log_trace)
    trace[~positive] = 0.0
    valid = positive & (s0 > 0)
    adc = np.zeros(shape, np.float32)
    b = float(np.mean([bvals[i] for i in shell.volumes]))
    adc[valid] = (np.log(s0[valid]) - log_trace[valid]) / b
    np.clip(adc, 0.0, ADC_MAX, out=adc)
    return trace, adc, s0


def prepare_dwi(root: Path, target: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``dwi.nii.gz`` (trace) and ``adc.nii.gz`` for one plan target.

    Parameters
    ----------
    root
        BIDS dataset root.
    target
        The subject's entry of the segmentation plan.
    out_dir
        ``{out_dir}/work/deepisles/sub-<label>``.

    Returns
    -------
    dict
        What was used (also written to ``prepared.json`` by the caller).

    Raises
    ------
    BidsError
        The DWI no longer matches its b-values, or has no usable volumes.
    """
    img, data = read_image(root / target["dwi"], target["dwi"])
    info: dict[str, Any] = {
        "mode": target["mode"],
        "session": target["session"],
        "dwi": target["dwi"],
    }
    if target["mode"] == "precomputed":
        adc_img, adc = read_image(root / target["adc"], target["adc"], np.float32)
        trace, adc = np.squeeze(data.astype(np.float32)), np.squeeze(adc)
        if trace.ndim != 3 or adc.shape != trace.shape:
            raise BidsError(
                f"{target['adc']}: ADC shape {adc.shape} does not match the trace {trace.shape}"
            )
        if not np.allclose(adc_img.affine, img.affine, atol=1e-3):
            raise BidsError(f"{target['adc']}: not on the grid of {target['dwi']}")
        # Scanners store ADC in 1e-6 mm^2/s; tissue is ~1e-3 mm^2/s.
        scale = 1e-6 if adc.any() and float(np.percentile(adc[adc > 0], 99)) > 0.1 else 1.0
        adc = np.clip(adc * scale, 0.0, ADC_MAX)
        info.update({"adc": target["adc"], "adc_scale": scale})
    else:
        bvals = parse_bvals((root / target["bval"]).read_text(encoding="utf-8"), target["bval"])
        n_vol = data.shape[3] if data.ndim == 4 else 1
        if data.ndim != 4 or len(bvals) != n_vol:
            raise BidsError(
                f"{target['dwi']}: {n_vol} volume(s) but {target['bval']} has {len(bvals)} values"
            )
        b0, shells = find_shells(bvals)
        shell = next((s for s in shells if s.b == target["shell"]), None)
        if shell is None or not b0:
            raise BidsError(f"{target['bval']}: no b0 or no b={target['shell']:g} shell any more")
        trace, adc, _s0 = compute_trace_adc(data, bvals, shell, b0)
        info.update(
            {
                "bval": target["bval"],
                "shell": shell.b,
                "shell_mean_b": round(shell.mean_b, 3),
                "shell_volumes": list(shell.volumes),
                "b0_volumes": list(b0),
            }
        )
    _save_3d(trace, img, out_dir / "dwi.nii.gz")
    _save_3d(adc, img, out_dir / "adc.nii.gz")
    info["flair"] = target.get("flair")
    info["shape"] = list(trace.shape)
    return info
