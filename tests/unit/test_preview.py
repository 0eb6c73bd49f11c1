"""The preview configuration: PNG thumbnails per session, deterministic, decoded by `datasets`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from bids2hub.errors import BidsError
from bids2hub.hub.preview import (
    build_preview_table,
    encode_png,
    load_volume,
    preview_features,
    render_thumbnail,
    thumbnail_columns,
    write_session_preview,
)
from bids2hub.index.manifest import load_index
from bids2hub.index.phenotype import read_participants
from bids2hub.shards.cells import open_cell
from bids2hub.shards.colmap import load_map
from bids2hub.shards.writer import write_shard

from tests.browser import png_pixels, render_page
from tests.conftest import REPO

SUBJECTS = ["M2039", "M2105", "M2112", "M2215"]
# the sessions with an expert lesion mask (M2039 has none)
MASKED = {"sub-M2105_ses-964", "sub-M2112_ses-262", "sub-M2215_ses-1354"}


def _red_mask(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r - g > 60) & (r - b > 60)


def _red(rgb: np.ndarray) -> int:
    return int(_red_mask(rgb).sum())


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], object]:
    """ARC-shaped shards (real ds004884 names, 12x14x10 images, expert lesion masks)."""
    from tests.synthetic import write_arc_like_tree

    base = tmp_path_factory.mktemp("preview")
    root = write_arc_like_tree(base / "bids", SUBJECTS, shape=(12, 14, 10))
    manifest, _ = load_index(root, base / "index" / "manifest.parquet")
    cmap = load_map(REPO / "config" / "datasets" / "ds004884.yaml")
    people = read_participants(root / "participants.tsv")
    paths = []
    for sub, ses in manifest.shard_keys():
        dest = base / "data" / f"sub-{sub}_ses-{ses}.parquet"
        write_shard(manifest, cmap, sub, ses, people, dest)
        paths.append(dest)
    return paths, cmap


def test_png_encoder_round_trips_through_pillow() -> None:
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    png = encode_png(rgb)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), rgb)
    assert encode_png(rgb) == png
    with pytest.raises(ValueError):
        encode_png(rgb.astype(np.float32))


def test_slices_keep_orientation_and_aspect_and_cross_at_the_lesion() -> None:
    vol = np.full((20, 10, 30), 10.0, np.float32)  # 2 mm x, 4 mm y, 1 mm z
    vol[:, :, -3:] = 100.0  # superior slab
    vol[:, -2:, :] += 50.0  # anterior slab
    affine = np.diag([2.0, 4.0, 1.0, 1.0])
    rgb = render_thumbnail(vol, affine, height=60)
    assert rgb.shape[0] == 60 and _red(rgb) == 0
    sag_w = round(60 * 40 / 30)  # columns y (40 mm) over rows z (30 mm)
    sag = rgb[:, :sag_w, 0]
    assert sag[0].mean() > sag[-1].mean()  # superior at the top
    assert sag[30, -1] > sag[30, 0]  # anterior on the right
    mask = np.zeros_like(vol)
    mask[15:17, 2:4, 5:7] = 1  # right, posterior, inferior
    rgb = render_thumbnail(vol, affine, mask=(mask, affine), height=60)
    assert _red(rgb) > 0
    axial = rgb[:, -60:]  # columns x (40 mm) over rows y (40 mm)
    cols = np.nonzero(_red_mask(axial))[1]
    assert cols.size > 0
    assert cols.mean() > axial.shape[1] / 2  # the lesion is on the right (neurological view)


def test_session_previews_are_deterministic_and_decode_as_images(
    shards: tuple[list[Path], object], tmp_path: Path
) -> None:
    import datasets

    paths, cmap = shards
    parts, again = [], []
    for shard in paths:
        parts.append(tmp_path / "a" / shard.name)
        row = write_session_preview(shard, cmap, parts[-1], height=64)
        again.append(tmp_path / "b" / shard.name)
        write_session_preview(shard, cmap, again[-1], height=64)
        assert parts[-1].read_bytes() == again[-1].read_bytes()
        assert row["mask_overlay"] == (shard.stem in MASKED)
    table, thumb = tmp_path / "preview.parquet", tmp_path / "thumbnail.png"
    assert build_preview_table(parts, cmap, table, thumb) == len(paths)
    build_preview_table(again, cmap, tmp_path / "p2.parquet", tmp_path / "t2.png")
    assert table.read_bytes() == (tmp_path / "p2.parquet").read_bytes()
    assert thumb.read_bytes() == (tmp_path / "t2.png").read_bytes()

    ds = datasets.load_dataset("parquet", data_files=str(table), split="train")
    assert list(ds.features) == list(preview_features(cmap))
    assert isinstance(ds.features["t1w"], datasets.Image)
    assert "lesion" not in ds.features  # drawn on the others, not a thumbnail of its own
    assert [c.name for c in thumbnail_columns(cmap)] == [
        "t1w", "t2w", "flair", "bold_naming40", "bold_rest", "dwi", "sbref",
    ]  # fmt: skip
    rows = list(ds)
    assert [r["subject_id"] for r in rows] == sorted(r["subject_id"] for r in rows)
    for r in rows:
        images = [r[c.name] for c in thumbnail_columns(cmap) if r[c.name] is not None]
        assert images and all(i.mode == "RGB" and i.size[1] == 64 for i in images)
        assert all((_red(np.asarray(i)) > 0) == r["mask_overlay"] for i in images)
    _w, _h, px = png_pixels(thumb)
    assert any(p[0] > p[1] + 60 for p in px)  # the card's thumbnail shows a lesion


def test_a_shard_that_is_not_parquet_is_one_clear_error(shards, tmp_path: Path) -> None:
    _paths, cmap = shards
    bad = tmp_path / "sub-X_ses-1.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(BidsError, match=r"sub-X_ses-1\.parquet: cannot read the shard"):
        write_session_preview(bad, cmap, tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(BidsError, match="no session previews"):
        build_preview_table([], cmap, tmp_path / "p.parquet", tmp_path / "t.png")


def test_a_cell_that_does_not_decode_gets_no_thumbnail_and_a_warning(
    shards, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tampered cell is the round-trip check's finding: the preview must not fail first."""
    import pyarrow.parquet as pq

    paths, cmap = shards
    shard = next(p for p in paths if p.stem in MASKED)
    table = pq.read_table(shard)
    t1w = table.column("t1w").to_pylist()
    assert t1w[0], "the fixture session has a T1w"
    t1w[0][0]["bytes"] = b"\x1f\x8b" + b"\x00" * 64  # gzip magic, then nothing that inflates
    broken = tmp_path / shard.name
    idx = table.schema.get_field_index("t1w")
    pq.write_table(table.set_column(idx, table.schema.field(idx), [t1w]), broken)

    row = write_session_preview(broken, cmap, tmp_path / "part.parquet", height=64)
    assert row["t1w"] is None
    assert row["mask_overlay"] is True
    others = [c.name for c in thumbnail_columns(cmap) if c.name != "t1w" and row[c.name]]
    assert others, "the other modalities keep their thumbnails"
    err = capsys.readouterr().err
    assert f"{broken}: " in err and "cannot read the image for its thumbnail" in err


def test_a_thumbnail_renders_in_chromium(shards, tmp_path: Path) -> None:
    import datasets

    paths, cmap = shards
    part = tmp_path / "part.parquet"
    write_session_preview(next(p for p in paths if "M2105" in p.name), cmap, part, height=96)
    ds = datasets.load_dataset("parquet", data_files=str(part), split="train")
    png = tmp_path / "thumb.png"
    ds[0]["t2w"].save(png)
    page = tmp_path / "page.html"
    width = ds[0]["t2w"].size[0]
    page.write_text(
        '<html><body style="margin:0;background:#fff"><img id="t" src="thumb.png"></body>'
        "<script>window.shown = (w, h) => { const i = document.getElementById('t');"
        " return i.complete && i.naturalWidth === w && i.naturalHeight === h; }</script></html>"
    )
    shot = tmp_path / "shot.png"
    result = render_page(
        page, shot, tmp_path / "profile", size=(400, 200), ready=f"window.shown({width}, 96)",
        timeout=30,
    )  # fmt: skip
    assert result.errors == [] and result.external == []
    assert result.value is True  # decoded by the browser at its own size
    _w, _h, px = png_pixels(shot)
    assert any(p[0] > p[1] + 60 and p[0] > p[2] + 60 for p in px)  # the red lesion is drawn


def test_the_read_back_writes_the_same_preview_row_from_its_one_pass(tmp_path: Path) -> None:
    """check_subject_shards feeds the columns it reads to the preview: the rows it writes
    are byte-identical to the preview read from the shard on its own, and the round-trip
    results beside them are the checks' own."""
    from bids2hub.validate.roundtrip import check_shard
    from bids2hub.validate.sources import check_session, dumps
    from bids2hub.validate.subject import ReadBack, check_subject_shards, check_subject_sources

    from tests.synthetic import write_arc_like_tree

    root = write_arc_like_tree(tmp_path / "bids", ["M2112"], shape=(12, 14, 10))
    manifest, _ = load_index(root, tmp_path / "index" / "manifest.parquet")
    cmap = load_map(REPO / "config" / "datasets" / "ds004884.yaml")
    people = read_participants(root / "participants.tsv")
    keys = [k for k in manifest.shard_keys() if k[0] == "M2112"]
    assert len(keys) > 1  # a subject with several sessions, checked by one call each
    sessions = [ses for _, ses in keys]
    checks = [tmp_path / "sessions" / f"{ses}.json" for ses in sessions]
    check_subject_sources(manifest, cmap, "M2112", sessions, checks)
    items = []
    for (sub, ses), check in zip(keys, checks, strict=True):
        shard = tmp_path / "data" / f"sub-{sub}_ses-{ses}.parquet"
        write_shard(manifest, cmap, sub, ses, people, shard)
        items.append(ReadBack(ses, shard, check, tmp_path / "rt" / f"{ses}.json",
                              tmp_path / "pv" / f"{ses}.parquet"))  # fmt: skip
    results = check_subject_shards(manifest, cmap, "M2112", items, decode=False, height=64)
    for item, result in zip(items, results, strict=True):
        alone = tmp_path / "alone" / item.shard.name
        row = write_session_preview(item.shard, cmap, alone, height=64)
        assert item.preview.read_bytes() == alone.read_bytes()
        assert row["mask_overlay"] == (item.shard.stem in MASKED)
        session = check_session(manifest, cmap, "M2112", item.session)
        assert item.session_check.read_text() == dumps(session)
        expected = check_shard(item.shard, manifest, cmap, "M2112", item.session, session,
                               decode=False)  # fmt: skip
        assert result == expected and item.output.read_text() == dumps(expected)
        assert not result["failures"]


def test_a_cell_is_read_in_place_like_a_file_and_gives_the_first_volume() -> None:
    """open_cell reads like io.BytesIO over the same bytes (reads, seeks, end of data)."""
    import gzip

    import nibabel as nib

    data = np.arange(4 * 5 * 6 * 3, dtype=np.int16).reshape(4, 5, 6, 3)
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    raw = img.to_bytes()
    gz = gzip.compress(raw, mtime=0)
    view = memoryview(bytearray(gz))
    ours, ref = open_cell(view), io.BytesIO(gz)
    for step in (2, 100, 3_000_000):  # the last one reads past the end
        assert ours.read(step) == ref.read(step) and ours.tell() == ref.tell()
    for offset, whence in ((10, io.SEEK_SET), (-7, io.SEEK_END), (-3, io.SEEK_CUR)):
        assert ours.seek(offset, whence) == ref.seek(offset, whence)
        assert ours.read(5) == ref.read(5)
    # The first volume of the 4D run, from the view (no copy of the cell), as nibabel reads it.
    for cell in (view, memoryview(raw)):
        vol, affine = load_volume(cell, "cell")
        assert np.array_equal(vol, data[..., 0].astype(np.float32))
        assert np.allclose(affine, img.affine)


def test_lesion_centre_is_the_mean_of_the_mask_voxels_in_world_coordinates() -> None:
    from bids2hub.hub.preview import lesion_centre

    rng = np.random.default_rng(3)
    affine = np.diag([1.5, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 5.0, 7.0]
    mask = (rng.random((30, 40, 25)) > 0.97).astype(np.float32)
    expected = affine[:3, :3] @ np.argwhere(mask > 0).mean(axis=0) + affine[:3, 3]
    assert np.allclose(lesion_centre(mask, affine), expected, rtol=0, atol=1e-9)
    assert lesion_centre(np.zeros((4, 4, 4), np.float32), affine) is None
