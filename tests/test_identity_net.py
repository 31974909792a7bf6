"""The VGG-19 face identifier: layout, features, learning, checkpoints, ImageNet weights (offline)."""
import dataclasses
import urllib.error

import numpy as np
import pytest
import torch

from upgan_lib import identity_net
from upgan_lib.checkpoint import CheckpointError, save_checkpoint
from upgan_lib.faceset import split_photos_by_identity
from upgan_lib.identity_net import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FaceIdentifier,
    IdentifierConfig,
    ImageNetWeightsUnavailable,
    augment_faces,
    count_parameters,
    identification_accuracy,
    load_identifier,
    load_imagenet_weights,
    predict_identities,
    save_identifier,
    train_identifier,
)
from upgan_lib.synthfaces import make_synthfaces


@pytest.fixture(autouse=True)
def one_thread():
    """Run single-threaded: on a busy 2-core machine, OpenMP threads competing with other
    processes make CPU training 10x slower (measured: 9 s with 1 thread, 110 s with 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def faces16():
    return make_synthfaces(16, 8, seed=0)


@pytest.fixture(scope="module")
def smoke_model():
    torch.manual_seed(0)
    return FaceIdentifier(5, IdentifierConfig.for_preset("smoke"), classes=[3, 7, 11, 12, 40]).eval()


@pytest.mark.parametrize("batch_norm", [False, True])
def test_layout_is_torchvisions_vgg19(batch_norm):
    import torchvision

    with torch.device("meta"):  # no memory, no init cost
        tv = (torchvision.models.vgg19_bn if batch_norm else torchvision.models.vgg19)()
        ours = FaceIdentifier(1000, IdentifierConfig.for_preset("full", batch_norm=batch_norm))
    theirs = {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert mine == theirs
    assert count_parameters(ours) == count_parameters(tv)
    assert len([n for n in ours.layer_names if n.startswith("conv")]) == 16


def test_layer_names_and_features(smoke_model):
    names = smoke_model.layer_names
    assert names[:7] == ("conv1_1", "bn1_1", "relu1_1", "conv1_2", "bn1_2", "relu1_2", "pool1")
    assert names[-1] == "pool5" and "relu3_4" in names and "relu4_4" in names
    x = torch.rand(3, 3, 128, 128) * 2 - 1
    feats = smoke_model.features(x, ["relu4_4", "relu1_2", "relu2_2", "relu3_4"])  # order as asked
    s = smoke_model.cfg.input_size  # the smoke preset reads 64x64
    assert [tuple(f.shape) for f in feats] == [(3, 32, s // 8, s // 8), (3, 4, s, s), (3, 8, s // 2, s // 2),
                                              (3, 16, s // 4, s // 4)]
    with torch.no_grad():
        assert smoke_model(x).shape == (3, 5)
        assert smoke_model.embedding(x).shape == (3, smoke_model.cfg.hidden)
        assert smoke_model.features(x).shape == (3, 32, s // 32, s // 32)  # the trunk, as in torchvision
    with pytest.raises(ValueError, match="unknown layer 'relu6_1'.*relu1_1"):
        smoke_model.features(x, ["relu6_1"])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        smoke_model(torch.zeros(2, 1, 64, 64))


def test_inputs_are_mapped_to_imagenet_normalisation(smoke_model):
    x = torch.stack([torch.full((3, 64, 64), -1.0), torch.ones(3, 64, 64)])
    y = smoke_model.features.normalise(x)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(y[0, :, 0, 0], (0 - mean) / std)
    assert torch.allclose(y[1, :, 0, 0], (1 - mean) / std)
    big = smoke_model.features.normalise(torch.zeros(1, 3, 128, 128))  # resized to input_size
    assert big.shape == (1, 3, 64, 64)


def test_parameter_table_adds_up(smoke_model):
    table = dict(smoke_model.parameter_table())
    assert list(table) == ["block1", "block2", "block3", "block4", "block5", "classifier"]
    assert sum(table.values()) == count_parameters(smoke_model)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    for bn in (True, False):
        model = FaceIdentifier(4, IdentifierConfig.for_preset("smoke", batch_norm=bn)).train()
        x = torch.rand(4, 3, 128, 128) * 2 - 1
        loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_augmentation_is_seeded_and_bounded():
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    cfg = IdentifierConfig.for_preset("smoke", max_shift=0.1, jitter=0.3)
    a = augment_faces(x, cfg, torch.Generator().manual_seed(1))
    b = augment_faces(x, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, x)
    flip_only = augment_faces(x, IdentifierConfig(max_shift=0.0, jitter=0.0), torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert torch.equal(flip_only[i], x[i]) or torch.equal(flip_only[i], x[i].flip(-1))


def test_identifier_learns_synthfaces_identities(faces16):
    """16 identities x 8 photos, the smoke VGG for a few epochs on the CPU: far above chance (1/16)."""
    train_idx, test_idx = split_photos_by_identity(faces16.identity, test_fraction=0.25, seed=0)
    cfg = IdentifierConfig.for_preset("smoke", epochs=12)
    model, hist = train_identifier(faces16.subset(train_idx), cfg, "cpu", val=faces16.subset(test_idx), progress=False)
    assert model.classes == list(range(16)) and not model.training
    assert len(hist["train_loss"]) == 12 and hist["train_loss"][-1] < hist["train_loss"][0]
    acc = identification_accuracy(model, faces16.faces[test_idx], faces16.identity[test_idx])
    assert acc == pytest.approx(hist["val_acc"][-1])
    assert acc >= 0.25, f"held-out accuracy {acc:.3f} is not well above chance 1/16"


def test_accuracy_uses_the_label_mapping(smoke_model):
    faces = make_synthfaces(3, 2, seed=1).faces
    pred = predict_identities(smoke_model, faces)
    assert set(pred) <= {3, 7, 11, 12, 40}
    assert identification_accuracy(smoke_model, faces, pred) == 1.0
    as_float = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert identification_accuracy(smoke_model, as_float, pred) == 1.0
    with pytest.raises(ValueError, match="not among the identifier's 5 classes"):
        identification_accuracy(smoke_model, faces, [0] * len(faces))


def test_validation_photos_of_unknown_people_are_counted():
    data = make_synthfaces(4, 3, seed=2)
    train = data.subset(data.identity < 3)
    with pytest.warns(UserWarning, match="3 of 12 validation photos"):
        model, hist = train_identifier(train, IdentifierConfig.for_preset("smoke", epochs=1), val=data, progress=False)
    assert hist["val_unknown"] == 3 and hist["val_photos"] == 9 and hist["classes"] == 3
    unlabelled = dataclasses.replace(data, identity=np.full(len(data), -1))
    with pytest.raises(ValueError, match="identity-labelled"):
        train_identifier(unlabelled, progress=False)


def test_save_load_gives_identical_logits(tmp_path, smoke_model):
    path = save_identifier(smoke_model, tmp_path / "id.safetensors", history={"val_acc": [0.5]})
    loaded = load_identifier(path)
    assert loaded.classes == smoke_model.classes and loaded.cfg == smoke_model.cfg
    assert loaded.history == {"val_acc": [0.5]} and not loaded.training
    x = torch.rand(4, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x), smoke_model(x))


def test_load_rejects_wrong_and_corrupt_files(tmp_path, smoke_model):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_identifier(tmp_path / "missing.safetensors")
    other = save_checkpoint(tmp_path / "gen.safetensors", {"model": {"w": torch.ones(2)}}, {"kind": "generator"})
    with pytest.raises(CheckpointError, match="'generator' checkpoint, not a face identifier"):
        load_identifier(other)
    good = save_identifier(smoke_model, tmp_path / "id.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_identifier(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_identifier(junk)
    # weights that do not fit the saved config
    bad = FaceIdentifier(5, IdentifierConfig.for_preset("smoke", hidden=32))
    meta_path = save_checkpoint(tmp_path / "mismatch.safetensors", {"model": bad.state_dict()},
                                {"kind": "face_identifier", "version": 1, "num_classes": 5,
                                 "classes": [0, 1, 2, 3, 4], "config": vars(IdentifierConfig.for_preset("smoke"))})
    with pytest.raises(CheckpointError, match="does not match its saved configuration"):
        load_identifier(meta_path)


class _FakeWeights:
    url = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

    def __init__(self, state=None, error=None):
        self.state, self.error = state, error

    def get_state_dict(self, progress=True, check_hash=False):
        assert check_hash, "the download must be hash-checked"
        if self.error:
            raise self.error
        return self.state


def test_imagenet_is_off_by_default_and_needs_full_width():
    assert not IdentifierConfig().imagenet and not IdentifierConfig.for_preset("full").imagenet
    assert not IdentifierConfig.for_preset("smoke").imagenet
    with pytest.raises(ValueError, match="full VGG-19"):
        load_imagenet_weights(FaceIdentifier(3, IdentifierConfig.for_preset("smoke")))


def test_imagenet_download_failure_is_explained(monkeypatch):
    with torch.device("meta"):
        model = FaceIdentifier(10, IdentifierConfig.for_preset("full", batch_norm=False))
    monkeypatch.setattr(identity_net, "imagenet_weights_enum",
                        lambda bn: _FakeWeights(error=urllib.error.URLError("no network")))
    with pytest.raises(ImageNetWeightsUnavailable, match=r"imagenet=False.*vgg19-dcbb9e9d\.pth"):
        load_imagenet_weights(model)


def test_imagenet_weights_are_copied_except_the_class_layer(monkeypatch):
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.vgg19()
        model = FaceIdentifier(10, IdentifierConfig.for_preset("full", batch_norm=False))
    monkeypatch.setattr(identity_net, "imagenet_weights_enum", lambda bn: _FakeWeights(state=tv.state_dict()))
    assert load_imagenet_weights(model) == len(tv.state_dict()) - 2
    assert model.classifier[6].weight.shape == (10, 4096)
