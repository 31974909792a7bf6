"""Attribute estimator: age, gender and race from an aligned face.

A small CNN trained on UTKFace's labels (age in years, gender 0 male / 1 female, race 0-4, see
:mod:`upgan_lib.utility`). It serves three purposes:

* **labels for identity photos**, which have none: UP-GAN's utility vector needs age, gender
  and race; :func:`fill_attributes` takes them from the estimator or sets fixed values (the
  paper sets fixed values for its identity set; ours are :data:`FIXED_ATTRIBUTES`);
* **utility** in Table 1: how well age, gender and race can still be read from an obscured face
  (age MAE in years, gender and race accuracy against the original labels);
* the obscuring tool (``upgan obscure``) uses it to build a photo's utility vector.

Network: the face is downsampled to ``input_size`` (64 by default), then four blocks of
(3x3 conv, BatchNorm, ReLU) x2 + 2x2 max-pool with ``width * (1, 2, 4, 8)`` channels, global
average pooling, dropout and three heads: age (1 number, years / 100, smooth-L1 loss), gender
(2 logits, cross-entropy) and race (5 logits, cross-entropy). A label of -1 is unknown and
excluded from its head's loss. Training uses horizontal flips.

Chance levels for reading its numbers: gender 50 %, race about 42 % on UTKFace (always
"White"), age MAE about 15 years for always predicting the mean age.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import cache_dir
from .faceset import FaceSet, NotAPreparedSet
from .images import to_tensor
from .utility import AGE_SCALE, N_RACES

#: attributes given to faces without labels when ``fill_attributes(mode="fixed")``
FIXED_ATTRIBUTES = {"age": 30, "gender": 0, "race": 0}
KIND = "attribute-estimator"


@dataclass
class AttributeConfig:
    width: int = 32
    input_size: int = 64
    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.3
    age_weight: float = 1.0
    seed: int = 0

    @classmethod
    def for_preset(cls, name: str) -> "AttributeConfig":
        if name == "smoke":
            return cls(width=8, input_size=32, epochs=3, batch_size=32)
        if name == "full":
            return cls()
        raise ValueError(f"unknown preset {name!r}: use 'smoke' or 'full'")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class AttributeEstimator(nn.Module):
    """forward(x (N,3,S,S) in [-1,1]) -> dict(age (N,) years/100, gender (N,2) logits, race (N,5) logits)."""

    def __init__(self, cfg: AttributeConfig | None = None):
        super().__init__()
        self.cfg = cfg or AttributeConfig()
        w = self.cfg.width
        self.features = nn.Sequential(_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w))
        self.drop = nn.Dropout(self.cfg.dropout)
        self.age = nn.Linear(8 * w, 1)
        self.gender = nn.Linear(8 * w, 2)
        self.race = nn.Linear(8 * w, N_RACES)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] != self.cfg.input_size:
            x = F.interpolate(x, size=(self.cfg.input_size, self.cfg.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        h = self.features(x).mean(dim=(2, 3))
        h = self.drop(h)
        return {"age": self.age(h).squeeze(1), "gender": self.gender(h), "race": self.race(h)}


def _faces_tensor(faces, device) -> torch.Tensor:
    if isinstance(faces, torch.Tensor):
        return faces.to(device).float()
    f = np.asarray(faces)
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"faces must be uint8 (N,S,S,3) or a float (N,3,S,S) tensor in [-1,1], got {f.dtype} {f.shape}")
    return to_tensor(f, device)


def _loss(out: dict, age: torch.Tensor, gender: torch.Tensor, race: torch.Tensor, age_weight: float) -> torch.Tensor:
    total = out["age"].sum() * 0.0
    m = age >= 0
    if m.any():
        total = total + age_weight * F.smooth_l1_loss(out["age"][m], age[m].float() / AGE_SCALE, beta=0.1)
    m = gender >= 0
    if m.any():
        total = total + F.cross_entropy(out["gender"][m], gender[m].long())
    m = race >= 0
    if m.any():
        total = total + F.cross_entropy(out["race"][m], race[m].long())
    return total


def train_attribute_estimator(data: FaceSet, cfg: AttributeConfig | None = None, device="cpu",
                              val: FaceSet | None = None, progress: bool = False) -> AttributeEstimator:
    """Train on `data` (faces with age/gender/race labels; -1 = unknown, ignored).

    Returns the model in eval mode; ``model.history`` holds per-epoch training loss and, with
    `val`, :func:`evaluate_attributes` on it after each epoch.
    """
    from tqdm.auto import tqdm

    cfg = cfg or AttributeConfig()
    device = torch.device(device)
    labelled = (data.age >= 0) | (data.gender >= 0) | (data.race >= 0)
    if labelled.sum() < 2:
        raise ValueError(f"the attribute estimator needs labelled faces; only {int(labelled.sum())} of {len(data)} have any label")
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = AttributeEstimator(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(data)
    steps = cfg.epochs * max(1, (n + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    labels = torch.from_numpy(np.stack([data.age, data.gender, data.race], 1).astype(np.int64))
    history: dict[str, list] = {"loss": [], "val": []}
    for epoch in tqdm(range(cfg.epochs), desc="attribute estimator", disable=not progress):
        model.train()
        perm = torch.randperm(n, generator=g).numpy()
        tot, cnt = 0.0, 0
        for i in range(0, n, cfg.batch_size):
            idx = np.sort(perm[i:i + cfg.batch_size])
            if len(idx) < 2:
                continue
            x = _faces_tensor(np.asarray(data.faces[idx]), device)
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip.to(device)] = x[flip.to(device)].flip(-1)
            lab = labels[idx].to(device)
            loss = _loss(model(x), lab[:, 0], lab[:, 1], lab[:, 2], cfg.age_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
        history["loss"].append(tot / max(cnt, 1))
        if val is not None:
            history["val"].append(evaluate_attributes(model, val, device=device))
    model.eval()
    model.history = history
    return model


@torch.no_grad()
def predict_attributes(model: AttributeEstimator, faces, batch_size: int = 256, device=None) -> dict[str, np.ndarray]:
    """Predicted attributes of faces (uint8 (N,S,S,3) or [-1,1] tensor): dict of numpy arrays
    ``age`` (float years), ``gender`` (0/1), ``race`` (0-4), ``gender_prob`` (N,2), ``race_prob`` (N,5)."""
    device = next(model.parameters()).device if device is None else torch.device(device)
    model.eval()
    ages, gp, rp = [], [], []
    for i in range(0, len(faces), batch_size):
        out = model(_faces_tensor(faces[i:i + batch_size], device))
        ages.append(out["age"].float().cpu() * AGE_SCALE)
        gp.append(out["gender"].float().softmax(1).cpu())
        rp.append(out["race"].float().softmax(1).cpu())
    if not ages:
        return {"age": np.zeros(0, np.float32), "gender": np.zeros(0, np.int64), "race": np.zeros(0, np.int64),
                "gender_prob": np.zeros((0, 2), np.float32), "race_prob": np.zeros((0, N_RACES), np.float32)}
    g, r = torch.cat(gp).numpy(), torch.cat(rp).numpy()
    return {"age": torch.cat(ages).numpy(), "gender": g.argmax(1), "race": r.argmax(1), "gender_prob": g, "race_prob": r}


def attribute_scores(pred: dict, age, gender, race) -> dict:
    """Age MAE (years) and gender / race accuracy of predictions against labels (-1 ignored)."""
    age, gender, race = (np.asarray(a) for a in (age, gender, race))
    out = {"n": int(len(age))}
    m = age >= 0
    out["age_mae"] = float(np.abs(pred["age"][m] - age[m]).mean()) if m.any() else float("nan")
    m = gender >= 0
    out["gender_acc"] = float((pred["gender"][m] == gender[m]).mean()) if m.any() else float("nan")
    m = race >= 0
    out["race_acc"] = float((pred["race"][m] == race[m]).mean()) if m.any() else float("nan")
    return out


def evaluate_attributes(model: AttributeEstimator, data: FaceSet, faces=None, device=None) -> dict:
    """:func:`attribute_scores` of the model on `faces` (default ``data.faces``) against `data`'s labels.

    Pass obscured faces as `faces` to measure how much of the attributes an obscuration keeps."""
    faces = data.faces if faces is None else faces
    if len(faces) != len(data):
        raise ValueError(f"{len(faces)} faces for {len(data)} labels")
    return attribute_scores(predict_attributes(model, faces, device=device), data.age, data.gender, data.race)


def fill_attributes(data: FaceSet, mode: str = "fixed", model: AttributeEstimator | None = None,
                    fixed: dict | None = None, overwrite: bool = False) -> FaceSet:
    """A copy of `data` whose unknown (-1) age/gender/race are filled.

    ``mode="fixed"``: the values in `fixed` (default :data:`FIXED_ATTRIBUTES`), as the paper
    does for its identity photos. ``mode="estimator"``: the estimator's predictions on the clear
    faces. ``overwrite=True`` replaces known labels too. ``meta["attributes"]`` records the source.
    """
    out = data.subset(np.arange(len(data)))
    unknown = {k: (getattr(out, k) < 0) | overwrite for k in ("age", "gender", "race")}
    if mode == "fixed":
        vals = {**FIXED_ATTRIBUTES, **(fixed or {})}
        for k, m in unknown.items():
            arr = getattr(out, k).astype(np.int64).copy()
            arr[m] = int(vals[k])
            setattr(out, k, arr)
        out.meta = {**out.meta, "attributes": f"fixed {vals}"}
    elif mode == "estimator":
        if model is None:
            raise ValueError("fill_attributes(mode='estimator') needs a trained AttributeEstimator")
        pred = predict_attributes(model, np.asarray(out.faces))
        for k, m in unknown.items():
            arr = getattr(out, k).astype(np.int64).copy()
            val = np.clip(np.round(pred[k]), 0, 116) if k == "age" else pred[k]
            arr[m] = val[m].astype(np.int64)
            setattr(out, k, arr)
        out.meta = {**out.meta, "attributes": "attribute estimator"}
    else:
        raise ValueError(f"unknown fill mode {mode!r}: use 'fixed' or 'estimator'")
    return out


# ---------------------------------------------------------------------------- save / load
def default_attribute_path(preset: str, cache=None) -> Path:
    """Where chapter 08 saves the attribute estimator of ``preset`` (chapter 09 and ``upgan obscure
    --attributes`` read it): ``<cache>/models/attributes_<preset>.safetensors``."""
    return cache_dir(cache, create=False) / "models" / f"attributes_{preset}.safetensors"


def save_attribute_estimator(model: AttributeEstimator, path, metrics: dict | None = None) -> Path:
    """One safetensors checkpoint (weights + config + optional metrics) via checkpoint.py."""
    return save_checkpoint(path, {"model": model.state_dict()},
                           {"kind": KIND, "config": asdict(model.cfg), "metrics": metrics or {}})


def load_attribute_estimator(path, map_location="cpu") -> AttributeEstimator:
    states, meta = load_checkpoint(path, map_location=map_location)
    if meta.get("kind") != KIND or "model" not in states:
        raise CheckpointError(f"{path}: not an attribute-estimator checkpoint (kind {meta.get('kind')!r}); "
                              "train one with train_attribute_estimator and save_attribute_estimator")
    cfg = replace(AttributeConfig(), **meta["config"])
    model = AttributeEstimator(cfg)
    try:
        model.load_state_dict(states["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the saved configuration ({e})") from e
    model.metrics = meta.get("metrics", {})
    return model.to(map_location).eval()


# ---------------------------------------------------------------------------- CLI
def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="prepared UTKFace set (`upgan prepare utkface`)")
    p.add_argument("--out", required=True, help="checkpoint file to write (.safetensors)")
    p.add_argument("--holdout", type=int, default=2000,
                   help="faces left out (the same seeded draw as `upgan train --holdout`) and scored on (default 2000)")
    p.add_argument("--preset", choices=("smoke", "full"), default="full", help="sizes to start from (default full)")
    p.add_argument("--width", type=int, default=None, help="channels of the first block")
    p.add_argument("--input-size", type=int, default=None, help="side the faces are shrunk to")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    """``upgan attributes``: train the attribute estimator on a prepared set, report held-out scores."""
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        data = FaceSet.load(args.data)
        train_part, held = data.holdout_split(args.holdout) if args.holdout else (data, None)
    except (NotAPreparedSet, ValueError, FileNotFoundError) as e:
        print(f"upgan attributes: error: {e}", file=sys.stderr)
        return 2
    over = {k: v for k, v in (("width", args.width), ("input_size", args.input_size), ("epochs", args.epochs)) if v}
    cfg = replace(AttributeConfig.for_preset(args.preset), **over)
    t = time.perf_counter()
    model = train_attribute_estimator(train_part, cfg, device=args.device, progress=True)
    seconds = time.perf_counter() - t
    metrics = {"train_faces": len(train_part), "seconds": round(seconds, 1), "threads": torch.get_num_threads()}
    if held is not None:
        metrics.update(held_out_faces=len(held), **evaluate_attributes(model, held, device=args.device))
    save_attribute_estimator(model, args.out, metrics)
    print(json.dumps({"config": asdict(cfg), "metrics": metrics}, default=float))
    print(f"attribute estimator: {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    return 0
