import numpy as np
import pytest

from upgan_lib.synthfaces import face_outline, identity_landmarks, make_synthfaces, random_identity
from upgan_lib.utility import reduce_68_to_7


def test_labels_follow_utkface_conventions(small_synthfaces):
    fs = small_synthfaces
    assert len(fs) == 24
    assert fs.faces.shape == (24, 128, 128, 3) and fs.faces.dtype == np.uint8
    assert np.all((fs.age >= 1) & (fs.age <= 90))
    assert set(fs.gender.tolist()) <= {0, 1} and set(fs.race.tolist()) <= set(range(5))
    # labels are constant within an identity
    for i in np.unique(fs.identity):
        sel = fs.identity == i
        for lab in (fs.age, fs.gender, fs.race):
            assert len(set(lab[sel].tolist())) == 1
    assert np.bincount(fs.identity).tolist() == [4] * 6


def test_deterministic_by_seed():
    a = make_synthfaces(3, 2, seed=5)
    b = make_synthfaces(3, 2, seed=5)
    c = make_synthfaces(3, 2, seed=6)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.landmarks68, b.landmarks68)
    assert not np.array_equal(a.faces, c.faces)
    # more photos per identity keep the identities the same people
    d = make_synthfaces(3, 4, seed=5)
    np.testing.assert_array_equal(a.age, d.age[::2])


def test_landmark_order_is_dlibs():
    ident = random_identity(np.random.default_rng(3))
    l = identity_landmarks(ident)
    assert l.shape == (68, 2)
    # jaw runs from image left (0) through the chin (8, lowest) to image right (16)
    assert l[0, 0] < l[8, 0] < l[16, 0]
    assert l[8, 1] == pytest.approx(l[0:17, 1].max())
    # brows above eyes, eyes above nose tip, nose above mouth
    assert l[17:27, 1].max() < l[36:48, 1].min()
    assert l[36:48, 1].max() < l[30, 1] < l[48:68, 1].min()
    # image-left eye (36-41) and brow (17-21) are left of the image-right ones
    assert l[36:42, 0].max() < l[42:48, 0].min() and l[17:22, 0].max() < l[22:27, 0].min()
    # eye corners: 36 outer-left, 39 inner, 42 inner, 45 outer-right
    assert l[36, 0] < l[39, 0] < l[42, 0] < l[45, 0]
    # mouth corners 48 (left), 54 (right); 51 top, 57 bottom
    assert l[48, 0] < l[51, 0] < l[54, 0] and l[51, 1] < l[57, 1]
    # nose bridge runs downwards to the tip (30)
    assert np.all(np.diff(l[27:31, 1]) > 0)


def test_masks_agree_with_landmarks(small_synthfaces):
    fs = small_synthfaces
    for img_mask, l68 in zip(fs.masks, fs.landmarks68):
        ys = np.clip(np.round(l68[:, 1]).astype(int), 0, 127)
        xs = np.clip(np.round(l68[:, 0]).astype(int), 0, 127)
        inside = img_mask[ys, xs]
        # every interior landmark (all but the jaw outline, which lies on the edge) is in the mask
        assert inside[17:].all()
        # the mask includes the forehead: it reaches well above the brows (or to the frame's top edge)
        top = np.flatnonzero(img_mask.any(axis=1))[0]
        assert top < l68[17:27, 1].min() - 8 or (top == 0 and l68[17:27, 1].min() > 2)
        # and it is not just the landmark hull: area well beyond the hull of the 68 points
        import cv2

        hull = np.zeros_like(img_mask)  # the hull as drawn in the frame (the forehead may leave it)
        cv2.fillPoly(hull, [np.round(cv2.convexHull(l68.astype(np.float32))[:, 0]).astype(np.int32)], 1)
        assert img_mask.sum() > 1.05 * hull.sum()


def test_seven_points_inside_the_frame(small_synthfaces):
    p7 = reduce_68_to_7(small_synthfaces.landmarks68)
    assert np.all((p7 > 10) & (p7 < 118))


def test_identities_differ_in_geometry():
    a, b = (random_identity(np.random.default_rng(s)) for s in (1, 2))
    assert not np.allclose(identity_landmarks(a), identity_landmarks(b))
    assert face_outline(a).shape[1] == 2


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_synthfaces(0, 3)
