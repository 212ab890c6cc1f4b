"""Reading and writing single-channel images: TIFF, PNG and NPY (the ``_`` avoids the imageio package).

Interferograms may be 8- or 16-bit integers (scaled by the type's maximum to [0, 1], like a camera
frame: 12-bit data stored in 16-bit reads as [0, 1/16]) or floats (kept). Phase maps must be floats
in radians. Every bad file raises :class:`~sparseconn.errors.DataError` with a one-line message that
starts with the file's path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from sparseconn.errors import DataError
from sparseconn.fileio import atomic_path

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
PHASE_SUFFIXES = (".tif", ".tiff", ".npy")

# PIL modes of one grey channel, and the full-scale value of their integers. PNG stores at most
# 16 bits, so a 32-bit "I" PNG still holds 16-bit data.
_GREY_MODES = {"1": 1.0, "L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": None}


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        mode, bands = img.mode, img.getbands()
        if mode == "P":  # palette: fine if the palette is grey (some tools save greyscale this way)
            rgb = np.asarray(img.convert("RGB"))
            if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 0] == rgb[..., 2]).all():
                return rgb[..., 0].astype(np.float32) / np.float32(255.0)
            raise DataError(f"{path}: colour palette PNG; expected one grey channel (convert it to greyscale)")
        if mode not in _GREY_MODES:
            what = "an alpha channel" if "A" in bands else f"{len(bands)} channels"
            raise DataError(f"{path}: PNG mode {mode!r} has {what}; expected one grey channel "
                            "(convert it to 8- or 16-bit greyscale)")
        arr = np.asarray(img)
    full = _GREY_MODES[mode]
    return arr.astype(np.float32) / np.float32(full) if full is not None else arr


def _squeeze_channels(arr: np.ndarray, path: Path | str) -> np.ndarray:
    """(H, W), (H, W, 1) or (1, H, W) -> (H, W); colour and stacks are errors."""
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr[0] if arr.shape[0] == 1 else arr[..., 0]
    if arr.ndim == 3 and (arr.shape[-1] in (3, 4) or arr.shape[0] in (3, 4)):
        raise DataError(f"{path}: colour image of shape {arr.shape}; expected one channel "
                        "(convert it to greyscale)")
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a single 2-D image, got an array of shape {arr.shape}")
    return arr


def read_image(path: str | os.PathLike[str], *, integer_ok: bool = True) -> np.ndarray:
    """Read one single-channel image as a (H, W) float32 array.

    Integers are scaled by their type's maximum to [0, 1] (``integer_ok=False``, used for phase
    maps, refuses them); floats are kept. Raises :class:`DataError` naming the file if it is
    missing, of an unsupported type, unreadable, in colour, not 2-D, or holds NaN or inf.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DataError(f"{p}: unsupported file type {suffix or '(none)'!r}; expected one of "
                        + ", ".join(IMAGE_SUFFIXES))
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    try:
        if suffix == ".png":
            arr = _read_png(p)
        elif suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            arr = tifffile.imread(p)
    except DataError:
        raise
    except Exception as exc:  # tifffile, PIL and numpy raise a dozen types for corrupt files
        raise DataError(f"{p}: cannot read the file ({type(exc).__name__}: {_one_line(exc)})") from exc
    return _as_float(_squeeze_channels(np.asarray(arr), p), p, integer_ok)


def _as_float(arr: np.ndarray, where: Path | str, integer_ok: bool = True) -> np.ndarray:
    """A (H, W) image as float32: integers scaled by their type's maximum, floats kept, NaN/inf refused."""
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        if not integer_ok:
            raise DataError(f"{where}: phase maps must be floating-point radians, got {arr.dtype} integers")
        full = 1.0 if arr.dtype == np.bool_ else float(np.iinfo(arr.dtype).max)
        arr = arr.astype(np.float32) / np.float32(full)
    elif not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{where}: unsupported pixel type {arr.dtype}; expected integers or floats")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.isfinite(arr).sum())
        raise DataError(f"{where}: {bad} NaN or inf values")
    return arr


MIN_HOLOGRAM_SIDE = 8
"""The smallest height and width of a hologram that is demodulated: in a smaller frame the carrier search
finds no bin outside its DC disk (a 3x5 frame: ZeroDivisionError in the classical pipeline, NaN from the
network), and a few pixels hold no fringe pattern anyway."""


def check_hologram_size(size: tuple[int, ...], where: Path | str) -> None:
    """A hologram's (H, W) at least :data:`MIN_HOLOGRAM_SIDE` px a side (from a header, before the pixels
    are read); else :class:`DataError` naming ``where``."""
    h, w = size[-2:]
    if min(h, w) < MIN_HOLOGRAM_SIDE:
        raise DataError(f"{where}: is {h}x{w} px (H x W); expected a hologram of at least "
                        f"{MIN_HOLOGRAM_SIDE}x{MIN_HOLOGRAM_SIDE}")


def check_hologram(image: np.ndarray, where: Path | str) -> np.ndarray:
    """``image`` (H, W) if fringes can be demodulated from it: at least :data:`MIN_HOLOGRAM_SIDE` px a side
    and not constant (an all-zero or saturated frame has no sideband: the pipeline would divide by zero,
    the network write NaN). Else :class:`DataError` naming ``where`` and why."""
    check_hologram_size(image.shape, where)
    if not np.ptp(image) > 0:
        raise DataError(f"{where}: is constant ({float(image.flat[0]):g} everywhere): no fringes to demodulate")
    return image


def _is_tiff(path: Path) -> bool:
    return path.suffix.lower() in (".tif", ".tiff")


def count_frames(path: str | os.PathLike[str]) -> int:
    """Frames of an image file for :func:`iter_frames`, from its header: the pages of a TIFF, else 1.

    Raises :class:`DataError` naming the file when a TIFF's header cannot be read.
    """
    p = Path(path)
    if not _is_tiff(p):
        return 1
    try:
        with tifffile.TiffFile(p) as tif:
            n = len(tif.pages)
    except Exception as exc:  # tifffile raises a dozen types for corrupt files
        raise DataError(f"{p}: cannot read the file ({type(exc).__name__}: {_one_line(exc)})") from exc
    if n == 0:
        raise DataError(f"{p}: cannot read the file (no readable TIFF page)")
    return n


def iter_frames(path: str | os.PathLike[str], *, hologram: bool = False) -> Iterator[np.ndarray]:
    """The frames of an image file, (H, W) float32 each, read one at a time.

    A TIFF with several pages is a stack: each page is a frame, read only when asked for, so a long
    stack is never held whole. Any other file (a single-page TIFF too) is one frame, read by
    :func:`read_image`. Pages are checked like single images (one channel, integers scaled, finite);
    with ``hologram`` each frame is also checked by :func:`check_hologram` (a page named by its number).
    """
    p = Path(path)
    if count_frames(p) == 1:
        image = read_image(p)
        yield check_hologram(image, p) if hologram else image
        return
    try:
        tif = tifffile.TiffFile(p)
    except Exception as exc:
        raise DataError(f"{p}: cannot read the file ({type(exc).__name__}: {_one_line(exc)})") from exc
    with tif:
        for i in range(len(tif.pages)):
            where = f"{p} (page {i + 1})"
            try:
                page = tif.pages[i].asarray()
            except Exception as exc:
                raise DataError(f"{where}: cannot read the page ({type(exc).__name__}: {_one_line(exc)})") from exc
            image = _as_float(_squeeze_channels(np.asarray(page), where), where)
            yield check_hologram(image, where) if hologram else image


def image_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(H, W) of a one-channel image from its header, without reading the pixels; None when the header
    does not tell (unreadable or multi-channel files: :func:`read_image` reports those properly)."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".png":
            with Image.open(p) as img:
                return (img.size[1], img.size[0]) if len(img.getbands()) == 1 else None
        if p.suffix.lower() == ".npy":
            shape = np.load(p, mmap_mode="r", allow_pickle=False).shape
        else:
            with tifffile.TiffFile(p) as tif:
                shape = tif.series[0].shape
    except Exception:  # a corrupt header is read_image's to report, with the file's name
        return None
    dims = [d for d in shape if d != 1]
    return (int(dims[0]), int(dims[1])) if len(dims) == 2 else None


def write_tiff(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write (H, W) ``image`` as a float32 TIFF atomically (temporary file, then rename)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tifffile.imwrite(tmp, np.asarray(image, dtype=np.float32))
    return target


def write_tiff_stack(path: str | os.PathLike[str], pages: Iterable[np.ndarray]) -> Path:
    """Write (H, W) ``pages`` as one multi-page float32 TIFF, one page at a time as they come (the stack
    is never held whole), atomically: the file appears only once every page is written."""
    target = Path(path)
    with atomic_path(target) as tmp, tifffile.TiffWriter(tmp) as tif:
        n = 0
        for page in pages:
            tif.write(np.asarray(page, dtype=np.float32), contiguous=True)
            n += 1
        if n == 0:
            raise DataError(f"{target}: no pages to write")
    return target


def index_images(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Map name (stem) -> path of the images in ``folder``, sorted by name.

    Hidden and temporary files (leading ``.``) are skipped; suffixes match case-insensitively.
    Raises DataError naming the folder when it is missing or holds no image of ``suffixes``, and
    naming both files when two share a name (``a.tif`` and ``a.png``).
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    index: dict[str, Path] = {}
    for f in files:
        if f.suffix.lower() not in suffixes:
            continue
        if f.stem in index:
            raise DataError(f"{index[f.stem]}: ambiguous, {f.name} has the same name; keep one of them")
        index[f.stem] = f
    if not index:
        other = sorted({f.suffix.lower() or "(none)" for f in files})
        hint = f" (found only {', '.join(other)})" if other else " (it is empty)"
        raise DataError(f"{folder}: no {'/'.join(suffixes)} images{hint}")
    return dict(sorted(index.items()))
