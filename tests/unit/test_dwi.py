"""DWI planning (sessions, runs, shells) and the trace/ADC computation."""

from __future__ import annotations

import collections
import gzip
import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from bids2hub.errors import BidsError, ConfigError
from bids2hub.index.manifest import FileRecord, Manifest, build_manifest, load_index
from bids2hub.segment.plan import (
    FactCache,
    bvec_count,
    choose_shell,
    find_shells,
    parse_bvals,
    plan_json,
    plan_segmentation,
)
from bids2hub.segment.prepare import compute_trace_adc, prepare_dwi

from tests.conftest import REPO
from tests.synthetic import arc_file_listing

BVALS_TSV = REPO / "tests" / "data" / "ds004884_bvals.tsv.gz"


# ------------------------------------------------------------------ b-values


def test_parse_bvals_and_bvecs() -> None:
    assert parse_bvals("0 5\n995 1000  1005\n", "x.bval") == [0, 5, 995, 1000, 1005]
    with pytest.raises(BidsError, match=r"x\.bval: 'b0' is not a b-value"):
        parse_bvals("b0 1000", "x.bval")
    with pytest.raises(BidsError, match="invalid b-value -5"):
        parse_bvals("0 -5", "x.bval")
    # NaN for b0 rows (some converters) is fine; N x 3 is accepted too.
    assert bvec_count("nan 1 0\nnan 0 1\nnan 0 0\n", "x.bvec") == 3
    assert bvec_count("0 0 0\n1 0 0\n0 1 0\n0 0 1\n", "x.bvec") == 4
    with pytest.raises(BidsError, match=r"x\.bvec: expected 3 rows"):
        bvec_count("0 1\n0 0 1\n0 0 0\n", "x.bvec")


@pytest.mark.parametrize(
    ("bvals", "b0", "chosen", "n"),
    [
        ([5, 995, 1000, 1005, 1000, 990], (0,), 1000, 5),   # ARC: b0 written as 5, jittered 1000 shell
        ([0, 1000, 1000, 2000, 2000, 2000], (0,), 1000, 2),  # multi-shell: the 1000 shell
        ([0, 500, 500], (0,), 500, 2),                      # no 1000 shell: the nearest one
        ([0, 5000, 5000], (0,), 5000, 2),
        ([5, 1990, 2010, 2005], (0,), 2000, 3),
        ([0, 50, 5, 0], (0, 1, 2, 3), None, 0),             # b0-only (b <= 50)
    ],
)  # fmt: skip
def test_shells(bvals: list[float], b0: tuple[int, ...], chosen: float | None, n: int) -> None:
    zeros, shells = find_shells(bvals)
    assert zeros == b0
    shell = choose_shell(shells)
    assert (shell.b if shell else None) == chosen
    assert (len(shell.volumes) if shell else 0) == n
    if shell:
        assert all(abs(bvals[i] - shell.b) <= 50 for i in shell.volumes)


def _arc_bvals() -> dict[str, list[float]]:
    with gzip.open(BVALS_TSV, "rt") as fh:
        rows = (line.rstrip("\n").split("\t") for line in fh)
        return {path: [float(b) for b in text.split()] for path, text in rows}


class _ListedFacts(FactCache):
    """Facts of the real ARC listing: volumes = number of real b-values (no images here)."""

    def __init__(self, manifest: Manifest, bvals: dict[str, list[float]]) -> None:
        super().__init__(manifest, None)
        self.real = bvals

    def volumes(self, rec: FileRecord) -> dict[str, Any]:
        return {"shape": [2, 2, 2, len(self.real[rec.path.removesuffix(".nii.gz") + ".bval"])]}

    def bvals(self, rec: FileRecord) -> dict[str, Any]:
        return {"bvals": self.real[rec.path]}

    def bvecs(self, rec: FileRecord) -> dict[str, Any]:
        return {"n": len(self.real[rec.path.removesuffix(".bvec") + ".bval"])}

    def sidecar(self, rec: FileRecord) -> dict[str, Any]:
        return {}  # listed names only: the published sidecars are valid JSON


def test_every_real_arc_run_and_session_gets_a_sensible_choice() -> None:
    real = _arc_bvals()
    assert len(real) == 2089
    b0_only = 0
    for values in real.values():
        b0, shells = find_shells(values)
        shell = choose_shell(shells)
        if shell is None:
            b0_only += 1
            continue
        assert b0, "every ARC run with a shell also has a b0"
        assert shell.b in (500, 1000, 2000, 4000, 5000)
        # Jittered b-values (990-1010) never split a shell.
        assert len(shells) == len({round(v / 1000) for v in values if v > 50})
    assert b0_only == 249  # the b0-only reverse-phase runs

    manifest = build_manifest(Path("/arc"), [(p, 1, 0) for p in arc_file_listing()])
    subjects = sorted({s for s, _ in manifest.shard_keys()})
    plan = plan_segmentation(manifest, subjects, "earliest", _ListedFacts(manifest, real))
    targets, excluded = plan["targets"], plan["excluded"]
    assert len(targets) + len(excluded) == len(subjects) == 230

    def near_1000(path: str) -> bool:
        b0, shells = find_shells(real[path])
        best = choose_shell(shells)
        return bool(b0) and best is not None and abs(best.b - 1000) <= 100

    # Subjects without a b~1000 shell in any session are left out with the reason,
    # the others are segmented from their earliest session that has one.
    far = {sub: r for sub, r in excluded.items() if r != "no DWI run"}
    for sub, reason in far.items():
        assert "outside 1000 +/- 100" in reason, reason
        assert not any(near_1000(p) for p in real if p.startswith(f"sub-{sub}/")), sub
    assert len(far) <= 10
    allowed = plan_segmentation(
        manifest, subjects, "earliest", _ListedFacts(manifest, real), allow_any_shell=True
    )
    assert set(allowed["excluded"].values()) == {"no DWI run"}
    assert set(allowed["targets"]) == set(targets) | set(far)
    for sub, t in targets.items():
        ses_runs = [p for p in real if p.startswith(f"sub-{sub}/ses-{t['session']}/")]
        has_1000 = any(
            s.b == 1000
            for p in ses_runs
            for s in find_shells(real[p])[1]
            if find_shells(real[p])[0]
        )
        assert (t["shell"] == 1000) == has_1000, (sub, t)
        chosen = real[t["bval"]]
        assert t["n_shell"] == max(
            len(s.volumes) for p in ses_runs for s in find_shells(real[p])[1] if s.b == t["shell"]
        )
        assert t["n_b0"] == len(find_shells(chosen)[0]) >= 1
        # The earliest session with b~1000 DWI (natural order).
        dwi_sessions = sorted(
            {p.split("/")[1][4:] for p in real if p.startswith(f"sub-{sub}/") and near_1000(p)},
            key=int,
        )
        assert t["session"] == dwi_sessions[0]
        expert = t["expert_mask"]
        assert expert is None or expert.startswith(
            f"derivatives/lesion_masks/sub-{sub}/ses-{t['session']}/"
        )
    shells = collections.Counter(t["shell"] for t in targets.values())
    assert shells[1000] >= 200
    # ARC's expert masks were mostly drawn on the first session: most targets can be scored.
    assert sum(t["expert_mask"] is not None for t in targets.values()) >= 150


# ------------------------------------------------------------- real trees


def _nifti(path: Path, shape: tuple[int, ...], value: float = 100.0) -> Path:
    img = nib.Nifti1Image(np.full(shape, value, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def _dwi(
    root: Path,
    sub: str,
    ses: str,
    run: int,
    bvals: list[float],
    n_vol: int | None = None,
    **kw: str,
) -> Path:
    entities = "".join(f"_{k}-{v}" for k, v in kw.items())
    base = (
        root / f"sub-{sub}" / f"ses-{ses}" / "dwi" / f"sub-{sub}_ses-{ses}{entities}_run-{run}_dwi"
    )
    _nifti(base.with_name(base.name + ".nii.gz"), (4, 4, 3, n_vol or len(bvals)))
    base.with_name(base.name + ".bval").write_text(" ".join(f"{b:g}" for b in bvals) + "\n")
    rows = [" ".join("nan" if b <= 50 else "0.577" for b in bvals)] * 3
    base.with_name(base.name + ".bvec").write_text("\n".join(rows) + "\n")
    return base


def _tree(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    # A: ses-2 only b0 (reverse phase), ses-10 good; natural order: 2 before 10.
    _dwi(root, "A", "2", 1, [0, 5, 0])
    _dwi(root, "A", "10", 1, [0, 1000, 1000], dir="AP")
    _dwi(root, "A", "10", 2, [0, 0], dir="PA")
    _nifti(root / "sub-A/ses-10/anat/sub-A_ses-10_run-1_FLAIR.nii.gz", (4, 4, 3))
    _nifti(
        root
        / "derivatives/lesion_masks/sub-A/ses-10/anat/sub-A_ses-10_run-1_T2w_desc-lesion_mask.nii.gz",
        (4, 4, 3),
    )
    # B: a run whose bval count does not match its volumes.
    _dwi(root, "B", "1", 1, [0, 1000, 1000, 1000], n_vol=3)
    # C: a 2000-only run with more volumes and a 1000 run: the 1000 run wins.
    _dwi(root, "C", "1", 1, [0] + [2000] * 8)
    _dwi(root, "C", "1", 2, [5, 995, 1005])
    _dwi(root, "C", "3", 1, [0, 1000, 1000])
    # D: the dataset ships the trace and ADC (3D _dwi without .bval, and _adc).
    _nifti(root / "sub-D/ses-1/dwi/sub-D_ses-1_dwi.nii.gz", (4, 4, 3))
    _nifti(root / "sub-D/ses-1/dwi/sub-D_ses-1_adc.nii.gz", (4, 4, 3), 800.0)
    # E: anatomy only.
    _nifti(root / "sub-E/ses-1/anat/sub-E_ses-1_T1w.nii.gz", (4, 4, 3))
    # F: bvec shorter than bval.
    base = _dwi(root, "F", "1", 1, [0, 1000, 1000])
    base.with_name(base.name + ".bvec").write_text("0 1\n0 0\n1 0\n")
    return root


def _plan(
    root: Path, out: Path, choice: Any = "earliest", allow_any_shell: bool = False
) -> tuple[dict[str, Any], FactCache]:
    manifest, _ = load_index(root, out / "manifest.parquet")
    subjects = sorted({s for s, _ in manifest.shard_keys()})
    facts = FactCache(manifest, out / "dwi_facts.json")
    plan = plan_segmentation(manifest, subjects, choice, facts, allow_any_shell=allow_any_shell)
    facts.save()
    return plan, facts


def test_plan_on_a_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    plan, facts = _plan(root, tmp_path / "idx")
    t, ex = plan["targets"], plan["excluded"]
    assert sorted(t) == ["A", "C", "D"] and sorted(ex) == ["B", "E", "F"]
    assert t["A"]["session"] == "10" and t["A"]["dwi"].endswith("_dir-AP_run-1_dwi.nii.gz")
    assert t["A"]["notes"] == ["ses-2: run-1_dwi is b0-only"]
    assert t["A"]["skipped"] == {
        "sub-A_ses-10_dir-PA_run-2_dwi.nii.gz": "dir-PA_run-2_dwi is b0-only"
    }
    assert t["A"]["flair"] == "sub-A/ses-10/anat/sub-A_ses-10_run-1_FLAIR.nii.gz"
    assert t["A"]["expert_mask"].startswith("derivatives/lesion_masks/sub-A/ses-10/")
    assert (t["A"]["shell"], t["A"]["n_b0"], t["A"]["n_shell"]) == (1000, 1, 2)
    assert t["C"]["dwi"].endswith("run-2_dwi.nii.gz") and t["C"]["session"] == "1"
    assert "8 volumes at b=2000, not preferred" in t["C"]["skipped"]["sub-C_ses-1_run-1_dwi.nii.gz"]
    assert t["D"]["mode"] == "precomputed" and t["D"]["adc"].endswith("_adc.nii.gz")
    assert (
        ex["B"] == "no usable DWI: ses-1: run-1_dwi: .bval has 4 values but the image has 3 volumes"
    )
    assert ex["E"] == "no DWI run"
    assert (
        ex["F"] == "no usable DWI: ses-1: run-1_dwi: .bvec has 2 directions but .bval has 3 values"
    )
    assert all("\n" not in r for r in ex.values())
    assert facts.reads > 0

    # Warm: the same plan, byte for byte, from the cached facts only.
    again, warm = _plan(root, tmp_path / "idx")
    assert plan_json(again) == plan_json(plan) and warm.reads == 0
    # One file changed: only it is read again.
    bval = root / "sub-B/ses-1/dwi/sub-B_ses-1_run-1_dwi.bval"
    bval.write_text("0 1000 1000\n")
    os.utime(bval, ns=(1, 1))
    bval.with_suffix(".bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    fixed, cache = _plan(root, tmp_path / "idx")
    assert cache.reads == 2 and fixed["targets"]["B"]["shell"] == 1000
    facts_json = json.loads((tmp_path / "idx" / "dwi_facts.json").read_text())
    rel = bval.relative_to(root).as_posix()
    assert [k for k in facts_json["facts"] if k.startswith(rel + "\0")] == [f"{rel}\0{12}\0{1}"]


def test_session_choice(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    latest, _ = _plan(root, tmp_path / "idx", "latest")
    assert latest["targets"]["C"]["session"] == "3" and latest["targets"]["A"]["session"] == "10"
    mapped, _ = _plan(root, tmp_path / "idx", {"sub-C": "ses-3", "A": 2})
    assert mapped["targets"]["C"]["session"] == "3"
    assert mapped["excluded"]["A"] == "segment.session chose ses-2: run-1_dwi is b0-only"
    with pytest.raises(ConfigError, match=r"'segment\.session': sub-Z is not in the dataset"):
        _plan(root, tmp_path / "idx", {"Z": "1"})
    with pytest.raises(ConfigError, match=r"sub-C has no session ses-9 \(sessions: ses-1, ses-3\)"):
        _plan(root, tmp_path / "idx", {"C": "9"})


def test_unreadable_image_excludes_the_subject(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bids")
    (root / "sub-C/ses-1/dwi/sub-C_ses-1_run-2_dwi.nii.gz").write_bytes(b"\x1f\x8bnot gzip")
    plan, _ = _plan(root, tmp_path / "idx")
    # run-2 is unreadable and the 2000-only run-1 is outside 1000 +/- 100: ses-3 is used.
    assert plan["targets"]["C"]["shell"] == 1000 and plan["targets"]["C"]["session"] == "3"
    assert plan["targets"]["C"]["notes"] == [
        "ses-1: run-1_dwi: nearest shell b=2000 is outside 1000 +/- 100 s/mm^2, the b-value "
        "DeepISLES was trained on (segment.allow_any_shell: true uses it)"
    ]
    # Allowed by the config: the 2000-only run-1 is used and the reason recorded.
    plan, _ = _plan(root, tmp_path / "idx2", allow_any_shell=True)
    assert plan["targets"]["C"]["shell"] == 2000
    assert (
        "not a readable gzip stream"
        in plan["targets"]["C"]["skipped"]["sub-C_ses-1_run-2_dwi.nii.gz"]
    )


# ------------------------------------------------------------- trace and ADC


def test_trace_and_adc_are_exact_on_a_monoexponential_phantom() -> None:
    rng = np.random.default_rng(0)
    s0 = rng.uniform(200, 1000, (5, 6, 4)).astype(np.float32)
    adc = rng.uniform(0.3e-3, 3e-3, s0.shape).astype(np.float32)
    bvals = [5.0, 995.0, 1000.0, 1005.0, 0.0, 2000.0]
    data = np.stack([s0 * np.exp(-b * adc) if b > 50 else s0 for b in bvals], axis=-1)
    data[0, 0, 0, 2] = 0.0  # a zero in a shell volume: no ADC there
    b0, shells = find_shells(bvals)
    shell = choose_shell(shells)
    assert shell is not None and shell.volumes == (1, 2, 3) and b0 == (0, 4)
    trace, out_adc, out_s0 = compute_trace_adc(data, bvals, shell, b0)
    np.testing.assert_allclose(out_s0, s0, rtol=1e-5)
    np.testing.assert_allclose(trace.flat[1:], (s0 * np.exp(-1000 * adc)).flat[1:], rtol=1e-4)
    np.testing.assert_allclose(out_adc.flat[1:], adc.flat[1:], rtol=1e-3)
    assert out_adc[0, 0, 0] == 0 and trace[0, 0, 0] == 0
    # Noise where the trace exceeds S0 gives negative ADC: clipped to 0.
    flipped = data.copy()
    flipped[..., 1:4] = flipped[..., [0]] * 2
    _t, neg, _s = compute_trace_adc(flipped, bvals, shell, b0)
    assert neg.min() == 0 and neg.max() == 0


def test_prepare_dwi_writes_3d_float32_on_the_dwi_grid(tmp_path: Path) -> None:
    affine = np.array([[-2.0, 0, 0, 90], [0, 2.0, 0.2, -120], [0, 0, 2.5, -60], [0, 0, 0, 1]])
    bvals = [5, 1000, 1000, 995]
    s0, adc = 500.0, 0.8e-3
    vols = [np.full((6, 5, 4), s0 if b < 50 else s0 * np.exp(-b * adc)) for b in bvals]
    img = nib.Nifti1Image(np.rint(np.stack(vols, -1)).astype(np.int16), affine)
    root = tmp_path / "bids"
    dwi = root / "sub-X/dwi/sub-X_dwi.nii.gz"
    dwi.parent.mkdir(parents=True)
    nib.save(img, dwi)
    dwi.with_name("sub-X_dwi.bval").write_text(" ".join(map(str, bvals)))
    target = {"mode": "raw", "session": "", "dwi": "sub-X/dwi/sub-X_dwi.nii.gz",
              "bval": "sub-X/dwi/sub-X_dwi.bval", "shell": 1000.0, "flair": None}  # fmt: skip
    info = prepare_dwi(root, target, *_prepared(tmp_path / "work"))
    assert info["shell_volumes"] == [1, 2, 3] and info["b0_volumes"] == [0]
    for name in ("dwi", "adc"):
        out = nib.load(tmp_path / "work" / f"{name}.nii.gz")
        assert out.shape == (6, 5, 4) and out.get_data_dtype() == np.float32
        np.testing.assert_allclose(out.affine, affine)
    np.testing.assert_allclose(nib.load(tmp_path / "work/adc.nii.gz").get_fdata(), adc, rtol=0.01)
    assert not list((tmp_path / "work").glob(".*tmp*"))

    # The .bval changed after planning: a clear error, nothing new written.
    dwi.with_name("sub-X_dwi.bval").write_text("0 1000 1000")
    with pytest.raises(BidsError, match=r"4 volume\(s\) but sub-X/dwi/sub-X_dwi.bval has 3 values"):
        prepare_dwi(root, target, *_prepared(tmp_path / "work2"))
    assert not (tmp_path / "work2").exists()


def _prepared(folder: Path) -> tuple[Path, Path]:
    return folder / "dwi.nii.gz", folder / "adc.nii.gz"


def test_prepare_dwi_uses_a_scanner_adc_in_micro_units(tmp_path: Path) -> None:
    root = tmp_path / "bids"
    _nifti(root / "sub-D/dwi/sub-D_dwi.nii.gz", (4, 4, 3), 300.0)
    _nifti(root / "sub-D/dwi/sub-D_adc.nii.gz", (4, 4, 3), 800.0)  # 800e-6 mm^2/s
    target = {"mode": "precomputed", "session": "", "dwi": "sub-D/dwi/sub-D_dwi.nii.gz",
              "adc": "sub-D/dwi/sub-D_adc.nii.gz", "flair": None}  # fmt: skip
    info = prepare_dwi(root, target, *_prepared(tmp_path / "w"))
    assert info["adc_scale"] == 1e-6
    np.testing.assert_allclose(nib.load(tmp_path / "w/adc.nii.gz").get_fdata(), 800e-6, rtol=1e-5)


# ------------------------------------------------------------ parse-time set-up


def test_setup_plans_in_the_main_process_and_jobs_read_the_plan(
    arc_tree: Path, tmp_path: Path
) -> None:
    from bids2hub.plan import prepare

    cfg = {"bids_dir": str(arc_tree), "out_dir": str(tmp_path / "out"), "dataset": "ds004884"}
    main = prepare(cfg, config_dir=REPO / "config")
    plan_file = main.segmentation_path
    text, mtime = plan_file.read_text(), plan_file.stat().st_mtime_ns
    assert json.loads(text) == main.segmentation
    assert sorted(main.segmentation["targets"]) == ["M2105", "M2112", "M2215"]
    assert main.segmentation["excluded"] == {"M2039": "no DWI run"}
    masks = main.mask_targets()
    assert len(masks) == 3 and all("/hub/derivatives/deepisles/sub-M2" in m for m in masks)
    assert main.segment_targets()[-2:] == [
        str(main.derivatives_dir / "dataset_description.json"),
        str(main.qc_path),
    ]
    assert set(main.dwi_inputs("M2105")) == {"dwi", "bval", "bvec"}
    with pytest.raises(KeyError, match="sub-M2039 is not a segmentation target \\(no DWI run\\)"):
        main.mask_path("M2039")

    # A cluster job reads the plan file only: a broken .bval does not change its plan.
    (tmp_path / "out/index/dwi_facts.json").unlink()
    target = main.segmentation["targets"]["M2105"]
    (arc_tree / target["bval"]).write_text("0 1000\n")
    job = prepare(cfg, config_dir=REPO / "config", refresh_index=False)
    assert job.segmentation == main.segmentation
    assert not (tmp_path / "out/index/dwi_facts.json").exists()
    # The next main parse sees it; an unchanged plan would have kept its mtime.
    again = prepare(cfg, config_dir=REPO / "config")
    new = again.segmentation["targets"].get("M2105", {})
    assert new.get("bval") != target["bval"] and plan_file.stat().st_mtime_ns != mtime
    prepare(cfg, config_dir=REPO / "config")
    assert plan_file.read_text() == json.dumps(again.segmentation, indent=1, sort_keys=True) + "\n"


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_read_image_gives_nibabels_data_and_names_a_broken_file(
    tmp_path: Path, suffix: str
) -> None:
    """ISA-L inflates .gz data: the same values as nibabel's, scaling applied; a cut file fails."""
    from bids2hub.segment.prepare import read_image

    data = np.arange(5 * 6 * 4 * 3, dtype=np.int16).reshape(5, 6, 4, 3)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    img.header.set_slope_inter(0.5, 10.0)  # stored scaling: the data read is float
    path = tmp_path / f"dwi{suffix}"
    nib.save(img, path)
    ref = np.asanyarray(nib.load(path).dataobj)
    got_img, got = read_image(path, "sub-X/dwi")
    assert got.dtype == ref.dtype and np.array_equal(got, ref)
    assert np.allclose(got_img.affine, img.affine) and got_img.dataobj.slope == 0.5
    _, as_float = read_image(path, "sub-X/dwi", np.float32)
    assert as_float.dtype == np.float32 and np.allclose(as_float, ref)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BidsError, match=r"^sub-X/dwi: unreadable image"):
        read_image(path, "sub-X/dwi")
