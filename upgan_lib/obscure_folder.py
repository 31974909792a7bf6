"""`upgan obscure` over files: a photo or a folder of photos in, the same layout out, and a report.

:func:`obscure_path` checks everything it can before writing anything (input missing, output
inside the input, outputs that exist), then reads, obscures and writes one photo at a time
(:mod:`upgan_lib.imagefile`): a photo that fails gets no output file and an ``error`` entry, and
never stops the others. The report (:func:`write_report`, JSON) lists every photo and every face
with its box, the detectors that found it, what was done and why, and every path that was
skipped with the reason; its ``summary`` counts them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_write
from .imagefile import IMAGE_SUFFIXES, SKIP_REASONS, list_images, read_image, show_path, write_image
from .obscure_config import ObscureError

if TYPE_CHECKING:
    from .obscure import Obscurer


def obscure_path(input_path, output_path, obscurer: Obscurer, overwrite: bool = False, progress=None) -> dict:
    """Obscure a photo or a folder of photos (recursively; relative paths kept) into ``output_path``.

    Returns the report (dict, JSON-able). A photo that fails to read, process or write gets no
    output file and an ``error`` entry. Raises :class:`ObscureError` before writing anything when
    the input is missing or outputs exist and ``overwrite`` is False.
    """
    src, dst = Path(input_path), Path(output_path)
    if not src.exists():
        raise ObscureError(f"input {src} not found; nothing was written")
    if src.is_dir():
        pairs, skipped = _folder_pairs(src, dst)
    else:
        pairs, skipped = [(src, _photo_target(src, dst))], []
    if not overwrite:
        _refuse_existing(pairs)
    report = {"input": str(src), "output": str(dst), "method": obscurer.cfg.method,
              "config": _jsonable(asdict(obscurer.cfg)), "coordinates": "upright image pixels (EXIF orientation applied)",
              "images": [], "skipped": [{"path": show_path(p), "reason": r, "detail": SKIP_REASONS[r]}
                                        for p, r in skipped]}
    t0 = time.perf_counter()
    for k, (p, target) in enumerate(pairs):
        entry = _obscure_file(obscurer, p, target)
        report["images"].append(entry)
        if progress:
            progress(k + 1, len(pairs), entry)
    report["summary"] = _summary(report["images"], skipped, round(time.perf_counter() - t0, 3))
    return report


def write_report(report: dict, path) -> Path:
    return atomic_write(path, json.dumps(_jsonable(report), indent=2).encode())


# ---------------------------------------------------------------------------------------------
# what goes where
# ---------------------------------------------------------------------------------------------
def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies under it (resolved paths)."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def _folder_pairs(src: Path, dst: Path) -> tuple[list, list]:
    """(input, output) for every image under the folder ``src``, and the paths skipped there."""
    if dst.exists() and not dst.is_dir():
        raise ObscureError(f"input {src} is a folder, so OUTPUT must be a folder too, but {dst} is a file")
    if _inside(dst, src) or _inside(src, dst):
        what = "is the input folder" if dst.resolve() == src.resolve() else (
            "lies inside the input folder" if _inside(dst, src) else "holds the input folder")
        raise ObscureError(f"output folder {show_path(dst)} {what} {show_path(src)}: choose an OUTPUT outside it, "
                           "and not around it (originals are never read as outputs nor overwritten); "
                           "nothing was written")
    images, skipped = list_images(src)
    return [(p, dst / p.relative_to(src)) for p in images], skipped


def _photo_target(src: Path, dst: Path) -> Path:
    """Where the one photo ``src`` is written: ``dst``, or ``dst / src.name`` for a folder."""
    if src.suffix.lower() not in IMAGE_SUFFIXES:
        raise ObscureError(f"{src}: unsupported input type {src.suffix!r}; use .jpg, .jpeg or .png")
    if not src.is_file():  # a FIFO or device would block or never end
        raise ObscureError(f"{show_path(src)} is not a regular file (FIFO, socket or device); nothing was written")
    target = dst / src.name if dst.is_dir() else dst
    if target.suffix.lower() not in IMAGE_SUFFIXES:
        raise ObscureError(f"{target}: output must end in .jpg, .jpeg or .png (or be an existing folder)")
    if target.exists() and target.resolve() == src.resolve():
        raise ObscureError(f"output {show_path(target)} is the input: choose another path (originals are never "
                           "overwritten)")
    return target


def _refuse_existing(pairs: list) -> None:
    exist = [str(t) for _, t in pairs if t.exists()]
    if exist:
        raise ObscureError(f"{len(exist)} output file(s) exist already (e.g. {show_path(exist[0])}); pass --overwrite "
                           "or choose another OUTPUT; nothing was written")


# ---------------------------------------------------------------------------------------------
# one photo, and the summary
# ---------------------------------------------------------------------------------------------
def _obscure_file(obscurer: Obscurer, p: Path, target: Path) -> dict:
    """Read, obscure and write one photo; its report entry (``error`` and no output when it fails)."""
    entry = {"input": show_path(p), "output": None}
    try:
        img = read_image(p)
        entry.update(size=list(img.size), mode=img.mode, orientation=img.orientation)
        res = obscurer.obscure(img.rgb)
        entry["faces"] = res.faces
        if not res.faces:
            entry["no_face"] = ("no face found by " + " or ".join(obscurer.cfg.detectors)
                                + (" (also turned 90/180/270 degrees)" if obscurer.cfg.search_rotations else "")
                                + ": written unchanged apart from metadata; check it")
        write_image(target, res.image, img)
        entry.update(output=show_path(target), seconds=round(res.seconds, 4),
                     stages={name: round(v, 4) for name, v in res.stages.items()})
    except Exception as e:  # noqa: BLE001 - one bad photo must not stop a folder; no output for it
        entry["error"] = show_path(str(e) if isinstance(e, ObscureError) else f"{type(e).__name__}: {e}")
        if target.exists():  # writing is atomic and last: an existing target is an older file
            entry["stale_output"] = (f"{show_path(target)} is an older file, left as it was: it is not an "
                                     "output of this run")
    return entry


def _tally(keys) -> dict[str, int]:
    counts: dict[str, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    return counts


def _summary(images: list, skipped: list, seconds: float) -> dict:
    faces = [f for e in images for f in e.get("faces", [])]
    actions = _tally(f.get("action", "none") for f in faces)
    return {
        "photos": len(images), "written": sum(e["output"] is not None for e in images),
        "failed": sum("error" in e for e in images), "skipped_files": len(skipped),
        "skipped_by_reason": _tally(r for _, r in skipped),
        "photos_without_faces": sum(len(e.get("faces", [])) == 0 and "error" not in e for e in images),
        "faces": len(faces), "replaced": actions.get("replaced", 0), "greyed": actions.get("greyed", 0),
        "actions": actions, "grey_reasons": _tally(f["reason"] for f in faces if f.get("reason")),
        "replaced_more_strongly": sum(f.get("action") == "replaced" and "identity_attempts" in f for f in faces),
        "seconds": seconds,
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x
