"""Table 1's settings, inputs and the setup its rows share.

:class:`EvalConfig` (every knob, ``for_preset``), :class:`EvaluationError`, :class:`EvalResult`;
the input sets (SynthFaces for the smoke table, prepared sets loaded and checked, UTKFace split
into estimator training, FID reference and utility parts); and :func:`setup_evaluation`, which
builds the :class:`EvalContext` every row is measured with (attribute estimator, threat-model-I
attackers, FID reference features and floor). What the table measures: :mod:`upgan_lib.evaluate`.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .attackers import DlibAttacker, DlibDescriptor, VGGAttacker, utility_identification
from .attributes import (AttributeConfig, evaluate_attributes, fill_attributes, save_attribute_estimator,
                         train_attribute_estimator)
from .faceset import FaceSet, NotAPreparedSet, split_photos_by_identity
from .fid import InceptionFeatures, real_floor
from .identity_net import IdentifierConfig
from .landmarks import FaceLandmarker
from .synthfaces import make_synthfaces


class EvaluationError(ValueError):
    """Bad evaluation input (missing checkpoint, too few photos, mismatched sizes)."""


@dataclass
class EvalConfig:
    """Every knob of the evaluation; ``for_preset("smoke"|"full")``.

    Split: ``test_fraction`` of each identity's photos are held out (at least one; every identity
    needs >= 2 photos). ``ksame_k``/``ksame_variant``: k-same. ``attribute_source``: "fixed" or
    "estimator" for the identity photos' attributes. ``attackers``: any of "vgg", "dlib".
    ``fid_images``: obscured test photos per method for FID/KID (None: all); ``fid_real``: real
    UTKFace faces in the realism reference (the floor uses two disjoint halves of it).
    ``utility_images``: held-out UTKFace faces for the utility columns. ``region``: "crop" obscures
    the whole aligned crop (the paper's Table 1); "face" keeps the original outside the face mask.
    ``synth_*``: SynthFaces sizes when no data are given (smoke). ``rows``: the rows to build, by
    method name (``none``, ``blur-5``, ..., ``k-same``, ``k-same-net``, ``up-gan``; empty: all).
    """

    test_fraction: float = 0.3
    ksame_k: int = 10
    ksame_variant: str = "pixel"
    blur_by: str = "ksize"
    attribute_source: str = "estimator"
    attackers: tuple[str, ...] = ("vgg", "dlib")
    dlib_shape_from: str = "box"
    fid_images: int | None = None
    fid_real: int = 2000
    fid_batch_size: int = 64
    kid_subset: int = 1000
    utility_images: int = 1000
    attribute_train_max: int | None = None
    landmark_error: bool = True
    region: str = "crop"
    seed: int = 0
    synth_identities: int = 12
    synth_photos: int = 4
    synth_utk: int = 40
    identifier_epochs: int | None = None
    attribute_epochs: int | None = None
    identifier_input: int | None = None
    upgan_epochs: int = 1
    ksame_net_preset: str = "full"
    ksame_net_epochs: int | None = None
    rows: tuple[str, ...] = ()

    @classmethod
    def for_preset(cls, name: str) -> "EvalConfig":
        if name == "smoke":
            return cls(test_fraction=0.5, ksame_k=3, fid_images=3, fid_real=6, utility_images=12, kid_subset=50,
                       synth_identities=6, synth_photos=4, synth_utk=60, identifier_epochs=3, identifier_input=64,
                       attribute_epochs=15, ksame_net_preset="smoke", ksame_net_epochs=1)
        if name == "full":
            return cls()
        raise ValueError(f"unknown preset {name!r}: use 'smoke' or 'full'")

    def __post_init__(self):
        if self.attribute_source not in ("fixed", "estimator"):
            raise EvaluationError(f"attribute_source must be 'fixed' or 'estimator', got {self.attribute_source!r}")
        if self.blur_by not in ("ksize", "sigma"):
            raise EvaluationError(f"blur_by must be 'ksize' or 'sigma', got {self.blur_by!r}")
        if self.region not in ("crop", "face"):
            raise EvaluationError(f"region must be 'crop' or 'face', got {self.region!r}")
        bad = set(self.attackers) - {"vgg", "dlib"}
        if bad:
            raise EvaluationError(f"unknown attackers {sorted(bad)}: use 'vgg' and/or 'dlib'")
        self.attackers = tuple(self.attackers)
        self.rows = tuple(self.rows)


@dataclass
class EvalResult:
    rows: list[dict]
    info: dict
    examples: dict[str, np.ndarray] = field(default_factory=dict)

    def row(self, name: str) -> dict:
        return next(r for r in self.rows if r["method"] == name)


# ---------------------------------------------------------------------------- data
def smoke_data(cfg: EvalConfig, seed: int = 0) -> tuple[FaceSet, FaceSet]:
    """(identity set, UTKFace stand-in) drawn from SynthFaces; the stand-in has no identities."""
    ids = make_synthfaces(cfg.synth_identities, cfg.synth_photos, seed=seed + 101)
    ids = replace(ids, age=np.full(len(ids), -1), gender=np.full(len(ids), -1), race=np.full(len(ids), -1))
    utk = make_synthfaces(cfg.synth_utk, 1, seed=seed + 202)
    utk = replace(utk, identity=np.full(len(utk), -1))
    return ids, utk


def load_set(path, what: str) -> FaceSet:
    try:
        return FaceSet.load(path)
    except NotAPreparedSet as e:
        raise EvaluationError(f"--{what}: {e}") from e


def check_inputs(identities: FaceSet, utk: FaceSet, where: str = "identity set") -> None:
    if identities.size != utk.size:
        raise EvaluationError(f"image sizes differ: the {where} has {identities.size}x{identities.size} faces, UTKFace "
                              f"{utk.size}x{utk.size}; prepare both with the same size (128)")
    ids, counts = np.unique(np.asarray(identities.identity), return_counts=True)
    if np.any(np.asarray(identities.identity) < 0):
        raise EvaluationError(f"the {where} has {int(np.sum(np.asarray(identities.identity) < 0))} photos without an "
                              "identity label; prepare it with `upgan prepare identities`")
    small = ids[counts < 2]
    if len(small):
        raise EvaluationError(f"the {where} has {len(small)} identities with fewer than 2 photos (e.g. {int(small[0])}): "
                              "the closed-set split needs one photo to train on and one to test; remove them or add "
                              "photos (nothing was computed)")
    if len(ids) < 2:
        raise EvaluationError(f"the {where} has {len(ids)} identity; identification needs at least 2")


def split_utk(utk: FaceSet, cfg: EvalConfig) -> tuple[FaceSet, FaceSet, FaceSet]:
    """UTKFace -> (estimator training, FID realism reference, utility set), disjoint."""
    n = len(utk)
    need = cfg.fid_real + cfg.utility_images + 2
    if n < need:
        raise EvaluationError(f"UTKFace set has {n} faces; the evaluation needs at least {need} "
                              f"(fid_real={cfg.fid_real} + utility_images={cfg.utility_images} + training)")
    perm = np.random.default_rng(cfg.seed).permutation(n)
    ref = perm[:cfg.fid_real]
    util = perm[cfg.fid_real:cfg.fid_real + cfg.utility_images]
    train = perm[cfg.fid_real + cfg.utility_images:]
    if cfg.attribute_train_max:
        train = train[:cfg.attribute_train_max]
    return utk.subset(np.sort(train)), utk.subset(np.sort(ref)), utk.subset(np.sort(util))


# ---------------------------------------------------------------------------- the setup
@dataclass
class EvalContext:
    """Everything shared by the rows of Table 1 (built once by :func:`setup_evaluation`)."""

    cfg: EvalConfig
    device: torch.device
    train: FaceSet  # identity photos, training part (attributes filled)
    test: FaceSet  # identity photos, held-out part (attributes filled)
    utk_train: FaceSet
    utk_ref: FaceSet
    utk_util: FaceSet
    estimator: object
    attackers: dict  # name -> factory of a fresh attacker
    fitted: dict  # name -> attacker fitted on the clear training photos (threat model I)
    features: Callable
    fid_idx: np.ndarray
    ref_feats: np.ndarray
    clear_feats: np.ndarray
    utk_clear_feats: np.ndarray
    landmarker: object
    info: dict
    log: Callable = print
    descriptor: object = None  # the dlib descriptor shared by the dlib attackers (its cache and stats)


def setup_evaluation(identities: FaceSet, utk: FaceSet, cfg: EvalConfig | None = None, device="cpu",
                     estimator=None, identifier_cfg=None, attribute_cfg=None, fid_features: Callable | None = None,
                     landmarker=None, out_dir=None, progress: bool = False, log: Callable = print) -> EvalContext:
    """Check the inputs, split them, get the attribute estimator (trained on the UTKFace training
    part when None, saved to `out_dir`), fill the identity photos' attributes, fit the threat-model-I
    attackers on the clear training photos and compute the FID reference features and floor."""
    cfg = cfg or EvalConfig()
    device = torch.device(device)
    check_inputs(identities, utk)
    s = _Setup(cfg, device, progress, out_dir, {"config": asdict(cfg), "skipped": {}, "timings": {}}, log)
    tr, te = split_photos_by_identity(identities.identity, cfg.test_fraction, seed=cfg.seed)
    utk_train, utk_ref, utk_util = split_utk(utk, cfg)
    n_people = len(np.unique(identities.identity))
    s.info["sizes"] = {"identities": n_people, "train_photos": len(tr), "test_photos": len(te),
                       "utk_attribute_train": len(utk_train), "utk_fid_reference": len(utk_ref),
                       "utk_utility": len(utk_util), "chance": 1.0 / n_people}
    log(f"identity set: {n_people} people, {len(tr)} training / {len(te)} held-out photos (chance {1 / n_people:.3f}); "
        f"UTKFace: {len(utk_train)} estimator training, {len(utk_ref)} FID reference, {len(utk_util)} utility faces")
    with s.timed("attributes"):
        estimator = _attribute_estimator(s, estimator, attribute_cfg, utk_train, utk_util)
    filled = fill_attributes(identities, cfg.attribute_source, model=estimator)
    s.info["identity_attributes"] = filled.meta["attributes"]
    train, test = filled.subset(tr), filled.subset(te)
    s.info["utility_identification"] = utility_identification(train, test)
    with s.timed("attackers_tm1_fit"):
        attackers, descriptor = _attackers(s, identifier_cfg)
        fitted = {name: make().fit(train) for name, make in attackers.items()}
    with s.timed("fid_reference"):
        feats = fid_features or InceptionFeatures(device, cfg.fid_batch_size)
        fid_idx, ref_feats, clear_feats, utk_clear_feats = _fid_reference(s, feats, test, utk_ref, utk_util)
    if cfg.landmark_error and landmarker is None:
        try:
            landmarker = FaceLandmarker()
        except ImportError as e:  # pragma: no cover - dlib is part of the course
            s.info["skipped"]["landmark_error"] = f"landmarks.py unavailable: {e}"
    return EvalContext(cfg=cfg, device=device, train=train, test=test, utk_train=utk_train, utk_ref=utk_ref,
                       utk_util=utk_util, estimator=estimator, attackers=attackers, fitted=fitted, features=feats,
                       fid_idx=fid_idx, ref_feats=ref_feats, clear_feats=clear_feats,
                       utk_clear_feats=utk_clear_feats, landmarker=landmarker, info=s.info, log=log,
                       descriptor=descriptor)


@dataclass
class _Setup:
    """What the steps of :func:`setup_evaluation` share: the settings, the log, and ``info`` they fill."""

    cfg: EvalConfig
    device: torch.device
    progress: bool
    out_dir: object
    info: dict
    log: Callable

    @contextlib.contextmanager
    def timed(self, name: str):
        t = time.perf_counter()
        yield
        self.info["timings"][name] = time.perf_counter() - t


def _attribute_estimator(s: _Setup, estimator, attribute_cfg, utk_train: FaceSet, utk_util: FaceSet):
    """The given estimator, or one trained on the UTKFace training part (saved to ``out_dir``);
    its accuracy on the held-out utility faces goes into ``info``."""
    cfg = s.cfg
    if estimator is None:
        acfg = attribute_cfg or AttributeConfig.for_preset("smoke" if cfg.attribute_epochs else "full")
        if cfg.attribute_epochs:
            acfg = replace(acfg, epochs=cfg.attribute_epochs)
        estimator = train_attribute_estimator(utk_train, acfg, s.device, progress=s.progress)
        s.info["attribute_estimator"] = f"trained here on {len(utk_train)} UTKFace faces"
        if s.out_dir is not None:
            save_attribute_estimator(estimator, Path(s.out_dir) / "attribute_estimator.safetensors",
                                     metrics=evaluate_attributes(estimator, utk_util))
    else:
        s.info["attribute_estimator"] = "given"
    estimator = estimator.to(s.device).eval()
    acc = evaluate_attributes(estimator, utk_util)
    s.info["attribute_estimator_accuracy"] = acc
    s.log(f"attribute estimator on {len(utk_util)} held-out real faces: age MAE {acc['age_mae']:.1f} y, "
          f"gender {acc['gender_acc']:.3f}, race {acc['race_acc']:.3f}")
    return estimator


def _attackers(s: _Setup, identifier_cfg) -> tuple[dict[str, Callable], object]:
    """Factories of fresh attackers by name, and the dlib descriptor the dlib ones share (None without)."""
    cfg = s.cfg
    attackers: dict[str, Callable] = {}
    icfg = identifier_cfg or IdentifierConfig.for_preset("smoke" if cfg.identifier_epochs else "full")
    if cfg.identifier_epochs:
        icfg = replace(icfg, epochs=cfg.identifier_epochs)
    if cfg.identifier_input:
        icfg = replace(icfg, input_size=cfg.identifier_input)
    if "vgg" in cfg.attackers:
        attackers["vgg"] = lambda: VGGAttacker(icfg, s.device, progress=s.progress)
    descriptor = None
    if "dlib" in cfg.attackers:
        descriptor = DlibDescriptor(cfg.dlib_shape_from)
        attackers["dlib"] = lambda: DlibAttacker(descriptor)
    return attackers, descriptor


def _fid_reference(s: _Setup, feats: Callable, test: FaceSet, utk_ref: FaceSet, utk_util: FaceSet):
    """The FID sample of the test photos and the reference features: (fid_idx, real UTKFace
    reference, clear test photos, clear utility faces); sizes and the real-vs-real floor go into ``info``."""
    cfg = s.cfg
    n_fid = len(test) if cfg.fid_images is None else min(cfg.fid_images, len(test))
    fid_idx = np.sort(np.random.default_rng(cfg.seed).permutation(len(test))[:n_fid])
    ref_feats = feats(np.asarray(utk_ref.faces))
    clear_feats = feats(np.asarray(test.faces)[fid_idx])
    n_fid_utk = min(n_fid, len(utk_util))
    utk_clear_feats = feats(np.asarray(utk_util.faces)[:n_fid_utk])
    floor = real_floor(ref_feats, min(n_fid, len(ref_feats) // 2), seed=cfg.seed)
    s.info["fid"] = {"n_obscured": n_fid, "n_real_reference": len(ref_feats), "floor_real_vs_real": floor,
                     "n_utk_obscured": n_fid_utk,
                     "protocols": {"realism": "obscured identity test photos vs held-out real UTKFace faces",
                                   "paired": "obscured identity test photos vs the same photos clear",
                                   "in_distribution": "obscured held-out UTKFace faces vs other held-out real "
                                                      "UTKFace faces (reproduces the paper's ordering with blur "
                                                      "read as sigma)"}}
    s.log(f"FID on {n_fid} obscured test photos; realism reference {len(ref_feats)} real UTKFace faces; "
          f"real-vs-real floor at n={floor['n']}: FID {floor['fid']:.1f}, KID {floor['kid']:.4f}")
    return fid_idx, ref_feats, clear_feats, utk_clear_feats
