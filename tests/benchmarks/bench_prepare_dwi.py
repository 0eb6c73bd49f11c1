"""``prepare_dwi`` on an ARC-sized DWI, next to just loading that file with nibabel.

What is measured
----------------
One synthetic DWI the size of ARC's (128 x 128 x 60, int16; 65 volumes by default:
one b0 written as b=5 and 64 volumes at 990-1005, ARC's most common b-value
layout), with a smooth head-like signal, S = S0 exp(-b ADC) and Rician noise, so that
gzip compresses it about as much as a real scan. Each measurement runs ``--repeats``
times (median reported) in a fresh child interpreter that times only the call
(imports excluded) and reports its peak RSS (``VmHWM``):

* ``load dataobj``   -- baseline: ``np.asanyarray(nib.load(f).dataobj)`` (int16, the
  least a reader of that file can do);
* ``load get_fdata`` -- ``nib.load(f).get_fdata()`` (float64, what most scripts do);
* ``prepare_dwi``    -- ``bids2hub.segment.plan.prepare_dwi``: load, b0 mean, geometric-mean
  trace, ADC, two float32 3D images written as .nii.gz.
* ``segment``        -- ``bids2hub.segment.run.segment_subject("threshold", ...)`` on what
  ``prepare_dwi`` wrote: the CPU backend's per-subject time (read both, threshold,
  clean, write and check the mask). DeepISLES needs a GPU and Apptainer: not here.

Ratios are against ``load dataobj``, measured in the same run.

Run
---
    .venv/bin/python tests/benchmarks/bench_prepare_dwi.py
    .venv/bin/python tests/benchmarks/bench_prepare_dwi.py --volumes 33 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORKFLOW = HERE.parents[1] / "workflow"

_CHILD = r"""
import json, sys, time
sys.path[:0] = [{here!r}, {workflow!r}]
import nibabel as nib
import numpy as np
from pathlib import Path
from _common import peak_rss_mb
from bids2hub.segment.prepare import prepare_dwi
kind, root, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
target = json.loads((root / "target.json").read_text())
start = time.perf_counter()
if kind == "dataobj":
    np.asanyarray(nib.load(root / target["dwi"]).dataobj)
elif kind == "fdata":
    nib.load(root / target["dwi"]).get_fdata()
elif kind == "prepare":
    prepare_dwi(root, target, out / "dwi.nii.gz", out / "adc.nii.gz")
else:  # segment: the threshold backend on what prepare_dwi wrote
    from bids2hub.segment.run import segment_subject
    prep = root / "prepared"
    if not (prep / "adc.nii.gz").exists():
        prepare_dwi(root, target, prep / "dwi.nii.gz", prep / "adc.nii.gz")
    start = time.perf_counter()
    segment_subject("threshold", prep / "dwi.nii.gz", prep / "adc.nii.gz", None, out / "mask.nii.gz")
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb()}}))
"""

LABELS = {
    "dataobj": "load dataobj (baseline)",
    "fdata": "load get_fdata",
    "prepare": "prepare_dwi",
    "segment": "segment (threshold)",
}


def write_dwi(root: Path, shape: tuple[int, int, int], n_volumes: int, seed: int = 0) -> dict:
    """Write the benchmark DWI and its .bval; return the plan target for it."""
    import gzip

    import nibabel as nib

    rng = np.random.default_rng(seed)
    bvals = [5.0] + [float(b) for b in rng.choice([990, 995, 1000, 1005], n_volumes - 1)]
    idx = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    r = np.sqrt(sum(((idx[i] - centre[i]) / (0.45 * shape[i])) ** 2 for i in range(3)))
    head = np.clip(1.2 - r, 0, 1) ** 0.5
    s0 = (800 * head * (1 + 0.1 * np.sin(idx[0] / 5) * np.cos(idx[1] / 7))).astype(np.float32)
    adc = np.where(r < 0.8, 0.8e-3, 3.0e-3).astype(np.float32)
    data = np.empty((*shape, n_volumes), np.int16)
    for v, b in enumerate(bvals):
        signal = s0 * np.exp(-b * adc) if b > 50 else s0
        noise = rng.normal(0, 8, (2, *shape)).astype(np.float32)
        data[..., v] = np.rint(np.hypot(signal + noise[0], noise[1]))
    affine = np.diag([1.8, 1.8, 2.5, 1.0])
    img = nib.Nifti1Image(data, affine)
    rel = "sub-B/dwi/sub-B_dwi"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / f"{rel}.nii.gz").write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))
    (root / f"{rel}.bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    target = {"mode": "raw", "session": "", "dwi": f"{rel}.nii.gz", "bval": f"{rel}.bval",
              "shell": 1000.0, "flair": None}  # fmt: skip
    (root / "target.json").write_text(json.dumps(target))
    return target


def measure(kind: str, root: Path, out: Path) -> dict[str, float]:
    code = _CHILD.format(here=str(HERE), workflow=str(WORKFLOW))
    proc = subprocess.run(
        [sys.executable, "-c", code, kind, str(root), str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,128,60", help="x,y,z of the DWI")
    parser.add_argument("--volumes", type=int, default=65)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-dwi-") as tmp:
        root = Path(tmp)
        target = write_dwi(root, shape, args.volumes)  # type: ignore[arg-type]
        size = (root / target["dwi"]).stat().st_size
        raw = int(np.prod(shape)) * args.volumes * 2
        print(f"DWI {shape} x {args.volumes} volumes, int16: {raw / 1e6:.0f} MB raw, "
              f"{size / 1e6:.0f} MB .nii.gz; median of {args.repeats} runs, fresh interpreter each")  # fmt: skip
        results: dict[str, dict[str, float]] = {}
        for kind in LABELS:
            runs = [measure(kind, root, root / f"out-{kind}-{i}") for i in range(args.repeats)]
            results[kind] = {
                "seconds": statistics.median(r["seconds"] for r in runs),
                "peak_mb": statistics.median(r["peak_mb"] for r in runs),
            }
    base = results["dataobj"]
    print(f"{'':26} {'seconds':>8} {'x base':>7} {'peak MB':>8} {'x base':>7}")
    for kind, label in LABELS.items():
        r = results[kind]
        print(f"{label:26} {r['seconds']:8.2f} {r['seconds'] / base['seconds']:7.2f} "
              f"{r['peak_mb']:8.0f} {r['peak_mb'] / base['peak_mb']:7.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
