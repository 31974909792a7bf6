"""Augmentation: one warp for faces, masks and landmarks (upgan_lib/augment.py)."""
import math

import cv2
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from upgan_lib.augment import (AugmentConfig, Warp, augment, augment_widget, augmentation_grid,  # noqa: E402
                               elastic_field, elastic_rms, faceset_tensors, sample_warp, simard_scaled,
                               tracking_error)
from upgan_lib.synthfaces import make_synthfaces  # noqa: E402
from upgan_lib.utility import encode_utility, reduce_68_to_7  # noqa: E402

S = 128
FULL = AugmentConfig.for_preset("full")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def synth():
    return make_synthfaces(n_identities=2, photos_per_identity=2, seed=3)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------- config
def test_presets_and_validation():
    assert AugmentConfig.for_preset("smoke") == AugmentConfig.for_preset("full")
    assert FULL.max_angle == 30.0 and FULL.alpha > 0 and FULL.sigma > 0
    assert AugmentConfig.for_preset("full", alpha=0.0).alpha == 0.0
    with pytest.raises(ValueError, match="preset"):
        AugmentConfig.for_preset("medium")
    with pytest.raises(ValueError, match="alpha"):
        AugmentConfig(alpha=-1)
    with pytest.raises(ValueError, match="sigma"):
        AugmentConfig(alpha=10, sigma=0)
    with pytest.raises(ValueError, match="padding_mode"):
        AugmentConfig(padding_mode="wrap")
    with pytest.raises(ValueError, match="p_rotate"):
        AugmentConfig(p_rotate=1.5)


def test_simard_scaling():
    alpha, sigma = simard_scaled(28)
    assert (alpha, sigma) == (34.0, 4.0)
    alpha, sigma = simard_scaled(128)
    k = 128 / 28
    assert math.isclose(sigma, 4 * k) and math.isclose(alpha, 34 * k * k)
    # same relative displacement and the same stretch at any size
    rms28, d28 = elastic_rms(34, 4)
    rms128, d128 = elastic_rms(alpha, sigma)
    assert math.isclose(rms128 / 128, rms28 / 28) and math.isclose(d128, d28)


# ---------------------------------------------------------------------------- the field
@pytest.mark.parametrize("step", [None, 1])
def test_field_statistics_match_formula(step):
    d = elastic_field(48, (S, S), FULL.alpha, FULL.sigma, step=step, generator=_gen(0))
    assert d.shape == (48, 2, S, S)
    rms, drms = elastic_rms(FULL.alpha, FULL.sigma)
    assert abs(d.std().item() / rms - 1) < 0.12
    dx = d[..., 1:] - d[..., :-1]
    assert abs(dx.std().item() / drms - 1) < 0.12
    assert d.mean().abs().item() < 0.1 * rms


def test_field_is_stationary_at_the_border():
    """The margin ("valid" smoothing) keeps the field as strong at the edge as in the centre."""
    d = elastic_field(64, (S, S), FULL.alpha, FULL.sigma, generator=_gen(1))
    edge = d[..., :4, :].std().item()
    centre = d[..., 60:68, :].std().item()
    assert 0.8 < edge / centre < 1.25


# ---------------------------------------------------------------------------- geometry
def test_identity_when_alpha_zero_and_angle_zero(synth):
    faces, masks, lms = faceset_tensors(synth)
    cfg = AugmentConfig(alpha=0.0, max_angle=0.0)
    f, m, p = augment(faces, masks, lms, cfg, generator=_gen(0))
    assert torch.allclose(f, faces, atol=1e-5)
    assert torch.allclose(m, masks, atol=1e-5)
    assert torch.allclose(p, lms, atol=1e-5)


def test_rotation_matches_opencv():
    """Positive angle = counter-clockwise on screen, about the image centre, like cv2."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 1, (S, S, 3)).astype(np.float32), (0, 0), 3)
    pts = rng.uniform(30, 98, (1, 10, 2)).astype(np.float32)
    for angle in (30.0, -17.0):
        m = cv2.getRotationMatrix2D(((S - 1) / 2, (S - 1) / 2), angle, 1.0)
        ref = cv2.warpAffine(img, m, (S, S), flags=cv2.INTER_LINEAR)
        warp = Warp(torch.tensor([angle]), None, (S, S))
        out = warp.warp_images(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
        yy, xx = np.mgrid[:S, :S]
        inner = (xx - 63.5) ** 2 + (yy - 63.5) ** 2 < 40 ** 2
        assert np.abs(out - ref)[inner].max() < 0.01
        p = warp.warp_points(torch.from_numpy(pts)).numpy()[0]
        assert np.abs(p - cv2.transform(pts, m)[0]).max() < 1e-3


def test_rotation_then_utility_matches_rotated_points(synth):
    """Rotate by +a: the utility vector of the warped face = that of the rotated points."""
    faces, masks, lms = faceset_tensors(synth)
    n, a = len(faces), 30.0
    cfg = AugmentConfig(alpha=0.0, max_angle=a)
    warp = Warp(torch.full((n,), a), None, (S, S))
    p68 = warp.warp_points(lms).numpy()
    m = cv2.getRotationMatrix2D(((S - 1) / 2, (S - 1) / 2), a, 1.0)
    rotated7 = cv2.transform(reduce_68_to_7(synth.landmarks68), m)
    u_aug = encode_utility(synth.age, synth.gender, synth.race, reduce_68_to_7(p68), size=S)
    u_ref = encode_utility(synth.age, synth.gender, synth.race, rotated7, size=S)
    np.testing.assert_allclose(u_aug, u_ref, atol=1e-4)
    assert np.abs(u_aug[:, 3:] - synth.utility()[:, 3:]).max() > 0.05  # the points did move
    del cfg


def _dots(points, size, radius=1.2):
    """One channel per landmark: a Gaussian dot centred on it. (N,K,2) -> (N,K,S,S)."""
    ys = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)
    xs = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)
    px, py = points[..., 0, None, None], points[..., 1, None, None]
    return torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * radius ** 2))


def _centroids(img):
    n, k, h, w = img.shape
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    mass = img.sum(dim=(2, 3))
    return torch.stack(((img * xs).sum(dim=(2, 3)) / mass, (img * ys).sum(dim=(2, 3)) / mass), dim=-1)


@pytest.mark.parametrize("alpha,sigma", [(FULL.alpha, FULL.sigma), (simard_scaled(S)[0], simard_scaled(S)[1])])
def test_landmarks_stay_on_their_pixels(alpha, sigma):
    """Draw a dot at each landmark, warp the picture, find the dot: it sits on the moved landmark."""
    n, k = 96, 7
    g = _gen(5)
    pts = 36 + 56 * torch.rand(n, k, 2, generator=g)
    cfg = AugmentConfig(alpha=alpha, sigma=sigma, max_angle=30.0, padding_mode="zeros")
    warp = sample_warp(n, S, cfg, generator=g)
    warp.angle_deg[: n // 3] = 30.0  # the extremes of the paper's range
    warp.angle_deg[n // 3: 2 * n // 3] = -30.0
    moved, residual = warp.warp_points(pts, n_iter=cfg.n_iter, return_residual=True)
    found = _centroids(warp.warp_images(_dots(pts, S), padding_mode="zeros"))
    err = (found - moved).norm(dim=-1)
    if alpha == FULL.alpha:
        assert residual.max().item() < 1e-3
        assert err.max().item() < 1.5
        assert err.median().item() < 0.3
    else:  # Simard's full strength can fold the warp at a few points: allow rare misses, but not many
        assert (err < 1.5).float().mean().item() > 0.99
    # the dots did move: this is not a trivial pass
    assert (found - pts).norm(dim=-1).median().item() > 3.0


def test_augment_moves_points_with_pixels_end_to_end():
    """Through `augment` itself: dots as face channels, points as landmarks, one warp."""
    n, k = 32, 4
    g = _gen(11)
    pts = 40 + 48 * torch.rand(n, k, 2, generator=g)
    cfg = AugmentConfig.for_preset("full", padding_mode="zeros")
    f, m, p = augment(_dots(pts, S), None, pts, cfg, generator=_gen(2))
    assert m is None
    err = (_centroids(f) - p).norm(dim=-1)
    assert err.max().item() < 1.5


def test_tracking_error_catches_a_wrong_inverse():
    """The library's check agrees with the test's own and fails a landmark moved the wrong way."""
    n, k = 16, 5
    g = _gen(21)
    pts = 40 + 48 * torch.rand(n, k, 2, generator=g)
    warp = sample_warp(n, S, FULL, generator=g)
    good = tracking_error(warp, pts)
    assert good.max().item() < 1.5
    own = (_centroids(warp.warp_images(_dots(pts, S), padding_mode="zeros")) - warp.warp_points(pts)).norm(dim=-1)
    torch.testing.assert_close(good, own, atol=1e-3, rtol=0)
    wrong = warp.source(pts)  # the classic bug: moving landmarks with the backward (sampling) map
    assert tracking_error(warp, pts, moved=wrong).median().item() > 3.0


def test_masks_stay_in_unit_interval(synth):
    faces, masks, lms = faceset_tensors(synth)
    soft = torch.rand(len(masks), 1, S, S, generator=_gen(0))
    for mode in ("reflection", "border", "zeros"):
        cfg = AugmentConfig(alpha=1000.0, sigma=10.0, padding_mode=mode)
        for m_in in (masks, soft):
            _, m, _ = augment(faces, m_in, lms, cfg, generator=_gen(1))
            assert m.min().item() >= 0.0 and m.max().item() <= 1.0
    # and the binary mask is still mostly binary (bilinear only blurs its edge)
    _, m, _ = augment(faces, masks, lms, FULL, generator=_gen(1))
    frac_mid = ((m > 0.05) & (m < 0.95)).float().mean().item()
    assert frac_mid < 0.05


def test_faces_and_masks_share_one_warp(synth):
    faces, masks, lms = faceset_tensors(synth)
    f, m, _ = augment(faces, faces[:, :1] * 0.5 + 0.5, lms, FULL, generator=_gen(4))
    torch.testing.assert_close(m, (f[:, :1] * 0.5 + 0.5).clamp(0, 1), atol=1e-5, rtol=0)


def test_reproducible_and_random(synth):
    faces, masks, lms = faceset_tensors(synth)
    a = augment(faces, masks, lms, FULL, generator=_gen(7))
    b = augment(faces, masks, lms, FULL, generator=_gen(7))
    c = augment(faces, masks, lms, FULL, generator=_gen(8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.allclose(a[0], c[0])
    # each face of a batch gets its own warp
    same = faces[:1].expand(4, -1, -1, -1).contiguous()
    out, _, _ = augment(same, None, None, FULL, generator=_gen(9))
    assert not torch.allclose(out[0], out[1])


def test_angles_within_range_and_probabilities():
    w = sample_warp(2000, S, AugmentConfig(alpha=0.0, max_angle=30.0), generator=_gen(0))
    assert w.angle_deg.abs().max().item() <= 30.0
    assert w.angle_deg.abs().max().item() > 29.0
    w = sample_warp(200, S, AugmentConfig(p_rotate=0.0, p_elastic=0.0), generator=_gen(0))
    assert w.angle_deg.abs().max().item() == 0.0 and w.displacement is None
    w = sample_warp(200, 32, AugmentConfig(p_elastic=0.5, sigma=4.0, alpha=50.0), generator=_gen(0))
    still = (w.displacement.abs().amax(dim=(1, 2, 3)) == 0).float().mean().item()
    assert 0.3 < still < 0.7


def test_dtypes_and_shapes(synth):
    faces, masks, lms = faceset_tensors(synth)
    f, m, p = augment(faces.bfloat16(), masks, lms, FULL, generator=_gen(0))
    assert f.dtype == torch.bfloat16 and m.dtype == torch.float32 and p.dtype == torch.float32
    assert f.shape == faces.shape and m.shape == masks.shape and p.shape == lms.shape
    with pytest.raises(ValueError, match="masks"):
        augment(faces, masks[:1], lms, FULL)
    with pytest.raises(ValueError, match="points"):
        augment(faces, masks, lms[..., :1], FULL)
    with pytest.raises(ValueError, match="faces"):
        augment(faces[0], masks, lms, FULL)


def test_faceset_tensors(synth):
    faces, masks, lms = faceset_tensors(synth, index=[0, 2])
    assert faces.shape == (2, 3, S, S) and masks.shape == (2, 1, S, S) and lms.shape == (2, 68, 2)
    assert faces.min() >= -1 and faces.max() <= 1
    assert set(masks.unique().tolist()) <= {0.0, 1.0}


def test_notebook_helpers(synth):
    import matplotlib.pyplot as plt

    faces, masks, lms = faceset_tensors(synth, index=[0, 1])
    fig = augmentation_grid(faces, masks, lms, FULL, n_variants=2, seed=0)
    assert len(fig.axes) == 2 * 3
    plt.close(fig)
    ex = augment_widget(faces, masks, lms, FULL)
    assert set(ex.sliders) == {"alpha", "sigma", "angle"}
    ex.refresh()  # the sliders' callback
    assert ex.calls == 1 and ex.image.value[:4] == b"\x89PNG"
    ex.sliders["angle"].value = 10.0  # moving a slider calls it again
    assert ex.calls == 2
    fig = ex.render(alpha=0.0, sigma=18.0, angle=0.0)
    plt.close("all")
    del fig
