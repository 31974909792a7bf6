import cv2
import numpy as np
import pytest
import torch

from upgan_lib import baselines as B


def faces(n=4, s=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def test_tensor_round_trip():
    f = faces()
    t = B.to_tensor(f)
    assert t.shape == (4, 3, 20, 20) and t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(B.to_uint8(t), f)
    with pytest.raises(ValueError, match="uint8"):
        B.to_tensor(f.astype(np.float32))


def test_opencv_sigma_rule_matches_opencv_kernel():
    for k, sigma in ((5, 1.1), (15, 2.6), (25, 4.1)):
        assert B.opencv_sigma(k) == pytest.approx(sigma)
    for k in (15, 25):  # the formula is what OpenCV applies for k > 7
        np.testing.assert_allclose(cv2.getGaussianKernel(k, 0).ravel(), cv2.getGaussianKernel(k, B.opencv_sigma(k)).ravel(),
                                   atol=1e-9)
    # k = 5: OpenCV's fixed binomial table, std 1.0
    np.testing.assert_allclose(cv2.getGaussianKernel(5, 0).ravel(), np.array([1, 4, 6, 4, 1]) / 16)
    assert B.effective_sigma(5) == pytest.approx(1.0)
    assert B.effective_sigma(25) == pytest.approx(4.05, abs=0.01)


def test_gaussian_blur_keeps_constant_and_smooths():
    flat = np.full((2, 32, 32, 3), 77, np.uint8)
    np.testing.assert_array_equal(B.gaussian_blur(flat, 15), flat)
    f = faces(2, 32)
    out = B.gaussian_blur(f, 25)
    assert out.shape == f.shape and out.dtype == np.uint8
    assert out.astype(float).std() < 0.5 * f.astype(float).std()
    with pytest.raises(ValueError, match="odd"):
        B.gaussian_blur(f, 4)


def test_pixelate_exact_block_means_with_ragged_edge():
    f = faces(1, 7)
    out = B.pixelate(f, 5)
    # the top-left 5x5 cell and the 2-px ragged cells are their exact (rounded) means
    np.testing.assert_array_equal(out[0, :5, :5], np.round(f[0, :5, :5].reshape(-1, 3).mean(0)).astype(np.uint8)[None, None].repeat(5, 0).repeat(5, 1))
    np.testing.assert_array_equal(out[0, 5, 5], np.round(f[0, 5:, 5:].reshape(-1, 3).mean(0)).astype(np.uint8))
    assert len(np.unique(out[0, :5, :5].reshape(-1, 3), axis=0)) == 1
    np.testing.assert_array_equal(B.pixelate(f, 1), f)


def test_single_image_helpers_for_the_obscuring_tool():
    img = faces(1, 30)[0][:, :20]  # not square
    assert B.pixelate_image(img, 4.6).shape == img.shape
    assert len(np.unique(B.pixelate_image(img, 5)[:5, :5].reshape(-1, 3), axis=0)) == 1
    assert B.gaussian_blur_image(img, 2.0).shape == img.shape


def test_ksame_groups_have_k_distinct_people_and_cover_everyone():
    rng = np.random.default_rng(0)
    ident = np.repeat(np.arange(23), 3)  # 23 people x 3 photos
    feats = rng.normal(size=(len(ident), 5))
    g = B.ksame_groups(feats, ident, k=5)
    assert (g >= 0).all()
    for gid in np.unique(g):
        assert len(np.unique(ident[g == gid])) >= 5
    # no person is split over groups
    for p in np.unique(ident):
        assert len(np.unique(g[ident == p])) == 1


def test_ksame_groups_unknown_identity_means_each_face_own_person_and_too_few_people():
    g = B.ksame_groups(np.arange(6, dtype=float)[:, None], np.full(6, -1), k=3)
    assert sorted(np.bincount(g)) == [3, 3]
    # grouping follows the features: nearest faces together
    assert len(set(g[:3])) == 1 and len(set(g[3:])) == 1
    with pytest.raises(ValueError, match="at least 4 distinct people"):
        B.ksame_groups(np.zeros((6, 1)), np.array([0, 0, 1, 1, 2, 2]), k=4)


def test_k_same_pixel_is_group_mean_and_eigen_is_its_projection():
    f = faces(8, 8)
    ident = np.arange(8)
    out, g = B.k_same(f, ident, k=4)
    for gid in np.unique(g):
        m = g == gid
        np.testing.assert_array_equal(out[m][0], np.round(f[m].astype(float).mean(0)).astype(np.uint8))
        assert (out[m] == out[m][0]).all()
    # eigen with all components = exact reconstruction of the mean (up to rounding)
    out_e, g_e = B.k_same(f, ident, k=4, variant="eigen", n_components=7)
    np.testing.assert_array_equal(g_e, g)
    assert np.abs(out_e.astype(int) - out.astype(int)).max() <= 1
    out_1, _ = B.k_same(f, ident, k=4, variant="eigen", n_components=1)
    assert np.abs(out_1.astype(int) - out.astype(int)).max() > 1
    with pytest.raises(ValueError, match="variant"):
        B.k_same(f, ident, k=4, variant="mean")


def test_composite_keeps_background():
    a, b = faces(2, 10, 1), faces(2, 10, 2)
    m = np.zeros((2, 10, 10), np.uint8)
    m[:, 2:8, 2:8] = 1
    c = B.composite(a, b, m)
    np.testing.assert_array_equal(c[:, 2:8, 2:8], a[:, 2:8, 2:8])
    np.testing.assert_array_equal(c[:, 0], b[:, 0])


def test_standard_methods_rows_and_generator_wrapper(small_synthfaces):
    data = small_synthfaces
    calls = []

    def gen(u):
        calls.append(u.shape)
        return torch.zeros(len(u), 3, 128, 128), torch.zeros(len(u), 2, 128, 128)

    from upgan_lib.attributes import fill_attributes

    data = fill_attributes(data, "fixed")
    ms = B.standard_methods(k=3, ksame_net=gen, upgan=gen)
    assert [m.name for m in ms] == ["none", "blur-5", "blur-15", "blur-25", "pixelate-5", "pixelate-15", "pixelate-25",
                                    "k-same", "k-same-net", "up-gan"]
    for m in ms:
        out = m(data)
        assert out.shape == data.faces.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(ms[0](data), data.faces)
    assert calls[0] == (len(data), 17)
    assert (ms[-1](data) == 128).all()  # 0 in [-1, 1] -> 127.5 -> 128


def test_generator_of_wrong_size_is_refused(small_synthfaces):
    from upgan_lib.attributes import fill_attributes

    m = B.generator_method("g", "G", lambda u: torch.zeros(len(u), 3, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        m(fill_attributes(small_synthfaces, "fixed"))


def test_blur_read_as_sigma():
    f = faces(2, 40)
    out = B.gaussian_blur_sigma(f, 5)
    np.testing.assert_array_equal(out, np.stack([cv2.GaussianBlur(x, (0, 0), 5.0) for x in f]))
    assert out.astype(float).std() < B.gaussian_blur(f, 5).astype(float).std()  # sigma 5 >> 5x5 kernel
    names = [m.name for m in B.standard_methods(blur_by="sigma")]
    assert names[1:4] == ["blur-s5", "blur-s15", "blur-s25"]
    with pytest.raises(ValueError, match="blur_by"):
        B.standard_methods(blur_by="radius")
    with pytest.raises(ValueError, match="positive"):
        B.gaussian_blur_sigma(f, 0)
