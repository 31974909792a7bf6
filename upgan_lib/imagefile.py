"""Photo files as `upgan obscure` reads and writes them, and the folders it walks.

**Reading** (:func:`read_image`): JPEG and PNG. EXIF orientation is applied (faces are found
upright); what is needed to write the photo back alike is kept in an :class:`ImageFile`: stored
size, PIL mode, EXIF orientation tag, ICC profile, alpha channel, palette transparency. A photo
larger than :data:`MAX_PIXELS`, unreadable, or in a mode outside :data:`SUPPORTED_MODES` is
refused with an :class:`~upgan_lib.obscure_config.ObscureError`.

**Writing** (:func:`write_image`): the orientation is undone, so the output has the input's
stored size, mode and EXIF orientation tag and displays exactly like the input. All other
metadata (EXIF GPS, camera, dates, XMP, comments) is dropped - it can identify a person too; the
ICC colour profile is kept. Grey-scale photos are written back grey; an alpha channel (RGBA, LA,
transparent palette) is kept unchanged. JPEGs are written at quality 95, atomically
(:mod:`upgan_lib.atomic`).

**Folders** (:func:`list_images`): every image under a folder, and every other path with the
reason it is skipped (:data:`SKIP_REASONS`). File names are printed through :func:`show_path`.

PIL is imported when a photo is read or written, not when this module is imported.
"""
from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write
from .obscure_config import ObscureError

IMAGE_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
ORIENTATION_TAG = 0x0112
#: photos with more pixels than this are refused (a 6000x4000 photo has 24 M): decoding a larger
#: one would take gigabytes of memory, and a tiny file can claim any size in its header
MAX_PIXELS = 120_000_000
#: PIL modes read and written back as they are; others (16-bit, float) are refused, not guessed at
SUPPORTED_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "1")

#: why a path under INPUT is not obscured (report ``skipped`` reasons)
SKIP_REASONS = {
    "non_image": "not a .jpg/.jpeg/.png file",
    "hidden": "hidden file or folder (name starts with '.')",
    "unreadable_folder": "folder that cannot be listed (permissions?)",
    "dangling_link": "link to nothing",
    "not_regular": "not a regular file (FIFO, socket or device)",
    "folder_link": "link to a folder (not followed)",
}


@dataclass
class ImageFile:
    """A photo as read: upright RGB for processing, plus what is needed to write it back alike."""

    rgb: np.ndarray  # uint8 (H, W, 3), EXIF orientation applied
    alpha: np.ndarray | None  # uint8 (H, W) upright, or None
    mode: str  # PIL mode of the stored image (RGB, L, RGBA, LA, P, CMYK, ...)
    format: str  # JPEG / PNG
    orientation: int  # EXIF orientation tag (1 = upright or absent)
    has_orientation_tag: bool
    size: tuple  # stored (width, height)
    icc_profile: bytes | None = None
    palette_transparency: object = None


# transpose that undoes what ImageOps.exif_transpose applied for each orientation
_UNDO = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
         6: "ROTATE_90", 7: "TRANSVERSE", 8: "ROTATE_270"}


def show_path(p) -> str:
    """A path as printable text: bytes that are not UTF-8 in a file name appear as \\xNN escapes
    instead of crashing a print or a log."""
    return os.fsencode(str(p)).decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def read_image(path) -> ImageFile:
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise ObscureError(f"{show_path(path)}: {im.size[0]}x{im.size[1]} pixels is more than this command "
                                   f"handles ({MAX_PIXELS / 1e6:.0f} M); downscale it first; nothing written for it")
            im.load()
            fmt = im.format or IMAGE_SUFFIXES.get(path.suffix.lower(), "PNG")
            exif = im.getexif()
            has_tag = ORIENTATION_TAG in exif
            orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
            if orientation not in range(1, 9):
                orientation = 1
            mode, size = im.mode, im.size
            icc = im.info.get("icc_profile")
            transparency = im.info.get("transparency") if mode in ("P", "L", "RGB") else None
            up = ImageOps.exif_transpose(im) if orientation != 1 else im.copy()
    except Image.DecompressionBombError as e:
        raise ObscureError(f"{show_path(path)}: implausibly large image ({e}); nothing written for it") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ObscureError(f"{show_path(path)}: not a readable image ({e}); nothing written for it") from e
    if mode not in SUPPORTED_MODES:
        raise ObscureError(f"{path}: image mode {mode} is not supported (use 8-bit {', '.join(SUPPORTED_MODES)}); "
                           "nothing written for it")
    alpha = None
    if mode in ("RGBA", "LA", "PA") or transparency is not None:
        rgba = up.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A")).copy()
        rgb = np.asarray(rgba.convert("RGB")).copy()
    else:
        rgb = np.asarray(up.convert("RGB")).copy()
    return ImageFile(rgb=rgb, alpha=alpha, mode=mode, format=fmt, orientation=orientation, has_orientation_tag=has_tag,
                     size=size, icc_profile=icc, palette_transparency=transparency)


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------
def write_image(path, rgb: np.ndarray, like: ImageFile, quality: int = 95) -> Path:
    """Write ``rgb`` (upright) with ``like``'s alpha, mode, orientation tag and ICC profile,
    atomically (temporary file + rename). Format from ``path``'s suffix."""
    from PIL import Image

    path = Path(path)
    fmt = IMAGE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ObscureError(f"{path}: unsupported output type {path.suffix!r}; use .jpg, .jpeg or .png")
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if like.alpha is not None:
        im.putalpha(Image.fromarray(like.alpha, "L"))
    if like.orientation in _UNDO:  # back to the stored pixel layout; the tag is written below
        im = im.transpose(getattr(Image.Transpose, _UNDO[like.orientation]))
    mode = like.mode
    if fmt == "JPEG" and mode not in ("RGB", "L", "CMYK", "1"):
        raise ObscureError(f"{path}: JPEG cannot store mode {mode} (alpha/palette); write a .png instead")
    if mode in ("P", "PA"):
        im = _to_palette(im, like.alpha)
    elif mode != im.mode:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **_save_options(like, fmt, quality))
    atomic_write(path, buf.getvalue())
    return path


def _save_options(like: ImageFile, fmt: str, quality: int) -> dict:
    """PIL ``save`` options that keep ``like``'s ICC profile, transparency and orientation tag."""
    from PIL import Image

    kw = {}
    if like.icc_profile:
        kw["icc_profile"] = like.icc_profile
    if like.palette_transparency is not None and like.mode in ("RGB", "L"):
        kw["transparency"] = like.palette_transparency
    if like.has_orientation_tag:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = like.orientation
        kw["exif"] = exif.tobytes()
    if fmt == "JPEG":
        kw.update(quality=quality)
    return kw


def _to_palette(im, alpha):
    """A palette image of ``im`` (RGB or RGBA). A transparency that is only on or off (as palette
    PNGs usually store it) is kept exactly: the quantiser's palette alphas are snapped back to 0/255."""
    from PIL import Image

    if alpha is None:
        return im.quantize(256)
    q = im.convert("RGBA").quantize(256, method=Image.Quantize.FASTOCTREE)
    if np.isin(np.asarray(alpha), (0, 255)).all() and q.palette.mode == "RGBA":
        pal = np.array(q.getpalette(rawmode="RGBA"), np.uint8).reshape(-1, 4)
        pal[:, 3] = np.where(pal[:, 3] >= 128, 255, 0)
        q.putpalette(pal.reshape(-1).tolist(), rawmode="RGBA")
    return q


# ---------------------------------------------------------------------------------------------
# folders
# ---------------------------------------------------------------------------------------------
def list_images(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(images, skipped) under a folder, recursively, sorted. ``skipped``: ``(path, reason)`` for
    everything else, reasons as in :data:`SKIP_REASONS`; nothing under the folder goes uncounted."""
    images, skipped = [], []

    def onerror(e: OSError):
        skipped.append((Path(e.filename) if e.filename else root, "unreadable_folder"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        d = Path(dirpath)
        for name in sorted(dirnames):
            p = d / name
            if p.is_symlink():
                skipped.append((p, "folder_link"))
            elif name.startswith("."):
                skipped.append((p, "hidden"))
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and not (d / n).is_symlink())
        for name in sorted(filenames):
            p = d / name
            reason = _skip_reason(p)
            if reason:
                skipped.append((p, reason))
            else:
                images.append(p)
    return sorted(images), sorted(skipped)


def _skip_reason(p: Path) -> str | None:
    """Why the file ``p`` found in a folder is not an image to obscure (None: it is one)."""
    try:
        st = p.stat()
    except OSError:
        return "dangling_link" if p.is_symlink() else "unreadable_folder"
    if not stat.S_ISREG(st.st_mode):
        return "not_regular"
    if p.name.startswith("."):
        return "hidden"
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        return "non_image"
    return None
