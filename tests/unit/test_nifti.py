import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids2hub.errors import NiftiError
from bids2hub.nifti import check_nifti, gzip_length

from tests.conftest import write_nifti


def test_valid_files_pass(tmp_path: Path) -> None:
    gz = write_nifti(tmp_path / "a.nii.gz", (5, 6, 7, 3))
    raw = write_nifti(tmp_path / "a.nii", (5, 6, 7))
    assert check_nifti(gz.read_bytes(), "a.nii.gz").shape == (5, 6, 7, 3)
    assert check_nifti(raw.read_bytes(), "a.nii").shape == (5, 6, 7)


@pytest.mark.parametrize("klass", [nib.Nifti1Image, nib.Nifti2Image])
def test_files_with_header_extensions_pass(klass: type, tmp_path: Path) -> None:
    """Extensions (AFNI, comments) sit between header and voxels; the check reads past them."""
    img = klass(np.zeros((5, 6, 7), dtype=np.int16), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"made by a tool" * 20))
    raw = img.to_bytes()
    (tmp_path / "e.nii").write_bytes(raw)
    assert check_nifti(raw, "e.nii").shape == (5, 6, 7)
    info = check_nifti(gzip.compress(raw, mtime=0), "e.nii.gz")
    assert info.shape == (5, 6, 7) and info.vox_offset > 352 + 280
    assert info.expected_bytes == len(raw)


def test_truncated_gzip_is_detected(tmp_path: Path) -> None:
    data = write_nifti(tmp_path / "a.nii.gz", (20, 20, 20)).read_bytes()
    with pytest.raises(NiftiError, match=r"a\.nii\.gz: truncated or corrupt gzip"):
        check_nifti(data[: len(data) // 2], "a.nii.gz")


def test_truncated_uncompressed_is_detected(tmp_path: Path) -> None:
    data = write_nifti(tmp_path / "a.nii", (20, 20, 20)).read_bytes()
    with pytest.raises(NiftiError, match=r"a\.nii: image data truncated"):
        check_nifti(data[:-10], "a.nii")


def test_garbage_header_is_detected() -> None:
    with pytest.raises(NiftiError, match=r"x\.nii\.gz: unreadable NIfTI header"):
        check_nifti(gzip.compress(b"\x00" * 400, mtime=0), "x.nii.gz")
    with pytest.raises(NiftiError, match="too short"):
        check_nifti(b"\x00" * 10, "y.nii")


def test_non_finite_affine_is_detected() -> None:
    img = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4))
    raw = bytearray(img.to_bytes())
    raw[280:284] = struct.pack("<f", float("nan"))  # srow_x[0]; sform_code is 2
    with pytest.raises(NiftiError, match="non-finite"):
        check_nifti(gzip.compress(bytes(raw), mtime=0), "n.nii.gz")


def test_isize_mismatch_falls_back_to_full_check() -> None:
    # A valid stream with trailing garbage-free second member: ISIZE disagrees with the
    # header, the full decompression decides, and a complete file is accepted.
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), np.eye(4))
    data = gzip.compress(img.to_bytes(), mtime=0) + gzip.compress(b"extra", mtime=0)
    assert check_nifti(data, "two-members.nii.gz").shape == (4, 4, 4)
    assert gzip_length(data, "x", chunk=7) == len(img.to_bytes()) + 5
    with pytest.raises(NiftiError, match="x: truncated or corrupt"):
        gzip_length(data[:-12], "x", chunk=7)


def _with_extension() -> tuple[bytes, int]:
    img = nib.Nifti1Image(np.zeros((4, 4, 4), dtype=np.int16), np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"c" * 400))
    whole = img.to_bytes()
    return whole, int(struct.unpack("<f", whole[108:112])[0])


def test_image_head_reads_across_gzip_members() -> None:
    """A multi-member stream (as gzip and nibabel read it) gives the whole header."""
    from bids2hub.nifti import image_head

    whole, offset = _with_extension()
    two = gzip.compress(whole[:600], mtime=0) + gzip.compress(whole[600:], mtime=0)
    assert offset > 600 and gzip.decompress(two) == whole
    assert image_head(memoryview(two), "two.nii.gz") == whole[:offset]


def test_image_head_of_a_stream_cut_before_the_voxels_is_an_error() -> None:
    from bids2hub.nifti import image_head

    whole, offset = _with_extension()
    cut = gzip.compress(whole, mtime=0)
    stream = _gzip_prefix(cut, offset - 100)
    with pytest.raises(NiftiError, match=r"cut\.nii\.gz: the gzip stream ends before the voxels"):
        image_head(stream, "cut.nii.gz")


def _gzip_prefix(gz: bytes, n: int) -> bytes:
    """The shortest prefix of a gzip stream that inflates to at least ``n`` bytes."""
    import zlib

    for end in range(20, len(gz)):
        if len(zlib.decompressobj(wbits=31).decompress(gz[:end])) >= n:
            return gz[:end]
    raise AssertionError("stream too short")
