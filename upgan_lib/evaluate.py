"""`upgan evaluate`: the paper's Table 1 plus utility, for every obscuration method.

Rows: none, Gaussian blur 5/15/25, pixelation 5/15/25, k-same (k=10), k-same-net, UP-GAN.

Columns, and the data each is measured on:

* **Privacy** (identity photos, closed-set split of held-out *photos*): top-1 identification
  accuracy of two attackers (:mod:`upgan_lib.attackers`: the paper's VGG-19 and dlib's ResNet
  descriptor + softmax) under threat model I (trained on clear photos) and II (clear +
  obscured). Lower is more private; chance is 1 / identities.
* **Realism / fidelity** (:mod:`upgan_lib.fid`, standard Inception-v3): FID and KID of the
  obscured identity test photos against (a) *realism*: held-out real UTKFace faces, and (b)
  *paired*: the same test photos clear. Sample sizes and the real-vs-real floor are reported.
* **Utility** (held-out UTKFace faces, which carry true labels): age MAE (years), gender and race
  accuracy of the attribute estimator (:mod:`upgan_lib.attributes`) on the obscured faces
  against the original labels; landmark error (mean px over the 7 utility points at 128) of
  landmarks re-detected on the obscured face (``landmarks.FaceLandmarker``) against the
  original's, and the number of faces where re-detection found no face.

Identity photos have no attribute labels; the utility vectors that k-same and the generators
need are filled either with fixed values (the paper's way) or by the attribute estimator
(``EvalConfig.attribute_source``); the table says which.

Outputs in ``--out``: ``table1.md``, ``table1.csv``, ``privacy_utility.png`` and
``results.json`` (every number, sizes, floors, what was skipped and why).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .baselines import Method, composite, module_generator, standard_methods
from .faceset import FaceSet, NotAPreparedSet, split_photos_by_identity
from .utility import reduce_68_to_7


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
    ``synth_*``: SynthFaces sizes when no data are given (smoke).
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
    from .synthfaces import make_synthfaces

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


# ---------------------------------------------------------------------------- utility measures
def landmark_errors(obscured: np.ndarray, points7: np.ndarray, landmarker=None) -> dict:
    """Re-detect landmarks on each obscured face (dlib via ``landmarks.FaceLandmarker``) and
    compare the 7 utility points with the original's: mean / median error in px over the faces
    where a face was found, and how many were not found (``failed``; never silently dropped)."""
    if landmarker is None:
        from .landmarks import FaceLandmarker

        landmarker = FaceLandmarker()
    errs, failed = [], 0
    for img, p7 in zip(obscured, points7):
        faces = landmarker.detect(np.ascontiguousarray(img))
        if not faces:
            failed += 1
            continue
        # the detection closest to the original's points (a crop holds one face)
        cands = [reduce_68_to_7(f.landmarks68) for f in faces]
        e = [float(np.linalg.norm(c - p7, axis=1).mean()) for c in cands]
        errs.append(min(e))
    errs = np.array(errs)
    return {"landmark_err": float(errs.mean()) if len(errs) else float("nan"),
            "landmark_err_median": float(np.median(errs)) if len(errs) else float("nan"),
            "landmark_failed": int(failed), "landmark_n": int(len(points7))}


# ---------------------------------------------------------------------------- models for smoke
def smoke_upgan(out_dir, cfg: EvalConfig, device="cpu", seed: int = 0) -> Callable:
    """A tiny UP-GAN (``TrainConfig.for_preset("smoke")``, ``cfg.upgan_epochs`` epochs) trained on
    its own SynthFaces set, for the smoke table only: returns a ``utility -> faces`` callable."""
    from .synthfaces import make_synthfaces
    from .train import TrainConfig, load_generator, train

    tcfg = replace(TrainConfig.for_preset("smoke"), epochs=cfg.upgan_epochs, seed=seed)
    run_dir = Path(out_dir) / "smoke_upgan_run"
    if run_dir.exists():  # our own throw-away smoke run from an earlier call: start afresh
        import shutil

        shutil.rmtree(run_dir)
    train(tcfg, make_synthfaces(cfg.synth_identities, cfg.synth_photos, seed=seed + 303), run_dir, progress=False)
    return module_generator(load_generator(run_dir, map_location=device), device)


def train_ksame_net_for_eval(utk_train: FaceSet, cfg: EvalConfig, device="cpu", out_dir=None) -> Callable:
    """k-same-net (``KSameNetConfig.for_preset(cfg.ksame_net_preset)``, k = ``cfg.ksame_k``) trained
    on the UTKFace training part (people disjoint from the identity photos); saved to
    ``out_dir/ksame_net.safetensors`` when `out_dir` is given."""
    from .ksame_net import KSameNetConfig, save_ksame_net, train_ksame_net

    over = {"k": cfg.ksame_k, "seed": cfg.seed}
    if cfg.ksame_net_epochs:
        over["epochs"] = cfg.ksame_net_epochs
    kcfg = KSameNetConfig.for_preset(cfg.ksame_net_preset, **over)
    model, history = train_ksame_net(utk_train, kcfg, device, progress=False)
    if out_dir is not None:
        save_ksame_net(model, Path(out_dir) / "ksame_net.safetensors", history)
    return module_generator(model, device)


def load_upgan(run_dir, device="cpu") -> Callable:
    """``utility -> faces`` from a training run folder (``train.load_generator``); clear errors."""
    p = Path(run_dir)
    if not p.exists():
        raise EvaluationError(f"--run {p}: no such folder or file; pass the folder of `upgan train --out DIR`")
    if p.is_dir() and not any(p.rglob("*.safetensors")):
        raise EvaluationError(f"--run {p}: the folder holds no checkpoint (*.safetensors); train first with "
                              f"`upgan train --out {p}` or pass the right folder")
    from .checkpoint import CheckpointError
    from .train import load_generator

    try:
        return module_generator(load_generator(p, map_location=device), device)
    except CheckpointError as e:
        raise EvaluationError(f"--run {p}: {e}") from e


# ---------------------------------------------------------------------------- the evaluation
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
    from .attackers import DlibAttacker, DlibDescriptor, VGGAttacker
    from .attributes import (AttributeConfig, evaluate_attributes, fill_attributes, save_attribute_estimator,
                             train_attribute_estimator)
    from .fid import InceptionFeatures, real_floor
    from .identity_net import IdentifierConfig

    cfg = cfg or EvalConfig()
    device = torch.device(device)
    check_inputs(identities, utk)
    info: dict = {"config": asdict(cfg), "skipped": {}, "timings": {}}

    # splits
    tr, te = split_photos_by_identity(identities.identity, cfg.test_fraction, seed=cfg.seed)
    utk_train, utk_ref, utk_util = split_utk(utk, cfg)
    n_people = len(np.unique(identities.identity))
    info["sizes"] = {"identities": n_people, "train_photos": len(tr), "test_photos": len(te),
                     "utk_attribute_train": len(utk_train), "utk_fid_reference": len(utk_ref),
                     "utk_utility": len(utk_util), "chance": 1.0 / n_people}
    log(f"identity set: {n_people} people, {len(tr)} training / {len(te)} held-out photos (chance {1 / n_people:.3f}); "
        f"UTKFace: {len(utk_train)} estimator training, {len(utk_ref)} FID reference, {len(utk_util)} utility faces")

    # attribute estimator
    t = time.perf_counter()
    if estimator is None:
        acfg = attribute_cfg or AttributeConfig.for_preset("smoke" if cfg.attribute_epochs else "full")
        if cfg.attribute_epochs:
            acfg = replace(acfg, epochs=cfg.attribute_epochs)
        estimator = train_attribute_estimator(utk_train, acfg, device, progress=progress)
        info["attribute_estimator"] = f"trained here on {len(utk_train)} UTKFace faces"
        if out_dir is not None:
            save_attribute_estimator(estimator, Path(out_dir) / "attribute_estimator.safetensors",
                                     metrics=evaluate_attributes(estimator, utk_util))
    else:
        info["attribute_estimator"] = "given"
    estimator = estimator.to(device).eval()
    acc = evaluate_attributes(estimator, utk_util)
    info["attribute_estimator_accuracy"] = acc
    log(f"attribute estimator on {len(utk_util)} held-out real faces: age MAE {acc['age_mae']:.1f} y, "
        f"gender {acc['gender_acc']:.3f}, race {acc['race_acc']:.3f}")
    info["timings"]["attributes"] = time.perf_counter() - t
    filled = fill_attributes(identities, cfg.attribute_source, model=estimator)
    info["identity_attributes"] = filled.meta["attributes"]
    train, test = filled.subset(tr), filled.subset(te)

    # attackers, threat model I
    t = time.perf_counter()
    attackers: dict[str, Callable] = {}
    icfg = identifier_cfg or IdentifierConfig.for_preset("smoke" if cfg.identifier_epochs else "full")
    if cfg.identifier_epochs:
        icfg = replace(icfg, epochs=cfg.identifier_epochs)
    if cfg.identifier_input:
        icfg = replace(icfg, input_size=cfg.identifier_input)
    if "vgg" in cfg.attackers:
        attackers["vgg"] = lambda: VGGAttacker(icfg, device, progress=progress)
    descriptor = None
    if "dlib" in cfg.attackers:
        descriptor = DlibDescriptor(cfg.dlib_shape_from)
        attackers["dlib"] = lambda: DlibAttacker(descriptor)
    fitted = {name: make().fit(train) for name, make in attackers.items()}
    info["timings"]["attackers_tm1_fit"] = time.perf_counter() - t

    # FID references and floor
    t = time.perf_counter()
    feats = fid_features or InceptionFeatures(device, cfg.fid_batch_size)
    n_fid = len(test) if cfg.fid_images is None else min(cfg.fid_images, len(test))
    fid_idx = np.sort(np.random.default_rng(cfg.seed).permutation(len(test))[:n_fid])
    ref_feats = feats(np.asarray(utk_ref.faces))
    clear_feats = feats(np.asarray(test.faces)[fid_idx])
    n_fid_utk = min(n_fid, len(utk_util))
    utk_clear_feats = feats(np.asarray(utk_util.faces)[:n_fid_utk])
    floor = real_floor(ref_feats, min(n_fid, len(ref_feats) // 2), seed=cfg.seed)
    info["fid"] = {"n_obscured": n_fid, "n_real_reference": len(ref_feats), "floor_real_vs_real": floor,
                   "n_utk_obscured": n_fid_utk,
                   "protocols": {"realism": "obscured identity test photos vs held-out real UTKFace faces",
                                 "paired": "obscured identity test photos vs the same photos clear",
                                 "in_distribution": "obscured held-out UTKFace faces vs other held-out real UTKFace "
                                                    "faces (reproduces the paper's ordering with blur read as sigma)"}}
    log(f"FID on {n_fid} obscured test photos; realism reference {len(ref_feats)} real UTKFace faces; "
        f"real-vs-real floor at n={floor['n']}: FID {floor['fid']:.1f}, KID {floor['kid']:.4f}")
    info["timings"]["fid_reference"] = time.perf_counter() - t

    if cfg.landmark_error and landmarker is None:
        try:
            from .landmarks import FaceLandmarker

            landmarker = FaceLandmarker()
        except ImportError as e:  # pragma: no cover - landmarks.py is part of the course
            info["skipped"]["landmark_error"] = f"landmarks.py unavailable: {e}"
    return EvalContext(cfg, device, train, test, utk_train, utk_ref, utk_util, estimator, attackers, fitted, feats,
                       fid_idx, ref_feats, clear_feats, utk_clear_feats, landmarker, info, log, descriptor)


def obscure(ctx: EvalContext, method: Method, data: FaceSet) -> np.ndarray:
    """`method` applied to `data`; with ``region="face"`` only inside the face mask."""
    out = method(data)
    if ctx.cfg.region == "face":
        out = composite(out, np.asarray(data.faces), np.asarray(data.masks))
    return out


def evaluate_method(ctx: EvalContext, method: Method, n_examples: int = 6) -> tuple[dict, np.ndarray]:
    """One row of Table 1: (row dict, the first `n_examples` obscured test photos)."""
    from .attackers import threat_model_ii
    from .attributes import evaluate_attributes
    from .fid import fid_from_features, kid

    cfg = ctx.cfg
    t = time.perf_counter()
    row: dict = {"method": method.name, "label": method.label}
    clear = method.name == "none"
    ob_test = obscure(ctx, method, ctx.test)
    ob_train = np.asarray(ctx.train.faces) if clear else obscure(ctx, method, ctx.train)
    timing = {"obscure": time.perf_counter() - t}
    # privacy
    t1 = time.perf_counter()
    for name, make in ctx.attackers.items():
        row[f"tm1_{name}"] = ctx.fitted[name].accuracy(ob_test, ctx.test.identity)
        # clear + clear = clear: for the "none" row threat model II is threat model I
        row[f"tm2_{name}"] = row[f"tm1_{name}"] if clear else threat_model_ii(make, ctx.train, ob_train, ctx.test, ob_test)
    timing["privacy"] = time.perf_counter() - t1
    # realism / fidelity
    t1 = time.perf_counter()
    f = ctx.clear_feats if clear else ctx.features(ob_test[ctx.fid_idx])
    row["fid_realism"] = fid_from_features(f, ctx.ref_feats)
    row["kid_realism"] = kid(f, ctx.ref_feats, subset_size=cfg.kid_subset, seed=cfg.seed)[0]
    row["fid_paired"] = fid_from_features(f, ctx.clear_feats)
    row["kid_paired"] = kid(f, ctx.clear_feats, subset_size=cfg.kid_subset, seed=cfg.seed)[0]
    timing["fid"] = time.perf_counter() - t1
    # utility
    t1 = time.perf_counter()
    ob_util = obscure(ctx, method, ctx.utk_util)
    fu = ctx.utk_clear_feats if clear else ctx.features(ob_util[:len(ctx.utk_clear_feats)])
    row["fid_utk"] = fid_from_features(fu, ctx.ref_feats)
    row["kid_utk"] = kid(fu, ctx.ref_feats, subset_size=cfg.kid_subset, seed=cfg.seed)[0]
    sc = evaluate_attributes(ctx.estimator, ctx.utk_util, faces=ob_util)
    row.update(age_mae=sc["age_mae"], gender_acc=sc["gender_acc"], race_acc=sc["race_acc"])
    if cfg.landmark_error and ctx.landmarker is not None:
        row.update(landmark_errors(ob_util, ctx.utk_util.points7(), ctx.landmarker))
    timing["utility"] = time.perf_counter() - t1
    row["seconds"] = time.perf_counter() - t
    ctx.info["timings"][method.name] = {k: round(v, 2) for k, v in timing.items()}
    ctx.log(summary_line(row))
    return row, ob_test[:n_examples]


def table_methods(ctx: EvalContext, upgan: Callable | None = None, ksame_net: Callable | str | None = None,
                  out_dir=None) -> list[Method]:
    """Table 1's methods; ``ksame_net="train"`` trains a k-same-net on the UTKFace training part.
    Rows whose generator is missing are left out and the reason recorded in ``ctx.info``."""
    if isinstance(ksame_net, str):
        if ksame_net != "train":
            raise EvaluationError(f"ksame_net must be a callable, 'train' or None, got {ksame_net!r}")
        t = time.perf_counter()
        ksame_net = train_ksame_net_for_eval(ctx.utk_train, ctx.cfg, ctx.device, out_dir)
        ctx.info["ksame_net"] = (f"trained here on {len(ctx.utk_train)} UTKFace faces "
                                 f"({ctx.cfg.ksame_net_preset} preset, k={ctx.cfg.ksame_k})")
        ctx.info["timings"]["ksame_net"] = time.perf_counter() - t
    if ksame_net is None:
        ctx.info["skipped"]["k-same-net"] = "no k-same-net generator given"
    if upgan is None:
        ctx.info["skipped"]["up-gan"] = "no UP-GAN generator given"
    return standard_methods(ctx.cfg.ksame_k, ctx.cfg.ksame_variant, ksame_net=ksame_net, upgan=upgan,
                            device=ctx.device, blur_by=ctx.cfg.blur_by)


def evaluate(identities: FaceSet, utk: FaceSet, cfg: EvalConfig | None = None, device="cpu",
             upgan: Callable | None = None, ksame_net: Callable | str | None = None, estimator=None,
             identifier_cfg=None, attribute_cfg=None, fid_features: Callable | None = None,
             landmarker=None, out_dir=None, progress: bool = False, log: Callable = print,
             n_examples: int = 6) -> EvalResult:
    """Build Table 1: :func:`setup_evaluation`, :func:`table_methods`, then :func:`evaluate_method`
    for every row. `upgan` / `ksame_net`: ``utility (N,17) -> faces`` callables (rows left out when
    None, the reason recorded; ``ksame_net="train"`` trains one). `estimator`: a trained attribute
    estimator (trained here when None); `fid_features`: images -> (N, D) features (default: the
    standard Inception network); `landmarker`: object with ``detect(rgb)`` (default dlib's).
    Nothing is written unless `out_dir` is given."""
    t0 = time.perf_counter()
    ctx = setup_evaluation(identities, utk, cfg, device, estimator, identifier_cfg, attribute_cfg, fid_features,
                           landmarker, out_dir, progress, log)
    methods = table_methods(ctx, upgan, ksame_net, out_dir)
    rows, examples = [], {}
    for m in methods:
        row, ex = evaluate_method(ctx, m, n_examples)
        rows.append(row)
        examples[m.name] = ex
    ctx.info["timings"]["total"] = time.perf_counter() - t0
    if ctx.descriptor is not None:
        ctx.info["dlib_descriptor_stats"] = dict(ctx.descriptor.stats)
    return EvalResult(rows=rows, info=ctx.info, examples=examples)


# ---------------------------------------------------------------------------- output
COLUMNS = [  # key, header, format
    ("label", "Method", "{}"),
    ("tm1_vgg", "TM-I VGG-19", "{:.3f}"),
    ("tm2_vgg", "TM-II VGG-19", "{:.3f}"),
    ("tm1_dlib", "TM-I dlib", "{:.3f}"),
    ("tm2_dlib", "TM-II dlib", "{:.3f}"),
    ("fid_realism", "FID realism", "{:.1f}"),
    ("kid_realism", "KID realism", "{:.4f}"),
    ("fid_paired", "FID paired", "{:.1f}"),
    ("kid_paired", "KID paired", "{:.4f}"),
    ("fid_utk", "FID in-dist", "{:.1f}"),
    ("kid_utk", "KID in-dist", "{:.4f}"),
    ("age_mae", "Age MAE (y)", "{:.1f}"),
    ("gender_acc", "Gender acc", "{:.3f}"),
    ("race_acc", "Race acc", "{:.3f}"),
    ("landmark_err", "Landmark err (px)", "{:.2f}"),
    ("landmark_failed", "Re-detect fails", "{}"),
]


def _fmt(v, f: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f.format(v)


def summary_line(row: dict) -> str:
    """One short progress line per evaluated method (the whole row goes into Table 1)."""
    keys = [k for k in ("tm2_vgg", "tm2_dlib", "fid_realism", "gender_acc") if k in row]
    cols = {k: (h, f) for k, h, f in COLUMNS}
    parts = ", ".join(f"{cols[k][0]} {_fmt(row[k], cols[k][1])}" for k in keys)
    return f"{row['label']:<18} {parts} ({row['seconds']:.0f} s)"


def format_row(row: dict) -> str:
    return "  ".join(f"{h}={_fmt(row[k], f)}" for k, h, f in COLUMNS if k in row)


def table_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [c for c in COLUMNS if any(c[0] in r for r in rows)]


def to_markdown(result: EvalResult) -> str:
    cols = table_columns(result.rows)
    info = result.info
    s = info["sizes"]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in result.rows:
        lines.append("| " + " | ".join(_fmt(r.get(k), f) for k, _, f in cols) + " |")
    fid = info["fid"]
    fl = fid["floor_real_vs_real"]
    notes = [
        "",
        f"Identification: top-1 accuracy on {s['test_photos']} held-out photos of {s['identities']} people "
        f"(trained on {s['train_photos']}); chance {s['chance']:.3f}. TM-I: identifier trained on clear photos; "
        "TM-II: on clear + obscured photos.",
        f"FID/KID: standard Inception-v3 pool features; {fid['n_obscured']} obscured test photos per method. "
        f"Realism: against {fid['n_real_reference']} held-out real UTKFace faces; paired: against the same photos "
        f"clear; in-dist: {fid['n_utk_obscured']} obscured held-out UTKFace faces against the same real UTKFace "
        f"reference (the protocol that reproduces the paper's ordering when its 'Gaussian 5' is read as sigma = 5 px). "
        f"Real-vs-real floor at n={fl['n']}: FID {fl['fid']:.1f}, KID {fl['kid']:.4f}.",
        f"Utility: attribute estimator on {s['utk_utility']} held-out UTKFace faces, obscured, against their labels "
        f"(clear: age MAE {info['attribute_estimator_accuracy']['age_mae']:.1f} y, gender "
        f"{info['attribute_estimator_accuracy']['gender_acc']:.3f}, race {info['attribute_estimator_accuracy']['race_acc']:.3f}); "
        "landmark error: 7 utility points re-detected by dlib on the obscured face vs the original's, px at 128, "
        "over the faces re-detected (fails counted).",
        f"Identity photos' attributes: {info['identity_attributes']}.",
    ]
    for k, why in info.get("skipped", {}).items():
        notes.append(f"Not measured: {k} ({why}).")
    return "\n".join(lines + notes) + "\n"


def write_outputs(result: EvalResult, out_dir) -> dict[str, Path]:
    """table1.md, table1.csv, results.json and privacy_utility.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "table1.md", "csv": out / "table1.csv", "json": out / "results.json",
             "png": out / "privacy_utility.png"}
    paths["md"].write_text(to_markdown(result))
    keys = ["method"] + [k for k, _, _ in table_columns(result.rows)]
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in result.rows:
            w.writerow({k: r.get(k) for k in keys})
    paths["json"].write_text(json.dumps({"rows": result.rows, "info": result.info}, indent=1, default=str))
    fig = plot_privacy_utility(result)
    fig.savefig(paths["png"], dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _annotate_spread(ax, labels, xs, ys) -> None:
    """Label each point; labels of points that (nearly) coincide are stacked, not printed over each
    other. Points with a missing value (NaN: nothing measured) are not drawn, so not labelled."""
    pts = [(lab, x, y) for lab, x, y in zip(labels, xs, ys) if np.isfinite(x) and np.isfinite(y)]
    if not pts:
        return
    x0, x1 = min(p[1] for p in pts), max(p[1] for p in pts)
    y0, y1 = min(p[2] for p in pts), max(p[2] for p in pts)

    def cell(v, lo, hi):  # 1/25 of the range
        return round((v - lo) / ((hi - lo) or 1.0) * 25)

    seen: dict[tuple[int, int], int] = {}
    for label, x, y in pts:
        key = (cell(x, x0, x1), cell(y, y0, y1))
        k = seen.get(key, 0)
        seen[key] = k + 1
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 3 - 9 * k), textcoords="offset points")


def plot_privacy_utility(result: EvalResult):
    """Identification accuracy under threat model II (x; left is more private) against utility
    (y): gender accuracy (left panel) and landmark error (right panel), one point per method."""
    import matplotlib.pyplot as plt  # the caller's backend: inline in a notebook, a file writer elsewhere

    rows = result.rows
    attackers = [a for a in ("dlib", "vgg") if f"tm2_{a}" in rows[0]]
    panels = [("gender_acc", "gender accuracy on obscured faces (higher = more utility)")]
    if "landmark_err" in rows[0]:
        panels.append(("landmark_err", "landmark error, px (lower = more utility)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    markers = {"dlib": "o", "vgg": "s"}
    for ax, (key, ylabel) in zip(axes[0], panels):
        for a in attackers:
            xs = [r[f"tm2_{a}"] for r in rows]
            ys = [r[key] for r in rows]
            ax.scatter(xs, ys, marker=markers[a], label=f"{a} (TM-II)", alpha=0.8)
            if a == attackers[0]:
                _annotate_spread(ax, [r["method"] for r in rows], xs, ys)
        ax.axvline(result.info["sizes"]["chance"], color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel("identification accuracy, threat model II (lower = more private)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle("Privacy versus utility", fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="UP-GAN training run folder (or generator/checkpoint file)")
    p.add_argument("--identities", default=None, help="prepared identity set (`upgan prepare identities --out DIR`)")
    p.add_argument("--utkface", default=None, help="prepared UTKFace set (`upgan prepare utkface --out DIR`)")
    p.add_argument("--out", required=True, help="folder for table1.md, table1.csv, privacy_utility.png, results.json")
    p.add_argument("--preset", default="auto", choices=["auto", "smoke", "full"],
                   help="smoke: SynthFaces and tiny models when no data are given (CPU, about a minute)")
    p.add_argument("--ksame-net", default=None, help="k-same-net checkpoint (ksame_net.save_ksame_net); trained on the UTKFace training part when absent")
    p.add_argument("--attributes", default=None, help="attribute estimator checkpoint; trained on UTKFace when absent")
    p.add_argument("--attribute-source", default=None, choices=["fixed", "estimator"],
                   help="how identity photos get age/gender/race (default from the preset: estimator)")
    p.add_argument("--attackers", nargs="+", default=None, choices=["vgg", "dlib"])
    p.add_argument("--fid-images", type=int, default=None, help="obscured test photos per method for FID/KID")
    p.add_argument("--region", default=None, choices=["crop", "face"])
    p.add_argument("--blur-by", default=None, choices=["ksize", "sigma"],
                   help="read blur 5/15/25 as kernel sizes (default) or as sigmas in px")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from .checkpoint import CheckpointError
    from .config import resolve_device, resolve_preset, seed_everything

    preset = resolve_preset(args.preset)
    cfg = EvalConfig.for_preset(preset)
    over = {k: v for k, v in {"attribute_source": args.attribute_source, "region": args.region,
                              "attackers": tuple(args.attackers) if args.attackers else None,
                              "fid_images": args.fid_images, "blur_by": args.blur_by}.items() if v is not None}
    cfg = replace(cfg, seed=args.seed, **over)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    out = Path(args.out)
    try:
        if args.identities is None and args.utkface is None:
            if preset != "smoke":
                raise EvaluationError("--identities and --utkface are required with the full preset "
                                      "(use --preset smoke for the SynthFaces table)")
            identities, utk = smoke_data(cfg, args.seed)
        elif args.identities is None or args.utkface is None:
            raise EvaluationError("pass both --identities and --utkface (or neither, with --preset smoke)")
        else:
            identities, utk = load_set(args.identities, "identities"), load_set(args.utkface, "utkface")
        check_inputs(identities, utk)
        if args.run:
            upgan = load_upgan(args.run, device)
        elif preset == "smoke":
            upgan = smoke_upgan(out, cfg, device, args.seed)
        else:
            raise EvaluationError("--run RUN_DIR is required with the full preset (the trained UP-GAN)")
        estimator = None
        if args.attributes:
            from .attributes import load_attribute_estimator

            try:
                estimator = load_attribute_estimator(args.attributes, map_location=device)
            except CheckpointError as e:
                raise EvaluationError(f"--attributes: {e}") from e
        ksame_net = ksame_net_from_checkpoint(args.ksame_net, device) if args.ksame_net else "train"
        result = evaluate(identities, utk, cfg, device, upgan=upgan, ksame_net=ksame_net, estimator=estimator,
                          out_dir=out)
    except (EvaluationError, FileNotFoundError) as e:
        print(f"upgan evaluate: {e}")
        return 2
    paths = write_outputs(result, out)
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def ksame_net_from_checkpoint(path, device="cpu") -> Callable:
    """``utility -> faces`` from a k-same-net checkpoint (``ksame_net.save_ksame_net``)."""
    from .checkpoint import CheckpointError
    from .ksame_net import load_ksame_net

    try:
        return module_generator(load_ksame_net(path, map_location=device), device)
    except CheckpointError as e:
        raise EvaluationError(f"--ksame-net: {e}") from e
