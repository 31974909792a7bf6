import json

import numpy as np
import pytest

from upgan_lib.faceset import FaceSet, NotAPreparedSet, split_photos_by_identity
from upgan_lib.utility import (SEVEN_POINT_SOURCES, UTILITY_DIM, decode_utility, encode_utility,
                               reduce_68_to_7)


def test_reduce_68_to_7_uses_the_papers_points():
    l68 = np.zeros((68, 2), np.float32)
    l68[:, 0] = np.arange(68)
    l68[:, 1] = 2 * np.arange(68)
    p7 = reduce_68_to_7(l68)
    assert p7.shape == (7, 2)
    assert p7[0, 0] == pytest.approx(np.mean(range(36, 42)))  # eye centre = mean of 36..41
    assert p7[1, 0] == pytest.approx(np.mean(range(42, 48)))
    assert list(p7[2:, 0]) == [30, 48, 54, 51, 57]
    assert p7[2, 1] == 60
    assert len(SEVEN_POINT_SOURCES) == 7


def test_reduce_rejects_wrong_shape():
    with pytest.raises(ValueError, match="68, 2"):
        reduce_68_to_7(np.zeros((5, 2)))


def test_utility_roundtrip_and_ranges():
    rng = np.random.default_rng(0)
    pts = rng.uniform(20, 108, (10, 7, 2))
    age, gender, race = rng.integers(0, 117, 10), rng.integers(0, 2, 10), rng.integers(0, 5, 10)
    u = encode_utility(age, gender, race, pts)
    assert u.shape == (10, UTILITY_DIM) and u.dtype == np.float32
    assert np.all(np.abs(u[:, 3:]) <= 1)
    a2, g2, r2, p2 = decode_utility(u)
    np.testing.assert_allclose(a2, age, atol=1e-4)
    np.testing.assert_allclose(g2, gender)
    np.testing.assert_allclose(r2, race, atol=1e-5)
    np.testing.assert_allclose(p2, pts, atol=1e-4)
    with pytest.raises(ValueError, match="length mismatch"):
        encode_utility(age[:3], gender, race, pts)


def test_faceset_save_load_mmap_and_subset(tmp_path, small_synthfaces):
    fs = small_synthfaces
    fs.save(tmp_path / "set")
    loaded = FaceSet.load(tmp_path / "set")
    assert isinstance(loaded.faces, np.memmap)
    np.testing.assert_array_equal(loaded.faces, fs.faces)
    np.testing.assert_array_equal(loaded.identity, fs.identity)
    assert loaded.sources == fs.sources and loaded.meta["dataset"] == "SynthFaces"
    sub = loaded.subset(loaded.identity == 2)
    assert len(sub) == 4 and set(sub.identity.tolist()) == {2}
    m2 = sub.mask2()
    assert m2.shape == (4, 2, 128, 128) and np.all(m2.sum(1) == 1)


def test_faceset_load_errors(tmp_path, small_synthfaces):
    with pytest.raises(NotAPreparedSet, match="no such folder"):
        FaceSet.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAPreparedSet, match="upgan prepare"):
        FaceSet.load(tmp_path / "empty")
    small_synthfaces.save(tmp_path / "s")
    (tmp_path / "s" / "masks.npy").unlink()
    with pytest.raises(NotAPreparedSet, match="masks.npy is missing"):
        FaceSet.load(tmp_path / "s")
    info = json.loads((tmp_path / "s" / "faceset.json").read_text())
    info["version"] = 99
    (tmp_path / "s" / "faceset.json").write_text(json.dumps(info))
    with pytest.raises(NotAPreparedSet, match="v99"):
        FaceSet.load(tmp_path / "s")


def test_faceset_validates_lengths(small_synthfaces):
    fs = small_synthfaces
    with pytest.raises(ValueError, match="masks has"):
        FaceSet(fs.faces, fs.masks[:2], fs.landmarks68, fs.age, fs.gender, fs.race, fs.identity)


def test_utility_refuses_unknown_attributes(small_synthfaces):
    fs = small_synthfaces.subset(np.arange(3))
    fs.race[:] = -1
    with pytest.raises(ValueError, match="no race label"):
        fs.utility()


def test_split_closed_set():
    ident = np.repeat(np.arange(5), [2, 3, 4, 5, 10])
    train, test = split_photos_by_identity(ident, 0.3, seed=1)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(ident)
    assert set(ident[train]) == set(ident[test]) == set(range(5))
    with pytest.raises(ValueError, match="fewer than 2 photos"):
        split_photos_by_identity(np.array([0, 0, 1]))


def test_resized_faceset_keeps_landmarks_on_the_pixels():
    from upgan_lib.synthfaces import make_synthfaces

    fs = make_synthfaces(2, 2, seed=1)
    small = fs.resized(64)
    assert small.faces.shape == (4, 64, 64, 3) and small.masks.shape == (4, 64, 64) and small.size == 64
    assert set(np.unique(small.masks)) <= {0, 1} and abs(small.masks.mean() - fs.masks.mean()) < 0.02
    # utility vectors are size-free: the same face gives (nearly) the same vector at both sizes
    assert np.abs(small.utility() - fs.utility()).max() < 0.02
    assert fs.resized(128) is fs
    with pytest.raises(ValueError, match="at least 8"):
        fs.resized(4)


def test_holdout_split_is_fixed_disjoint_and_complete():
    from upgan_lib.synthfaces import make_synthfaces

    fs = make_synthfaces(4, 5, seed=2)
    tr, held = fs.holdout_split(6)
    tr2, held2 = fs.holdout_split(6)
    assert len(tr) == 14 and len(held) == 6 and held.sources == held2.sources
    assert set(tr.sources).isdisjoint(held.sources) and set(tr.sources) | set(held.sources) == set(fs.sources)
    assert fs.holdout_split(6, seed=1)[1].sources != held.sources
    with pytest.raises(ValueError, match="hold out"):
        fs.holdout_split(20)
