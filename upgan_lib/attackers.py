"""Attackers: face identifiers that try to name the person behind an obscured face.

Two attackers, both closed-set (every test person has training photos; held-out *photos*,
see :func:`upgan_lib.faceset.split_photos_by_identity`):

* :class:`VGGAttacker` - the paper's: the VGG-19 face identifier of
  :mod:`upgan_lib.identity_net`, trained from scratch (offline) on the training photos.
* :class:`DlibAttacker` - a stronger off-the-shelf one: dlib's 128-d face descriptor
  (:class:`upgan_lib.recognise.FaceRecogniser`, 99.38 % on LFW) computed on each aligned
  128x128 crop, then a softmax (multinomial logistic regression) classifier in torch trained
  on the same split. The descriptor network needs a face shape to align its 150x150 chip:
  with ``shape_from="box"`` (default) dlib's 68-point predictor is run inside the full-image
  box (the crop *is* the face), so the attacker never uses the original's landmarks;
  ``"detect"`` runs dlib's HOG detector first and falls back to the full box when it finds
  nothing (the fallbacks are counted in ``stats``).

Threat models (the paper's):

* **I**: the identifier is trained on clear photos and tested on obscured held-out photos (a
  recogniser that has never seen the obscuration).
* **II**: trained on clear + obscured training photos (the attacker knows the obscuration and
  can apply it to photos it has), tested on obscured held-out photos.

Accuracy is top-1 on the held-out photos; chance is 1 / number of identities.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .faceset import FaceSet
from .identity_net import IdentifierConfig, predict_identities, train_identifier
from .recognise import FaceRecogniser


def with_faces(data: FaceSet, faces: np.ndarray) -> FaceSet:
    """`data` with its images replaced by `faces` (same count and size; labels kept)."""
    faces = np.asarray(faces)
    if faces.shape != data.faces.shape:
        raise ValueError(f"replacement faces {faces.shape} do not match the set's {data.faces.shape}")
    return replace(data, faces=faces)


# ---------------------------------------------------------------------------- VGG-19
class VGGAttacker:
    """The paper's attacker: :func:`upgan_lib.identity_net.train_identifier` on the training photos."""

    name = "VGG-19"

    def __init__(self, cfg=None, device="cpu", progress: bool = False):
        self.cfg = cfg or IdentifierConfig.for_preset("smoke")
        self.device = torch.device(device)
        self.progress = progress
        self.model = None
        self.history = None

    def fit(self, train: FaceSet) -> "VGGAttacker":
        self.model, self.history = train_identifier(train, self.cfg, self.device, progress=self.progress)
        return self

    def predict(self, faces: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("fit the attacker first")
        return predict_identities(self.model, faces)

    def accuracy(self, faces: np.ndarray, identity) -> float:
        return float(np.mean(self.predict(faces) == np.asarray(identity)))


# ---------------------------------------------------------------------------- dlib
class DlibDescriptor:
    """dlib's 128-d face descriptor of aligned crops, memoised by image content.

    ``describe(faces uint8 (N,S,S,3)) -> (N,128) float32``. Costs about 80 ms per face on one
    core of the course's CI machine (the ResNet on a 150x150 chip); identical images (the clear
    faces met again as the "none" row, say) are computed once.
    """

    def __init__(self, shape_from: str = "box", predictor: str = "68", cache: bool = True):
        if shape_from not in ("box", "detect"):
            raise ValueError(f"shape_from must be 'box' or 'detect', got {shape_from!r}")
        self.shape_from = shape_from
        self.recogniser = FaceRecogniser(predictor)
        self.detector = None
        if shape_from == "detect":
            import dlib

            self.detector = dlib.get_frontal_face_detector()
        self._cache: dict[bytes, np.ndarray] | None = {} if cache else None
        self.stats = {"computed": 0, "cached": 0, "detect_fallback": 0}

    def _box(self, img: np.ndarray) -> tuple:
        """Where the descriptor reads the face: the whole crop, or the largest face dlib's HOG finds in it."""
        h, w = img.shape[:2]
        if self.detector is not None:
            dets = self.detector(img, 1)
            if len(dets):
                r = max(dets, key=lambda r: r.area())
                return (r.left(), r.top(), r.right(), r.bottom())
            self.stats["detect_fallback"] += 1
        return (0, 0, w - 1, h - 1)

    def _one(self, img: np.ndarray) -> np.ndarray:
        img = np.ascontiguousarray(img)
        return self.recogniser.descriptor(img, self._box(img))

    def describe(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[-1] != 3:
            raise ValueError(f"dlib descriptors need uint8 (N,H,W,3) RGB faces, got {faces.dtype} {faces.shape}")
        out = np.empty((len(faces), 128), np.float32)
        for i, img in enumerate(faces):
            key = hashlib.sha1(np.ascontiguousarray(img).tobytes()).digest() if self._cache is not None else None
            if key is not None and key in self._cache:
                out[i] = self._cache[key]
                self.stats["cached"] += 1
                continue
            out[i] = self._one(img)
            self.stats["computed"] += 1
            if key is not None:
                self._cache[key] = out[i]
        return out


@dataclass
class SoftmaxConfig:
    """Multinomial logistic regression on z-scored descriptors, full-batch L-BFGS."""

    weight_decay: float = 1e-3
    max_iter: int = 200
    seed: int = 0


class SoftmaxClassifier:
    """Linear softmax classifier in torch: ``fit(x (N,D), labels)``, ``predict(x) -> labels``."""

    def __init__(self, cfg: SoftmaxConfig | None = None):
        self.cfg = cfg or SoftmaxConfig()

    def fit(self, x: np.ndarray, labels) -> "SoftmaxClassifier":
        x = np.asarray(x, np.float64)
        labels = np.asarray(labels)
        self.classes = np.unique(labels)
        if len(self.classes) < 2:
            raise ValueError(f"a classifier needs at least 2 identities, got {len(self.classes)}")
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        xt = torch.from_numpy((x - self.mean) / self.std)
        y = torch.from_numpy(np.searchsorted(self.classes, labels)).long()
        torch.manual_seed(self.cfg.seed)
        w = torch.zeros(x.shape[1], len(self.classes), dtype=torch.float64, requires_grad=True)
        b = torch.zeros(len(self.classes), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=self.cfg.max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xt @ w + b, y) + self.cfg.weight_decay * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        self.w, self.b = w.detach(), b.detach()
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy((np.asarray(x, np.float64) - self.mean) / self.std)
        return self.classes[(xt @ self.w + self.b).argmax(1).numpy()]


class DlibAttacker:
    """dlib 128-d descriptors + :class:`SoftmaxClassifier`. Share one :class:`DlibDescriptor`
    between attackers to reuse its descriptor cache."""

    name = "dlib ResNet"

    def __init__(self, descriptor: DlibDescriptor | None = None, cfg: SoftmaxConfig | None = None):
        self.descriptor = descriptor or DlibDescriptor()
        self.cfg = cfg or SoftmaxConfig()
        self.clf = None

    def fit(self, train: FaceSet) -> "DlibAttacker":
        self.clf = SoftmaxClassifier(self.cfg).fit(self.descriptor.describe(np.asarray(train.faces)), train.identity)
        return self

    def predict(self, faces: np.ndarray) -> np.ndarray:
        if self.clf is None:
            raise RuntimeError("fit the attacker first")
        return self.clf.predict(self.descriptor.describe(np.asarray(faces)))

    def accuracy(self, faces: np.ndarray, identity) -> float:
        return float(np.mean(self.predict(faces) == np.asarray(identity)))


def utility_identification(train: FaceSet, test: FaceSet, cfg: SoftmaxConfig | None = None) -> float:
    """Top-1 accuracy of a :class:`SoftmaxClassifier` that sees only the utility: fitted on the
    17 numbers (:meth:`FaceSet.utility`: attributes and 7 landmarks) of the training photos,
    scored on those of the test photos. A method that keeps the utility readable hands this much
    to a threat-model-II attacker who reads it back, whatever face it draws: the reference for
    UP-GAN's TM-II."""
    return float(np.mean(SoftmaxClassifier(cfg).fit(train.utility(), train.identity).predict(test.utility())
                         == np.asarray(test.identity)))


# ---------------------------------------------------------------------------- threat models
def threat_model_i(attacker, test: FaceSet, obscured_test: np.ndarray) -> float:
    """Accuracy of an attacker *already fitted on clear training photos* on obscured test photos."""
    return attacker.accuracy(obscured_test, test.identity)


def threat_model_ii(make_attacker, train: FaceSet, obscured_train: np.ndarray, test: FaceSet,
                    obscured_test: np.ndarray) -> float:
    """Fit a fresh attacker (``make_attacker()``) on clear + obscured training photos, score it on
    obscured test photos."""
    both = FaceSet.concatenate([train, with_faces(train, obscured_train)])
    return make_attacker().fit(both).accuracy(obscured_test, test.identity)
