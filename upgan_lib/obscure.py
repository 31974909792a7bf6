"""`upgan obscure`: replace every face found in a photo (or a folder of photos), failing closed.

For each photo: find faces (dlib's HOG detector on a copy downscaled to ``detect_max_side``,
and CenterFace over the full-resolution photo in tiles and a pyramid: every face either finds,
:mod:`upgan_lib.detect`; 68 landmarks at full resolution; the photo turned by 90/270/180 degrees
when nothing sure is found upright), extract each face's
utility (7 landmarks from the 68, age/gender/race from the attribute estimator), generate a face
from that utility alone, and swap it in (:mod:`upgan_lib.swap`). Other methods (``blur``,
``pixelate``, ``ksame``, ``gray``) obscure the same face regions for comparison.

**Fail closed.** A face that is detected but cannot be replaced - landmarks fail or are
implausible, the face is too small, the generated mask does not cover the inner face, blending
fails, anything raises - is greyed out (a grey checkerboard over its region,
:func:`upgan_lib.swap.grey_out`); it is never left clear. A
face whose 68 landmarks fail but which CenterFace found is replaced on CenterFace's 5 points
before it is greyed. A photo that cannot be read or written produces *no* output file. The JSON
report lists every photo and every face with its box, the detectors that found it, what was done
and why. A face neither detector finds stays as it is: such photos are reported (``no_face``,
``NO FACE FOUND``; ``--strict`` makes them an error), and ``benchmarks/leak_rate.py`` measures
how often it happens.

**Images.** JPEG and PNG. EXIF orientation is applied before detection (faces are found upright)
and undone before writing: the output has the input's stored size, mode and EXIF orientation
tag, so it displays exactly like the input. All other metadata (EXIF GPS, camera, dates, XMP,
comments) is dropped - it can identify a person too; the ICC colour profile is kept. Grey-scale
photos are processed as RGB and written back grey; an alpha channel (RGBA, LA, transparent
palette) is kept unchanged. JPEGs are written at quality 95.

**Components are injectable** (tests, notebooks, other detectors): :class:`Obscurer` takes a
``finder`` (``.detect(rgb) -> faces`` with ``.box``, ``.landmarks68`` (None when landmarks
failed) and ``.score``; optionally ``.landmarks_for_box(rgb, box)``), a ``faces`` source
(``(utility (N,17), aligned uint8 (N,S,S,3)) -> (faces uint8 (N,S,S,3), face probability
(N,S,S))``) and an ``attributes`` source (``aligned uint8 (N,S,S,3) -> (age, gender, race)``).

**Where things are.** This module holds the :class:`Obscurer` (one photo in memory). Its
settings and error are in :mod:`upgan_lib.obscure_config`, its finders in
:mod:`upgan_lib.finders`, its face and attribute sources in :mod:`upgan_lib.face_sources`;
photo files in :mod:`upgan_lib.imagefile`, folders and the report in
:mod:`upgan_lib.obscure_folder`, the command line in :mod:`upgan_lib.obscure_cli`, the
identity check (``verify_identity``) in :mod:`upgan_lib.identity_check`, the identity-change
rate in :mod:`upgan_lib.identity_change`. The names a notebook or script uses
are importable from here as well.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .align import CANONICAL_EYE_DISTANCE, align_face, canonical_points7, matrix_scale
from .detect import Face as FoundFace
from .detect import HybridConfig, HybridFinder, fraction_inside, landmarks68_from_points5, rotate_rgb, unrotate_box
from .face_sources import (EstimatorAttributes, FixedAttributes, GeneratorFaces, KSameFaces, course_run,
                           parse_fixed_attributes, shipped_model)
from .finders import DlibFinder, KnownFaces
from .identity_change import identity_change, sample_identity_photos
from .identity_check import IdentityCheck
from .imagefile import read_image, write_image
from .obscure_config import METHODS, ObscureConfig, ObscureError
from .obscure_folder import obscure_path, write_report
from .swap import SwapError, check_face_size, clamp_box, face_region_box, grey_out, swap_face
from .utility import AGE_SCALE, N_RACES, encode_utility, reduce_68_to_7

#: what a notebook or script imports from here; most of it lives in the modules named in the module doc
__all__ = [
    "METHODS", "DlibFinder", "EstimatorAttributes", "FixedAttributes", "FoundFace", "GeneratorFaces", "KSameFaces",
    "KnownFaces", "ObscureConfig", "ObscureError", "ObscureResult", "Obscurer", "blur_region", "course_run",
    "identity_change", "obscure_path", "parse_fixed_attributes", "pixelate_region", "read_image",
    "sample_identity_photos", "write_image", "write_report",
]


@dataclass
class ObscureResult:
    image: np.ndarray  # uint8 (H, W, 3) RGB, every found face obscured
    faces: list  # one dict per face: box, action, reason, ...
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)  # seconds per stage: detect, prepare, generate, blend


@dataclass
class _Photo:
    """One photo being obscured: the original, the output so far, the faces found and their reports.

    For the identity check: ``before`` holds each checked face's descriptor in the original,
    ``touched`` every region changed, in order (face index or None, region), and ``checked`` for
    each face how many regions had been changed when it was last checked: a face another face's
    change overlaps afterwards is checked again."""

    rgb: np.ndarray
    found: list
    out: np.ndarray
    reports: list
    stages: dict
    swapped: dict = field(default_factory=dict)  # face index -> (aligned, face, probability, utility) it was given
    before: dict = field(default_factory=dict)
    touched: list = field(default_factory=list)
    checked: dict = field(default_factory=dict)


def blur_region(crop: np.ndarray, ksize: int, scale: float = 1.0) -> np.ndarray:
    """Gaussian blur of an RGB crop as the paper's ``ksize`` kernel blurs a 128 aligned face,
    for a face ``scale`` image px per aligned px: sigma = ``baselines.opencv_sigma(ksize) * scale``."""
    from .baselines import opencv_sigma  # baselines needs torch; blurring does not

    sigma = max(0.3, opencv_sigma(int(ksize)) * float(scale))
    return cv2.GaussianBlur(crop, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)


def pixelate_region(crop: np.ndarray, block: int, scale: float = 1.0) -> np.ndarray:
    """Replace each cell of ``block * scale`` px (anchored at the crop's top-left; edge cells
    smaller) by its exact mean colour, like ``baselines.pixelate`` on a rectangular crop."""
    b = max(1, int(round(block * scale)))
    h, w = crop.shape[:2]
    ys, xs = np.arange(0, h, b), np.arange(0, w, b)
    hs, ws = np.diff(np.append(ys, h)), np.diff(np.append(xs, w))
    sums = np.add.reduceat(np.add.reduceat(crop.astype(np.float64), ys, axis=0), xs, axis=1)
    means = sums / (hs[:, None, None] * ws[None, :, None])
    out = np.repeat(np.repeat(means, hs, axis=0), ws, axis=1)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _confident(face) -> bool:
    """A face found upright that makes searching the photo turned unnecessary: one HOG found, or
    one whose dlib landmarks agree with CenterFace's points (given faces, without detectors, too)."""
    d = tuple(getattr(face, "detectors", ()) or ())
    return not d or "hog" in d or getattr(face, "landmarks", None) == "centerface"


def _face_report(face) -> dict:
    """The start of a face's report entry: where it is, how sure, who found it."""
    r = {"box": [int(round(v)) for v in face.box], "score": round(float(face.score), 3)}
    if getattr(face, "detectors", ()):
        r["detectors"] = list(face.detectors)
    return r


class Obscurer(IdentityCheck):
    """Obscures every face in a photo. Build once (models load here), call :meth:`obscure` per photo.

    finder: detector (see module doc); default dlib via ``upgan_lib.landmarks``.
    faces: face source for ``upgan``/``ksame``; attributes: attribute source (default fixed).
    """

    def __init__(self, cfg: ObscureConfig | None = None, finder=None, faces=None, attributes=None):
        self.cfg = cfg or ObscureConfig()
        self._finder = finder
        self.faces = faces
        self._attributes = attributes
        if self.cfg.method in ("upgan", "ksame") and faces is None:
            raise ObscureError(f"method {self.cfg.method!r} needs a face source (generator checkpoint or k-same gallery)")

    @classmethod
    def from_paths(cls, cfg: ObscureConfig, checkpoint=None, attributes=None, gallery=None, device="cpu",
                   finder=None, precision: str = "fp32") -> "Obscurer":
        """Load the models named by paths (as the CLI does); raises :class:`ObscureError` first."""
        faces = None
        if cfg.method == "upgan":
            faces = GeneratorFaces.load(checkpoint if checkpoint is not None else shipped_model("generator"), device,
                                        precision)
        elif cfg.method == "ksame":
            if gallery is None:
                raise ObscureError("--method ksame needs --gallery PREPARED_SET (aligned faces to average, "
                                   "`upgan prepare utkface --out DIR`); nothing was written")
            faces = KSameFaces.load(gallery, cfg.ksame_k)
        if isinstance(attributes, FixedAttributes):
            attrs = attributes
        elif cfg.method not in ("upgan", "ksame"):
            attrs = None  # blur, pixelation and grey need no attributes
        else:
            attrs = EstimatorAttributes.load(attributes if attributes else shipped_model("attributes"), device)
        return cls(cfg, finder=finder, faces=faces, attributes=attrs)

    def with_finder(self, finder) -> "Obscurer":
        """The same models with another detector (e.g. :class:`KnownFaces` of an earlier detection)."""
        return Obscurer(self.cfg, finder=finder, faces=self.faces, attributes=self._attributes)

    @property
    def attributes(self):
        """The attribute source; the paper's fixed attributes unless an estimator was given."""
        if self._attributes is None:
            self._attributes = FixedAttributes()
        return self._attributes

    @property
    def finder(self):
        if self._finder is None:
            self._finder = HybridFinder(HybridConfig(detectors=tuple(self.cfg.detectors),
                                                     hog_max_side=self.cfg.detect_max_side))
        return self._finder

    # ---------------------------------------------------------------- detection
    def find_faces(self, rgb: np.ndarray) -> list:
        """Faces at full resolution; detection on a downscaled copy for large photos."""
        h, w = rgb.shape[:2]
        f = min(1.0, self.cfg.detect_max_side / max(h, w))
        finder = self.finder
        if getattr(finder, "full_resolution", False):  # detect.HybridFinder: scales and tiles itself
            return [FoundFace(tuple(float(v) for v in d.box), d.landmarks68, float(d.score), d.error,
                              d.points5, tuple(d.detectors), d.landmarks) for d in finder.detect(rgb)]
        if f >= 1.0:
            return list(finder.detect(rgb))
        small = cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        det = finder.for_size(sx, sy).detect(small) if hasattr(finder, "for_size") else finder.detect(small)
        out = []
        for d in det:
            box = (d.box[0] / sx, d.box[1] / sy, d.box[2] / sx, d.box[3] / sy)
            l68 = None if d.landmarks68 is None else np.asarray(d.landmarks68, np.float32) / (sx, sy)
            err = getattr(d, "error", None)
            if l68 is not None and hasattr(finder, "landmarks_for_box"):
                try:  # refit at full resolution: the downscaled fit is up to 1/f px off
                    l68 = np.asarray(finder.landmarks_for_box(rgb, tuple(int(round(v)) for v in box)), np.float32)
                except Exception as e:  # noqa: BLE001 - keep the downscaled fit, say so
                    err = f"full-resolution landmarks failed ({e}); used the downscaled fit"
            out.append(FoundFace(box, l68, float(getattr(d, "score", 1.0)), err))
        return out

    # ---------------------------------------------------------------- per face
    def _prepare(self, rgb, face):
        """Check landmarks and align; returns (aligned image, aligned landmarks, matrix) or raises SwapError.

        A face with CenterFace's 5 points whose 68 landmarks are missing or implausible is aligned
        on dlib's mean shape placed on those 5 points instead (``face.landmarks`` becomes
        ``"points5"`` and ``face.error`` says why); if that fails too, the first error stands."""
        try:
            return self._prepare68(rgb, face)
        except SwapError as e:
            p5 = getattr(face, "points5", None)
            if p5 is None or e.reason == "too_small" and face.landmarks68 is not None:
                raise
            try:
                alt = replace(face, landmarks68=landmarks68_from_points5(p5), error=None)
                al = self._prepare68(rgb, alt)
            except (SwapError, ValueError, np.linalg.LinAlgError):
                raise e from None
            face.error = f"{e}; replaced on CenterFace's 5 points"
            face.landmarks68, face.landmarks = alt.landmarks68, "points5"
            return al

    def _prepare68(self, rgb, face):
        if face.landmarks68 is None:
            why = getattr(face, "error", None)
            raise SwapError("landmarks_failed", "landmarks failed" + (f": {why}" if why else ""))
        l68 = np.asarray(face.landmarks68, np.float64)
        if l68.shape != (68, 2) or not np.all(np.isfinite(l68)):
            raise SwapError("landmarks_failed", f"landmarks are not 68 finite points (shape {l68.shape})")
        check_face_size(l68, self.cfg.swap.min_eye_distance_img)
        al = align_face(rgb, l68.astype(np.float32), size=128)
        err = float(np.linalg.norm(reduce_68_to_7(al.landmarks68) - canonical_points7(128), axis=1).mean())
        if err > self.cfg.max_landmark_error * CANONICAL_EYE_DISTANCE:
            raise SwapError("landmarks_implausible", f"aligned landmarks are {err:.1f} px (mean) from the face template "
                                                     f"(maximum {self.cfg.max_landmark_error * CANONICAL_EYE_DISTANCE:.1f})")
        return al

    def _utility(self, aligned: np.ndarray, landmarks68: np.ndarray):
        """Utility vectors (N, 17) of aligned faces (N, S, S, 3) with their aligned 68 landmarks
        (N, 68, 2), and the attributes they hold (clipped to their ranges): (utility, (age, gender, race))."""
        age, gender, race = self.attributes(aligned)
        age = np.clip(age, 0, AGE_SCALE * 1.16)
        gender = np.clip(gender, 0, 1)
        race = np.clip(race, 0, N_RACES - 1)
        return encode_utility(age, gender, race, reduce_68_to_7(landmarks68), size=aligned.shape[1]), (age, gender, race)

    def utilities(self, rgb: np.ndarray) -> list:
        """What the generator would be given for each face found in ``rgb``: a list of dicts with
        ``box``, ``utility`` ((17,) float32, or None), ``aligned`` (uint8 (128,128,3) or None) and
        ``reason`` (why there is no utility: landmarks failed, implausible, too small)."""
        out = []
        for f in self.find_faces(np.ascontiguousarray(rgb)):
            item = {"box": [int(round(v)) for v in f.box], "utility": None, "aligned": None, "reason": None}
            try:
                al = self._prepare(rgb, f)
            except SwapError as e:
                item["reason"] = e.reason
            else:
                util, _ = self._utility(al.image[None], al.landmarks68[None])
                item["aligned"], item["utility"] = al.image, util[0]
            out.append(item)
        return out

    # ---------------------------------------------------------------- one photo
    def obscure(self, rgb: np.ndarray) -> ObscureResult:
        """Obscure every face found in ``rgb`` (uint8 (H, W, 3), upright). Never raises for a face:
        a face that cannot be handled is greyed and reported."""
        t0 = time.perf_counter()
        rgb = np.ascontiguousarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
        stages = {}
        found = self.find_faces(rgb)
        stages["detect"] = time.perf_counter() - t0
        turned = None
        if self.cfg.search_rotations and not any(_confident(f) for f in found):
            # nothing sure upright (nothing, or only faces dlib cannot fit): search the photo
            # turned, and obscure what is found there too
            turned = self._search_turned(rgb, not found, stages)
        photo = self._obscure_found(rgb, found, stages)
        reports = photo.reports
        if turned is not None:
            reports = reports + self._obscure_turned(photo, *turned, stages)
        return ObscureResult(photo.out, reports, time.perf_counter() - t0, stages)

    def _search_turned(self, rgb: np.ndarray, nothing_upright: bool, stages: dict):
        """``(quarter turns, faces)`` of the first turn with a sure face, else (when nothing at all
        was found upright) of the first turn with any face; None when no turn has one."""
        extra = None
        for k in (1, 3, 2):  # 90 degrees counter-clockwise, clockwise, then upside down
            t1 = time.perf_counter()
            found_k = self.find_faces(rotate_rgb(rgb, k))
            stages[f"detect_rot{90 * k}"] = time.perf_counter() - t1
            sure = any(_confident(f) for f in found_k)
            if found_k and (sure or (nothing_upright and extra is None)):
                extra = (k, found_k)
            if sure:
                break
        return extra

    def _obscure_turned(self, photo: _Photo, k: int, found_k: list, stages: dict) -> list:
        """Obscure, in ``photo.out``, the faces ``found_k`` found in the photo turned by ``k`` quarter
        turns (read from the original turned, drawn over the output so far); returns their reports,
        which say so and give their boxes upright. A face found again (its box mostly inside the
        region of a face already greyed upright) is not obscured twice: that face's report lists
        the turn under ``found_again_turned``. A face obscured upright that one of them overlaps is
        checked again (:meth:`_recheck_overlapped`)."""
        original = rotate_rgb(photo.rgb, k)
        found_k = [f for f in found_k if not self._found_again(photo, unrotate_box(f.box, k, original.shape), k)]
        if not found_k:
            return []
        turned = self._obscure_found(original, found_k, stages, canvas=rotate_rgb(photo.out, k))
        for r in turned.reports:
            r["rotation"] = 90 * k
            for key in ("box", "region"):
                if key in r:
                    r[key] = [int(round(v)) for v in unrotate_box(r[key], k, turned.out.shape)]
        photo.out = np.ascontiguousarray(np.rot90(turned.out, -k))
        photo.touched += [(None, r["region"]) for r in turned.reports if "region" in r]
        self._recheck_overlapped(photo)
        return turned.reports

    @staticmethod
    def _found_again(photo: _Photo, box, k: int, covered: float = 0.8) -> bool:
        """Whether ``box`` (upright) lies, by at least ``covered`` of its area, inside the region of
        a face of ``photo`` already greyed (a grey fills its whole region; a replaced face's region
        is only the box around what was drawn); if so, that face's report notes the turn ``k``."""
        for r in photo.reports:
            if r.get("action") == "greyed" and "region" in r and fraction_inside(box, r["region"]) >= covered:
                r.setdefault("found_again_turned", []).append(90 * k)
                return True
        return False

    def _obscure_found(self, rgb: np.ndarray, found: list, stages: dict, canvas: np.ndarray | None = None) -> _Photo:
        """Obscure the faces ``found`` in ``rgb`` as ``cfg.method`` says, every one of them greyed
        when it cannot be, drawing over ``canvas`` (default: ``rgb``); faces are read, and checked
        against, ``rgb`` as it was."""
        out = (rgb if canvas is None else canvas).copy()
        photo = _Photo(rgb, found, out, [_face_report(f) for f in found], stages)
        if self.cfg.method == "gray":
            for i in range(len(found)):
                self._grey(photo, i, "method", "method gray")
        else:
            t1 = time.perf_counter()
            prepared = self._prepare_all(photo)
            if self.cfg.method in ("blur", "pixelate"):
                for i in range(len(found)):
                    if "action" not in photo.reports[i]:
                        self._blur(photo, i, prepared.get(i))
            else:  # upgan / ksame
                stages["prepare"] = time.perf_counter() - t1
                self._replace_all(photo, prepared)
            self._verify_identity(photo)
        return photo

    def _grey(self, photo: _Photo, i: int, reason: str, message: str) -> None:
        """Fail closed: a grey checkerboard over face ``i``'s region, reported with why."""
        b = self._fill(photo, i)
        photo.reports[i].update(action="greyed", reason=reason, detail=message, region=list(b))
        photo.touched.append((i, list(b)))

    def _fill(self, photo: _Photo, i: int, cell: float | None = None, phase: float = 0.0) -> tuple:
        """Draw the fail-closed fill over face ``i``'s region of ``photo.out``, in place: squares
        ``cell`` x its width (None: ``grey_cells[0]``) shifted by ``phase`` of a square. Returns
        the region, the same whatever the squares."""
        f, cfg = photo.found[i], self.cfg
        cell = cfg.grey_cells[0] if cell is None else cell
        return grey_out(photo.out, f.box, f.landmarks68, cfg.grey_margin, cfg.grey_levels, cell, phase)

    def _prepare_all(self, photo: _Photo) -> dict:
        """Aligned faces by index (:meth:`_prepare`). A face that cannot be aligned is greyed when
        it was to be replaced; blur and pixelation do without (they need no landmarks)."""
        replacing = self.cfg.method in ("upgan", "ksame")
        prepared = {}
        for i, f in enumerate(photo.found):
            try:
                if replacing or f.landmarks68 is not None:
                    prepared[i] = self._prepare(photo.rgb, f)
            except SwapError as e:
                if replacing:
                    self._grey(photo, i, e.reason, str(e))
            except Exception as e:  # noqa: BLE001 - fail closed on anything
                self._grey(photo, i, "error", f"{type(e).__name__}: {e}")
        return prepared

    def _blur(self, photo: _Photo, i: int, al) -> None:
        """Blur or pixelate face ``i``'s region, as strongly as its size in the photo asks
        (from its alignment ``al``, or its box when it has none)."""
        cfg, f = self.cfg, photo.found[i]
        h, w = photo.rgb.shape[:2]
        scale = 1.0 / matrix_scale(al.matrix) if al is not None else (f.box[2] - f.box[0]) / 80.0
        b = clamp_box(face_region_box(f.box, f.landmarks68, cfg.grey_margin), w, h)
        x0, y0, x1, y1 = b
        if x1 <= x0 or y1 <= y0:
            photo.reports[i].update(action="none", reason="outside_image", detail="face box lies outside the photo")
            return
        fn = blur_region if cfg.method == "blur" else pixelate_region
        photo.out[y0:y1, x0:x1] = fn(photo.out[y0:y1, x0:x1], cfg.strength, scale)
        photo.reports[i].update(action="blurred" if cfg.method == "blur" else "pixelated", reason=None,
                                region=list(b), scale=round(scale, 3))

    def _replace_all(self, photo: _Photo, prepared: dict) -> None:
        """upgan / ksame: utility -> face -> swap, the face source batched over the photo's faces."""
        for i in prepared:  # where the landmarks came from, and why when not from dlib's fit
            if getattr(photo.found[i], "landmarks", None):
                photo.reports[i]["landmarks"] = photo.found[i].landmarks
            if getattr(photo.found[i], "landmarks", None) == "points5" and photo.found[i].error:
                photo.reports[i]["detail"] = photo.found[i].error
        t1 = time.perf_counter()
        order = sorted(prepared)
        generated = self._generate(photo, [prepared[i] for i in order], order) if order else None
        photo.stages["generate"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        if generated is not None:
            for j, i in enumerate(order):
                self._swap(photo, i, prepared[i], generated, j)
        photo.stages["blend"] = time.perf_counter() - t1

    def _generate(self, photo: _Photo, aligned: list, order: list):
        """``(faces, face probabilities, (age, gender, race))`` for the aligned faces; None, with
        every one of them greyed, when that fails."""
        try:
            images = np.stack([al.image for al in aligned])
            util, attrs = self._utility(images, np.stack([al.landmarks68 for al in aligned]))
            faces, probs = self.faces(util, images)
        except Exception as e:  # noqa: BLE001 - fail closed on every face of the photo
            for i in order:
                self._grey(photo, i, "error", f"utility/generation failed: {type(e).__name__}: {e}")
            return None
        return faces, probs, attrs, util

    def _swap(self, photo: _Photo, i: int, al, generated: tuple, j: int) -> None:
        """Swap the ``j``-th generated face in for face ``i`` (aligned as ``al``); grey it when that fails."""
        faces, probs, (age, gender, race), util = generated
        try:
            r = swap_face(photo.out, faces[j], probs[j], al.matrix, self.cfg.swap, photo.found[i].landmarks68)
            photo.out = r.image
            photo.swapped[i] = (al, faces[j], probs[j], util[j])
            photo.reports[i].update(action="replaced", reason=None, region=list(r.box),
                                    coverage=round(r.coverage, 3), scale=round(r.scale, 3),
                                    utility={"age": round(float(age[j]), 1), "gender": round(float(gender[j]), 2),
                                             "race": round(float(race[j]), 2)})
        except SwapError as e:
            self._grey(photo, i, e.reason, str(e))
        except Exception as e:  # noqa: BLE001
            self._grey(photo, i, "error", f"{type(e).__name__}: {e}")
