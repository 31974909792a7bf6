"""Face swap: put a generated 128x128 face back into the photo it replaces.

The generator draws a face in the *aligned frame* (:mod:`upgan_lib.align`): a similarity
transform ``M`` (rotation, uniform scale, shift; 2x3, image -> aligned) fixed by the detected
landmarks. Swapping it in is the inverse:

1. **mask** - the generator's own mask: channel 0 of ``softmax(mask_logits)`` (probability that
   a pixel belongs to the face, :func:`upgan_lib.generator.face_probability`), thresholded at
   ``mask_threshold`` and eroded by ``erode_px`` aligned-frame pixels so that the blend boundary
   lies inside the face, not on its edge.
2. **warp** - ``M^-1`` maps the face and the mask into the photo. Only the region of interest
   (the mask's bounding box, clamped to the photo) is warped, so a 24-megapixel photo costs no
   more than a 640x480 one. A face smaller than the 128 frame is first area-downsampled, so that
   it is not aliased.
3. **colour** - optional mean/spread transfer (per channel, in Lab) of the generated face to the
   photo's face under the mask: a first-order fix for lighting and skin-tone mismatch.
4. **blend** - Poisson blending (Perez, Gangnet & Blake, *Poisson image editing*, 2003; OpenCV's
   ``cv2.seamlessClone``): inside the mask the result keeps the *gradients* of the generated face,
   on the mask's boundary it takes the photo's values, so colour and brightness steps vanish.
   ``seamlessClone`` zeroes the outermost pixel row/column of the mask, misplaces (or rejects)
   a mask whose bounding box touches the image border, and keeps the photo's gradients in a
   3-pixel rim inside the mask; the region is therefore padded by ``pad_px`` pixels first (photo
   reflected, mask replicated) and cropped back after, so faces cut by the photo border are
   replaced right up to the border. ``blend="alpha"`` (feathered alpha) and ``"paste"`` (hard cut) are there to compare.
5. **check** (fail closed) - the swapped mask must cover at least ``min_coverage`` of the inner
   face (convex hull of brows, eyes, nose and mouth landmarks); otherwise :class:`SwapError`
   is raised and the caller greys the face out (:func:`grey_out`) instead of leaving it clear.

All images here are uint8 RGB ``(H, W, 3)`` numpy arrays; boxes are ``(x0, y0, x1, y1)``
integer pixels with exclusive ``x1, y1``.

:func:`compose_scene` builds larger test "photos" from SynthFaces faces, with the ground-truth
boxes and landmarks a detector would have to find (dlib's HOG detector does not find cartoons).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .align import apply_matrix, matrix_scale
from .config import resolve_preset

BLENDS = ("poisson", "alpha", "paste")
#: dlib-68 indices of the inner face (brows 17-26, nose 27-35, eyes 36-47, mouth 48-67): the part
#: that must be replaced for a swap to count.
INNER_FACE = tuple(range(17, 68))


class SwapError(RuntimeError):
    """A face could not be swapped in; the caller must grey it out (fail closed)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason  # short machine-readable key: "mask_empty", "too_small", ...


@dataclass(frozen=True)
class SwapConfig:
    """Knobs of the swap. Distances are in aligned-frame pixels (128 frame) unless named ``_img``.

    mask_threshold: face probability above which a pixel is swapped.
    erode_px: erosion of the thresholded mask (aligned px), keeps the seam inside the face.
    blend: "poisson" (paper), "alpha" (feathered, ``feather_px`` sigma) or "paste".
    colour_match: transfer Lab mean/std of the photo's face to the generated face first.
    pad_px: reflected padding (image px) around the region before ``seamlessClone``.
    min_eye_distance_img: faces whose eyes are closer than this many image pixels are too small
        to replace meaningfully (about 3.5 x this is the face width) and are greyed instead.
    min_coverage: fraction of the inner-face hull the swapped mask must cover.
    """

    mask_threshold: float = 0.5
    erode_px: int = 2
    blend: str = "poisson"
    feather_px: float = 2.0
    colour_match: bool = True
    pad_px: int = 8
    min_eye_distance_img: float = 8.0
    min_coverage: float = 0.95

    def __post_init__(self):
        if self.blend not in BLENDS:
            raise ValueError(f"unknown blend {self.blend!r}: use one of {', '.join(BLENDS)}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage must be in [0, 1], got {self.min_coverage}")

    @classmethod
    def for_preset(cls, name: str = "full", **overrides) -> "SwapConfig":
        """Same settings for both presets (the swap is cheap); overrides are passed through."""
        resolve_preset(name)
        return replace(cls(), **overrides)


@dataclass
class SwapResult:
    image: np.ndarray  # uint8 (H, W, 3): the photo with the face swapped in
    box: tuple  # (x0, y0, x1, y1) region that was changed
    mask: np.ndarray  # bool (y1-y0, x1-x0): pixels taken from the generated face
    coverage: float  # fraction of the inner-face hull covered by `mask` (nan if no landmarks given)
    scale: float  # image pixels per aligned-frame pixel
    blend: str = "poisson"
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# the generator's mask
# ---------------------------------------------------------------------------------------------
def blend_mask(prob: np.ndarray, cfg: SwapConfig = SwapConfig()) -> np.ndarray:
    """Face probability (S, S) -> uint8 {0, 1} mask: threshold, erode, keep the largest blob."""
    m = (np.asarray(prob, np.float32) > cfg.mask_threshold).astype(np.uint8)
    if cfg.erode_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.erode_px + 1, 2 * cfg.erode_px + 1))
        m = cv2.erode(m, k)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 2:  # keep the largest component: stray specks far from the face are not face
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        m = (labels == biggest).astype(np.uint8)
    return m


# ---------------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------------
def clamp_box(box, width: int, height: int) -> tuple:
    """Clamp (x0, y0, x1, y1) to the image; returns ints (may be empty: x1 <= x0)."""
    x0, y0, x1, y1 = box
    return (int(max(0, np.floor(x0))), int(max(0, np.floor(y0))),
            int(min(width, np.ceil(x1))), int(min(height, np.ceil(y1))))


def expand_box(box, margin: float) -> tuple:
    """Grow a box by ``margin`` x its size on every side (float)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def face_region_box(box, landmarks68: np.ndarray | None = None, margin: float = 0.15) -> tuple:
    """Box that holds a face for greying/blurring: the detection box united with the landmarks'
    bounding box (plus a forehead allowance above the brows), grown by ``margin``."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if landmarks68 is not None and np.all(np.isfinite(landmarks68)):
        l = np.asarray(landmarks68, np.float64)
        lx0, ly0 = l.min(axis=0)
        lx1, ly1 = l.max(axis=0)
        forehead = 0.35 * (ly1 - ly0)  # dlib's points stop at the brows
        x0, y0, x1, y1 = min(x0, lx0), min(y0, ly0 - forehead), max(x1, lx1), max(y1, ly1)
    return expand_box((x0, y0, x1, y1), margin)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of ``sigma`` px (edges replicated) as float32, in time independent of
    ``sigma``: above 4 px the image is shrunk so that the blur is 4 px there, blurred and grown
    back (within a few grey levels of the exact blur, which the shrinking's own smoothing and
    the interpolation make up)."""
    h, w = img.shape[:2]
    k = max(1.0, sigma / 4.0)
    if k <= 1.0:
        return cv2.GaussianBlur(img.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    small = cv2.resize(img.astype(np.float32), (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)
    inner = np.sqrt(max(0.25, (sigma / k) ** 2 - 0.25))  # INTER_AREA has already smoothed about half a small pixel
    small = cv2.GaussianBlur(small, (0, 0), inner, borderType=cv2.BORDER_REPLICATE)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def sharpen(face: np.ndarray, amount: float, sigma: float = 2.0) -> np.ndarray:
    """Unsharp mask: ``face`` (uint8) plus ``amount`` x its detail above a Gaussian of ``sigma``
    px, clipped to 0-255 (``amount`` 0: ``face`` unchanged)."""
    if amount < 0 or sigma <= 0:
        raise ValueError(f"sharpen needs amount >= 0 and sigma > 0, got {amount}, {sigma}")
    if amount == 0:
        return face
    f = face.astype(np.float32)
    detail = f - cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.round(f + amount * detail), 0, 255).astype(np.uint8)


def blur_out(image: np.ndarray, region, sigma: float, fade: float) -> tuple:
    """Blur ``region`` (x0, y0, x1, y1) of ``image`` in place with a Gaussian of ``sigma`` px
    (:func:`gaussian_blur`), all of it, and fade the blur out over ``fade`` px beyond it, so that
    no hard edge is drawn (the blur reads ``3 sigma`` around what it changes). Returns the box
    changed, clamped to the image (empty when ``region`` lies outside it)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = clamp_box(region, w, h)
    if x1 <= x0 or y1 <= y0:
        return x0, y0, x1, y1
    f = max(0, int(np.ceil(fade)))
    c0, d0, c1, d1 = clamp_box((x0 - f, y0 - f, x1 + f, y1 + f), w, h)  # what changes
    reach = f + int(np.ceil(3 * sigma))
    e0, g0, e1, g1 = clamp_box((x0 - reach, y0 - reach, x1 + reach, y1 + reach), w, h)  # what the blur reads
    blurred = gaussian_blur(image[g0:g1, e0:e1], sigma)[d0 - g0:d1 - g0, c0 - e0:c1 - e0]
    # weight: 1 inside region, falling linearly to 0 at ``fade`` px from it
    yy, xx = np.mgrid[d0:d1, c0:c1].astype(np.float32) + 0.5
    dx = np.maximum(np.maximum(x0 - xx, xx - x1), 0)
    dy = np.maximum(np.maximum(y0 - yy, yy - y1), 0)
    a = np.clip(1 - np.hypot(dx, dy) / max(f, 1), 0, 1)[..., None] if f else 1.0
    cur = image[d0:d1, c0:c1].astype(np.float32)
    image[d0:d1, c0:c1] = np.round(blurred * a + cur * (1 - a)).astype(np.uint8)
    return c0, d0, c1, d1


#: the two grey levels of the fail-closed fill's checkerboard
GREY_LEVELS = (64, 192)
#: its cell, as a fraction of the face box's width (1/16: about 9 px of dlib's 150 px chip)
GREY_CELL = 0.06


def grey_checker(height: int, width: int, cell: int, levels=GREY_LEVELS, origin=(0, 0)) -> np.ndarray:
    """uint8 (height, width, 3) checkerboard of the two ``levels``, squares of ``cell`` px
    anchored at ``origin`` (x, y) of the photo, so that overlapping fills line up."""
    yy, xx = np.ogrid[origin[1]:origin[1] + height, origin[0]:origin[0] + width]
    board = np.where((yy // cell + xx // cell) % 2, levels[1], levels[0]).astype(np.uint8)
    return np.repeat(board[..., None], 3, axis=2)


def is_grey_fill(pixels: np.ndarray, levels=GREY_LEVELS) -> np.ndarray:
    """bool (...): which pixels of an RGB array (..., 3) are exactly one of the fill's ``levels``."""
    p = np.asarray(pixels)
    return (p == p[..., :1]).all(-1) & np.isin(p[..., 0], np.asarray(levels, p.dtype))


def grey_out(image: np.ndarray, box, landmarks68: np.ndarray | None = None, margin: float = 0.15,
             levels=GREY_LEVELS, cell: float = GREY_CELL, phase: float = 0.0) -> tuple:
    """Fail-closed obscuration, in place: fill the face's region (see :func:`face_region_box`)
    with a grey checkerboard (:func:`grey_checker`, squares ``cell`` x the box's width, shifted
    by ``phase`` of a square along both axes).

    Nothing of the face is left either way; dlib's face recogniser reads a flat grey square as
    an average face, closer than 0.6 to the people near the average, and this board farther
    from faces, though not from all (``benchmarks/fill_reads.py`` measures it;
    ``levels=(128, 128)`` gives the flat fill). Returns the clamped box that was filled."""
    h, w = image.shape[:2]
    b = clamp_box(face_region_box(box, landmarks68, margin), w, h)
    x0, y0, x1, y1 = b
    if x1 > x0 and y1 > y0:
        size = max(2, int(round(cell * (float(box[2]) - float(box[0])))))
        shift = int(round(phase * size))
        image[y0:y1, x0:x1] = grey_checker(y1 - y0, x1 - x0, size, levels, (x0 + shift, y0 + shift))
    return b


def inner_face_polygon(landmarks68: np.ndarray) -> np.ndarray:
    """Convex hull (K, 2) of the inner-face landmarks (brows, eyes, nose, mouth)."""
    pts = np.asarray(landmarks68, np.float32)[list(INNER_FACE)]
    return cv2.convexHull(pts).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# the swap
# ---------------------------------------------------------------------------------------------
def _lab_transfer(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the Lab mean and spread of ``src`` to ``dst`` under ``mask`` (uint8 RGB in, out)."""
    sel = mask.astype(bool)
    if sel.sum() < 16:
        return src
    s = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    d = cv2.cvtColor(dst, cv2.COLOR_RGB2LAB).astype(np.float32)
    sm, ss = s[sel].mean(0), s[sel].std(0) + 1e-3
    dm, ds = d[sel].mean(0), d[sel].std(0) + 1e-3
    ratio = np.clip(ds / ss, 0.5, 2.0)  # do not blow up a flat generated face's noise
    out = (s - sm) * ratio + dm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _poisson(src: np.ndarray, dst: np.ndarray, mask: np.ndarray, pad: int) -> np.ndarray:
    """seamlessClone of src into dst (same size) under mask, robust at the region border.

    The region is padded: photo and face by reflection, the mask by replication - so where the
    mask was cut by the photo's border it continues into the padding and the clone's boundary
    (where the photo's values are imposed, and OpenCV's 3-pixel rim that keeps the photo's
    gradients) lies outside the photo instead of leaving a strip of the original face at its edge.
    """
    pad = max(6, int(pad))
    srcp = cv2.copyMakeBorder(src, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    dstp = cv2.copyMakeBorder(dst, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    maskp = cv2.copyMakeBorder(mask.astype(np.uint8) * 255, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    maskp[:2], maskp[-2:], maskp[:, :2], maskp[:, -2:] = 0, 0, 0, 0  # clone needs a zero frame
    x, y, w, h = cv2.boundingRect(maskp)
    # OpenCV places the clone at p - (w // 2, h // 2): this centre puts it exactly where it was
    centre = (x + w // 2, y + h // 2)
    out = cv2.seamlessClone(srcp, dstp, maskp, centre, cv2.NORMAL_CLONE)
    return out[pad:-pad, pad:-pad]


def check_face_size(landmarks68: np.ndarray, min_eye_distance: float) -> None:
    """Raise :class:`SwapError` ``too_small`` when the eye centres of ``landmarks68`` (image
    pixels) are closer than ``min_eye_distance``: too small a face to replace meaningfully."""
    l68 = np.asarray(landmarks68, np.float64)
    eye_d = float(np.linalg.norm(l68[42:48].mean(0) - l68[36:42].mean(0)))
    if eye_d < min_eye_distance:
        raise SwapError("too_small", f"face too small to replace: eyes {eye_d:.1f} px apart "
                                     f"(minimum {min_eye_distance:g})")


def _checked_inputs(photo, face, prob, matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(photo, face, matrix)`` as arrays once their types and shapes are right."""
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be uint8 (H, W, 3) RGB, got {photo.dtype} {photo.shape}")
    face = np.asarray(face)
    size = face.shape[0]
    if face.shape != (size, size, 3) or face.dtype != np.uint8:
        raise ValueError(f"face must be uint8 (S, S, 3), got {face.dtype} {face.shape}")
    if np.shape(prob) != (size, size):
        raise ValueError(f"mask probability must be ({size}, {size}) like the face, got {np.shape(prob)}")
    m = np.asarray(matrix, np.float64)
    if m.shape != (2, 3) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:, :2])) < 1e-12:
        raise SwapError("bad_alignment", f"alignment matrix is not an invertible 2x3 transform: {m.tolist()}")
    return photo, face, m


def _region(mask_a: np.ndarray, inv: np.ndarray, width: int, height: int) -> tuple:
    """The region of interest: the aligned mask's bounding box mapped into the photo, clamped."""
    ys, xs = np.nonzero(mask_a)
    corners = np.array([[xs.min() - 1, ys.min() - 1], [xs.max() + 1, ys.min() - 1],
                        [xs.min() - 1, ys.max() + 1], [xs.max() + 1, ys.max() + 1]], np.float64)
    ic = apply_matrix(inv, corners)
    box = clamp_box((ic[:, 0].min() - 1, ic[:, 1].min() - 1, ic[:, 0].max() + 2, ic[:, 1].max() + 2), width, height)
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise SwapError("outside_image", f"the face region {tuple(int(v) for v in ic.min(0))}-"
                                         f"{tuple(int(v) for v in ic.max(0))} lies outside the {width}x{height} photo")
    return box


def _warp_into(box, face: np.ndarray, mask_a: np.ndarray, inv: np.ndarray, scale: float):
    """The generated face and its mask warped into ``box`` of the photo: (uint8 face, bool mask).
    A face smaller than the aligned frame is area-downsampled first, so the warp does not alias."""
    size = face.shape[0]
    src_face, mask_src, a2i = face, mask_a.astype(np.float32), inv.copy()
    if scale < 0.5:
        s2 = max(8, int(round(size * scale * 1.5)))
        r = size / s2  # aligned px per small px
        src_face = cv2.resize(face, (s2, s2), interpolation=cv2.INTER_AREA)
        mask_src = cv2.resize(mask_src, (s2, s2), interpolation=cv2.INTER_AREA)
        # small pixel centre a' maps to aligned (a' + 0.5) * r - 0.5
        a2i = np.concatenate([inv[:, :2] * r, (inv[:, :2] @ np.full(2, 0.5 * r - 0.5) + inv[:, 2])[:, None]], axis=1)
    x0, y0, x1, y1 = box
    t = a2i.copy()
    t[:, 2] -= (x0, y0)
    rw, rh = x1 - x0, y1 - y0
    warped = cv2.warpAffine(src_face, t, (rw, rh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    wmask = cv2.warpAffine(mask_src, t, (rw, rh), flags=cv2.INTER_LINEAR, borderValue=0) > 0.5
    if wmask.sum() == 0:
        raise SwapError("outside_image", "no part of the generated face's mask falls inside the photo")
    return warped, wmask


def _coverage(landmarks68: np.ndarray, box, wmask: np.ndarray, photo_shape, min_coverage: float) -> float:
    """Fraction of the inner-face hull (its part inside the photo) that ``wmask`` covers; raises
    :class:`SwapError` ``mask_coverage`` below ``min_coverage``."""
    x0, y0, x1, y1 = box
    hull = inner_face_polygon(landmarks68) - np.array([x0, y0], np.float32)
    need = np.zeros((y1 - y0, x1 - x0), np.uint8)
    big = np.zeros(photo_shape[:2], np.uint8)
    cv2.fillPoly(big, [np.round(hull + (x0, y0)).astype(np.int32)], 1)
    cv2.fillPoly(need, [np.round(hull).astype(np.int32)], 1)
    total = int(big.sum())  # the hull's area inside the photo (it may spill out of the ROI)
    coverage = float((need.astype(bool) & wmask).sum() / total) if total else 0.0
    if coverage < min_coverage:
        raise SwapError("mask_coverage", f"the generated mask covers {coverage:.0%} of the inner face "
                                         f"(minimum {min_coverage:.0%})")
    return coverage


def _blend(warped: np.ndarray, dst: np.ndarray, wmask: np.ndarray, cfg: SwapConfig, scale: float) -> np.ndarray:
    """``warped`` blended into ``dst`` (the photo's region) under ``wmask`` as ``cfg.blend`` says."""
    if cfg.blend == "poisson":
        try:
            blended = _poisson(warped, dst, wmask, cfg.pad_px)
        except cv2.error as e:
            raise SwapError("blend_failed", f"Poisson blending failed: {str(e).strip().splitlines()[-1]}") from e
        # seamlessClone changes only the mask; make that exact (it may touch a 1-px rim)
        return np.where(wmask[..., None], blended, dst)
    if cfg.blend == "alpha":
        sig = max(0.5, cfg.feather_px * scale)
        a = cv2.GaussianBlur(wmask.astype(np.float32), (0, 0), sig)
        a = np.minimum(a * 2.0, 1.0) * wmask  # feather inwards: stays 0 outside the mask
        return (warped * a[..., None] + dst * (1 - a[..., None])).round().astype(np.uint8)
    return np.where(wmask[..., None], warped, dst)


def swap_face(photo: np.ndarray, face: np.ndarray, prob: np.ndarray, matrix: np.ndarray,
              cfg: SwapConfig = SwapConfig(), landmarks68: np.ndarray | None = None) -> SwapResult:
    """Swap a generated face into ``photo`` (not modified; a new image is returned).

    photo: uint8 (H, W, 3) RGB.  face: uint8 (S, S, 3) generated face in the aligned frame.
    prob: (S, S) face probability (:func:`upgan_lib.generator.face_probability`).  matrix: 2x3
    image -> aligned frame similarity (``align.alignment_matrix``).  landmarks68: the photo's
    landmarks (image pixels); when given, the swap must cover ``cfg.min_coverage`` of the inner face.
    Raises :class:`SwapError` (with ``.reason``) when the face cannot be replaced.
    """
    photo, face, m = _checked_inputs(photo, face, prob, matrix)
    h, w = photo.shape[:2]
    inv = cv2.invertAffineTransform(m)  # aligned -> image
    scale = matrix_scale(inv)
    if landmarks68 is not None:
        check_face_size(landmarks68, cfg.min_eye_distance_img)
    mask_a = blend_mask(prob, cfg)
    if mask_a.sum() == 0:
        raise SwapError("mask_empty", f"generator mask is empty after threshold {cfg.mask_threshold} "
                                      f"and erosion {cfg.erode_px} px")
    box = _region(mask_a, inv, w, h)
    warped, wmask = _warp_into(box, face, mask_a, inv, scale)
    coverage = float("nan")
    if landmarks68 is not None:
        coverage = _coverage(landmarks68, box, wmask, photo.shape, cfg.min_coverage)
    x0, y0, x1, y1 = box
    dst = photo[y0:y1, x0:x1]
    if cfg.colour_match:
        warped = _lab_transfer(warped, dst, wmask)
    out = photo.copy()
    out[y0:y1, x0:x1] = _blend(warped, dst, wmask, cfg, scale)
    return SwapResult(image=out, box=box, mask=wmask, coverage=coverage, scale=scale, blend=cfg.blend,
                      info={"warped": warped})


# ---------------------------------------------------------------------------------------------
# synthetic scenes: SynthFaces faces composited into larger photos, with ground truth
# ---------------------------------------------------------------------------------------------
@dataclass
class SceneFace:
    """Ground truth of one face in a composed scene (what a perfect detector would return)."""

    box: tuple  # (x0, y0, x1, y1) ints, dlib-like: brows to chin, jaw side to jaw side
    landmarks68: np.ndarray  # (68, 2) float32 image pixels
    source: str = ""  # FaceSet source of the face
    score: float = 1.0
    to_crop: np.ndarray | None = None  # 2x3 similarity: photo pixels -> the source face's 128 crop


@dataclass
class Scene:
    image: np.ndarray  # uint8 (H, W, 3)
    faces: list  # list[SceneFace]


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth, slightly cluttered procedural background (uint8 RGB)."""
    c0, c1 = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    ramp = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = np.ascontiguousarray((c0 * (1 - ramp) + c1 * ramp) * np.ones((height, width, 3), np.float32))
    for _ in range(int(rng.integers(3, 8))):  # furniture: a few soft rectangles and discs
        col = tuple(float(v) for v in rng.uniform(30, 230, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            w2, h2 = int(rng.integers(20, width // 2)), int(rng.integers(20, height // 2))
            cv2.rectangle(img, (x, y), (x + w2, y + h2), col, -1)
        else:
            cv2.circle(img, (x, y), int(rng.integers(10, max(11, height // 4))), col, -1)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def compose_scene(faces, indices, size=(640, 480), centres=None, face_widths=None, angles=None,
                  seed: int = 0) -> Scene:
    """Paste SynthFaces faces (``faces``: a FaceSet) into a ``size=(W, H)`` procedural photo.

    Each face's 128 crop (face, hair and its own backdrop) is placed with a similarity transform
    - centre ``centres[i]`` (x, y image px), width of the 128 crop ``face_widths[i]`` px, roll
    ``angles[i]`` degrees - and blended in with a feathered disc, so the result looks like a head
    in a room. Defaults: faces side by side, crop width about 0.8 x the slot. Returns the photo
    and, per face, its box and 68 landmarks in photo pixels. Centres may lie near or beyond the
    border (the face is then cut, as in a real photo).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    idx = list(np.atleast_1d(indices))
    n = len(idx)
    if centres is None:
        centres = [((i + 0.5) * width / n, height * 0.5) for i in range(n)]
    if face_widths is None:
        face_widths = [min(width / n * 0.8, height * 0.8)] * n
    if angles is None:
        angles = [0.0] * n
    img = background(width, height, rng).astype(np.float32)
    s = faces.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    r = np.hypot(xx - s / 2 + 0.5, (yy - s / 2 + 0.5) * 0.9) / (s / 2)
    disc = np.clip((0.98 - r) / 0.12, 0, 1)  # feathered head disc in the crop
    out_faces = []
    for j, i in enumerate(idx):
        k = float(face_widths[j]) / s
        m = cv2.getRotationMatrix2D((s / 2, s / 2), float(angles[j]), k)
        m[:, 2] += np.array(centres[j], np.float64) - (s / 2, s / 2)
        crop = np.asarray(faces.faces[i]).astype(np.float32)
        wf = cv2.warpAffine(crop, m, (width, height), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
        wa = cv2.warpAffine(disc, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        img = wf * wa + img * (1 - wa)
        l68 = apply_matrix(m, faces.landmarks68[i]).astype(np.float32)
        x0, y0 = l68[:, 0].min(), l68[17:27, 1].min()
        x1, y1 = l68[:, 0].max(), l68[:, 1].max()
        out_faces.append(SceneFace(box=(int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))),
                                   landmarks68=l68, source=faces.sources[i], to_crop=cv2.invertAffineTransform(m)))
    return Scene(image=np.clip(img, 0, 255).round().astype(np.uint8), faces=out_faces)
