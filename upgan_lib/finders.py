"""Face finders for :class:`upgan_lib.obscure.Obscurer` besides the command's own
(:class:`upgan_lib.detect.HybridFinder`, dlib's HOG joined with CenterFace).

A finder has ``.detect(rgb) -> faces``, each with ``.box`` (x0, y0, x1, y1), ``.landmarks68``
(None when the landmarks failed) and ``.score`` (:class:`upgan_lib.detect.Face`); optionally
``.landmarks_for_box(rgb, box)`` (refit at full resolution after a downscaled detection) and
``.for_size(scale_x, scale_y)`` (the same finder for a resized copy of the photo).

* :class:`KnownFaces` returns given faces: synthetic photos (dlib does not find cartoon faces),
  tests, and an earlier detection handed to several obscurers.
* :class:`DlibFinder` is dlib's HOG detector and 68-point predictor alone (the paper's detector).
"""
from __future__ import annotations

import numpy as np

from .detect import Face
from .landmarks import FaceLandmarker, landmarks_for_box


class KnownFaces:
    """A 'detector' that returns given faces: for synthetic photos (dlib does not find cartoon
    faces) and tests. ``faces``: objects with ``.box`` and ``.landmarks68`` (None = landmarks
    fail), e.g. :class:`upgan_lib.swap.SceneFace`, in the coordinates of the photo passed to
    :meth:`Obscurer.obscure`. ``fail``: indices whose landmarks are forced to fail."""

    def __init__(self, faces, fail=(), scale=(1.0, 1.0)):
        self.faces = list(faces)
        self.fail = set(fail)
        self.scale = scale
        self.calls = 0

    def detect(self, rgb: np.ndarray) -> list:
        self.calls += 1
        sx, sy = self.scale
        out = []
        for i, f in enumerate(self.faces):
            b = [float(v) for v in f.box]
            failed = i in self.fail or f.landmarks68 is None
            l68 = None if failed else np.asarray(f.landmarks68, np.float32) * np.float32([sx, sy])
            out.append(Face((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), l68, float(getattr(f, "score", 1.0)),
                            error="forced landmark failure" if i in self.fail else None))
        return out

    def for_size(self, scale_x: float, scale_y: float) -> "KnownFaces":
        """The same faces for a copy of the photo resized by (scale_x, scale_y) (downscaled detection)."""
        return KnownFaces(self.faces, self.fail, (scale_x, scale_y))


class DlibFinder:
    """dlib's HOG detector and 68-point predictor (``upgan_lib.landmarks.FaceLandmarker``).

    One detector pass per photo, upsampled (x2, x4) as long as the upsampled long side stays
    within ``max_upsampled_side``: dlib's HOG window is 80 px, so a 640x480 photo is scanned at
    1280x960 and faces down to about 40 px are found (0.15 s on one core); larger photos are
    scanned as they are (after the ``detect_max_side`` downscale). ``threshold``: the SVM score a
    detection needs (dlib's default 0; lower finds more faces and more false alarms - a false
    alarm only costs a greyed or replaced patch, a miss leaves a face clear).
    """

    def __init__(self, landmarker=None, max_upsampled_side: int = 1280, threshold: float = 0.0):
        self.landmarker = FaceLandmarker() if landmarker is None else landmarker
        self.max_upsampled_side = max_upsampled_side
        self.threshold = threshold

    def upsample_for(self, shape) -> int:
        long_side, up = max(shape[:2]), 0
        while up < 2 and long_side * 2 ** (up + 1) <= self.max_upsampled_side:
            up += 1
        return up

    def detect(self, rgb: np.ndarray) -> list:
        found = self.landmarker.detect(rgb, upsample=self.upsample_for(rgb.shape), threshold=self.threshold)
        return [Face(tuple(float(v) for v in d.box),
                     None if d.landmarks68 is None else np.asarray(d.landmarks68, np.float32),
                     float(getattr(d, "score", 1.0))) for d in found]

    def landmarks_for_box(self, rgb: np.ndarray, box) -> np.ndarray:
        if hasattr(self.landmarker, "landmarks_for_box"):
            return np.asarray(self.landmarker.landmarks_for_box(rgb, box), np.float32)
        return np.asarray(landmarks_for_box(rgb, box), np.float32)
