"""The models shipped with the course: present, small, the files the model card fingerprints,
and they do their job (a generator that draws faces where the landmarks say, an estimator that
reads attributes)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from upgan_lib import pretrained
from upgan_lib.align import canonical_points7
from upgan_lib.utility import encode_utility

MiB = 1 << 20


def test_shipped_files_are_small_and_match_the_model_card():
    assert pretrained.available(), "the course ships upgan_lib/pretrained/*.safetensors"
    assert pretrained.GENERATOR_FILE.stat().st_size <= 8 * MiB
    assert pretrained.ATTRIBUTES_FILE.stat().st_size <= 4 * MiB
    stated = pretrained.card_fingerprints()
    assert stated and stated == pretrained.fingerprints()
    card = pretrained.MODEL_CARD.read_text()
    for needed in ("upgan train", "--preset cpu", "UTKFace", "non-commercial", "commit", "Known failure"):
        assert needed in card, f"the model card does not say {needed!r}"


def test_card_fingerprints_parse_what_the_card_writes():
    card = "sha256 `generator.safetensors` `" + "a" * 64 + "`\nsha256 attributes.safetensors " + "b" * 64
    assert pretrained.card_fingerprints(card) == {"generator.safetensors": "a" * 64, "attributes.safetensors": "b" * 64}


def test_shipped_generator_draws_a_face_where_the_landmarks_say():
    G = pretrained.generator()
    assert G.cfg.out_size == 128
    p7 = canonical_points7()[None]
    util = torch.from_numpy(np.concatenate([encode_utility(np.array([a]), np.array([g]), np.array([r]), p7, size=128)
                                            for a, g, r in ((25, 0, 0), (60, 1, 1))]))
    with torch.inference_mode():
        face, mask_logits = G(util)
    assert face.shape == (2, 3, 128, 128) and torch.isfinite(face).all()
    prob = torch.softmax(mask_logits.float(), dim=1)[:, 0]
    # trained: the face mask covers the middle of the frame and not the corners
    assert prob[:, 48:80, 48:80].mean() > 0.8 and prob[:, :8, :8].mean() < 0.5
    # the attributes matter: two different people are drawn differently
    assert (face[0] - face[1]).abs().mean() > 0.05


def test_shipped_estimator_reads_attributes_of_generated_faces():
    """Round trip: faces drawn for given attributes are read back as those attributes (mostly)."""
    from upgan_lib.attributes import predict_attributes

    G, est = pretrained.generator(), pretrained.attribute_estimator()
    rng = np.random.default_rng(0)
    n = 40
    gender = np.arange(n) % 2
    age = rng.uniform(20, 60, n)
    race = np.zeros(n, int)
    p7 = np.repeat(canonical_points7()[None], n, 0) + rng.normal(0, 1.0, (n, 7, 2)).astype(np.float32)
    util = torch.from_numpy(encode_utility(age, gender, race, p7, size=128).astype(np.float32))
    with torch.inference_mode():
        face, _ = G(util)
    faces = ((face.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    pred = predict_attributes(est, faces)
    assert (pred["gender"] == gender).mean() >= 0.75


def test_sample_sheet_is_the_attribute_grid_of_generated_faces():
    util, labels = pretrained.attribute_grid_utility()
    assert util.shape == (40, 17) and labels[0] == "male 8 White" and labels[-1] == "female 70 Others"
    sheet = pretrained.sample_sheet(pad=2)
    assert sheet.shape == (8 * 130 + 2, 5 * 130 + 2, 3) and sheet.dtype == np.uint8
    assert sheet[2:130, 2:130].std() > 10  # a drawn face, not a flat tile
