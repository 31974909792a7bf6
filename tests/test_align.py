"""Canonical frame, similarity fit, warping into the frame, and face masks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from upgan_lib.align import (ALIGNED_SIZE, FIT_WEIGHTS, align_face, alignment_matrix, apply_matrix, canonical_points7,
                             compare_frames, face_mask, face_masks, face_outline, frame_outside_fraction, matrix_scale,
                             similarity_fit)
from upgan_lib.synthfaces import identity_landmarks, random_identity
from upgan_lib.utility import reduce_68_to_7


def _similarity(angle_deg, scale, t):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), t[0]], [scale * np.sin(a), scale * np.cos(a), t[1]]])


def test_template_is_symmetric_and_scales():
    t = canonical_points7()
    assert t.shape == (7, 2) and t.dtype == np.float32
    assert np.allclose(t[0], (36.7, 35.7)) and np.allclose(t[1], (91.3, 35.7))
    assert np.allclose(t[:, 0] + t[[1, 0, 2, 4, 3, 5, 6], 0], 128.0)  # mirror image of itself about x = 64
    assert np.allclose(canonical_points7(256), 2 * t)


def test_synthfaces_are_drawn_in_the_canonical_frame():
    from upgan_lib.synthfaces import make_synthfaces

    mean = make_synthfaces(16, 4, pose=False).points7().mean(axis=0)
    m = similarity_fit(mean, canonical_points7(), FIT_WEIGHTS)  # what alignment would still do
    assert abs(np.sqrt(abs(np.linalg.det(m[:, :2]))) - 1) < 0.03 and np.abs(m[:, 2]).max() < 3.0
    assert np.abs(mean - canonical_points7()).max() < 7  # cartoon proportions, same pose and scale


def test_utkface_crops_fit_inside_the_frame():
    # a face laid out like the UTKFace mean in its 200 x 200 crop: the frame stays inside the photo
    pts = (canonical_points7() - 64) / 1.1 * (200 / 128) + 100
    m = similarity_fit(pts, canonical_points7(), FIT_WEIGHTS)
    assert frame_outside_fraction(m, (200, 200)) == 0.0
    m_loose = similarity_fit(pts, (canonical_points7() - 64) * 0.5 + 64, FIT_WEIGHTS)  # a frame 2x looser
    assert frame_outside_fraction(m_loose, (200, 200)) > 0.3


def test_similarity_fit_recovers_transform_without_reflection():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (7, 2))
    m = _similarity(23.0, 0.7, (5.0, -3.0))
    assert np.allclose(similarity_fit(src, apply_matrix(m, src)), m, atol=1e-4)
    mirrored = src * np.array([-1.0, 1.0])  # a reflection is not a similarity: the fit must not produce one
    fit = similarity_fit(src, mirrored)
    assert np.linalg.det(fit[:, :2]) > 0
    with pytest.raises(ValueError):
        similarity_fit(np.zeros((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError):
        similarity_fit(src, src, weights=np.r_[1.0, np.zeros(6)])


def test_alignment_undoes_a_pose_change():
    rng = np.random.default_rng(2)
    l68 = identity_landmarks(random_identity(rng))
    m = _similarity(-17.0, 2.3, (40.0, 25.0))
    moved = apply_matrix(m, l68)
    back = apply_matrix(alignment_matrix(moved), moved)
    direct = apply_matrix(alignment_matrix(l68), l68)
    assert np.abs(back - direct).max() < 1e-3
    assert matrix_scale(alignment_matrix(moved)) == pytest.approx(matrix_scale(alignment_matrix(l68)) / 2.3, rel=1e-4)
    # the fitted points land near the template (a synthetic face has template-like proportions)
    err = np.linalg.norm(reduce_68_to_7(back) - canonical_points7(), axis=1)
    assert err[FIT_WEIGHTS > 0].max() < 8


@pytest.mark.parametrize("scale", [1.7, 0.25])  # 0.25: the crop is reduced first (area averaging)
def test_align_face_moves_pixels_with_landmarks(scale):
    rng = np.random.default_rng(3)
    l68 = apply_matrix(_similarity(12.0, scale, (60.0, 50.0)), identity_landmarks(random_identity(rng)))
    h = w = int(max(l68.max() + 60, 200))
    img = np.full((h, w, 3), 30, np.uint8)
    nose = l68[30]
    cv2.circle(img, (int(round(nose[0] * 16)), int(round(nose[1] * 16))), max(3, int(6 * scale)) * 16, (250, 250, 250), -1,
               cv2.LINE_8, 4)  # sub-pixel centre
    out = align_face(img, l68)
    assert out.image.shape == (ALIGNED_SIZE, ALIGNED_SIZE, 3) and out.image.dtype == np.uint8
    assert out.landmarks68.shape == (68, 2) and out.matrix.shape == (2, 3)
    ys, xs = np.nonzero(out.image[..., 0] > 140)
    assert np.hypot(xs.mean() - out.landmarks68[30, 0], ys.mean() - out.landmarks68[30, 1]) < 1.5


def test_align_face_rejects_bad_input():
    l68 = identity_landmarks(random_identity(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="RGB uint8"):
        align_face(np.zeros((50, 50), np.uint8), l68)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        align_face(np.zeros((50, 50, 3), np.uint8), l68[:5])
    bad = l68.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        alignment_matrix(bad)


def test_mask_matches_synthfaces_mask(small_synthfaces):
    fs = small_synthfaces
    ious = []
    for i in range(len(fs)):
        m = face_mask(fs.landmarks68[i]) > 0
        t = fs.masks[i] > 0
        ious.append((m & t).sum() / (m | t).sum())
    assert min(ious) > 0.85


def test_mask_covers_forehead_and_all_landmarks():
    l68 = identity_landmarks(random_identity(np.random.default_rng(5)))
    mask = face_mask(l68)
    assert mask.shape == (128, 128) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    grown = cv2.dilate(mask, np.ones((3, 3), np.uint8))  # jaw points lie on the boundary
    for k, (x, y) in enumerate(np.round(l68).astype(int)):
        assert (mask if k >= 17 else grown)[y, x] == 1, k
    brow_top = int(l68[17:27, 1].min())
    assert mask[brow_top - 12, 64] == 1  # forehead above the brows is part of the face
    assert mask[2, 2] == 0 and mask[2, 64] == 0  # the top of the frame is not
    hull = np.zeros_like(mask)
    cv2.fillConvexPoly(hull, np.round(cv2.convexHull(l68)[:, 0]).astype(np.int32), 1)
    assert mask.sum() > 1.15 * hull.sum()
    outline = face_outline(l68)
    assert outline.shape == (17 + 15, 2) and outline[:, 1].min() < brow_top - 12


def test_face_masks_batch(small_synthfaces):
    ms = face_masks(small_synthfaces.landmarks68[:3])
    assert ms.shape == (3, 128, 128)
    assert np.array_equal(ms[1], face_mask(small_synthfaces.landmarks68[1]))
    assert face_masks(np.zeros((0, 68, 2))).shape == (0, 128, 128)


def test_compare_frames_shows_the_loose_frame_leaving_the_crop():
    from upgan_lib.synthfaces import crops_like_utkface

    imgs, l68 = crops_like_utkface(4, seed=5)
    assert imgs[0].shape == (200, 200, 3) and l68.shape == (4, 68, 2)
    cmp = compare_frames(imgs, l68)
    assert cmp["loose"].shape == cmp["canonical"].shape == (4, 128, 128, 3)
    assert cmp["canonical_outside"].max() < 0.02 and cmp["loose_outside"].min() > 0.25
