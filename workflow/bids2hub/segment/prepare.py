"""Job-time preparation of the DWI a segmenter reads: the b~1000 trace and the ADC.

:func:`prepare_dwi`, run by a job, turns the run the segmentation plan chose
(:mod:`bids2hub.segment.plan`) into the 3D images DeepISLES reads: the b~1000 trace
(geometric mean of the shell's volumes) and the ADC in mm^2/s, on the DWI's grid.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids2hub.errors import BidsError
from bids2hub.fsutil import atomic_path
from bids2hub.segment.plan import Shell, find_shells, parse_bvals

#: ADC values are clipped to [0, ADC_MAX] mm^2/s (free water is ~3e-3 at 37 C).
ADC_MAX = 0.005
#: Units ADC maps come in, and the factor to mm^2/s. SOOP (OpenNeuro ds004889) has
#: all three after the NIfTI scaling dcm2niix wrote (the Philips RWV slope).
ADC_UNITS = {"mm2/s": 1.0, "1e-3 mm2/s": 1e-3, "1e-6 mm2/s": 1e-6}
#: The brain's median ADC is ~0.7-1.0e-3 mm^2/s (CSF ~3e-3, infarct ~0.4e-3): a
#: median below 0.05 is mm^2/s, below 50 is 1e-3 mm^2/s, above is 1e-6 mm^2/s.
_UNIT_EDGES = ((0.05, "mm2/s"), (50.0, "1e-3 mm2/s"))
#: The converted median must land in this range (mm^2/s), or the unit is not one of the three.
_PLAUSIBLE_MEDIAN = (1e-4, 4e-3)


def read_image(path: Path, name: str, dtype: Any = None) -> tuple[Any, np.ndarray]:
    """Load a NIfTI image and its data; a broken file raises :class:`BidsError` naming ``name``.

    ``dtype`` None keeps the stored type (int16 DWI stays int16: half the memory).
    A ``.gz`` file's data is inflated with ISA-L (a 159 MB DWI: 0.8 s instead of zlib's
    1.9-2.4 s); the returned image is nibabel's own, its data object reading the file
    again if asked.
    """
    import nibabel as nib

    try:
        img = nib.load(path)
        with contextlib.ExitStack() as stack:
            proxy = img.dataobj
            if str(path).endswith(".gz"):
                from isal import igzip

                stream = stack.enter_context(igzip.open(path, "rb"))
                proxy = type(img).from_stream(stream).dataobj  # the same header and scaling
            data = np.asanyarray(proxy) if dtype is None else np.asarray(proxy, dtype)
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


def infer_adc_unit(adc: np.ndarray, brain: np.ndarray, name: str) -> tuple[str, float]:
    """The unit of an ADC map from the brain's values: (unit, median in that unit).

    Parameters
    ----------
    adc
        The ADC map with its NIfTI scaling applied.
    brain
        Where the brain is (the trace's brain mask); positive ADC values inside it count.
    name
        The file, for the error.

    Raises
    ------
    BidsError
        No positive ADC in the brain, or a median that fits none of the units.
    """
    values = adc[brain & (adc > 0)]
    if values.size == 0:
        values = adc[adc > 0]
    if values.size == 0:
        raise BidsError(f"{name}: the ADC map has no positive value")
    median = float(np.median(values))
    unit = next((u for edge, u in _UNIT_EDGES if median < edge), "1e-6 mm2/s")
    in_mm2 = median * ADC_UNITS[unit]
    low, high = _PLAUSIBLE_MEDIAN
    if not low <= in_mm2 <= high:
        raise BidsError(
            f"{name}: the brain's median ADC is {median:g}, which is none of mm^2/s, "
            "1e-3 mm^2/s or 1e-6 mm^2/s (expected ~0.7-1.0e-3 mm^2/s in tissue)"
        )
    return unit, median


def prepare_dwi(root: Path, target: dict[str, Any], dwi_out: Path, adc_out: Path) -> dict[str, Any]:
    """Write the b~1000 trace (``dwi_out``) and the ADC (``adc_out``) of one plan target.

    Parameters
    ----------
    root
        BIDS dataset root.
    target
        The subject's entry of the segmentation plan.
    dwi_out, adc_out
        Where to write the trace and the ADC in mm^2/s (3D NIfTI, DeepISLES's inputs).

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
        from bids2hub.segment.run import brain_mask

        # nibabel applied the header's scl_slope/scl_inter (dcm2niix: the Philips RWV slope).
        unit, median = infer_adc_unit(adc, brain_mask(trace), target["adc"])
        scale = ADC_UNITS[unit]
        adc = np.clip(adc * scale, 0.0, ADC_MAX)
        # nibabel moves scl_slope/scl_inter from the header to the data object on load.
        slope, inter = (
            getattr(adc_img.dataobj, "slope", 1.0),
            getattr(adc_img.dataobj, "inter", 0.0),
        )
        info.update(
            {
                "adc": target["adc"],
                "adc_unit": unit,
                "adc_scale": scale,
                "adc_brain_median": round(median, 9),
                "adc_header_scaling": [
                    None if slope is None else float(slope),
                    None if inter is None else float(inter),
                ],
            }
        )
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
                "adc_unit": "mm2/s",
                "adc_scale": 1.0,
            }
        )
    _save_3d(trace, img, Path(dwi_out))
    _save_3d(adc, img, Path(adc_out))
    info["adc_staged_unit"] = "mm2/s"
    info["adc_note"] = (
        "staged in mm^2/s (the threshold backend's unit); DeepISLES z-scores each input, "
        "so the ADC unit needs no conversion for it"
    )
    info["flair"] = target.get("flair")
    info["shape"] = list(trace.shape)
    return info
