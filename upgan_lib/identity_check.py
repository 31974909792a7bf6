"""`upgan obscure`'s identity check (``ObscureConfig.verify_identity``), as a part of
:class:`upgan_lib.obscure.Obscurer`.

After the faces of a photo are obscured, dlib's face recogniser (:mod:`upgan_lib.recognise`)
compares each one with the photo as it was, both read in the face's box. A replaced face that is
not clearly another person (closer than ``0.6 + identity_margin``) is replaced more strongly, step
by step (``identity_retries``: feathered in, over its surroundings blurred, then with its age
moved), and greyed when every step leaves it so; a blurred or pixelated face is greyed at once.
A grey is read too, and its checkerboard drawn again where dlib still reads the person in it.
With ``context_every_face`` (the default), every replaced face is feathered in over its blurred
surroundings before it is judged at all; without it, only a face that passed closer than
``0.6 + feather_margin`` is, and only when that reads farther. A face that reads closer than
``0.6 + extra_reads_margin`` is read in the ``extra_reads`` boxes as well from then on, and has to
have changed in each. A face is checked again
when another face's change (a retry, a grey, a face found in the photo turned) overlaps it
afterwards. Everything done is in the face's report.
"""
from __future__ import annotations

import copy
import time
from dataclasses import replace

import numpy as np

from .detect import iou
from .recognise import FaceRecogniser
from .swap import blur_out, face_region_box, sharpen, swap_face
from .utility import AGE_SCALE


def _read_area(box, pad: float = 0.25) -> tuple:
    """What dlib's recogniser reads of a face in ``box``: the box and ``pad`` of its size around it."""
    x0, y0, x1, y1 = box
    px, py = pad * (x1 - x0), pad * (y1 - y0)
    return x0 - px, y0 - py, x1 + px, y1 + py


def wide_box(box, scale: float = 1.25) -> tuple:
    """``box`` grown ``scale`` times about its centre: the box a detector that boxes faces
    loosely draws (dlib's landmarks, fitted in it, then settle elsewhere on a generated face)."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, scale * (x1 - x0) / 2, scale * (y1 - y0) / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


#: a box taller than this x its width is CenterFace's (forehead to chin); HOG's are square
TALL_BOX = 1.1
#: where dlib's CNN (MMOD) detector draws its box around a face boxed square (HOG) or tall
#: (CenterFace): its centre's shift across and down, as fractions of the box's width and height,
#: and its width and height as fractions of the box's (medians, see :func:`cnn_like_box`)
CNN_BOX = {"square": (-0.038, -0.069, 0.896, 0.896), "tall": (-0.047, -0.014, 1.057, 0.82)}


def box_shape(box) -> str:
    """``"tall"`` for a box taller than ``TALL_BOX`` x its width (CenterFace's), else ``"square"``
    (HOG's): the key of ``CNN_BOX``."""
    x0, y0, x1, y1 = box
    return "tall" if y1 - y0 > TALL_BOX * (x1 - x0) else "square"


def cnn_like_box(box) -> tuple:
    """The box dlib's CNN (MMOD) detector tends to draw around a face HOG or CenterFace boxed as
    ``box`` (``CNN_BOX``: the medians ``benchmarks/leak_rate.py`` prints for identity photos,
    where that detector is its judge: 3,564 and 171 faces). Around HOG's square box: its centre
    4 % of the width left and 7 % of the height up, 0.9 times the size (the two detectors'
    pyramids put it at about 0.88 or 1.06 times, about equally often). Around CenterFace's
    taller box: 5 % left, 1.4 % up, 1.06 times as wide and 0.82 times as tall - a square."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx, dy, sw, sh = CNN_BOX[box_shape(box)]
    cx, cy = (x0 + x1) / 2 + dx * w, (y0 + y1) / 2 + dy * h
    return cx - sw * w / 2, cy - sh * h / 2, cx + sw * w / 2, cy + sh * h / 2


READ_BOX = {"own": tuple, "wide": wide_box, "cnn": cnn_like_box}
KEEPS_UTILITY = ("alpha", "context")  # retry steps that give up no utility, weakest first
STEP_NAMES = {"alpha": "feathered", "context": "context_blurred"}


class IdentityCheck:
    """The identity check's steps. Mixed into :class:`upgan_lib.obscure.Obscurer`, whose
    ``cfg``, ``faces``, ``_grey`` and ``_fill`` they use, over the ``_Photo`` being obscured."""

    def _verify_identity(self, photo: "_Photo") -> None:
        """``verify_identity``: each face replaced/blurred/pixelated is compared with the original
        by dlib's recogniser (both read in its box). A replaced face that is still the same person
        (distance < 0.6) goes through ``identity_retries``; still the same after the last, or
        blurred/pixelated, it is greyed (reason ``identity_kept``)."""
        if not self.cfg.verify_identity:
            return
        t1 = time.perf_counter()
        if getattr(self, "_recogniser", None) is None:
            self._recogniser = FaceRecogniser()
        for i, f in enumerate(photo.found):
            if photo.reports[i].get("action") in (None, "greyed", "none"):
                continue
            changed = self._changed_from()
            try:
                before = photo.before[i] = self._originals(photo, f.box, self.cfg.identity_reads)
                steps = self._retry_steps(i in photo.swapped)
                near = self._near_threshold_step(steps)
                if self.cfg.context_every_face and near is not None:  # first, whatever it reads: see ObscureConfig
                    d = self._retry(photo, i, near, before)
                    steps = steps[steps.index(near) + 1:]
                else:
                    d = self._identity_distance(photo, i, before)
                for step in steps:
                    if changed <= d < self._near_threshold_below():
                        if step == near:
                            d = self._keep_if_farther(photo, i, step, before, d)
                        continue
                    if d >= changed:
                        break
                    d = self._retry(photo, i, step, before, d)
            except Exception as e:  # noqa: BLE001 - cannot check: fail closed
                self._keep_out(photo, i, 0.0, f"identity check failed ({type(e).__name__}: {e})")
                continue
            photo.checked[i] = len(photo.touched)
            if d < changed:
                self._keep_out(photo, i, d, f"not clearly another person to dlib's recogniser after "
                                            f"{photo.reports[i]['action']} (distance {d:.2f} < {changed:.2f})")
        self._recheck_overlapped(photo)
        photo.stages["verify"] = time.perf_counter() - t1

    def _near_threshold_below(self) -> float:
        """A face that passed, but closer than this, is given the near-threshold step all the same
        (kept only when that reads farther): 0.6 + ``feather_margin``."""
        return self._recogniser.SAME_PERSON + max(self.cfg.feather_margin, self.cfg.identity_margin)

    @staticmethod
    def _near_threshold_step(steps: list):
        """The retry a face that passed near the threshold is given: the strongest of ``steps``
        that keeps every piece of utility (None: there is none)."""
        kept = [s for s in steps if s[0] in KEEPS_UTILITY]
        return max(kept, key=lambda s: KEEPS_UTILITY.index(s[0]), default=None)

    def _keep_if_farther(self, photo: "_Photo", i: int, step: tuple, before: list, d: float) -> float:
        """Take a retry ``step`` that keeps every piece of utility ("alpha", "context") on face
        ``i`` although it passed at distance ``d``; keep the result if it reads farther from the
        original, else put the face back as it was (the report gives ``<step>_distance``)."""
        kept = photo.out.copy(), copy.deepcopy(photo.reports[i]), len(photo.touched)
        d_step = self._retry(photo, i, step, before, d)
        if d_step >= d:
            return d_step
        photo.out, photo.reports[i] = kept[0], kept[1]
        del photo.touched[kept[2]:]
        photo.reports[i][f"{STEP_NAMES[step[0]]}_distance"] = round(d_step, 3)
        return d

    def _changed_from(self) -> float:
        """The identity distance from which a face counts as another person (0.6 + margin)."""
        return self._recogniser.SAME_PERSON + self.cfg.identity_margin

    def _recheck_overlapped(self, photo: "_Photo") -> None:
        """Check again each face that passed the identity check before another face's change
        (a retry, a grey, a face found turned) overlapped it: dlib reads the face with what
        surrounds it, so that change may bring the person back. Still the same now, it is greyed;
        each grey may call for further checks, and ends them: every face is greyed at most once."""
        if not photo.checked:
            return
        changed = self._changed_from()
        while True:
            stale = [i for i, seen in photo.checked.items()
                     if photo.reports[i].get("action") != "greyed"
                     and any(j != i and iou(region, _read_area(photo.found[i].box)) > 0
                             for j, region in photo.touched[seen:])]
            if not stale:
                return
            for i in stale:
                photo.checked[i] = len(photo.touched)
                d = self._identity_distance(photo, i, photo.before[i])
                photo.reports[i]["rechecked"] = True
                if d < changed:
                    self._keep_out(photo, i, d, f"the person came back when a face beside it was obscured "
                                                f"(distance {d:.2f} < {changed:.2f})")

    def _retry_steps(self, replaced: bool) -> list:
        """``identity_retries`` spelt out: "alpha", then ("age", shift) for each age shift."""
        if not replaced:
            return []
        steps = []
        for step in self.cfg.identity_retries:
            steps += [("age", s) for s in self.cfg.retry_age_shifts] if step == "age" else [(step, 0.0)]
        return steps

    def _originals(self, photo: "_Photo", box, names) -> list:
        """``(read box, descriptor of the original there)`` for each of the boxes ``names``
        (``READ_BOX``: its own, :func:`wide_box`, :func:`cnn_like_box`) around ``box``."""
        return [(b, self._recogniser.descriptor(photo.rgb, b)) for b in (READ_BOX[n](box) for n in names)]

    def _identity_distance(self, photo: "_Photo", i: int, before: list) -> float:
        """dlib descriptor distance between face ``i`` as it was and as it is now, the closest
        over its reads ``before`` (extended, in place, by ``extra_reads`` the first time it reads
        closer than 0.6 + ``extra_reads_margin``); reported."""
        d = self._closest(photo, i, before)
        photo.reports[i]["identity_distance"] = round(d, 3)
        return d

    def _closest(self, photo: "_Photo", i: int, before: list) -> float:
        """The closest face ``i`` now reads to itself as it was, over its reads ``before``
        (extended, in place, by ``extra_reads`` the first time it reads closer than 0.6 +
        ``extra_reads_margin``, which the report lists)."""
        def closest(pairs):
            return min(float(np.linalg.norm(was - self._recogniser.descriptor(photo.out, b))) for b, was in pairs)

        d = closest(before)
        extra = [n for n in self.cfg.extra_reads if n not in self.cfg.identity_reads]
        if extra and len(before) == len(self.cfg.identity_reads) \
                and d < self._recogniser.SAME_PERSON + self.cfg.extra_reads_margin:
            added = self._originals(photo, photo.found[i].box, extra)
            before.extend(added)
            photo.reports[i]["extra_reads"] = extra
            d = min(d, closest(added))
        return d

    def _retry(self, photo: "_Photo", i: int, step: tuple, before: list, d: float | None = None) -> float:
        """Replace face ``i`` again, more strongly (``step``: ("alpha", 0), ("context", 0) or
        ("age", years), see :class:`ObscureConfig`), over what is there now; returns the new
        identity distance. ``d``: what the face read before, listed under ``identity_attempts``
        (None: it was not read)."""
        (kind, years), (al, face, prob, util) = step, photo.swapped[i]
        if d is not None:
            tried = photo.reports[i].setdefault("identity_attempts", [])
            tried.append({"blend": photo.reports[i].get("blend", self.cfg.swap.blend), "distance": round(d, 3)})
        if kind == "context":
            self._blur_context(photo, i)
        if kind == "age":
            if self.cfg.method != "upgan":
                return d  # k-same averages faces: no attribute to move
            age = float(util[0]) * AGE_SCALE
            shift = years if age < 45 else -min(years, age)
            util = util.copy()
            util[0] = (age + shift) / AGE_SCALE
            faces, probs = self.faces(util[None], al.image[None])
            face, prob = faces[0], probs[0]
            photo.reports[i]["utility"]["age"] = round(age + shift, 1)
            photo.reports[i]["age_shifted_by"] = shift
        face = sharpen(face, self.cfg.sharpen, self.cfg.sharpen_sigma)
        r = swap_face(photo.out, face, prob, al.matrix, replace(self.cfg.swap, blend="alpha"),
                      photo.found[i].landmarks68)
        photo.out = r.image
        photo.touched.append((i, list(r.box)))
        photo.reports[i].update(region=list(r.box), coverage=round(r.coverage, 3), blend="alpha")
        return self._identity_distance(photo, i, before)

    def _blur_context(self, photo: "_Photo", i: int) -> None:
        """The "context" retry, before the face is blended in again: blur face ``i``'s whole
        region (what a grey would cover: jaw, ears, hairline) with a Gaussian of sigma
        ``context_blur`` x the face's width, fading out over ``context_fade`` x its width
        beyond it, so that only the generated face is sharp there."""
        f = photo.found[i]
        fw = f.box[2] - f.box[0]
        x0, y0, x1, y1 = blur_out(photo.out, face_region_box(f.box, f.landmarks68, self.cfg.grey_margin),
                                  max(1.0, self.cfg.context_blur * fw), self.cfg.context_fade * fw)  # in place, as a grey
        if x1 <= x0 or y1 <= y0:
            return
        photo.touched.append((i, [x0, y0, x1, y1]))
        photo.reports[i]["context_blurred"] = True

    def _keep_out(self, photo: "_Photo", i: int, d: float, why: str) -> None:
        """Face ``i`` is still (or may still be) the same person: grey it, saying what it was."""
        done = photo.reports[i]["action"]
        photo.reports[i]["identity_distance"] = round(d, 3)
        photo.reports[i].pop("region", None)
        self._grey(photo, i, "identity_kept", why)  # greys ``photo.out`` in place
        photo.reports[i]["was"] = done
        if i in photo.before:
            self._check_fill(photo, i, photo.before[i])

    def _check_fill(self, photo: "_Photo", i: int, before: list) -> None:
        """Read face ``i``'s fail-closed fill as a replacement is read (``before``: its reads); one
        that reads closer than 0.6 + ``identity_margin`` is drawn again, its squares shifted by
        half a square, then at each further size of ``grey_cells``, until one reads farther,
        else the farthest is drawn (:class:`ObscureConfig`). The region stays the same, all
        grey: only the squares move. Reported as ``fill_distance``, ``fill_cell``, ``fill_phase``;
        a fill that cannot be read is left as it is."""
        report = photo.reports[i]
        tries = [(c, p) for c in self.cfg.grey_cells for p in (0.0, 0.5)]
        best = None
        try:
            for n, (cell, phase) in enumerate(tries):
                if n:
                    self._fill(photo, i, cell, phase)
                d = self._closest(photo, i, before)
                if best is None or d > best[0]:
                    best = (d, cell, phase)
                if d >= self._changed_from():
                    break
        except Exception as e:  # noqa: BLE001 - the fill hides the face whatever it reads
            report["fill_read_failed"] = f"{type(e).__name__}: {e}"
        if best is None:
            return
        d, cell, phase = best
        if (cell, phase) != tries[n]:
            self._fill(photo, i, cell, phase)
        report.update(fill_distance=round(d, 3), fill_cell=cell, fill_phase=phase, fill_tries=n + 1)
