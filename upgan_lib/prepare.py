"""`upgan prepare`: raw UTKFace or identity photos -> a prepared FaceSet plus a JSON report.

For every input image: decode it (:func:`upgan_lib.rawfiles.decode_image`), find the face and its
68 landmarks (:class:`upgan_lib.landmarks.FaceLandmarker`), warp it into the canonical 128x128
frame (:func:`upgan_lib.align.align_face`) and draw its face mask (:func:`upgan_lib.align.face_mask`).
Labels come from UTKFace's file names (:mod:`upgan_lib.utkface`) or from the identity listing
(:mod:`upgan_lib.identities`). The result is written with :meth:`FaceSet.save` (memory-mapped on
load) together with ``report.json``:

* ``inputs`` = ``kept`` + sum of ``skipped`` (checked), with every skipped file named by reason
  (``skipped_files``, up to ``REPORT_NAMES_PER_REASON`` names per reason);
* ``detection_paths``: how many kept faces each detector attempt found (see ``landmarks.py``);
* ``repaired`` (UTKFace names read despite damage), ``several_faces_kept_largest``, image
  ``conversions`` (grey-scale, alpha, ...), ``seconds`` and ``images_per_second``.

Caching: the output folder remembers a *fingerprint* of the source (archive size and mtime, or
every file's name, size and mtime), the options and the code version. Running again with the same
fingerprint just loads the set; any change re-prepares it (``--force`` always does).

Archives are read directly (``.tar.gz`` streamed once, nothing extracted) and the source may be
read-only. Work is spread over ``--workers`` processes, each with its own dlib models.

**Where things are.** This module holds the options, the listing of the inputs, the fingerprint,
the set-level run (:func:`prepare`, :func:`load_or_prepare`) and the command line. One photo's
work and the worker processes are in :mod:`upgan_lib.prepare_worker`, the report in
:mod:`upgan_lib.prepare_report`; their names a notebook or script uses are importable from here
as well.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Generator

import numpy as np

from .align import ALIGNED_SIZE
from .config import cache_dir
from .config import data_root as _data_root
from .detect import DetectorModelNotFound, centerface_path
from .faceset import FaceSet, NotAPreparedSet
from .identities import list_identity_photos
from .landmarks import DetectConfig
from .prepare_report import REPORT_NAME, REPORT_NAMES_PER_REASON, Tally, build_report, format_report, write_report
from .prepare_worker import cpu_count, process_image, run_workers
from .rawfiles import RawSource, SourceError
from .utkface import list_utkface

#: what a notebook or script imports from here; some of it lives in the modules named in the module doc
__all__ = [
    "DATASETS", "DEFAULT_SOURCES", "PIPELINE_VERSION", "REPORT_NAME", "REPORT_NAMES_PER_REASON", "UTKFACE_FACE_BOX",
    "PrepareConfig", "PrepareError", "PrepareResult", "add_arguments", "code_version", "default_out", "default_source",
    "fingerprint", "format_report", "load_or_prepare", "load_report", "main", "prepare", "process_image", "run",
]

#: Bump when the prepared output changes for the same input (also part of the fingerprint).
PIPELINE_VERSION = 1
DATASETS = ("utkface", "identities")
#: Looked for in the data root, in this order, when no --source is given.
DEFAULT_SOURCES = {
    "utkface": ("UTKFace.tar.gz", "UTKFace", "utkface-new.zip"),
    "identities": ("celeba-identities.tar.gz", "celeba-identities", "facescrub", "lfw.tgz", "lfw"),
}
#: The box (fractions of width, height) where faces sit in UTKFace's 200x200 crops: the median
#: detector box over the whole set is (15, 15, 194, 194) pixels.
UTKFACE_FACE_BOX = (0.075, 0.075, 0.97, 0.97)
_CODE_FILES = ("rawfiles.py", "landmarks.py", "detect.py", "_face_shape.py", "align.py", "utkface.py", "identities.py",
               "prepare.py", "prepare_worker.py", "prepare_report.py", "utility.py")


class PrepareError(RuntimeError):
    """Preparation cannot start or cannot finish; the message says what to do."""


@dataclass
class PrepareConfig:
    """Options of one preparation run (all but ``workers`` and ``progress`` enter the fingerprint).

    size: side of the aligned crops (128 in the paper). limit: prepare only this many inputs
    (UTKFace: evenly spaced over the name-sorted list, so the sample spans all ages; identities:
    the first ones in identity order, so identities stay whole). workers: processes (None = all
    CPUs). max_side: photos with a longer side are shrunk first (detection time grows with area).
    min_face: detector boxes narrower than this many source pixels are skipped as
    ``face_too_small`` (blown up 4x they would be mostly blur). fallback_box: UTKFace only -- when
    no detector attempt finds the face, fit the landmarks in the fixed box where UTKFace's faces
    sit (``UTKFACE_FACE_BOX``) instead of skipping the image.
    """

    size: int = ALIGNED_SIZE
    limit: int | None = None
    workers: int | None = None
    max_side: int = 1024
    min_face: int = 32
    fallback_box: bool = False

    @classmethod
    def for_preset(cls, preset: str) -> "PrepareConfig":
        """``smoke``: a 200-image sample on one process; ``full``: everything on all CPUs."""
        if preset == "smoke":
            return cls(limit=200, workers=1)
        if preset == "full":
            return cls()
        raise ValueError(f"unknown preset {preset!r}: use 'smoke' or 'full'")

    def detect_config(self, dataset: str) -> DetectConfig:
        if dataset == "utkface":
            d = DetectConfig.for_kind("crops")
            if self.fallback_box:
                d = dataclasses.replace(d, fallback_box=UTKFACE_FACE_BOX)
            return d
        return DetectConfig.for_kind("photos")


@dataclass
class PrepareResult:
    faceset: FaceSet
    report: dict
    out: Path
    cached: bool = False


@dataclass
class _Input:
    name: str
    labels: tuple[int, int, int, int]  # age, gender, race, identity
    problem: str | None = None
    message: str = ""
    note: str = ""  # e.g. why a name counts as repaired


# ---------------------------------------------------------------------------- sources
def default_source(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The first of ``DEFAULT_SOURCES[dataset]`` present in the data root."""
    _check_dataset(dataset)
    base = _data_root(root)
    for cand in DEFAULT_SOURCES[dataset]:
        if (base / cand).exists():
            return base / cand
    raise PrepareError(
        f"no {dataset} source found in the data root {base} (looked for {', '.join(DEFAULT_SOURCES[dataset])}). "
        f"Pass --source PATH, set UPGAN_DATA to the folder holding the archive, or see `python -m "
        f"upgan_lib.download --help` for where to get it."
    )


def default_out(dataset: str, limit: int | None = None, cache: str | os.PathLike | None = None) -> Path:
    """``<cache>/prepared/<dataset>`` (``-limitN`` appended for a limited run); ``cache`` defaults to
    :func:`upgan_lib.config.cache_dir`."""
    return cache_dir(cache) / "prepared" / (dataset + (f"-limit{limit}" if limit else ""))


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise PrepareError(f"unknown data set {dataset!r}: use one of {', '.join(DATASETS)}")


def _spread(n: int, k: int) -> np.ndarray:
    """k indices evenly spaced over range(n) (all of them if k >= n)."""
    if k >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _inputs(dataset: str, src: RawSource, limit: int | None) -> tuple[list[_Input], dict]:
    """All inputs (usable or not) after the limit, plus listing facts for the report."""
    facts: dict = {}
    if dataset == "utkface":
        listing = list_utkface(src)
        labels = listing.labels
        if limit:
            labels = [labels[i] for i in _spread(len(labels), limit)]
        inputs = [_Input(lab.name, (lab.age, lab.gender, lab.race, -1),
                         None if lab.usable else lab.status, "" if lab.usable else lab.note,
                         lab.note if lab.status == "repaired" else "") for lab in labels]
        facts["ignored_files"] = listing.ignored
        facts["not_listed"] = list(src.not_listed)
        return _mark_duplicates(inputs), facts
    listing = list_identity_photos(src)
    photos = listing.photos[:limit] if limit else listing.photos
    inputs = [_Input(p.name, (-1, -1, -1, p.identity), p.problem, p.message) for p in photos]
    facts.update(layout=listing.layout, identity_file=listing.identity_file,
                 identity_names={str(k): v for k, v in listing.identity_names.items()},
                 bad_identity_lines=[f"line {i}: {t}" for i, t in listing.bad_lines], unlisted_files=listing.unlisted,
                 not_listed=list(src.not_listed))
    return _mark_duplicates(inputs), facts


def _mark_duplicates(inputs: list[_Input]) -> list[_Input]:
    """An archive may hold several members of one name (a tar appended to): the first is read,
    the others are skipped as ``duplicate_name``."""
    seen: set = set()
    for inp in inputs:
        if inp.name in seen and not inp.problem:
            inp.problem = "duplicate_name"
            inp.message = "another member of the source has this name; only the first one is used"
        seen.add(inp.name)
    return inputs


# ---------------------------------------------------------------------------- fingerprint
def code_version() -> str:
    """Hash of the code that shapes a prepared set (this pipeline's modules and dlib's version)."""
    import dlib

    h = hashlib.sha256(f"{PIPELINE_VERSION}|{dlib.__version__}".encode())
    here = Path(__file__).resolve().parent
    for f in _CODE_FILES:
        h.update((here / f).read_bytes())
    return f"v{PIPELINE_VERSION}-{h.hexdigest()[:12]}"


def fingerprint(dataset: str, src: RawSource, cfg: PrepareConfig) -> str:
    opts = {k: v for k, v in asdict(cfg).items() if k != "workers"}
    blob = json.dumps({"dataset": dataset, "source": src.fingerprint(), "options": opts,
                       "detect": cfg.detect_config(dataset).as_dict(), "code": code_version()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _cached(out: Path, fp: str) -> PrepareResult | None:
    rp = out / REPORT_NAME
    if not (out / "faceset.json").exists() or not rp.exists():
        return None
    try:
        report = json.loads(rp.read_text())
        if report.get("fingerprint") != fp:
            return None
        fs = FaceSet.load(out)
    except (json.JSONDecodeError, NotAPreparedSet, OSError, ValueError):
        return None
    if fs.meta.get("fingerprint") != fp:
        return None
    return PrepareResult(fs, report, out, cached=True)


# ---------------------------------------------------------------------------- main entry
def prepare(dataset: str, source: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
            cfg: PrepareConfig | None = None, progress: bool = True, force: bool = False,
            verbose: bool = True, data_root: str | os.PathLike | None = None,
            cache: str | os.PathLike | None = None) -> PrepareResult:
    """Prepare ``dataset`` (``"utkface"`` or ``"identities"``) from ``source`` into ``out``.

    Defaults: ``source`` looked up in ``data_root`` (:func:`default_source`; default
    ``$UPGAN_DATA``), ``out`` under ``cache`` (:func:`default_out`; default ``$UPGAN_CACHE``).
    Returns the FaceSet (memory-mapped), the report and the folder; ``cached`` says whether an
    up-to-date earlier result was reused. Raises :class:`PrepareError` for a missing, empty or
    corrupt source, or when no input gives a face.
    """
    _check_dataset(dataset)
    cfg = cfg or PrepareConfig()
    if cfg.limit is not None and cfg.limit < 1:
        raise PrepareError(f"--limit must be at least 1, got {cfg.limit}")
    source = Path(source).expanduser() if source else default_source(dataset, data_root)
    out = Path(out).expanduser() if out else default_out(dataset, cfg.limit, cache)
    try:
        src = RawSource(source)
        fp = fingerprint(dataset, src, cfg)
    except (SourceError, OSError) as e:
        raise PrepareError(str(e)) from e
    if not force:
        hit = _cached(out, fp)
        if hit is not None:
            if verbose:
                print(f"{dataset}: using the prepared set in {out} ({len(hit.faceset)} faces; same source, options "
                      "and code as when it was made)")
            return hit
    t0 = time.time()
    inputs, facts = _listed_inputs(dataset, src, cfg, source)
    tally = Tally()
    usable = []
    for inp in inputs:
        if inp.problem:
            tally.skip(inp.problem, inp.name, inp.message)
        else:
            usable.append(inp)
    n_workers = max(1, min(cfg.workers or cpu_count(), max(1, len(usable) // 16)))
    names = [u.name for u in usable]
    detect = cfg.detect_config(dataset)
    faces, masks, lms, ok = _collect(run_workers(src, names, n_workers, detect, cfg, progress, dataset), names,
                                     cfg.size, tally)
    seconds = time.time() - t0
    keep = np.flatnonzero(ok)
    meta = {"dataset": dataset, "source": str(source), "fingerprint": fp, "code_version": code_version(),
            "detect": detect.as_dict(), "size": cfg.size}
    if "identity_names" in facts:
        meta["identity_names"] = facts["identity_names"]
    report = build_report(dataset, source, out, fp, meta["code_version"], cfg, n_workers, inputs, usable, keep, tally,
                          facts, seconds)
    if len(keep) == 0:
        write_report(out, report)
        raise PrepareError(f"{source}: none of the {len(inputs)} inputs gave a usable face "
                           f"(skipped: {report['skipped']}); see {out / REPORT_NAME}")
    _save(out, _kept_faceset(usable, keep, faces, masks, lms, meta), report)
    if verbose:
        print(format_report(report))
    return PrepareResult(FaceSet.load(out), report, out)


def _listed_inputs(dataset: str, src: RawSource, cfg: PrepareConfig, source: Path) -> tuple[list[_Input], dict]:
    """:func:`_inputs`, with an empty source and a missing detector model as :class:`PrepareError`."""
    try:
        inputs, facts = _inputs(dataset, src, cfg.limit)
    except SourceError as e:
        raise PrepareError(str(e)) from e
    if not inputs:
        raise PrepareError(f"{source}: no {'image files' if dataset == 'utkface' else 'photos'} found (empty archive "
                           "or folder?). Check that --source points at the downloaded set.")
    if cfg.detect_config(dataset).centerface:  # missing model: say so now, not once per image
        try:
            centerface_path()
        except DetectorModelNotFound as e:
            raise PrepareError(str(e)) from e
    return inputs, facts


def _collect(results: Generator, names: list[str], size: int, tally: Tally):
    """The workers' results (:func:`run_workers`) in input order: faces, masks, landmarks and
    whether each gave a face; skips, detection paths and conversions are counted in ``tally``."""
    n = len(names)
    faces = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    lms = np.zeros((n, 68, 2), np.float32)
    ok = np.zeros(n, bool)
    try:
        for index, r in results:
            if index < 0:
                raise PrepareError(r["message"])
            for note in r["notes"]:
                tally.conversions[note] = tally.conversions.get(note, 0) + 1
            if not r["ok"]:
                tally.skip(r["reason"], names[index], r["message"])
                continue
            faces[index], masks[index], lms[index] = r["image"], r["mask"], r["landmarks68"]
            ok[index] = True
            tally.paths[r["path"]] = tally.paths.get(r["path"], 0) + 1
            if r["n_faces"] > 1:
                tally.several.append(names[index])
    finally:
        results.close()  # the workers stop at once, also when a result is an error
    return faces, masks, lms, ok


def _kept_faceset(usable: list[_Input], keep: np.ndarray, faces: np.ndarray, masks: np.ndarray, lms: np.ndarray,
                  meta: dict) -> FaceSet:
    """The FaceSet of the inputs that gave a face, with their labels."""
    labels = np.array([usable[i].labels for i in keep], np.int32).reshape(-1, 4)
    every = len(keep) == len(usable)
    return FaceSet(faces=faces if every else faces[keep], masks=masks if every else masks[keep],
                   landmarks68=lms[keep], age=labels[:, 0], gender=labels[:, 1], race=labels[:, 2],
                   identity=labels[:, 3], sources=[usable[i].name for i in keep], meta=meta)


def _save(out: Path, fs: FaceSet, report: dict) -> None:
    """Write the set and its report into ``out``, the old ones made invalid first."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "faceset.json", out / REPORT_NAME):  # invalidate first: a crash leaves no half-valid set
        stale.unlink(missing_ok=True)
    fs.save(out)
    write_report(out, report)


def load_or_prepare(dataset: str, source: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                    limit: int | None = None, workers: int | None = None, progress: bool = True,
                    force: bool = False, verbose: bool = True, cfg: PrepareConfig | None = None,
                    data_root: str | os.PathLike | None = None, cache: str | os.PathLike | None = None) -> FaceSet:
    """The prepared FaceSet of ``dataset``: loaded from the cache if it is up to date, prepared otherwise.

    ``limit`` and ``workers`` override the fields of ``cfg`` (default :class:`PrepareConfig`);
    ``data_root`` and ``cache`` (e.g. a notebook's ``ctx.data_root``, ``ctx.cache_dir``) replace
    ``$UPGAN_DATA`` and ``$UPGAN_CACHE`` when ``source`` / ``out`` are not given.
    """
    cfg = cfg or PrepareConfig()
    if limit is not None or workers is not None:
        cfg = PrepareConfig(**{**asdict(cfg), **({"limit": limit} if limit is not None else {}),
                               **({"workers": workers} if workers is not None else {})})
    return prepare(dataset, source, out, cfg, progress=progress, force=force, verbose=verbose,
                   data_root=data_root, cache=cache).faceset


def load_report(out: str | os.PathLike) -> dict:
    """The ``report.json`` of a prepared folder."""
    p = Path(out) / REPORT_NAME
    if not p.exists():
        raise PrepareError(f"{p}: no report; prepare the set first (`upgan prepare ... --out {out}`)")
    return json.loads(p.read_text())


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=DATASETS, help="utkface (labels from file names) or identities "
                        "(CelebA identity file, or one folder per identity)")
    parser.add_argument("--source", help="archive (.tar.gz/.tgz/.tar/.zip) or extracted folder; default: looked up "
                        "in the data root ($UPGAN_DATA)")
    parser.add_argument("--out", help="output folder (default: <cache>/prepared/<dataset>[-limitN])")
    parser.add_argument("--limit", type=int, help="prepare only N inputs (UTKFace: evenly spread over the set)")
    parser.add_argument("--workers", type=int, help="worker processes (default: all CPUs)")
    parser.add_argument("--size", type=int, default=ALIGNED_SIZE, help="side of the aligned crops (default 128)")
    parser.add_argument("--fallback-box", action="store_true", help="UTKFace: when no face is detected, fit the "
                        "landmarks in the usual face box instead of skipping the image")
    parser.add_argument("--force", action="store_true", help="prepare again even if the cached set is up to date")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    cfg = PrepareConfig(size=args.size, limit=args.limit, workers=args.workers, fallback_box=args.fallback_box)
    try:
        res = prepare(args.dataset, args.source, args.out, cfg, progress=not args.no_progress, force=args.force)
    except PrepareError as e:
        print(f"upgan prepare: error: {e}", file=sys.stderr)
        return 2
    if res.cached:
        print(format_report(res.report))
    print(f"report: {res.out / REPORT_NAME}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m upgan_lib.prepare", description=__doc__.strip().splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))
