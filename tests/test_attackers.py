import numpy as np
import pytest

from upgan_lib import attackers as A
from upgan_lib.baselines import gaussian_blur
from upgan_lib.faceset import FaceSet, split_photos_by_identity


def test_softmax_classifier_separates_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 3
    labels = np.repeat([10, 20, 30, 40], 20)
    x = centres[np.searchsorted([10, 20, 30, 40], labels)] + rng.normal(size=(80, 16))
    clf = A.SoftmaxClassifier().fit(x, labels)
    assert (clf.predict(x) == labels).mean() == 1.0
    assert set(clf.predict(rng.normal(size=(5, 16)))) <= {10, 20, 30, 40}
    with pytest.raises(ValueError, match="at least 2"):
        A.SoftmaxClassifier().fit(x[:5], np.zeros(5))


def test_with_faces_checks_shape(small_synthfaces):
    d = small_synthfaces
    swapped = A.with_faces(d, gaussian_blur(np.asarray(d.faces), 5))
    assert swapped.faces.shape == d.faces.shape and (swapped.identity == d.identity).all()
    with pytest.raises(ValueError, match="do not match"):
        A.with_faces(d, d.faces[:2])


@pytest.fixture(scope="module")
def descriptor():
    return A.DlibDescriptor()


def test_dlib_descriptor_shape_and_cache(descriptor, small_synthfaces):
    f = np.asarray(small_synthfaces.faces[:3])
    before = dict(descriptor.stats)
    d1 = descriptor.describe(f)
    d2 = descriptor.describe(f)
    assert d1.shape == (3, 128) and np.isfinite(d1).all()
    np.testing.assert_array_equal(d1, d2)
    assert descriptor.stats["cached"] - before["cached"] >= 3
    assert 0.5 < np.linalg.norm(d1[0]) < 1.5  # dlib descriptors are about unit length
    with pytest.raises(ValueError, match="uint8"):
        descriptor.describe(f.astype(np.float32))
    with pytest.raises(ValueError, match="shape_from"):
        A.DlibDescriptor(shape_from="landmarks")


def test_dlib_attacker_identifies_clear_synthfaces(descriptor, small_synthfaces):
    tr, te = split_photos_by_identity(small_synthfaces.identity, 0.25, seed=0)
    train, test = small_synthfaces.subset(tr), small_synthfaces.subset(te)
    att = A.DlibAttacker(descriptor).fit(train)
    acc = A.threat_model_i(att, test, np.asarray(test.faces))
    assert acc > 2 / len(np.unique(test.identity))  # well above chance on clear faces


class CountingAttacker:
    seen = []

    def fit(self, train: FaceSet):
        CountingAttacker.seen.append(np.asarray(train.faces).copy())
        return self

    def accuracy(self, faces, identity):
        return 0.25


def test_threat_model_ii_trains_on_clear_plus_obscured(small_synthfaces):
    d = small_synthfaces
    ob = np.zeros_like(np.asarray(d.faces))
    CountingAttacker.seen.clear()
    acc = A.threat_model_ii(CountingAttacker, d, ob, d, ob)
    assert acc == 0.25
    faces = CountingAttacker.seen[0]
    assert len(faces) == 2 * len(d)
    np.testing.assert_array_equal(faces[:len(d)], d.faces)
    assert (faces[len(d):] == 0).all()


def _colour_coded_people(seed: int) -> FaceSet:
    """6 people x 10 photos whose only identity cue is one colour per person, under pixel noise."""
    from upgan_lib.synthfaces import make_synthfaces

    d = make_synthfaces(6, 10, seed=0)
    colours = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [40, 230, 230], [230, 40, 230]])
    person = np.searchsorted(np.unique(d.identity), d.identity)
    noise = np.random.default_rng(seed).normal(0, 25, d.faces.shape)
    return A.with_faces(d, np.clip(colours[person][:, None, None, :] + noise, 0, 255).astype(np.uint8))


def test_vgg_attacker_names_separable_people_and_stays_at_chance_on_shuffled_labels():
    """Held-out photos of people told apart by colour are named (>= 0.9); with the labels shuffled
    over the photos there is nothing to learn and accuracy stays near chance (1/6)."""
    from dataclasses import replace

    from upgan_lib.identity_net import IdentifierConfig

    cfg = IdentifierConfig.for_preset("smoke", epochs=30, input_size=32)
    d = _colour_coded_people(seed=0)
    shuffled = replace(d, identity=np.random.default_rng(1).permutation(d.identity))
    acc = {}
    for name, data in (("separable", d), ("shuffled", shuffled)):
        tr, te = split_photos_by_identity(data.identity, 0.3, seed=0)
        att = A.VGGAttacker(cfg).fit(data.subset(tr))
        acc[name] = att.accuracy(np.asarray(data.faces[te]), data.identity[te])
        assert set(att.predict(np.asarray(data.faces[te]))) <= set(np.unique(data.identity))
    assert acc["separable"] >= 0.9 and acc["shuffled"] <= 0.4, acc
    with pytest.raises(RuntimeError, match="fit"):
        A.VGGAttacker(cfg).predict(np.asarray(d.faces[:1]))


def test_utility_identification_reads_people_from_their_landmarks_only():
    from upgan_lib.synthfaces import make_synthfaces

    d = make_synthfaces(6, 8, seed=1)  # each SynthFaces person has their own face geometry
    tr, te = split_photos_by_identity(d.identity, 0.25, seed=0)
    acc = A.utility_identification(d.subset(tr), d.subset(te))
    shuffled = FaceSet.concatenate([d.subset(tr)])
    shuffled.identity = np.random.default_rng(0).permutation(shuffled.identity)
    assert acc >= 0.6 > 1 / 6 + 0.25 >= A.utility_identification(shuffled, d.subset(te))
