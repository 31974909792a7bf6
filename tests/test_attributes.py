import numpy as np
import pytest
import torch

from upgan_lib import attributes as A
from upgan_lib.checkpoint import CheckpointError, save_checkpoint
from upgan_lib.synthfaces import make_synthfaces


@pytest.fixture(scope="module")
def data():
    return make_synthfaces(16, 3, seed=5)


@pytest.fixture(scope="module")
def trained(data):
    torch.manual_seed(0)
    return A.train_attribute_estimator(data, A.AttributeConfig.for_preset("smoke"))


def test_forward_shapes_and_presets():
    assert A.AttributeConfig.for_preset("full").input_size == 64
    with pytest.raises(ValueError, match="preset"):
        A.AttributeConfig.for_preset("tiny")
    m = A.AttributeEstimator(A.AttributeConfig.for_preset("smoke"))
    out = m(torch.zeros(2, 3, 128, 128))
    assert out["age"].shape == (2,) and out["gender"].shape == (2, 2) and out["race"].shape == (2, 5)


def test_training_lowers_loss_and_predicts(trained, data):
    h = trained.history["loss"]
    assert len(h) == A.AttributeConfig.for_preset("smoke").epochs and h[-1] < h[0]
    pred = A.predict_attributes(trained, data.faces[:5])
    assert pred["age"].shape == (5,) and set(np.unique(pred["gender"])) <= {0, 1}
    assert pred["race_prob"].shape == (5, 5) and np.allclose(pred["race_prob"].sum(1), 1, atol=1e-5)
    # uint8 and [-1, 1] tensor inputs give the same answer
    x = torch.from_numpy(np.asarray(data.faces[:5])).permute(0, 3, 1, 2).float() / 127.5 - 1
    np.testing.assert_allclose(A.predict_attributes(trained, x)["age"], pred["age"], rtol=1e-5)


def test_unknown_labels_are_ignored_and_all_unknown_refused(data):
    """A label of -1 adds nothing to its head's loss: with every race unknown the race head never
    moves from its initial weights (while age and gender learn); with half of them known it does."""
    from dataclasses import replace

    cfg = A.AttributeConfig(width=4, input_size=16, epochs=1, batch_size=16)
    torch.manual_seed(cfg.seed)
    initial = A.AttributeEstimator(cfg).state_dict()  # the trainer starts from this seed too
    half = np.where(np.arange(len(data)) % 2 == 0, -1, data.race)
    for race, race_moves in ((np.full(len(data), -1), False), (half, True)):
        trained = A.train_attribute_estimator(replace(data, race=race), cfg).state_dict()
        for head, moves in (("race", race_moves), ("age", True), ("gender", True)):
            assert torch.equal(trained[f"{head}.weight"], initial[f"{head}.weight"]) != moves, (head, race_moves)
    none = replace(data, age=np.full(len(data), -1), gender=np.full(len(data), -1), race=np.full(len(data), -1))
    with pytest.raises(ValueError, match="labelled"):
        A.train_attribute_estimator(none, A.AttributeConfig(epochs=1))


def test_attribute_scores_by_hand():
    pred = {"age": np.array([20.0, 30.0, 50.0]), "gender": np.array([0, 1, 1]), "race": np.array([0, 2, 4])}
    s = A.attribute_scores(pred, age=[25, 30, -1], gender=[0, 0, 1], race=[0, 2, 3])
    assert s["age_mae"] == pytest.approx(2.5) and s["gender_acc"] == pytest.approx(2 / 3)
    assert s["race_acc"] == pytest.approx(2 / 3) and s["n"] == 3


def test_fill_attributes_fixed_and_estimator(trained, data):
    from dataclasses import replace

    ids = replace(data, age=np.full(len(data), -1), gender=np.full(len(data), -1), race=np.full(len(data), -1))
    fixed = A.fill_attributes(ids, "fixed")
    assert (fixed.age == 30).all() and (fixed.gender == 0).all() and (fixed.race == 0).all()
    assert "fixed" in fixed.meta["attributes"] and (ids.age == -1).all()  # the input is untouched
    assert fixed.utility().shape == (len(data), 17)
    est = A.fill_attributes(ids, "estimator", model=trained)
    assert (est.age >= 0).all() and est.meta["attributes"] == "attribute estimator"
    kept = A.fill_attributes(data, "fixed")
    np.testing.assert_array_equal(kept.age, data.age)  # known labels kept unless overwrite
    with pytest.raises(ValueError, match="needs a trained"):
        A.fill_attributes(ids, "estimator")
    with pytest.raises(ValueError, match="unknown fill mode"):
        A.fill_attributes(ids, "guess")


def test_save_load_round_trip(trained, data, tmp_path):
    p = A.save_attribute_estimator(trained, tmp_path / "attr.safetensors", metrics={"gender_acc": 0.5})
    m = A.load_attribute_estimator(p)
    np.testing.assert_allclose(A.predict_attributes(m, data.faces[:4])["age"],
                               A.predict_attributes(trained, data.faces[:4])["age"], rtol=1e-6)
    assert m.metrics == {"gender_acc": 0.5} and m.cfg == trained.cfg
    save_checkpoint(tmp_path / "other.safetensors", {"model": {}}, {"kind": "generator"})
    with pytest.raises(CheckpointError, match="not an attribute-estimator"):
        A.load_attribute_estimator(tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        A.load_attribute_estimator(tmp_path / "missing.safetensors")
