"""DeepISLES under Apptainer, through spython: image resolution, pull/verify and one run.

The DeepISLES image (Docker Hub ``isleschallenge/deepisles``, pinned by digest)
reads a 3D DWI (b=1000 trace), a 3D ADC and optionally a FLAIR from
``/app/data`` and writes ``/app/data/results/lesion_msk.nii.gz``. Its working
folder is ``/app`` and its entrypoint ``bash -c "source activate isles_ensemble &&
python main.py"``; Apptainer's ``exec`` ignores entrypoints, so that command is
given explicitly. It writes inside the image, hence ``--writable-tmpfs``.

Facts about spython 0.3.x this module relies on (read in its source):

- every call runs the ``singularity`` binary (Apptainer installs that name as a
  link); ``Client.version()`` returns the first line of ``singularity --version``,
  ``""`` when the binary is missing, or a result dict when it fails;
- ``Client.execute`` builds ``singularity exec [--nv] [--bind SRC:DST ...]
  [options ...] IMAGE COMMAND...``; a string command is split on spaces, so the
  command is passed as a list; with ``return_result=True`` it returns
  ``{"message": ..., "return_code": N}`` where the message holds stdout and
  stderr (a list of both, or one string when only one is non-empty);
  ``environ=`` replaces the whole environment; a bind source that does not
  exist makes spython call ``sys.exit(1)``, so binds are checked here first;
- ``Client.pull(uri, name=PATH)`` runs ``singularity pull --name PATH URI`` and
  ignores its exit status, so what it produced is verified here (size floor,
  SIF magic, ``inspect``) before it is renamed into the cache;
- ``Client.inspect`` runs ``singularity inspect -e -d -l -r -H -t --json IMAGE``
  and returns the parsed ``attributes`` (or the result dict on failure).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from bids2hub.config import schema_defaults, with_defaults
from bids2hub.errors import SegmentationError

#: The DeepISLES image this workflow was written against, pinned by digest (the
#: schema's default of segment.deepisles.uri).
DEFAULT_URI: str = schema_defaults("segment", "deepisles", "uri")
#: A failed or interrupted SIF build leaves a stub of a few KB or MB; the real
#: image is several GB. The floor is configurable (segment.deepisles.min_image_bytes).
DEFAULT_MIN_IMAGE_BYTES: int = schema_defaults("segment", "deepisles", "min_image_bytes")
#: Where the container sees the staged inputs, and where it writes its mask.
DATA_MOUNT = "/app/data"
RESULT_NAME = "lesion_msk.nii.gz"
ENV_NAME = "isles_ensemble"
#: Apptainer options of every run: GPU, writable overlay (DeepISLES writes in
#: the image), no host environment, the image's working folder.
EXEC_OPTIONS = ("--writable-tmpfs", "--cleanenv", "--pwd", "/app")
#: Never handed to the container runtime (it does not need them).
SECRET_ENV = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN"})
#: The GPU a scheduler gave the job; ``--cleanenv`` would drop it, so it is passed explicitly.
GPU_ENV = ("CUDA_VISIBLE_DEVICES",)
#: Label Apptainer writes when it builds an image from a registry reference.
FROM_LABEL = "org.label-schema.usage.singularity.deffile.from"

_URI_RE = re.compile(
    r"^(?P<scheme>docker|oras)://(?P<ref>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$"
)
_VERSION_RE = re.compile(
    r"^(?P<name>apptainer|singularity(?:-ce)?) version v?(?P<major>\d+)\.(?P<minor>\d+)"
)
_SIF_MAGIC = b"SIF_MAGIC"
_SIF_MAGIC_OFFSET = 32
TAIL_LINES = 40
#: SEALS (DeepISLES' main model) runs in this folder of the image and writes below it:
#: nnU-Net's converted inputs (``data/``), its per-fold predictions and their ensemble.
#: Apptainer's ``--writable-tmpfs`` caps such writes (``sessiondir max size``, 64 MiB by
#: default) and every job would share the same fixed paths, so each job binds a scratch
#: folder of its own over each of them (removed with the job's staging folder).
SEALS_DIR = "/app/src/SEALS"
SEALS_WRITABLE = ("data", "test_result", "test_result_recover", "test_ensemble")
#: SEALS computes its 1 mm grid size as uint8: an axis of this extent (mm) or more wraps.
GRID_LIMIT_MM = 256.0
#: Brain bounding box margin (mm) of a staged image cropped under :data:`GRID_LIMIT_MM`.
CROP_MARGIN_MM = 10.0
#: Lines of the container's output that mean a model failed. DeepISLES hides SEALS'
#: output and ignores the models' exit codes: when SEALS fails it still exits 0 with
#: an all-zero mask, so a run whose output shows any of these fails its job.
FAILURE_SIGNATURES = (
    "Traceback (most recent call last)",
    "CUDA error",
    "CUDA out of memory",
    "no kernel image is available",
    "is not compatible with the current PyTorch installation",
    "Read-only file system",
    "No space left on device",
    "Permission denied",
    "no prediction! generating full 0 mask",
)
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------- config


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``segment.deepisles`` with the schema's defaults where the config sets nothing."""
    return with_defaults(dict(config), "segment", "deepisles")


def parse_uri(uri: str) -> tuple[str, str]:
    """Split a digest-pinned reference into (repository reference, ``sha256:...``).

    Raises
    ------
    SegmentationError
        When ``uri`` is not ``docker://`` or ``oras://`` pinned by a sha256 digest.
    """
    m = _URI_RE.match(uri)
    if not m:
        raise SegmentationError(
            f"segment.deepisles.uri '{uri}' is not pinned by digest "
            "(expected docker://<repository>@sha256:<64 hex digits>)"
        )
    return m["ref"], m["digest"]


def sif_name(uri: str) -> str:
    """File name of the cached SIF: derived from the digest, so a new digest pulls again."""
    ref, digest = parse_uri(uri)
    repo = ref.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{repo}-{digest.replace(':', '-')}.sif"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bids2hub/containers`` (``~/.cache/bids2hub/containers``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bids2hub" / "containers"


def image_path(config: Mapping[str, Any]) -> Path:
    """Where the rules find the DeepISLES image (O(1), no file access).

    A user-given ``segment.deepisles.image`` (SIF file or sandbox folder) wins;
    otherwise the digest-named SIF in ``segment.deepisles.cache_dir``.
    """
    sec = _section(config)
    if sec["image"]:
        return Path(sec["image"]).expanduser().absolute()
    cache = sec["cache_dir"]
    folder = Path(cache).expanduser() if cache else default_cache_dir()
    return folder.absolute() / sif_name(sec["uri"])


def image_given(config: Mapping[str, Any]) -> bool:
    """True when the user gave the image (never pulled)."""
    return bool(_section(config)["image"])


def generated_by(config: Mapping[str, Any]) -> dict[str, Any]:
    """The BIDS-derivatives ``GeneratedBy`` entry of the DeepISLES masks."""
    return generated_by_uri(_section(config)["uri"])


def generated_by_uri(uri: str) -> dict[str, Any]:
    """``GeneratedBy`` entry of the masks made by the image ``uri`` (pinned by digest)."""
    _, digest = parse_uri(uri)
    return {
        "Name": "DeepISLES",
        "Version": digest,
        "CodeURL": "https://github.com/ezequieldlrosa/DeepIsles",
        "Container": {"Type": "apptainer", "URI": uri},
    }


# -------------------------------------------------------------------- runtime


def _client() -> Any:
    from spython.main import Client

    return Client


def runtime_version() -> str:
    """First line of ``singularity --version``, checked to be Apptainer or Singularity >= 3.

    Raises
    ------
    SegmentationError
        When no ``singularity`` is on PATH, it fails, or it is too old.
    """
    out = _client().version()
    if isinstance(out, dict):
        msg = _tail(out.get("message"), 3) or "no output"
        raise SegmentationError(
            f"'singularity --version' failed (exit {out.get('return_code')}): {msg}"
        )
    line = str(out or "").strip()
    if not line:
        raise SegmentationError(
            "no 'singularity' command on PATH: install Apptainer (it provides 'singularity') "
            "where DeepISLES runs, or set segment.backend: threshold"
        )
    m = _VERSION_RE.match(line)
    if not m:
        raise SegmentationError(
            f"'singularity --version' printed '{line}', not 'apptainer version X.Y' "
            "or 'singularity version X.Y'"
        )
    if m["name"] != "apptainer" and int(m["major"]) < 3:
        raise SegmentationError(
            f"'{line}' is too old: DeepISLES needs Apptainer or Singularity >= 3 "
            "(--writable-tmpfs, --pwd)"
        )
    return line


def _tail(message: Any, n: int = TAIL_LINES) -> str:
    """Last ``n`` lines of a spython message (str, list of str, or None)."""
    if message is None:
        return ""
    parts = [message] if isinstance(message, str) else [str(m) for m in message]
    lines = [ln for part in parts for ln in part.splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


# ---------------------------------------------------------------- verify/pull


@dataclass(frozen=True)
class ImageInfo:
    """What the verification of an image found."""

    path: Path
    kind: str  # "sif" or "sandbox"
    size: int | None
    labels: dict[str, Any]

    def receipt(self, uri: str) -> dict[str, Any]:
        """Deterministic record of the verified image (no timestamps, no runtime)."""
        return {
            "image": str(self.path),
            "kind": self.kind,
            "size": self.size,
            "uri": uri,
            "labels": self.labels,
        }


def _inspect_labels(image: Path) -> dict[str, Any]:
    try:
        result = _client().inspect(image=str(image), quiet=True)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise SegmentationError(
            f"{image}: 'singularity inspect' printed no usable JSON ({exc})"
        ) from None
    if not isinstance(result, dict) or "attributes" not in result:
        msg = _tail(result.get("message"), 3) if isinstance(result, dict) else result
        code = result.get("return_code") if isinstance(result, dict) else "?"
        raise SegmentationError(
            f"{image}: 'singularity inspect' failed (exit {code}): {msg or 'no output'}"
        )
    labels = result["attributes"].get("labels") or {}
    return dict(labels) if isinstance(labels, dict) else {}


def verify_image(image: Path, *, uri: str, min_bytes: int) -> ImageInfo:
    """Check that ``image`` is a usable DeepISLES SIF file or sandbox folder.

    A SIF must be at least ``min_bytes`` long and carry the SIF magic; a
    sandbox must hold ``.singularity.d`` and ``app/main.py``; both must pass
    ``singularity inspect``, and an image built from a registry reference
    must come from the digest that ``uri`` pins.

    Raises
    ------
    SegmentationError
        One line naming the image and what is wrong.
    """
    image = Path(image)
    _, digest = parse_uri(uri)
    if image.is_dir():
        if not (image / ".singularity.d").is_dir():
            raise SegmentationError(
                f"{image}: not an Apptainer sandbox (no .singularity.d folder); build one "
                f"with 'apptainer build --sandbox {image} {uri}'"
            )
        if not (image / "app" / "main.py").is_file():
            raise SegmentationError(f"{image}: sandbox has no /app/main.py: not a DeepISLES image")
        kind, size = "sandbox", None
    elif image.is_file():
        size = image.stat().st_size
        if size < min_bytes:
            raise SegmentationError(
                f"{image}: {size} bytes, below segment.deepisles.min_image_bytes={min_bytes} "
                "(a failed or interrupted pull leaves such stubs): delete it and pull again"
            )
        with open(image, "rb") as fh:
            head = fh.read(_SIF_MAGIC_OFFSET + len(_SIF_MAGIC))
        if head[_SIF_MAGIC_OFFSET:] != _SIF_MAGIC:
            raise SegmentationError(f"{image}: not a SIF image (no SIF magic at byte 32)")
        kind = "sif"
    else:
        raise SegmentationError(f"{image}: DeepISLES image not found")
    labels = _inspect_labels(image)
    source = str(labels.get(FROM_LABEL, ""))
    if "@sha256:" in source and not source.endswith(digest):
        raise SegmentationError(
            f"{image} was built from {source}, but segment.deepisles.uri pins {digest}: "
            "set segment.deepisles.uri to the image's reference or use the pinned image"
        )
    return ImageInfo(image, kind, size, labels)


@contextlib.contextmanager
def _scoped_env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _say(log: TextIO | None, text: str) -> None:
    if log is not None:
        print(text, file=log, flush=True)


def ensure_image(
    image: Path,
    *,
    uri: str = DEFAULT_URI,
    min_bytes: int = DEFAULT_MIN_IMAGE_BYTES,
    given: bool = False,
    log: TextIO | None = None,
) -> ImageInfo:
    """Return the verified image, pulling it into its cache path when needed.

    A user-given image (``given``) is verified and never pulled. A cached SIF
    that verifies is reused; an invalid one is removed and pulled again. The
    pull goes to a temporary name in the cache folder, is verified, then
    renamed into place, so the cache never holds a partial or stub image.

    Raises
    ------
    SegmentationError
        The runtime is missing, the pull failed, or the image is not usable.
    """
    image = Path(image)
    _say(log, f"runtime: {runtime_version()}")
    if given:
        info = verify_image(image, uri=uri, min_bytes=min_bytes)
        _say(log, f"using the given {info.kind} {image} (not pulled)")
        return info
    if image.exists():
        try:
            info = verify_image(image, uri=uri, min_bytes=min_bytes)
        except SegmentationError as exc:
            _say(log, f"cached image unusable, pulling again: {exc}")
            if image.is_dir():
                shutil.rmtree(image)
            else:
                image.unlink()
        else:
            _say(log, f"reusing cached image {image} ({info.size} bytes)")
            return info
    return _pull(image, uri=uri, min_bytes=min_bytes, log=log)


def _pull(image: Path, *, uri: str, min_bytes: int, log: TextIO | None) -> ImageInfo:
    image.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = image.with_name(f".{image.stem}.pull-{token}.sif")
    # Building the SIF unpacks the whole image (~27 GB) into a temporary
    # folder; /tmp of a login node is rarely that large, the cache folder is.
    build_tmp = image.parent / f".build-{token}"
    own_tmp = not (os.environ.get("APPTAINER_TMPDIR") or os.environ.get("SINGULARITY_TMPDIR"))
    start = time.monotonic()
    try:
        if own_tmp:
            build_tmp.mkdir()
        env = (
            _scoped_env("APPTAINER_TMPDIR", str(build_tmp)) if own_tmp else contextlib.nullcontext()
        )
        _say(log, f"pulling {uri} -> {image}")
        with env:
            _client().pull(image=uri, name=str(tmp), pull_folder="", quiet=log is None)
        if not tmp.exists():
            raise SegmentationError(
                f"pulling {uri} produced no image (see the pull's output above)"
            )
        try:
            info = verify_image(tmp, uri=uri, min_bytes=min_bytes)
        except SegmentationError as exc:
            raise SegmentationError(
                f"pulling {uri} gave an unusable image, removed: {exc}"
            ) from None
        os.replace(tmp, image)
        _say(log, f"pulled {info.size} bytes in {time.monotonic() - start:.1f} s")
        return ImageInfo(image, info.kind, info.size, info.labels)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if own_tmp:
            shutil.rmtree(build_tmp, ignore_errors=True)


def write_receipt(info: ImageInfo, uri: str, dest: Path) -> bool:
    """Write the receipt of a verified image (unchanged content keeps its mtime)."""
    from bids2hub.fsutil import write_if_changed

    text = json.dumps(info.receipt(uri), indent=2, sort_keys=True) + "\n"
    return write_if_changed(Path(dest), text)


# ------------------------------------------------------------------------ run


def deepisles_command(
    dwi_name: str,
    adc_name: str,
    flair_name: str | None,
    *,
    fast: bool,
    skull_strip: bool = False,
) -> list[str]:
    """The command run inside the image (its entrypoint, given explicitly)."""
    args = ["python", "main.py", "--dwi_file_name", dwi_name, "--adc_file_name", adc_name]
    if flair_name:
        args += ["--flair_file_name", flair_name]
    if fast:
        args.append("--fast")
    if skull_strip:
        args.append("--skull_strip")
    inner = f"source activate {ENV_NAME} && {shlex.join(args)}"
    return ["bash", "-c", inner]


def _copy_gzipped(src: Path, dest: Path) -> None:
    """Copy a NIfTI to a ``.nii.gz`` name, compressing it when it is not gzip already.

    DeepISLES copies its inputs to ``.nii.gz`` names and its nibabel (4.0.2) refuses
    an uncompressed file under such a name: every staged file is gzip.
    """
    import gzip

    with open(src, "rb") as fh:
        head = fh.read(2)
    if head == _GZIP_MAGIC:
        shutil.copyfile(src, dest)
    else:
        dest.write_bytes(gzip.compress(src.read_bytes(), compresslevel=1, mtime=0))


@dataclass(frozen=True)
class Staged:
    """What :func:`stage_inputs` wrote: file names in the staging folder, and the crop."""

    names: dict[str, str]
    #: (start, stop) voxel index per axis of the staged trace/ADC in the full DWI grid;
    #: None when they are the full grid.
    box: tuple[tuple[int, int], ...] | None
    brain_extracted: bool


def _extent_mm(img: Any) -> list[float]:
    zooms = [abs(float(z)) for z in img.header.get_zooms()[:3]]
    return [n * z for n, z in zip(img.shape[:3], zooms, strict=True)]


def crop_box(brain: Any, zooms: tuple[float, ...], name: str) -> tuple[tuple[int, int], ...]:
    """Voxel box of the brain plus :data:`CROP_MARGIN_MM`, each axis under :data:`GRID_LIMIT_MM`.

    Raises
    ------
    SegmentationError
        No brain found, or the brain itself spans 256 mm or more along an axis.
    """
    import numpy as np

    if not brain.any():
        raise SegmentationError(f"{name}: no brain found to crop the staged images to")
    box = []
    for axis, zoom in enumerate(zooms[:3]):
        other = tuple(a for a in range(3) if a != axis)
        where = np.flatnonzero(brain.any(axis=other))
        margin = int(np.ceil(CROP_MARGIN_MM / zoom))
        lo = max(int(where[0]) - margin, 0)
        hi = min(int(where[-1]) + 1 + margin, brain.shape[axis])
        limit = int(np.ceil(GRID_LIMIT_MM / zoom)) - 1  # voxels x spacing stays < 256 mm
        if hi - lo > limit:
            if where[-1] + 1 - where[0] > limit:
                raise SegmentationError(
                    f"{name}: the brain spans {(where[-1] + 1 - where[0]) * zoom:.0f} mm along "
                    f"axis {axis}; DeepISLES' SEALS needs under {GRID_LIMIT_MM:g} mm"
                )
            centre = (int(where[0]) + int(where[-1]) + 1) // 2
            lo = max(min(centre - limit // 2, brain.shape[axis] - limit), 0)
            hi = lo + limit
        box.append((lo, hi))
    return tuple(box)


def stage_inputs(
    inputs: dict[str, Path], stage: Path, *, brain_extract: bool = False, log: TextIO | None = None
) -> Staged:
    """Write DeepISLES' inputs into ``stage``: always ``.nii.gz``; the trace and ADC cropped to
    the brain when an axis reaches 256 mm (SEALS' uint8 grid would wrap), and zero outside
    the brain when ``brain_extract`` (DeepISLES' example inputs are brain-extracted).

    Parameters
    ----------
    inputs
        ``dwi`` (trace), ``adc`` and optionally ``flair`` files.
    stage
        The folder bound to ``/app/data``.
    brain_extract
        Zero the trace and ADC outside the brain mask of the trace.
    log
        Where to say what was done.
    """
    import nibabel as nib
    import numpy as np

    from bids2hub.segment.prepare import _save_3d, read_image
    from bids2hub.segment.run import brain_mask

    names = {kind: f"{kind}.nii.gz" for kind in inputs}
    dwi_img = nib.load(inputs["dwi"])
    extent = _extent_mm(dwi_img)
    wraps = any(e >= GRID_LIMIT_MM for e in extent)
    if "flair" in inputs:
        _copy_gzipped(inputs["flair"], stage / names["flair"])
    if not wraps and not brain_extract:
        for kind in ("dwi", "adc"):
            _copy_gzipped(inputs[kind], stage / names[kind])
        return Staged(names, None, False)
    ref, trace = read_image(inputs["dwi"], str(inputs["dwi"]), np.float32)
    _, adc = read_image(inputs["adc"], str(inputs["adc"]), np.float32)
    brain = brain_mask(trace)
    if brain_extract:
        trace = np.where(brain, trace, 0).astype(np.float32)
        adc = np.where(brain, adc, 0).astype(np.float32)
        _say(log, f"brain extraction: {int(brain.sum())} voxels kept, background set to 0")
    box = None
    if wraps:
        zooms = tuple(abs(float(z)) for z in ref.header.get_zooms()[:3])
        box = crop_box(brain, zooms, str(inputs["dwi"]))
        cut = tuple(slice(lo, hi) for lo, hi in box)
        ref = ref.slicer[cut]
        trace, adc = trace[cut], adc[cut]
        shown = " x ".join(f"{e:.0f}" for e in extent)
        _say(log, f"cropped to the brain {list(box)}: the DWI grid is {shown} mm, SEALS' "
                  f"uint8 1 mm grid wraps at {GRID_LIMIT_MM:g} mm")  # fmt: skip
    _save_3d(trace, ref, stage / names["dwi"])
    _save_3d(adc, ref, stage / names["adc"])
    return Staged(names, box, brain_extract)


def paste_back(mask: Path, box: tuple[tuple[int, int], ...], dwi: Path, dest: Path) -> None:
    """Put a mask of the cropped grid back onto the full DWI grid (zeros outside the box).

    Raises
    ------
    SegmentationError
        The mask is not on the cropped grid.
    """
    import nibabel as nib
    import numpy as np

    from bids2hub.segment.run import write_mask

    ref = nib.load(dwi)
    cut = tuple(slice(lo, hi) for lo, hi in box)
    try:
        data = np.asanyarray(nib.load(mask).dataobj)
    except Exception as exc:  # nibabel raises several unrelated types
        raise SegmentationError(f"{mask}: not a readable NIfTI image ({exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    expected = tuple(hi - lo for lo, hi in box)
    if data.shape != expected:
        raise SegmentationError(
            f"{mask}: shape {data.shape} differs from the staged (cropped) DWI {expected}"
        )
    full = np.zeros(ref.shape[:3], np.uint8)
    full[cut] = data > 0
    write_mask(full, ref, dest)


def failure_lines(output: str) -> list[str]:
    """Lines of the container's output that carry one of :data:`FAILURE_SIGNATURES`."""
    return [ln for ln in output.splitlines() if any(sig in ln for sig in FAILURE_SIGNATURES)]


def _check_bind(path: Path) -> None:
    if not path.is_dir():
        raise SegmentationError(f"{path}: bind source does not exist")
    if any(c in str(path) for c in ":,"):
        raise SegmentationError(
            f"{path}: a ':' or ',' in the path breaks Apptainer's --bind; choose another out_dir"
        )


def run_deepisles(
    image: Path,
    dwi: Path,
    adc: Path,
    flair: Path | None,
    out: Path,
    *,
    fast: bool,
    log: TextIO | None = None,
    skull_strip: bool = False,
    brain_extract: bool = False,
) -> None:
    """Segment one subject with the DeepISLES container and move its mask to ``out``.

    The inputs are staged (:func:`stage_inputs`: gzip, cropped under 256 mm, optionally
    brain-extracted) into a fresh folder next to ``out``, bound to ``/app/data``;
    scratch folders of the same staging folder are bound over SEALS' writable
    folders (:data:`SEALS_WRITABLE`); the container runs with ``--nv
    --writable-tmpfs --cleanenv --pwd /app``. The command line and the tail of the
    container's output go to ``log``. The staging folder is always removed; ``out``
    appears only when a mask on the DWI grid was produced (pasted back when cropped).

    Parameters
    ----------
    image
        SIF file or sandbox folder (see :func:`image_path`).
    dwi, adc, flair
        3D b=1000 trace, 3D ADC, optional FLAIR (NIfTI, ``.nii`` or ``.nii.gz``).
    out
        Destination of the mask (``.nii.gz``).
    fast
        Pass ``--fast`` (DeepISLES runs only its best single model).
    log
        Text stream for the command line and the container's output.
    skull_strip
        Pass ``--skull_strip`` (DeepISLES runs HD-BET on the FLAIR; it crashes without one).
    brain_extract
        Zero the staged trace and ADC outside the trace's brain mask.

    Raises
    ------
    SegmentationError
        Missing runtime, image or input; ``skull_strip`` without a FLAIR; non-zero exit
        or a failure signature in the output (with the output's tail); no mask.
    """
    image, out = Path(image), Path(out)
    inputs = {"dwi": Path(dwi), "adc": Path(adc)}
    if flair is not None:
        inputs["flair"] = Path(flair)
    for kind, src in inputs.items():
        if not src.is_file():
            raise SegmentationError(f"{src}: {kind} input of DeepISLES not found")
    if skull_strip and flair is None:
        raise SegmentationError(
            f"{dwi}: --skull_strip needs a FLAIR (DeepISLES crashes without one); "
            "set segment.deepisles.skull_strip: false"
        )
    if not image.exists():
        raise SegmentationError(
            f"{image}: DeepISLES image not found (rerun the pull_deepisles_image rule)"
        )
    version = runtime_version()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.deepisles-", dir=out.parent))
    try:
        data = stage / Path(DATA_MOUNT).name  # bound on DATA_MOUNT
        data.mkdir()
        staged = stage_inputs(inputs, data, brain_extract=brain_extract, log=log)
        names = staged.names
        binds = [f"{data}:{DATA_MOUNT}"]
        for sub in SEALS_WRITABLE:
            (stage / "seals" / sub).mkdir(parents=True)
            binds.append(f"{stage / 'seals' / sub}:{SEALS_DIR}/{sub}")
        _check_bind(stage)
        options = list(EXEC_OPTIONS)
        for key in GPU_ENV:
            if os.environ.get(key):
                options += ["--env", f"{key}={os.environ[key]}"]
        command = deepisles_command(
            names["dwi"], names["adc"], names.get("flair"), fast=fast, skull_strip=skull_strip
        )
        bind_args = [a for b in binds for a in ("--bind", b)]
        argv = ["singularity", "exec", "--nv", *bind_args, *options, str(image), *command]
        _say(log, f"runtime: {version}")
        _say(log, f"command: {shlex.join(argv)}")
        environ = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
        start = time.monotonic()
        result = _client().execute(
            image=str(image),
            command=command,
            bind=binds,
            nv=True,
            options=options,
            return_result=True,
            quiet=True,
            environ=environ,
        )
        code = result.get("return_code") if isinstance(result, dict) else None
        message = result.get("message") if isinstance(result, dict) else result
        tail = _tail(message)
        _say(log, f"exit status {code} after {time.monotonic() - start:.1f} s")
        _say(log, "container output (last lines):\n" + (tail or "(none)"))
        if code != 0:
            short = " | ".join(tail.splitlines()[-5:]) or "no output"
            raise SegmentationError(f"DeepISLES failed on {inputs['dwi']} (exit {code}): {short}")
        failed = failure_lines(_tail(message, 1 << 30))
        if failed:
            raise SegmentationError(
                f"DeepISLES exited 0 on {inputs['dwi']} but its output shows a failure "
                f"(its mask would be empty or partial): {' | '.join(failed[-3:])}; "
                f"last lines: {' | '.join(tail.splitlines()[-5:])}"
            )
        mask = data / "results" / RESULT_NAME
        if not mask.is_file():
            raise SegmentationError(
                f"DeepISLES wrote no {DATA_MOUNT}/results/{RESULT_NAME} for {inputs['dwi']}"
            )
        if mask.stat().st_size == 0:
            raise SegmentationError(
                f"DeepISLES wrote an empty {DATA_MOUNT}/results/{RESULT_NAME} for {inputs['dwi']}"
            )
        if staged.box is not None:
            paste_back(mask, staged.box, inputs["dwi"], out)
            _say(log, f"mask pasted back onto the DWI grid -> {out}")
        else:
            os.replace(mask, out)
            _say(log, f"mask -> {out}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
