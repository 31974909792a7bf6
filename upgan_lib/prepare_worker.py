"""`upgan prepare`, one photo at a time: its bytes -> an aligned face, mask and landmarks
(:func:`process_image`), and the worker processes that run it over a source (:func:`run_workers`,
each process with its own dlib models, the source read ahead by a bounded amount)."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from typing import TYPE_CHECKING, Iterator

import cv2

from .align import ALIGNED_SIZE, align_face, face_mask
from .landmarks import DetectConfig, FaceLandmarker, default_landmarker
from .rawfiles import BadImage, RawSource, SourceError, TooLarge, decode_image

if TYPE_CHECKING:
    from .prepare import PrepareConfig


_WORKER: dict = {}


def _init_worker(detect: DetectConfig, size: int, max_side: int, min_face: int) -> None:
    _WORKER.update(lm=default_landmarker(), detect=detect, size=size, max_side=max_side, min_face=min_face)


def process_image(landmarker: FaceLandmarker, data: bytes, name: str, detect: DetectConfig,
                  size: int = ALIGNED_SIZE, max_side: int = 1024, min_face: int = 32) -> dict:
    """One image file's bytes -> ``{"ok": True, image, mask, landmarks68, path, n_faces, notes}`` or
    ``{"ok": False, reason, message, notes}``. Never raises for bad input."""
    notes: list[str] = []
    try:
        rgb, notes = decode_image(data, name, max_side)
    except BadImage as e:
        return {"ok": False, "reason": e.reason, "message": e.detail, "notes": notes}
    try:
        return _face_from_rgb(landmarker, rgb, detect, size, min_face, notes)
    except (ValueError, RuntimeError, cv2.error, MemoryError) as e:  # degenerate landmarks, dlib/OpenCV refusing
        return {"ok": False, "reason": "processing_error", "notes": notes,
                "message": f"detection or alignment failed ({type(e).__name__}: {e})"}


def _face_from_rgb(landmarker, rgb, detect, size, min_face, notes) -> dict:
    search = landmarker.find_face(rgb, detect)
    if search.face is None:
        return {"ok": False, "reason": "no_face", "notes": notes,
                "message": f"no face found (tried {', '.join(search.tried)}); not a face, or too small, turned or hidden"}
    box_w = search.face.box[2] - search.face.box[0]
    if box_w < min_face:
        return {"ok": False, "reason": "face_too_small", "notes": notes,
                "message": f"the face is only {box_w} px wide (minimum {min_face}); an aligned crop would be mostly blur"}
    aligned = align_face(rgb, search.face.landmarks68, size)
    return {"ok": True, "image": aligned.image, "mask": face_mask(aligned.landmarks68, size),
            "landmarks68": aligned.landmarks68, "path": search.path, "n_faces": search.n_faces, "notes": notes}


def _work(item):
    index, name, data = item
    if index < 0:  # the reader failed: pass the error through
        return index, {"ok": False, "reason": "source_error", "message": str(data), "notes": []}
    if isinstance(data, Exception):
        if isinstance(data, TooLarge):
            return index, {"ok": False, "reason": "too_large", "message": str(data), "notes": []}
        return index, {"ok": False, "reason": "read_error", "message": f"cannot read the file ({data})", "notes": []}
    w = _WORKER
    return index, process_image(w["lm"], data, name, w["detect"], w["size"], w["max_side"], w["min_face"])


def _read_items(src: RawSource, names: list[str], stop: threading.Event, slots: threading.Semaphore | None) -> Iterator:
    index = {n: i for i, n in enumerate(names)}
    try:
        for name, data in src.read_many(names):
            if slots is not None:
                while not slots.acquire(timeout=0.5):
                    if stop.is_set():
                        return
            if stop.is_set():
                return
            yield index[name], name, data
    except SourceError as e:
        yield -1, "", e


def run_workers(src: RawSource, names: list[str], n_workers: int, detect: DetectConfig, cfg: PrepareConfig,
                 progress: bool, desc: str) -> Iterator:
    """Yield ``(index, result)`` for every name, in completion order."""
    from tqdm.auto import tqdm

    init_args = (detect, cfg.size, cfg.max_side, cfg.min_face)
    bar = tqdm(total=len(names), desc=desc, unit="img", disable=not progress, smoothing=0.05)
    stop = threading.Event()
    try:
        if n_workers <= 1:
            _init_worker(*init_args)
            for item in _read_items(src, names, stop, None):
                yield _work(item)
                bar.update(1)
            return
        ctx = mp.get_context("fork") if sys.platform.startswith("linux") else mp.get_context()
        chunk = 8
        slots = threading.Semaphore(n_workers * chunk * 8)  # bounds bytes read ahead of the workers
        with ctx.Pool(n_workers, initializer=_init_worker, initargs=init_args) as pool:
            try:
                for res in pool.imap_unordered(_work, _read_items(src, names, stop, slots), chunksize=chunk):
                    slots.release()
                    yield res
                    bar.update(1)
            finally:
                stop.set()
                pool.terminate()
    finally:
        bar.close()


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
