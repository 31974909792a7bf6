"""k-same-net: clusters of >= k people, shapes, proxy choice, training, checkpoints."""
import dataclasses

import numpy as np
import pytest

from upgan_lib.generator import GeneratorConfig
import torch

from upgan_lib.checkpoint import CheckpointError
from upgan_lib.identity_net import FaceIdentifier, IdentifierConfig, save_identifier
from upgan_lib.ksame_net import (
    KSameNet,
    KSameNetConfig,
    build_clusters,
    load_ksame_net,
    person_ids,
    save_ksame_net,
    train_ksame_net,
)
from upgan_lib.losses import PerceptualLoss
from upgan_lib.synthfaces import make_synthfaces
from upgan_lib.utility import UTILITY_DIM


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_identity_net.one_thread
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def people10():
    return make_synthfaces(10, 2, seed=3)


@pytest.fixture(scope="module")
def trained(people10):
    torch.set_num_threads(1)
    cfg = KSameNetConfig.for_preset("smoke", epochs=1, batch_size=10)
    return train_ksame_net(people10, cfg, "cpu", progress=False)


def test_presets():
    assert KSameNetConfig.for_preset("full").k == 10  # the paper's Table 1
    assert KSameNetConfig.for_preset("smoke").generator.width == GeneratorConfig.for_preset("smoke").width
    with pytest.raises(ValueError, match="group_by"):
        KSameNetConfig(group_by="pixels")


def test_clusters_hold_at_least_k_people(people10):
    for k in (2, 3, 4):
        group, centroids, members = build_clusters(people10, k)
        assert len(centroids) == len(members) == group.max() + 1
        for c, m in enumerate(members):
            assert len(m) >= k
            assert set(people10.identity[group == c]) == set(m)  # every photo of a member is in its cluster
        assert sorted(p for m in members for p in m) == list(range(10))  # nobody split or lost
        assert np.allclose(centroids[0], people10.utility()[group == 0, :3].mean(axis=0))
    with pytest.raises(ValueError, match="at least 11 distinct people"):
        build_clusters(people10, 11)


def test_unlabelled_faces_are_each_their_own_person(people10):
    unlabelled = dataclasses.replace(people10, identity=np.full(len(people10), -1))
    assert list(person_ids(unlabelled.identity)[:3]) == [-1, -2, -3]
    group, _, members = build_clusters(unlabelled, 3)
    assert all(len(m) >= 3 for m in members) and sum(len(m) for m in members) == len(people10)


def test_outputs_shapes_and_proxy_clusters(trained, people10):
    model, hist = trained
    u = torch.from_numpy(people10.utility())
    with torch.no_grad():
        face, mask_logits = model(u)
    assert face.shape == (20, 3, 128, 128) and mask_logits.shape == (20, 2, 128, 128)
    assert face.min() >= -1 and face.max() <= 1
    chosen = model.assign(u)
    # every released face is a face of a proxy cluster of >= k people ...
    assert all(int(model.cluster_people[c]) >= model.cfg.k for c in chosen)
    assert hist["min_people"] >= model.cfg.k
    # ... and, when the person is known, never of the person's own cluster
    own = model.assign(u, exclude_people=people10.identity)
    for c, person in zip(own.tolist(), people10.identity):
        assert person not in model.members[c]
        assert len(set(model.members[c])) >= model.cfg.k
    # the output depends on (utility, cluster) only: the k people of a cluster share it
    with torch.no_grad():
        a, _ = model(u[:1].repeat(2, 1), torch.tensor([0, 1]))
        b, _ = model(u[:1].repeat(2, 1), torch.tensor([0, 0]))
    assert torch.allclose(b[0], b[1], atol=1e-5) and (a[0] - a[1]).abs().max() > 1e-3  # float noise only
    with pytest.raises(ValueError, match=f"\\(N, {UTILITY_DIM}\\)"):
        model(u[:, :10])


def test_training_history(trained):
    model, hist = trained
    assert set(hist) >= {"loss", "l2", "mask", "clusters", "min_people", "seconds"}
    assert len(hist["loss"]) == 1 and np.isfinite(hist["loss"][0])
    assert hist["loss"][0] == pytest.approx(5 * hist["l2"][0] + hist["mask"][0], rel=1e-5)
    assert hist["clusters"] == model.num_clusters and not model.training


def test_training_with_perceptual_loss(people10):
    ident = FaceIdentifier(4, IdentifierConfig.for_preset("smoke"))
    cfg = KSameNetConfig.for_preset("smoke", epochs=1, batch_size=10)
    model, hist = train_ksame_net(people10.subset(np.arange(10)), dataclasses.replace(cfg, k=2), "cpu",
                                  perceptual=PerceptualLoss(ident), progress=False)
    assert len(hist["perceptual"]) == 1 and hist["perceptual"][0] > 0
    assert all(p.grad is None for p in ident.parameters())


def test_save_load_identical_outputs(tmp_path, trained, people10):
    model, _ = trained
    path = save_ksame_net(model, tmp_path / "ksame.safetensors")
    loaded = load_ksame_net(path)
    assert loaded.members == model.members and loaded.cfg == model.cfg and loaded.history is not None
    u = torch.from_numpy(people10.utility()[:4])
    with torch.no_grad():
        assert torch.equal(loaded(u)[0], model(u)[0])


def test_load_rejects_other_files(tmp_path):
    ident = save_identifier(FaceIdentifier(3, IdentifierConfig.for_preset("smoke")), tmp_path / "id.safetensors")
    with pytest.raises(CheckpointError, match="'face_identifier' checkpoint, not a k-same-net"):
        load_ksame_net(ident)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_ksame_net(junk)


def test_constructor_checks_centroids():
    with pytest.raises(ValueError, match="centroids must be"):
        KSameNet(KSameNetConfig.for_preset("smoke"), np.zeros((2, 17)), [[0, 1, 2], [3, 4, 5]])


def test_load_or_train_trains_once_then_reuses_the_saved_net(tmp_path, people10):
    """Chapter 08 trains and saves; chapter 09 finds it and does not train again; another k (the
    anonymity it guarantees) or an unreadable file means training anew."""
    from upgan_lib import ksame_net as K

    cfg = KSameNetConfig.for_preset("smoke", k=3, epochs=1)
    path = K.default_ksame_net_path("smoke", tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / "ksame_net_smoke.safetensors"
    said = []
    first, how = K.load_or_train_ksame_net(path, people10, cfg, say=said.append)
    assert path.exists() and how.startswith("trained") and len(said) == 1
    stamp = path.stat().st_mtime_ns
    again, how = K.load_or_train_ksame_net(path, people10, dataclasses.replace(cfg, epochs=5), say=said.append)
    assert how.startswith("loaded") and len(said) == 1 and path.stat().st_mtime_ns == stamp
    u = torch.from_numpy(people10.utility()[:4])
    with torch.no_grad():
        assert torch.equal(first(u)[0], again(u)[0])  # the very net chapter 08 trained
    other, how = K.load_or_train_ksame_net(path, people10, dataclasses.replace(cfg, k=4), say=said.append)
    assert other.cfg.k == 4 and "k=3" in how and load_ksame_net(path).cfg.k == 4
    path.write_bytes(b"not a checkpoint")
    _, how = K.load_or_train_ksame_net(path, people10, cfg, say=said.append)
    assert "unreadable" in how and load_ksame_net(path).cfg.k == 3
