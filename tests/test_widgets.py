"""The interactive chapter's logic: utility edits -> new utility vector -> image, and the widgets driven from code."""
import numpy as np
import pytest
import torch

from upgan_lib.align import canonical_points7
from upgan_lib.utility import decode_utility, encode_utility
from upgan_lib.widgets import (POSE_PRESETS, FaceEditor, MethodComparison, UtilityEdit, edit_points, edit_utility,
                               png_bytes, render_utility, side_by_side)

P7 = canonical_points7(128)


def _base():
    return encode_utility([40], [1], [2], P7[None])[0]


def _dist(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_no_edit_changes_nothing():
    np.testing.assert_allclose(edit_points(P7, UtilityEdit()), P7, atol=1e-5)
    np.testing.assert_allclose(edit_utility(_base(), UtilityEdit()), _base(), atol=1e-6)


def test_attribute_edits():
    u = edit_utility(_base(), UtilityEdit(age=70, gender=0, race=3.5))
    age, gender, race, pts = decode_utility(u)
    assert (age[0], gender[0], race[0]) == pytest.approx((70, 0, 3.5))
    np.testing.assert_allclose(pts[0], P7, atol=1e-4)  # landmarks untouched
    with pytest.raises(ValueError):
        edit_utility(np.zeros(16), UtilityEdit())


def test_landmark_edits_geometry():
    wide = edit_points(P7, UtilityEdit(eye_distance=1.2))
    assert _dist(wide[0], wide[1]) == pytest.approx(1.2 * _dist(P7[0], P7[1]), rel=1e-5)
    np.testing.assert_allclose(wide[2:], P7[2:], atol=1e-5)
    opened = edit_points(P7, UtilityEdit(mouth_open=8))
    assert opened[6, 1] - opened[5, 1] == pytest.approx(P7[6, 1] - P7[5, 1] + 8, abs=1e-4)
    rolled = edit_points(P7, UtilityEdit(roll=20))
    angle = np.degrees(np.arctan2(rolled[1, 1] - rolled[0, 1], rolled[1, 0] - rolled[0, 0]))
    assert angle == pytest.approx(20, abs=1e-3)  # positive roll turns the eye line clockwise on screen
    for yaw, side in ((30, 1), (-30, -1)):
        turned = edit_points(P7, UtilityEdit(yaw=yaw))
        np.testing.assert_allclose(turned[:2], P7[:2], atol=1e-4)  # re-aligned on the eyes, like training crops
        assert side * (turned[2, 0] - P7[2, 0]) > 5  # the nose slides towards the turn
    moved = edit_points(P7, UtilityEdit(moved={2: (70.0, 85.0)}))
    np.testing.assert_allclose(moved[2], (70, 85))


class Painted:
    """Face source whose picture depends on every utility number (fast, deterministic)."""

    def __call__(self, utility, aligned=None):
        out, probs = [], []
        for u in np.asarray(utility):
            img = np.zeros((128, 128, 3), np.uint8)
            img[..., 0] = int(np.clip(u[0] * 255, 0, 255))
            img[..., 1] = int(np.clip(u[1] * 255, 0, 255))
            img[..., 2] = int(np.clip(u[2] * 255, 0, 255))
            _, _, _, pts = decode_utility(u)
            for x, y in pts[0]:
                img[int(np.clip(y, 0, 127)), int(np.clip(x, 0, 127))] = 255
            out.append(img)
            probs.append(np.ones((128, 128), np.float32))
        return np.stack(out), np.stack(probs)


def test_render_utility_panel():
    face, panel = render_utility(Painted(), _base())
    assert face.shape == (128, 128, 3) and panel.shape == (128, 256, 3)
    assert png_bytes(panel)[:8] == b"\x89PNG\r\n\x1a\n"
    assert side_by_side([face, panel], ["a", "b"], height=64).shape[0] == 64 + 18


def test_face_editor_regenerates_when_sliders_move():
    ed = FaceEditor(Painted(), _base())
    before, n = ed.image.value, ed.renders
    for name, value in (("age", 80.0), ("gender", 0.0), ("race", 4.0), ("eye_distance", 1.2), ("mouth_open", 6.0),
                        ("roll", 10.0), ("yaw", -20.0)):
        ed.controls[name].value = value
        assert ed.image.value != before, name
        before = ed.image.value
    assert ed.renders == n + 7
    age, gender, race, _ = decode_utility(ed.utility)
    assert (age[0], gender[0], race[0]) == pytest.approx((80, 0, 4))
    # pose preset sets roll and yaw together and renders once
    n = ed.renders
    ed.controls["pose"].value = "turned right 40 deg"
    assert (ed.controls["roll"].value, ed.controls["yaw"].value) == POSE_PRESETS["turned right 40 deg"]
    assert ed.renders == n + 1
    # moving one point: select it (no render), then drag its x/y sliders
    n = ed.renders
    ed.controls["point"].value = 2
    assert ed.renders == n
    ed.controls["x"].value = 30.0
    assert decode_utility(ed.utility)[3][0][2, 0] == pytest.approx(30.0, abs=1e-4)
    ed.reset()
    np.testing.assert_allclose(ed.utility, _base(), atol=1e-5)


def test_face_editor_with_a_real_generator():
    from upgan_lib.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    gen = Generator(GeneratorConfig.for_preset("smoke"))
    ed = FaceEditor(gen, _base())
    first = ed.face.copy()
    ed.controls["age"].value = 5.0
    assert not np.array_equal(first, ed.face)
    ed.controls["yaw"].value = 30.0
    assert ed.face.shape == (128, 128, 3) and ed.face.dtype == np.uint8


def test_method_comparison_side_by_side():
    from upgan_lib.obscure import KnownFaces, ObscureConfig, Obscurer
    from upgan_lib.swap import compose_scene
    from upgan_lib.synthfaces import make_synthfaces

    fs = make_synthfaces(2, 1, seed=4)
    scenes = [compose_scene(fs, [i], size=(320, 240), seed=i) for i in range(2)]

    class ByPhoto:  # the known faces of whichever scene is shown
        def detect(self, rgb):
            sc = next(s for s in scenes if np.array_equal(s.image, rgb))
            return KnownFaces(sc.faces).detect(rgb)

    obs = {m: Obscurer(ObscureConfig(method=m), finder=ByPhoto()) for m in ("blur", "pixelate")}
    obs["UP-GAN"] = Obscurer(ObscureConfig(), finder=ByPhoto(), faces=Painted())
    cmp_ = MethodComparison([s.image for s in scenes], obs)
    first = cmp_.image.value
    assert cmp_.panel.shape[1] > 4 * 200  # original + 3 methods side by side
    assert [f["action"] for f in cmp_.reports["UP-GAN"]] == ["replaced"]
    cmp_.controls["photo"].value = 1
    assert cmp_.image.value != first
