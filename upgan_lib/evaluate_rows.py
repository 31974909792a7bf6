"""Table 1's rows: the methods and the generators they need, one row measured, the whole table.

:func:`table_methods` (the rows, k-same-net trained when asked), :func:`evaluate_method` (one
row: privacy, realism / fidelity, utility), :func:`evaluate` (setup, then every row); the
generators a row needs (:func:`load_upgan`, :func:`ksame_net_from_checkpoint`, the smoke
table's tiny UP-GAN and k-same-net); :func:`landmark_errors`, the landmark utility column.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from .attackers import threat_model_ii
from .attributes import evaluate_attributes
from .baselines import Method, composite, module_generator, standard_methods
from .checkpoint import CheckpointError
from .evaluate_report import summary_line
from .evaluate_setup import EvalConfig, EvalContext, EvalResult, EvaluationError, setup_evaluation
from .faceset import FaceSet
from .fid import fid_from_features, kid
from .ksame_net import KSameNetConfig, load_ksame_net, save_ksame_net, train_ksame_net
from .landmarks import FaceLandmarker
from .run_folder import load_generator
from .synthfaces import make_synthfaces
from .train import train as train_upgan
from .train_config import TrainConfig
from .utility import reduce_68_to_7


# ---------------------------------------------------------------------------- utility measures
def landmark_errors(obscured: np.ndarray, points7: np.ndarray, landmarker=None) -> dict:
    """Re-detect landmarks on each obscured face (dlib via ``landmarks.FaceLandmarker``) and
    compare the 7 utility points with the original's: mean / median error in px over the faces
    where a face was found, and how many were not found (``failed``; never silently dropped)."""
    if landmarker is None:
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


# ---------------------------------------------------------------------------- the generators the rows need
def smoke_upgan(out_dir, cfg: EvalConfig, device="cpu", seed: int = 0) -> Callable:
    """A tiny UP-GAN (``TrainConfig.for_preset("smoke")``, ``cfg.upgan_epochs`` epochs) trained on
    its own SynthFaces set, for the smoke table only: returns a ``utility -> faces`` callable."""
    tcfg = replace(TrainConfig.for_preset("smoke"), epochs=cfg.upgan_epochs, seed=seed)
    run_dir = Path(out_dir) / "smoke_upgan_run"
    if run_dir.exists():  # our own throw-away smoke run from an earlier call: start afresh
        shutil.rmtree(run_dir)
    train_upgan(tcfg, make_synthfaces(cfg.synth_identities, cfg.synth_photos, seed=seed + 303), run_dir,
                progress=False)
    return module_generator(load_generator(run_dir, map_location=device), device)


def train_ksame_net_for_eval(utk_train: FaceSet, cfg: EvalConfig, device="cpu", out_dir=None) -> Callable:
    """k-same-net (``KSameNetConfig.for_preset(cfg.ksame_net_preset)``, k = ``cfg.ksame_k``) trained
    on the UTKFace training part (people disjoint from the identity photos); saved to
    ``out_dir/ksame_net.safetensors`` when `out_dir` is given."""
    over = {"k": cfg.ksame_k, "seed": cfg.seed}
    if cfg.ksame_net_epochs:
        over["epochs"] = cfg.ksame_net_epochs
    kcfg = KSameNetConfig.for_preset(cfg.ksame_net_preset, **over)
    model, history = train_ksame_net(utk_train, kcfg, device, progress=False)
    if out_dir is not None:
        save_ksame_net(model, Path(out_dir) / "ksame_net.safetensors", history)
    return module_generator(model, device)


def load_upgan(run_dir, device="cpu") -> Callable:
    """``utility -> faces`` from a training run folder (``run_folder.load_generator``); clear errors."""
    p = Path(run_dir)
    if not p.exists():
        raise EvaluationError(f"--run {p}: no such folder or file; pass the folder of `upgan train --out DIR`")
    if p.is_dir() and not any(p.rglob("*.safetensors")):
        raise EvaluationError(f"--run {p}: the folder holds no checkpoint (*.safetensors); train first with "
                              f"`upgan train --out {p}` or pass the right folder")
    try:
        return module_generator(load_generator(p, map_location=device), device)
    except CheckpointError as e:
        raise EvaluationError(f"--run {p}: {e}") from e


def ksame_net_from_checkpoint(path, device="cpu") -> Callable:
    """``utility -> faces`` from a k-same-net checkpoint (``ksame_net.save_ksame_net``)."""
    try:
        return module_generator(load_ksame_net(path, map_location=device), device)
    except CheckpointError as e:
        raise EvaluationError(f"--ksame-net: {e}") from e


# ---------------------------------------------------------------------------- the table
def obscure(ctx: EvalContext, method: Method, data: FaceSet) -> np.ndarray:
    """`method` applied to `data`; with ``region="face"`` only inside the face mask."""
    out = method(data)
    if ctx.cfg.region == "face":
        out = composite(out, np.asarray(data.faces), np.asarray(data.masks))
    return out


def evaluate_method(ctx: EvalContext, method: Method, n_examples: int = 6) -> tuple[dict, np.ndarray]:
    """One row of Table 1: (row dict, the first `n_examples` obscured test photos)."""
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
    wanted = _rows_asked(ctx)
    ksame_net = ksame_net if "k-same-net" in wanted else None  # not asked for: not trained
    upgan = upgan if "up-gan" in wanted else None
    if isinstance(ksame_net, str):
        if ksame_net != "train":
            raise EvaluationError(f"ksame_net must be a callable, 'train' or None, got {ksame_net!r}")
        t = time.perf_counter()
        ksame_net = train_ksame_net_for_eval(ctx.utk_train, ctx.cfg, ctx.device, out_dir)
        ctx.info["ksame_net"] = (f"trained here on {len(ctx.utk_train)} UTKFace faces "
                                 f"({ctx.cfg.ksame_net_preset} preset, k={ctx.cfg.ksame_k})")
        ctx.info["timings"]["ksame_net"] = time.perf_counter() - t
    if ksame_net is None and "k-same-net" in wanted:
        ctx.info["skipped"]["k-same-net"] = "no k-same-net generator given"
    if upgan is None and "up-gan" in wanted:
        ctx.info["skipped"]["up-gan"] = "no UP-GAN generator given"
    methods = standard_methods(ctx.cfg.ksame_k, ctx.cfg.ksame_variant, ksame_net=ksame_net, upgan=upgan,
                               device=ctx.device, blur_by=ctx.cfg.blur_by)
    return [m for m in methods if m.name in wanted]


def _rows_asked(ctx: EvalContext) -> tuple:
    """The row names ``ctx.cfg.rows`` asks for (all when empty), checked against Table 1's;
    recorded in ``ctx.info`` when not all."""
    every = tuple(m.name for m in standard_methods(ctx.cfg.ksame_k, ctx.cfg.ksame_variant,
                                                   blur_by=ctx.cfg.blur_by)) + ("k-same-net", "up-gan")
    unknown = sorted(set(ctx.cfg.rows) - set(every))
    if unknown:
        raise EvaluationError(f"unknown rows {unknown}: use any of {', '.join(every)}")
    if ctx.cfg.rows:
        ctx.info["rows_asked"] = list(ctx.cfg.rows)
    return ctx.cfg.rows or every


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
