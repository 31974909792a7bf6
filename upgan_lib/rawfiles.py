"""Reading raw data sets as they are downloaded: a folder, or a ``.tar.gz`` / ``.tar`` / ``.zip`` archive.

:class:`RawSource` lists the files of either kind the same way (``name`` = path inside the source,
``/``-separated) and reads their bytes in the order that is cheapest for the medium, so an
archive is decompressed front to back once and never extracted to disk. :func:`decode_image`
turns those bytes into an RGB ``uint8`` array and says what it had to convert, or raises
:class:`BadImage` naming the file and the reason (corrupt, truncated, not an image).

The data root may be read-only: nothing here writes.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

import numpy as np

#: File name endings treated as images (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class SourceError(ValueError):
    """The source path is missing, empty, unreadable or a corrupt archive."""


#: members (files) larger than this are not read: no photo needs it, and a small archive can hold
#: a huge member that would fill the memory (a 14 MB .tar.gz can unpack to gigabytes)
MAX_MEMBER_BYTES = 256 * 2 ** 20
#: images with more pixels than this are not decoded (a 6000x4000 photo has 24 M)
MAX_PIXELS = 120_000_000


class TooLarge(OSError):
    """A member or file is larger than :data:`MAX_MEMBER_BYTES`; it was not read."""


def _too_large(name: str, size: int) -> TooLarge:
    return TooLarge(f"{name}: {size / 2 ** 20:.0f} MiB, more than the {MAX_MEMBER_BYTES / 2 ** 20:.0f} MiB a photo "
                    "may have (rawfiles.MAX_MEMBER_BYTES); not read - remove it or check the archive")


class BadImage(ValueError):
    """One file could not be decoded as an image; ``reason`` is a short key for reports."""

    def __init__(self, name: str, reason: str, detail: str):
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RawEntry:
    name: str  # path inside the source, '/'-separated
    size: int  # bytes


def is_archive(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _hidden(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") for p in parts) or "__MACOSX" in parts


class RawSource:
    """A folder or an archive, listed and read uniformly.

    ``RawSource(path)`` raises :class:`SourceError` when the path does not exist or is neither a
    folder nor a supported archive. :meth:`list` returns every regular, non-hidden file, sorted by
    name; :meth:`read_many` yields ``(name, bytes)`` or ``(name, OSError)`` for each requested
    name (unknown names give ``FileNotFoundError``).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise SourceError(f"{self.path}: no such file or folder. Point --source at the downloaded archive or "
                              "its extracted folder, or set UPGAN_DATA to the folder that holds it.")
        if self.path.is_dir():
            self.kind = "folder"
        elif is_archive(self.path):
            self.kind = "zip" if str(self.path).lower().endswith(".zip") else "tar"
        else:
            raise SourceError(f"{self.path}: not a folder nor a {'/'.join(ARCHIVE_SUFFIXES)} archive")
        self._entries: list[RawEntry] | None = None
        #: paths under a folder source that are not listed: (relative path, reason) with reason
        #: ``unreadable_folder``, ``dangling_link`` or ``not_regular`` (FIFO, socket, device)
        self.not_listed: list[tuple[str, str]] = []

    def __repr__(self) -> str:
        return f"RawSource({str(self.path)!r}, kind={self.kind!r})"

    # ------------------------------------------------------------------ listing
    def list(self) -> list[RawEntry]:
        if self._entries is None:
            self._entries = sorted(self._list(), key=lambda e: e.name)
        return self._entries

    def _list(self) -> list[RawEntry]:
        out = []
        if self.kind == "folder":
            import stat

            def onerror(e: OSError):
                where = Path(e.filename) if e.filename else self.path
                rel = where.relative_to(self.path).as_posix() if where != self.path else "."
                self.not_listed.append((rel, "unreadable_folder"))

            self.not_listed = []
            for dirpath, dirnames, filenames in os.walk(self.path, onerror=onerror):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for f in filenames:
                    p = Path(dirpath) / f
                    rel = p.relative_to(self.path).as_posix()
                    if _hidden(rel):
                        continue
                    try:
                        st = p.stat()
                    except OSError:
                        self.not_listed.append((rel, "dangling_link" if p.is_symlink() else "unreadable"))
                        continue
                    if not stat.S_ISREG(st.st_mode):
                        self.not_listed.append((rel, "not_regular"))
                        continue
                    out.append(RawEntry(rel, st.st_size))
            return out
        try:
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as z:
                    return [RawEntry(i.filename, i.file_size) for i in z.infolist()
                            if not i.is_dir() and not _hidden(i.filename)]
            with tarfile.open(self.path, "r:*") as t:
                return [RawEntry(m.name, m.size) for m in t if m.isfile() and not _hidden(m.name)]
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise SourceError(f"{self.path}: cannot read the archive ({type(e).__name__}: {e}). It is probably "
                              "truncated or corrupt: download it again and check its SHA-256 "
                              "(upgan_lib.download.verify_checksum).") from e

    def fingerprint(self) -> dict:
        """What identifies the content cheaply: for an archive its size and mtime, for a folder the
        names, sizes and mtimes of all its files."""
        st = self.path.stat()
        if self.kind != "folder":
            return {"kind": self.kind, "path": str(self.path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        h = hashlib.sha256()
        n = 0
        for dirpath, dirnames, filenames in sorted(os.walk(self.path)):
            dirnames.sort()
            for f in sorted(filenames):
                p = Path(dirpath) / f
                try:
                    s = p.stat()
                except OSError:
                    continue
                h.update(json.dumps([p.relative_to(self.path).as_posix(), s.st_size, s.st_mtime_ns]).encode())
                n += 1
        return {"kind": "folder", "path": str(self.path.resolve()), "files": n, "listing_sha256": h.hexdigest()}

    # ------------------------------------------------------------------ reading
    def read(self, name: str) -> bytes:
        for _, data in self.read_many([name]):
            if isinstance(data, Exception):
                raise data
            return data
        raise FileNotFoundError(name)

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes | OSError]]:
        """Yield ``(name, data)`` for each name; archives are read front to back in one pass,
        so the order of the yielded pairs is the archive's order, not necessarily ``names``'s."""
        names = list(names)
        if self.kind == "folder":
            root = self.path.resolve()
            for n in names:
                p = (self.path / n)
                try:
                    if root not in p.resolve().parents:
                        raise FileNotFoundError(f"{n}: outside the source folder")
                    size = p.stat().st_size
                    if size > MAX_MEMBER_BYTES:
                        raise _too_large(n, size)
                    yield n, p.read_bytes()
                except OSError as e:
                    yield n, e
            return
        wanted = set(names)
        seen = set()
        try:
            if self.kind == "zip":
                with zipfile.ZipFile(self.path) as z:
                    for info in z.infolist():
                        if info.filename in wanted and info.filename not in seen:
                            seen.add(info.filename)
                            if info.file_size > MAX_MEMBER_BYTES:
                                yield info.filename, _too_large(info.filename, info.file_size)
                                continue
                            yield info.filename, z.read(info)
            else:
                with tarfile.open(self.path, "r|*") as t:  # streaming: one sequential pass
                    for m in t:
                        if m.isfile() and m.name in wanted and m.name not in seen:
                            seen.add(m.name)
                            if m.size > MAX_MEMBER_BYTES:  # skipped over, never held in memory
                                yield m.name, _too_large(m.name, m.size)
                                continue
                            f = t.extractfile(m)
                            yield m.name, f.read() if f is not None else OSError(f"{m.name}: unreadable member")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise SourceError(f"{self.path}: the archive broke off while reading ({type(e).__name__}: {e}); it is "
                              "probably truncated: download it again and verify its SHA-256.") from e
        for n in names:
            if n not in seen:
                yield n, FileNotFoundError(f"{n}: not in {self.path.name}")


# ---------------------------------------------------------------------------- images
def decode_image(data: bytes, name: str = "<bytes>", max_side: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Bytes of an image file -> (RGB uint8 (H, W, 3) C-contiguous, notes).

    Notes name conversions made: ``"grayscale"`` (grey-level image copied into three channels),
    ``"alpha_dropped"`` (RGBA/LA: transparency discarded), ``"palette"``, ``"cmyk"``,
    ``"exif_rotated"``, ``"downscaled"`` (long side above ``max_side``). Raises :class:`BadImage`
    with reason ``empty``, ``truncated`` or ``corrupt``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise BadImage(name, "empty", "the file is empty (0 bytes); download or copy it again")
    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise BadImage(name, "too_large", f"{im.size[0]}x{im.size[1]} pixels, more than the "
                               f"{MAX_PIXELS / 1e6:.0f} M a photo may have (rawfiles.MAX_PIXELS); downscale it first")
            im.load()
            if im.getexif().get(0x0112, 1) != 1:
                im = ImageOps.exif_transpose(im)
                notes.append("exif_rotated")
            mode = im.mode
            if mode in ("L", "I", "I;16", "F", "1"):
                notes.append("grayscale")
                if mode in ("I", "I;16", "F"):
                    arr = np.asarray(im, dtype=np.float32)
                    hi = float(arr.max()) if arr.size else 1.0
                    im = Image.fromarray(np.clip(arr / max(hi, 1.0) * 255.0, 0, 255).astype(np.uint8))
            elif mode in ("RGBA", "LA", "PA"):
                notes.append("alpha_dropped")
                if mode == "LA":
                    notes.append("grayscale")
            elif mode == "P":
                notes.append("palette")
                if "transparency" in im.info:
                    notes.append("alpha_dropped")
            elif mode == "CMYK":
                notes.append("cmyk")
            rgb = np.asarray(im.convert("RGB"))
    except BadImage:
        raise
    except UnidentifiedImageError as e:
        raise BadImage(name, "corrupt", "not a readable image (unknown or damaged format); remove or replace the file") from e
    except OSError as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise BadImage(name, "truncated", f"the file ends early, the image is truncated (decoder: {msg}); "
                           "copy or download it again") from e
        raise BadImage(name, "corrupt", f"the image could not be decoded ({msg}); remove or replace the file") from e
    except Image.DecompressionBombError as e:
        raise BadImage(name, "too_large", f"the image is implausibly large ({e}); downscale it first") from e
    except (ValueError, SyntaxError) as e:  # PIL raises these for some broken headers
        raise BadImage(name, "corrupt", f"the image could not be decoded ({e}); remove or replace the file") from e
    if rgb.ndim != 3 or rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise BadImage(name, "too_small", f"image of shape {rgb.shape} is too small to hold a face")
    if max_side and max(rgb.shape[:2]) > max_side:
        import cv2

        f = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        notes.append("downscaled")
    return np.ascontiguousarray(rgb, dtype=np.uint8), notes
