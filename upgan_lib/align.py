"""The canonical 128x128 frame, similarity alignment into it, and face masks.

Every face the generator sees -- real photos and SynthFaces alike -- lives in the same frame,
the framing of UTKFace's own "aligned & cropped" 200x200 faces, zoomed in by 10 %: the eye
centres at about (36.7, 35.7) and (91.3, 35.7), the nose tip at (64, 65.5) and the mouth corners
at (39.1, 91.0) and (88.9, 91.0) (pixels of a 128x128 image, x to the right, y down). These are
the mean positions of the 7 utility points that dlib finds on UTKFace crops (scaled by 128/200,
made left-right symmetric), so aligning a UTKFace crop is close to a plain resize and the frame
stays inside the crop: on 400 crops only 0.3 % of the frame's pixels on average fall outside the
photo (``frame_outside_fraction``), where a looser frame would have to invent them by repeating
the border (smeared streaks the generator would learn to draw). SynthFaces draws its faces
straight into this frame.

Alignment is the least-squares *similarity* (rotation, uniform scale, translation; no shear, no
reflection) taking five stable points -- the two eye centres, the nose tip and the two mouth
corners -- onto the template. The lip top and bottom are left out of the fit because they move
with expression. The face keeps its own proportions: only the pose is normalised, so the
landmarks of an aligned face still differ from the template, and those differences are exactly
the utility the generator must preserve.

The face mask is the region the generator draws: the jaw line (points 0-16) closed over the top
by an elliptical forehead arc between the two temples (points 0 and 16), whose height is
``FOREHEAD_RATIO`` times the temple-line-to-chin distance -- not just the hull of the landmarks,
which stops at the eyebrows.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .utility import reduce_68_to_7

ALIGNED_SIZE = 128

#: The paper's 7 points (order of utility.SEVEN_POINT_NAMES) in a 128x128 frame: UTKFace's means
#: (dlib on 400 crops, x 128/200, zoomed 1.1x about the centre, made symmetric).
_TEMPLATE_128 = np.array([
    [36.7, 35.7],   # eye centre, image left
    [91.3, 35.7],   # eye centre, image right
    [64.0, 65.5],   # nose tip
    [39.1, 91.0],   # mouth corner, image left
    [88.9, 91.0],   # mouth corner, image right
    [64.0, 87.5],   # top of the upper lip
    [64.0, 104.0],  # bottom of the lower lip
], dtype=np.float32)

#: Distance between the two eye centres of the template (128 frame): the unit of "how far off" a face's points are.
CANONICAL_EYE_DISTANCE = float(_TEMPLATE_128[1, 0] - _TEMPLATE_128[0, 0])

#: The looser frame the course used first (the 7 points of cartoon faces drawn with room for hair
#: and neck): faces a third smaller, so most of the frame lies outside a UTKFace crop. Kept to show
#: why the canonical frame was changed (:func:`compare_frames`, chapter 01).
LOOSE_TEMPLATE_128 = np.array([[45.5, 56.8], [82.5, 56.8], [64.0, 79.5], [51.0, 97.0], [77.0, 97.0],
                               [64.0, 93.0], [64.0, 103.25]], dtype=np.float32)

#: Weights of the 7 points in the alignment fit (eyes, nose, mouth corners; lips excluded).
FIT_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0], dtype=np.float64)

#: Forehead height above the temple line, as a fraction of the temple-line-to-chin distance.
FOREHEAD_RATIO = 0.7


@dataclass
class AlignedFace:
    image: np.ndarray  # uint8 (S, S, 3)
    landmarks68: np.ndarray  # float32 (68, 2), pixels of the aligned crop
    matrix: np.ndarray  # float64 (2, 3): image pixels -> aligned-crop pixels


def canonical_points7(size: int = ALIGNED_SIZE) -> np.ndarray:
    """(7, 2) float32 template positions of the utility points in a ``size`` x ``size`` frame."""
    return (_TEMPLATE_128 * (size / 128.0)).astype(np.float32)


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping ``src`` (K, 2) points onto ``dst`` (K, 2).

    Minimises ``sum_k w_k |s R src_k + t - dst_k|^2`` in closed form (Umeyama without reflection).
    """
    src = np.asarray(src, np.float64).reshape(-1, 2)
    dst = np.asarray(dst, np.float64).reshape(-1, 2)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if not (len(src) == len(dst) == len(w)) or np.sum(w > 0) < 2:
        raise ValueError(f"need at least 2 weighted point pairs, got src {src.shape}, dst {dst.shape}, weights {w.shape}")
    w = w / w.sum()
    ms, md = w @ src, w @ dst
    s, d = src - ms, dst - md
    var = float(w @ (s ** 2).sum(1))
    if not np.isfinite(var) or var < 1e-9:
        raise ValueError("the source points coincide; cannot fit a similarity")
    a = float(w @ (s[:, 0] * d[:, 0] + s[:, 1] * d[:, 1])) / var
    b = float(w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])) / var
    m = np.array([[a, -b], [b, a]])
    return np.concatenate([m, (md - m @ ms)[:, None]], axis=1)


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (..., 2) points."""
    m = np.asarray(matrix, np.float64)
    p = np.asarray(points, np.float64)
    return (p @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _check68(landmarks68) -> np.ndarray:
    l68 = np.asarray(landmarks68, np.float64)
    if l68.shape != (68, 2):
        raise ValueError(f"expected one face's landmarks of shape (68, 2), got {l68.shape}")
    if not np.all(np.isfinite(l68)):
        raise ValueError("landmarks contain NaN or infinite values")
    return l68


def alignment_matrix(landmarks68: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """(2, 3) similarity taking image pixels to the aligned ``size`` frame (fit on 5 of the 7 points)."""
    p7 = reduce_68_to_7(_check68(landmarks68))
    return similarity_fit(p7, canonical_points7(size), FIT_WEIGHTS)


def matrix_scale(matrix: np.ndarray) -> float:
    """Uniform scale factor of a similarity matrix."""
    m = np.asarray(matrix, np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def align_face(rgb: np.ndarray, landmarks68: np.ndarray, size: int = ALIGNED_SIZE,
               matrix: np.ndarray | None = None) -> AlignedFace:
    """Warp ``rgb`` (H, W, 3) uint8 into the aligned ``size`` x ``size`` frame.

    Parts of the frame outside the photo repeat the border pixels. When the face is shrunk by more
    than 2x, the photo is first reduced with area averaging so the crop does not alias.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got dtype {img.dtype} and shape {img.shape}")
    l68 = _check68(landmarks68)
    m = alignment_matrix(l68, size) if matrix is None else np.asarray(matrix, np.float64)
    scale = matrix_scale(m)
    src, m_warp = img, m
    if scale < 0.5:
        f = min(1.0, scale * 1.5)  # shrink so that the remaining warp scale is about 1/1.5
        w, h = max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f))
        src = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        fx, fy = w / img.shape[1], h / img.shape[0]
        m_warp = m @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
    out = cv2.warpAffine(src, m_warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(image=out, landmarks68=apply_matrix(m, l68), matrix=m)


def frame_outside_fraction(matrix: np.ndarray, image_shape: tuple[int, ...], size: int = ALIGNED_SIZE) -> float:
    """Share of the aligned ``size`` x ``size`` frame's pixels that ``matrix`` (image -> frame) maps
    from outside an image of ``image_shape`` (H, W, ...): the part :func:`align_face` has to fill by
    repeating the photo's border."""
    m = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    back = np.linalg.inv(m)[:2]
    c = np.arange(size) + 0.5
    grid = np.stack(np.meshgrid(c, c), -1).reshape(-1, 2)
    src = apply_matrix(back, grid)
    h, w = image_shape[:2]
    return float(np.mean((src[:, 0] < 0) | (src[:, 1] < 0) | (src[:, 0] > w) | (src[:, 1] > h)))


def compare_frames(images, landmarks68, size: int = ALIGNED_SIZE) -> dict:
    """Align each photo (H, W, 3) with its 68 landmarks into the loose frame and into the canonical
    frame: ``{"loose": (N,S,S,3), "canonical": (N,S,S,3), "loose_outside": (N,), "canonical_outside": (N,)}``,
    the last two the share of each frame that lies outside the photo (filled by repeating its border)."""
    out: dict = {"loose": [], "canonical": [], "loose_outside": [], "canonical_outside": []}
    loose_t = LOOSE_TEMPLATE_128 * (size / 128.0)
    for img, l68 in zip(images, landmarks68):
        p7 = reduce_68_to_7(_check68(l68))
        for name, m in (("loose", similarity_fit(p7, loose_t, FIT_WEIGHTS)), ("canonical", alignment_matrix(l68, size))):
            out[name].append(align_face(np.asarray(img), l68, size, matrix=m).image)
            out[f"{name}_outside"].append(frame_outside_fraction(m, np.shape(img), size))
    return {k: np.array(v) for k, v in out.items()}


def face_outline(landmarks68: np.ndarray, n_arc: int = 17) -> np.ndarray:
    """Closed polygon (17 + n_arc - 2, 2) of the face region: jaw points 0-16, then a forehead arc
    from temple 16 over the top back to temple 0."""
    l68 = _check68(landmarks68)
    jaw = l68[0:17]
    p0, p16, chin = l68[0], l68[16], l68[8]
    c = (p0 + p16) / 2
    u = (p16 - p0) / 2  # half the temple-to-temple vector
    half = float(np.linalg.norm(u))
    if half < 1e-6:
        raise ValueError("degenerate landmarks: the two temples (points 0 and 16) coincide")
    v = np.array([u[1], -u[0]]) / half  # unit normal to the temple line
    if np.dot(chin - c, v) > 0:  # make v point away from the chin
        v = -v
    depth = abs(float(np.dot(chin - c, v)))
    b = FOREHEAD_RATIO * max(depth, 0.5 * half)
    t = np.linspace(0.0, np.pi, n_arc)[1:-1]
    arc = c + np.cos(t)[:, None] * u + (np.sin(t)[:, None] * b) * v
    return np.concatenate([jaw, arc]).astype(np.float32)


def face_mask(landmarks68: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """uint8 (size, size) mask, 1 inside the face region (jaw + forehead + every landmark), else 0.

    ``landmarks68`` are pixels of the ``size`` x ``size`` frame (e.g. ``AlignedFace.landmarks68``).
    """
    l68 = _check68(landmarks68)
    mask = np.zeros((size, size), np.uint8)
    shift = 4  # 4 fractional bits, as SynthFaces draws its masks
    outline = np.round(face_outline(l68) * (1 << shift)).astype(np.int32)
    hull = np.round(cv2.convexHull(l68.astype(np.float32))[:, 0, :] * (1 << shift)).astype(np.int32)
    cv2.fillPoly(mask, [outline], 1, cv2.LINE_8, shift)
    cv2.fillPoly(mask, [hull], 1, cv2.LINE_8, shift)
    return mask


def face_masks(landmarks68: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Batch version of :func:`face_mask`: (N, 68, 2) -> uint8 (N, size, size)."""
    l68 = np.asarray(landmarks68)
    return np.stack([face_mask(x, size) for x in l68]) if len(l68) else np.zeros((0, size, size), np.uint8)
