"""Face swap: geometry (inverse alignment), masks, Poisson blending, borders, small faces, fail-closed checks."""
import cv2
import numpy as np
import pytest

from upgan_lib.align import matrix_scale
from upgan_lib.swap import (GREY_CELL, GREY_LEVELS, SwapConfig, SwapError, blend_mask, blur_out, compose_scene,
                            face_region_box, grey_checker, grey_out, inner_face_polygon, is_grey_fill, sharpen, swap_face)


@pytest.fixture(scope="module")
def faces():
    from upgan_lib.synthfaces import make_synthfaces

    return make_synthfaces(4, 2, seed=3)


def _crop(photo, to_crop, size=128):
    """The photo seen in a face's 128 frame (what alignment would hand to the generator)."""
    return cv2.warpAffine(photo, to_crop, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_blend_mask_threshold_erosion_largest_blob():
    p = np.zeros((64, 64), np.float32)
    cv2.circle(p, (32, 32), 15, 0.9, -1)
    p[2:4, 2:4] = 0.9  # a speck: dropped
    m0 = blend_mask(p, SwapConfig(erode_px=0))
    m3 = blend_mask(p, SwapConfig(erode_px=3))
    assert m0[3, 3] == 0 and m0[32, 32] == 1
    assert m3.sum() < m0.sum() and m3[32, 32] == 1
    assert blend_mask(p, SwapConfig(mask_threshold=0.95)).sum() == 0


def test_swapping_the_face_back_in_is_nearly_identity(faces):
    """Warp the photo's face into the 128 frame and swap it back: geometry right => the photo is unchanged."""
    scene = compose_scene(faces, [0], size=(320, 240), seed=1)
    f = scene.faces[0]
    crop = _crop(scene.image, f.to_crop)
    prob = faces.masks[0].astype(np.float32)
    for blend in ("poisson", "paste"):
        r = swap_face(scene.image, crop, prob, f.to_crop, SwapConfig(blend=blend, colour_match=False), f.landmarks68)
        d = np.abs(r.image.astype(int) - scene.image.astype(int))
        assert r.mask.sum() > 1000
        assert d.mean() < 0.5 and np.median(d[r.box[1]:r.box[3], r.box[0]:r.box[2]][r.mask]) <= 2, blend
        assert r.coverage > 0.95


def test_swap_changes_only_the_masked_region(faces):
    scene = compose_scene(faces, [0], size=(320, 240), seed=1)
    f = scene.faces[0]
    r = swap_face(scene.image, faces.faces[5], faces.masks[5].astype(np.float32), f.to_crop, SwapConfig(), f.landmarks68)
    x0, y0, x1, y1 = r.box
    changed = np.any(r.image != scene.image, axis=2)
    inside = np.zeros_like(changed)
    inside[y0:y1, x0:x1] = r.mask
    assert changed[inside].mean() > 0.9
    assert not changed[~inside].any()
    # the new face is a different face: the inner face region differs clearly from the original
    hull = np.zeros(changed.shape, np.uint8)
    cv2.fillPoly(hull, [np.round(inner_face_polygon(f.landmarks68)).astype(np.int32)], 1)
    assert np.abs(r.image.astype(int) - scene.image.astype(int))[hull.astype(bool)].mean() > 10


def test_poisson_blending_removes_colour_mismatch(faces):
    """A generated face 60 levels too bright: Poisson keeps the photo's brightness, pasting does not."""
    scene = compose_scene(faces, [1], size=(320, 240), seed=2)
    f = scene.faces[0]
    crop = _crop(scene.image, f.to_crop)
    bright = np.clip(crop.astype(int) + 60, 0, 255).astype(np.uint8)
    prob = faces.masks[2].astype(np.float32)
    cfg = SwapConfig(colour_match=False)
    pasted = swap_face(scene.image, bright, prob, f.to_crop, SwapConfig(blend="paste", colour_match=False))
    pois = swap_face(scene.image, bright, prob, f.to_crop, cfg)
    sel = np.zeros(scene.image.shape[:2], bool)
    x0, y0, x1, y1 = pois.box
    sel[y0:y1, x0:x1] = pois.mask
    err_paste = np.abs(pasted.image.astype(int) - scene.image)[sel].mean()
    err_pois = np.abs(pois.image.astype(int) - scene.image)[sel].mean()
    assert err_paste > 40 and err_pois < 15
    # colour matching alone also takes most of the offset out
    matched = swap_face(scene.image, bright, prob, f.to_crop, SwapConfig(blend="paste", colour_match=True))
    assert np.abs(matched.image.astype(int) - scene.image)[sel].mean() < 20


@pytest.mark.parametrize("centre", [(20, 120), (300, 10), (160, 235)])
def test_face_at_the_border(faces, centre):
    """Faces cut by the photo's border: the region is clamped and padded, Poisson does not fail."""
    scene = compose_scene(faces, [0], size=(320, 240), centres=[centre], face_widths=[150], seed=4)
    f = scene.faces[0]
    r = swap_face(scene.image, faces.faces[6], faces.masks[6].astype(np.float32), f.to_crop, SwapConfig())
    assert r.image.shape == scene.image.shape
    x0, y0, x1, y1 = r.box
    assert x0 == 0 or y0 == 0 or x1 == 320 or y1 == 240
    full = np.zeros(scene.image.shape[:2], bool)
    full[y0:y1, x0:x1] = r.mask
    edge = np.concatenate([full[0], full[-1], full[:, 0], full[:, -1]])
    assert edge.any()  # the swapped mask reaches the border ...
    changed = np.any(r.image != scene.image, axis=2)
    assert changed[full].mean() > 0.8  # ... and it was really swapped there
    edge_changed = np.concatenate([changed[0], changed[-1], changed[:, 0], changed[:, -1]])
    assert edge_changed[edge].mean() > 0.5


def test_small_face_is_downsampled_and_placed_right(faces):
    scene = compose_scene(faces, [0], size=(320, 240), face_widths=[40], seed=5)
    f = scene.faces[0]
    crop = _crop(scene.image, f.to_crop)
    r = swap_face(scene.image, crop, faces.masks[0].astype(np.float32), f.to_crop,
                  SwapConfig(blend="paste", colour_match=False, min_eye_distance_img=4), f.landmarks68)
    assert r.scale < 0.5
    d = np.abs(r.image.astype(int) - scene.image.astype(int))
    assert d.mean() < 0.5
    with pytest.raises(SwapError) as e:
        swap_face(scene.image, crop, faces.masks[0].astype(np.float32), f.to_crop, SwapConfig(min_eye_distance_img=20),
                  f.landmarks68)
    assert e.value.reason == "too_small"


def test_fail_closed_checks(faces):
    scene = compose_scene(faces, [0], size=(320, 240), seed=1)
    f = scene.faces[0]
    img = faces.faces[5]
    with pytest.raises(SwapError) as e:
        swap_face(scene.image, img, np.zeros((128, 128), np.float32), f.to_crop)
    assert e.value.reason == "mask_empty"
    half = faces.masks[5].astype(np.float32)
    half[64:] = 0  # generated mask misses the mouth: not enough of the face is replaced
    with pytest.raises(SwapError) as e:
        swap_face(scene.image, img, half, f.to_crop, SwapConfig(), f.landmarks68)
    assert e.value.reason == "mask_coverage"
    away = f.to_crop.copy()
    away[:, 2] += (2000, 0)  # the face frame maps far outside the photo
    with pytest.raises(SwapError) as e:
        swap_face(scene.image, img, faces.masks[5].astype(np.float32), away)
    assert e.value.reason == "outside_image"
    with pytest.raises(SwapError) as e:
        swap_face(scene.image, img, faces.masks[5].astype(np.float32), np.zeros((2, 3)))
    assert e.value.reason == "bad_alignment"
    with pytest.raises(ValueError):
        swap_face(scene.image[..., 0], img, faces.masks[5].astype(np.float32), f.to_crop)


def test_grey_out_fills_the_face_region_with_a_grey_checkerboard(faces):
    scene = compose_scene(faces, [0, 1], size=(320, 240), seed=1)
    out = scene.image.copy()
    f = scene.faces[0]
    b = grey_out(out, f.box, f.landmarks68, margin=0.1)
    x0, y0, x1, y1 = b
    fill = out[y0:y1, x0:x1]
    assert is_grey_fill(fill).all() and set(np.unique(fill)) == set(GREY_LEVELS)
    cell = max(2, round(GREY_CELL * (f.box[2] - f.box[0])))
    # squares of 6 % of the face's width, anchored on the photo's grid
    assert np.array_equal(fill, grey_checker(y1 - y0, x1 - x0, cell, GREY_LEVELS, (x0, y0)))
    # shifted by half a square, or at another size: the same region, other squares
    shifted = scene.image.copy()
    assert grey_out(shifted, f.box, f.landmarks68, margin=0.1, phase=0.5) == b
    half = int(round(0.5 * cell))
    assert half and np.array_equal(shifted[y0:y1, x0:x1],
                                   grey_checker(y1 - y0, x1 - x0, cell, GREY_LEVELS, (x0 + half, y0 + half)))
    other = scene.image.copy()
    grey_out(other, f.box, f.landmarks68, margin=0.1, cell=0.1)
    assert not np.array_equal(other[y0:y1, x0:x1], fill) and is_grey_fill(other[y0:y1, x0:x1]).all()
    flat = scene.image.copy()
    grey_out(flat, f.box, f.landmarks68, margin=0.1, levels=(128, 128))
    assert (flat[y0:y1, x0:x1] == 128).all()
    lx0, ly0 = f.landmarks68.min(0)
    lx1, ly1 = f.landmarks68.max(0)
    assert x0 <= lx0 and y0 <= ly0 and x1 >= lx1 and y1 >= ly1  # every landmark is under the grey
    outside = np.ones(out.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (out[outside] == scene.image[outside]).all()
    # clamped at the border, never an error
    b2 = grey_out(out, (-50, -50, 10, 10))
    assert b2[0] == 0 and b2[1] == 0
    assert face_region_box((0, 0, 10, 10), None, 0.5) == (-5.0, -5.0, 15.0, 15.0)


def test_blur_out_blurs_the_whole_region_and_fades_out_beyond_it_without_an_edge():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    region, sigma, fade = (100, 60, 180, 140), 20.0, 12
    out = photo.copy()
    assert blur_out(out, region, sigma, fade) == (88, 48, 192, 152)
    hard = cv2.GaussianBlur(photo.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    inside = out[60:140, 100:180].astype(np.float32)
    assert np.abs(inside - hard[60:140, 100:180]).max() <= 2  # all of the region: the full blur
    changed = (out != photo).any(-1)
    assert not changed[:47].any() and not changed[153:].any() and not changed[:, :87].any() and not changed[:, 193:].any()
    # across the fade, the blur gives way to the photo linearly with the distance from the region
    for x in (180, 183, 186, 189, 191):
        a = 1 - (x + 0.5 - 180) / fade
        assert np.abs(out[100, x] - (a * hard[100, x] + (1 - a) * photo[100, x])).max() <= 2.5
    assert (out[100, 192] == photo[100, 192]).all()
    # no fade: a hard edge, exactly the region
    sharp = photo.copy()
    assert blur_out(sharp, region, sigma, 0) == region
    assert not ((sharp != photo).any(-1))[:, 180:].any()
    # clamped to the photo; outside it, nothing happens
    edge = photo.copy()
    assert blur_out(edge, (-30, -30, 20, 20), 5.0, 10) == (0, 0, 30, 30)
    empty = photo.copy()
    x0, y0, x1, y1 = blur_out(empty, (400, 10, 450, 50), 5.0, 10)
    assert x1 <= x0 and np.array_equal(empty, photo)


def test_sharpen_adds_the_detail_above_a_gaussian_and_leaves_flat_areas_alone():
    face = np.full((128, 128, 3), 100, np.uint8)
    face[:, 64:] = 140  # one vertical edge
    out = sharpen(face, 2.0, 2.0)
    assert out.dtype == np.uint8 and out.shape == face.shape
    assert np.array_equal(out[:, :50], face[:, :50]) and np.array_equal(out[:, 78:], face[:, 78:])  # flat: unchanged
    soft = cv2.GaussianBlur(face.astype(np.float32), (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    expect = np.clip(np.round(face + 2.0 * (face - soft)), 0, 255)
    assert np.array_equal(out, expect.astype(np.uint8))
    assert out[0, 63, 0] < 100 and out[0, 64, 0] > 140  # the edge overshoots on both sides
    assert sharpen(face, 0.0) is face
    strong = sharpen(face, 50.0, 2.0)
    assert strong.min() == 0 and strong.max() == 255  # clipped, not wrapped
    for amount, sigma in ((-1.0, 2.0), (1.0, 0.0)):
        with pytest.raises(ValueError, match="sharpen"):
            sharpen(face, amount, sigma)


def test_compose_scene_ground_truth(faces):
    scene = compose_scene(faces, [0, 3], size=(640, 480), seed=7)
    assert scene.image.shape == (480, 640, 3) and scene.image.dtype == np.uint8
    assert len(scene.faces) == 2
    for f, i in zip(scene.faces, [0, 3]):
        x0, y0, x1, y1 = f.box
        assert np.all(f.landmarks68[:, 0] >= x0 - 1) and np.all(f.landmarks68[:, 0] <= x1 + 1)
        # the landmarks map back onto the source crop's landmarks
        back = f.landmarks68 @ f.to_crop[:, :2].T + f.to_crop[:, 2]
        np.testing.assert_allclose(back, faces.landmarks68[i], atol=1e-3)
        assert matrix_scale(f.to_crop) == pytest.approx(128 / 256, rel=1e-6)  # 2 faces in 640 px: 256 px crops
    again = compose_scene(faces, [0, 3], size=(640, 480), seed=7)
    np.testing.assert_array_equal(scene.image, again.image)


def test_config_presets_and_validation():
    assert SwapConfig.for_preset("smoke") == SwapConfig.for_preset("full") == SwapConfig()
    assert SwapConfig.for_preset("smoke", blend="alpha").blend == "alpha"
    with pytest.raises(ValueError):
        SwapConfig.for_preset("huge")
    for bad in (dict(blend="clone"), dict(mask_threshold=1.0), dict(min_coverage=1.5)):
        with pytest.raises(ValueError):
            SwapConfig(**bad)
