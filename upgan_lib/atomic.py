"""Atomic file writes: the one home for "write a temporary file, then rename it over the target".

Every file the course writes that a reader (another process, a resumed run, a student's next
cell) may open goes through :func:`atomic_path`: the content is written to a temporary file of
its own in the destination's folder (a unique name, so two runs writing into one folder never
share it), flushed to disk, given the permissions a plain ``open(path, "w")`` would give, and
renamed over the destination. A reader sees the old file or the new one, never half of one; if
anything fails, only the temporary file this call created is removed.

    with atomic_path("run/config.json") as tmp:
        tmp.write_text(text)

    atomic_write("out/photo.jpg", jpeg_bytes)
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; when the block ends without error it is
    fsync'ed and renamed over ``path``. ``suffix`` keeps an extension that a writer reads
    the format from (``cv2.imwrite`` needs ``.png``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)
