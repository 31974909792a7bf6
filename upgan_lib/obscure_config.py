"""What `upgan obscure` is asked to do (:class:`ObscureConfig`) and the error it stops with
(:class:`ObscureError`). The obscurer itself is :mod:`upgan_lib.obscure`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import resolve_preset
from .swap import GREY_CELL, GREY_LEVELS, SwapConfig

METHODS = ("upgan", "blur", "pixelate", "ksame", "gray")
#: the steps ``verify_identity`` may take for a replaced face that is still the same person
IDENTITY_RETRIES = ("alpha", "context", "age")
READ_BOXES = ("own", "wide", "cnn")


class ObscureError(RuntimeError):
    """`upgan obscure` cannot start or cannot handle a file; the message says what to do."""


def parse_read_boxes(text: str, allow_none: bool = False) -> tuple:
    """``--identity-reads`` ("wide", "own,wide", ...) as ``ObscureConfig.identity_reads``: names
    out of ``READ_BOXES``, repeats dropped; with ``allow_none`` (``--extra-reads``), "none" is
    ``()``. ValueError says what is allowed."""
    if allow_none and str(text).strip().lower() == "none":
        return ()
    reads = tuple(dict.fromkeys(r.strip() for r in str(text).split(",") if r.strip()))
    if not reads or any(r not in READ_BOXES for r in reads):
        raise ValueError(f"{text!r}: use any of {', '.join(READ_BOXES)}, comma-separated"
                         + (", or none" if allow_none else ""))
    return reads


@dataclass(frozen=True)
class ObscureConfig:
    """Knobs of `upgan obscure`.

    method: upgan | blur | pixelate | ksame | gray.
    detect_max_side: detection runs on a copy whose long side is at most this many pixels
        (landmarks are then fitted at full resolution); dlib's HOG finds faces from ~80 px in
        that copy (photos smaller than 640 px are upsampled, see
        :class:`~upgan_lib.finders.DlibFinder`), i.e. faces at least ~6 % of the photo's long
        side. Raise it for crowds in large photos.
    max_landmark_error: landmarks are implausible (face greyed) when the 7 utility points,
        aligned, lie on average further than this x the canonical eye distance (54.6 px) from the
        template - dlib always returns 68 points, even on a hand or a blur.
    strength: the paper's Gaussian kernel size (sigma as OpenCV derives it,
        ``baselines.opencv_sigma``) or pixelation block, in aligned 128-frame pixels (paper: 5,
        15, 25); scaled by each face's size in the photo, so a face gets the same obscuration
        whatever its resolution.
    grey_levels, grey_margin, grey_cells: the fail-closed fill: a checkerboard of these two grey
        levels over the face box grown by margin, squares ``grey_cells[0]`` x the face's width
        (:func:`upgan_lib.swap.grey_out`; ``(128, 128)``: flat grey). With ``verify_identity``, a
        face greyed because it kept its identity has its fill read like a replacement, in the
        same boxes: dlib's recogniser reads some checkerboards as the people near its average
        face. A fill that reads closer than ``0.6 + identity_margin`` is drawn again with its
        squares shifted by half a square, then with each further size of ``grey_cells`` (at
        both shifts), until one reads farther, else the farthest is kept; the report gives
        ``fill_distance``, ``fill_cell`` and ``fill_phase``.
    ksame_k: faces averaged by k-same.
    detectors: ("hog", "centerface") (default: every face either finds is obscured), or one of
        them; CenterFace searches every photo at full resolution in tiles and a pyramid
        (:mod:`upgan_lib.detect`), HOG on the ``detect_max_side`` copy.
    search_rotations: when no face is found upright, search the photo turned by 90, 270 and 180
        degrees (after EXIF orientation) and obscure what is found there; a face found there
        again (mostly inside a face already greyed upright) is not obscured twice, and that
        face's report lists the turn under ``found_again_turned``.
    verify_identity: after a face is replaced (or blurred, pixelated), compare it with the
        original with dlib's face recogniser (distance < 0.6: dlib's rule for the same person). A
        face counts as changed only at ``0.6 + identity_margin``: another reader of the photo puts
        its box a few pixels elsewhere, and distances just above 0.6 then fall below it. A
        replaced face that has not changed is replaced more strongly, step by step (see
        ``identity_retries``); a face unchanged after the last step, and a blurred or pixelated
        one, is greyed (reason ``identity_kept``). Every face is compared with the photo as it
        was (a face found turned too), and a face is checked again when another face's change
        (a retry, a grey, a face found turned) overlaps it afterwards. About 0.3 s per face on
        one CPU thread; off here so that the paper's pipeline is what the chapters show, on in
        ``upgan obscure`` (``--no-verify-identity`` turns it off).
    identity_retries: the steps tried, in order, for a replaced face that is still the same
        person: ``"alpha"`` - the same generated face, feathered in (``SwapConfig(blend="alpha")``)
        instead of Poisson-blended, so it replaces the face under the mask instead of lending it
        only its gradients (the photo's shading, which carries identity, goes); ``"context"`` -
        the face's whole region (what a grey would cover: jaw, ears, hairline) blurred with a
        Gaussian of sigma ``context_blur`` x the face's width (1.0: a smooth wash of the
        region's colours; the blur fades out over ``context_fade`` x the face's width beyond the
        region, so no hard edge is drawn), and the generated face blended
        in again over it: what is left of the person around the new face goes, the utility
        stays; ``"age"`` - a face generated with the estimated age moved by each of
        ``retry_age_shifts`` years in turn (towards 45), feathered in: the one piece of utility
        given up, and the report says so.
    context_every_face: every replaced face is given the strongest retry that keeps all of its
        utility (``"context"``, else ``"alpha"``) at once, whatever it reads, and the check then
        judges the result: the photo around a generated face is what still identifies a person
        most often when the face itself reads as another (``benchmarks/leak_rate.py``). Off: only
        a face that reads closer than ``0.6 + feather_margin`` is given it, kept only when it
        reads farther, and the rest keep the paper's Poisson-blended look.
    sharpen, sharpen_sigma: every face the check blends in again (each retry, so with
        ``context_every_face`` every replaced face) is sharpened first: an unsharp mask of this
        amount over a Gaussian of ``sharpen_sigma`` px in the aligned 128 frame
        (:func:`upgan_lib.swap.sharpen`). The generator's faces come out soft, and dlib's
        recogniser reads a soft generated face as the person it replaced more often
        (``benchmarks/leak_rate.py``); 0: off.
    feather_margin: with ``context_every_face`` off, a face that passed, but reads closer than
        ``0.6 + feather_margin``, is given the strongest retry that keeps every piece of utility
        all the same, kept only when it reads farther from the original (else the face is put
        back as it was and the report gives ``feathered_distance`` / ``context_blurred_distance``):
        distances near the threshold are where another reader of the photo disagrees. Not above
        ``identity_margin``: off.
    identity_reads: the boxes a face is read in, out of ``READ_BOXES``: ``"own"`` (its box),
        ``"wide"`` (its box grown 1.25 times about its centre), ``"cnn"`` (the box dlib's CNN
        detector tends to draw around it); it counts as changed only if it has changed in each
        (about 0.15 s per box). Default ``("wide", "cnn")``: dlib's landmarks, started
        from a loose box, settle where a generated face still resembles the original more often
        than from the detector's own box, so the check errs on the side of privacy; and the box
        another detector would draw is where a face that passed in the wide box still reads as
        the person most often (``benchmarks/leak_rate.py``: 21 faces the same person to its
        judge with ``("wide",)`` and the CNN-like box among the extra reads, 18 with both; the
        second box costs about 0.15 s per face).
    extra_reads, extra_reads_margin: a face that reads closer than ``0.6 + extra_reads_margin``
        in ``identity_reads`` is read in these boxes too, from then on, and counts as changed
        only if it has changed in each (the report lists them under ``extra_reads``): close to
        the threshold, another reader's box is where the person comes back, and reading every
        face in every box would multiply the check's time. ``()``: off.
    """

    method: str = "upgan"
    detect_max_side: int = 1280
    detectors: tuple = ("hog", "centerface")
    search_rotations: bool = True
    verify_identity: bool = False
    identity_retries: tuple = ("alpha", "context", "age")
    identity_margin: float = 0.03
    context_every_face: bool = True
    feather_margin: float = 0.2
    identity_reads: tuple = ("wide", "cnn")
    extra_reads: tuple = ("own",)
    extra_reads_margin: float = 0.1
    context_blur: float = 1.0
    context_fade: float = 0.15
    sharpen: float = 4.0
    sharpen_sigma: float = 2.0
    retry_age_shifts: tuple = (20.0, 35.0)
    max_landmark_error: float = 0.35
    strength: int = 25
    grey_levels: tuple = GREY_LEVELS
    grey_margin: float = 0.15
    grey_cells: tuple = (GREY_CELL, 0.05, 0.08)
    ksame_k: int = 10
    swap: SwapConfig = field(default_factory=SwapConfig)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.detect_max_side < 64:
            raise ValueError(f"detect_max_side must be at least 64, got {self.detect_max_side}")
        for name, reads, may_be_empty in (("identity_reads", self.identity_reads, False),
                                          ("extra_reads", self.extra_reads, True)):
            named = not isinstance(reads, str) and all(r in READ_BOXES for r in reads)
            if not named or len(set(reads)) < len(reads) or not (reads or may_be_empty):
                raise ValueError(f"{name} must be distinct names out of {', '.join(READ_BOXES)}, got {reads!r}")
        if not self.context_blur > 0:
            raise ValueError(f"context_blur must be positive, got {self.context_blur}")
        if not (self.sharpen >= 0 and self.sharpen_sigma > 0):
            raise ValueError(f"sharpen must be 0 or more and sharpen_sigma positive, got {self.sharpen}, {self.sharpen_sigma}")
        if not self.context_fade >= 0:
            raise ValueError(f"context_fade must be 0 or more, got {self.context_fade}")
        if len(self.grey_levels) != 2 or not all(0 <= int(v) <= 255 for v in self.grey_levels):
            raise ValueError(f"grey_levels must be two grey levels 0-255, got {self.grey_levels!r}")
        cells = self.grey_cells if isinstance(self.grey_cells, (tuple, list)) else ()
        if not cells or not all(isinstance(c, (int, float)) and 0 < c <= 0.5 for c in cells):
            raise ValueError(f"grey_cells must be one or more square sizes above 0 and at most 0.5 of the "
                             f"face's width, got {self.grey_cells!r}")
        unknown = [r for r in self.identity_retries if r not in IDENTITY_RETRIES]
        if unknown:
            raise ValueError(f"unknown identity retry {unknown[0]!r}: use any of {', '.join(IDENTITY_RETRIES)}")

    @classmethod
    def for_preset(cls, name: str = "full", **overrides) -> "ObscureConfig":
        """Same settings for both presets (nothing here is expensive); overrides pass through."""
        resolve_preset(name)
        return replace(cls(), **overrides)
