"""The UP-GAN trainer behind ``upgan train`` and notebook 07: fast, resumable and watchable.

One step (paper, Section 3): draw a batch of aligned faces, warp faces, masks and landmarks
together (elastic distortion + rotation, ``augment.py``), build the 17-number utility vectors
from the *warped* landmarks, then

1. discriminator: ``discriminator.discriminator_bce(D(x), D(G(u)))`` (fakes detached; real
   faces labelled ``DiscriminatorConfig.real_label``, 0.9 = one-sided label smoothing; real and
   fake go through D as one batch unless D uses batch norm), one Adam step;
2. generator: ``adv + 5 L2 + 1 mask + 1 perceptual`` (``losses.UPGANLoss``; any subset with
   ``losses=("adv", "l2")`` etc. for the paper's Figure 4 ablation), one Adam step.

Speed (the same code on CPU and GPU, only switched on where it helps):

* the whole prepared set is held on the GPU as uint8 when it fits (``data_on_device="auto"``:
  under 30 % of the free memory; UTKFace's 22k faces and masks are 1.4 GB), otherwise in pinned host
  memory; augmentation runs on the device;
* mixed precision: bf16 autocast on GPUs that have it (compute capability >= 8), fp16 with a
  GradScaler on older ones (T4), fp32 on the CPU (``amp="auto"``);
* channels-last tensors (on the CPU too: 2.4x faster for the smoke generator), and on CUDA
  cuDNN autotuning, TF32 matmuls, fused Adam, optional ``torch.compile`` of G, D and the
  perceptual network;
* no host synchronisation inside the loop: losses are summed on the device and read every
  ``log_every`` steps (that is when the progress bar and ``log.csv`` are updated).

Resuming: ``RUN_DIR/checkpoints/last.safetensors`` is rewritten atomically every
``checkpoint_every`` steps and at the end (``checkpoint.save_checkpoint``: temp file, fsync,
rename; never pickle). It holds G, D, both optimisers and GradScalers, every RNG (torch CPU and
CUDA, numpy, python, the augmentation generator, the data-order generator as it was at the start
of the epoch, so the epoch's permutation is redrawn identically), the running loss sums, the
step, and the config. A run killed at any moment loses at most ``checkpoint_every`` steps and
``resume=True`` continues it; on the CPU the result equals an uninterrupted run.

Perceptual network (the loss needs a frozen face identifier, ``identity_net.FaceIdentifier``):

1. ``identifier=PATH`` (``--identifier``), a file from ``identity_net.save_identifier``;
2. else :func:`default_identifier_path` (``<cache>/models/identifier_<preset>.safetensors``),
   where notebook 06 saves the identifier it trains;
3. else, when ``train_identifier`` is on (smoke preset) and the data carry identity labels
   (SynthFaces does), a small identifier is trained on the training faces first (seconds);
4. else a clear error: UTKFace has no identity labels, so the full preset needs (1) or (2).

Whichever is used is copied to ``RUN_DIR/identifier.safetensors`` so a resumed run uses the
very same network.

Files in ``RUN_DIR``: ``config.json``, ``log.csv`` (one row per ``log_every`` steps),
``samples/epoch_NNN.png`` (the same fixed utility vectors every epoch), ``checkpoints/
last.safetensors``, ``generator.safetensors`` (final generator alone, for :func:`load_generator`)
and ``identifier.safetensors`` when the perceptual loss is on.
"""
from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .augment import AugmentConfig, augment
from .checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from .config import cache_dir, resolve_device, resolve_preset, seed_everything
from .discriminator import Discriminator, DiscriminatorConfig, discriminator_bce
from .faceset import FaceSet, NotAPreparedSet
from .generator import Generator, GeneratorConfig
from .losses import DEFAULT_PERCEPTUAL_LAYERS, LOSS_NAMES, LossWeights, PerceptualLoss, UPGANLoss, parse_losses
from .utility import N_ATTRIBUTES, SEVEN_POINT_SOURCES, UTILITY_DIM

CHECKPOINT_FORMAT = "upgan-train/1"
CHECKPOINT_NAME = "checkpoints/last.safetensors"
GENERATOR_NAME = "generator.safetensors"
IDENTIFIER_NAME = "identifier.safetensors"
LOG_NAME = "log.csv"
CONFIG_NAME = "config.json"
#: Columns of ``log.csv``: loss values are means over the steps since the previous row
#: (unweighted parts; ``g_total`` is the weighted sum the generator minimises; 0 = loss disabled).
LOG_COLUMNS = ("step", "epoch", "images", "seconds", "images_per_s", "d_loss", "g_adv", "g_l2", "g_mask",
               "g_perceptual", "g_total")
_ACC = ("d_loss", "g_adv", "g_l2", "g_mask", "g_perceptual", "g_total")
#: The paper's Figure 4 ablation, in order: label -> enabled losses.
ABLATION = {
    "adv + L2": ("adv", "l2"),
    "+ mask": ("adv", "l2", "mask"),
    "+ perceptual": ("adv", "l2", "mask", "perceptual"),
}
#: Settings that may differ when resuming (they do not change what is being trained).
RESUME_FREE = ("epochs", "checkpoint_every", "log_every", "compile", "compile_mode", "data_on_device", "channels_last", "amp",
               "identifier", "train_identifier", "samples")


class TrainError(ValueError):
    """Bad training input (data, run folder, config, identifier); the message says what to do."""


class TrainingOOM(RuntimeError):
    """The device ran out of memory; the message suggests a smaller batch."""


# ============================================================================ config
@dataclass
class TrainConfig:
    """Every knob of a training run; ``for_preset("smoke"|"full")`` gives the two presets.

    ``epochs``/``batch_size``: passes over the data and faces per step (the last partial batch of
    an epoch is dropped). ``losses``: the enabled generator losses (``LOSS_NAMES`` order) and
    ``weights`` their lambdas. ``lr_g``/``lr_d``, ``betas``: Adam. ``amp``: ``"auto"`` (bf16 on
    GPUs with compute capability >= 8, fp16 + GradScaler below, fp32 on CPU), ``"bf16"``,
    ``"fp16"`` or ``"off"``. ``compile``: ``torch.compile`` G, D and the perceptual network
    (CUDA only; the first steps are slow while it compiles; ``compile_mode`` is passed on, e.g.
    ``"max-autotune-no-cudagraphs"``). ``channels_last``: NHWC tensors and weights.
    ``data_on_device``: ``"auto"``/``"always"``/``"never"`` (see the module doc). ``checkpoint_every``/``log_every``:
    steps. ``samples``: how many fixed utility vectors go into ``samples/epoch_NNN.png``.
    ``synth_identities``/``synth_photos``: the SynthFaces set used when no data are given.
    ``identifier``: path of a trained identifier for the perceptual loss (see the module doc);
    ``train_identifier``: train a small one on the data's identities when none is found.
    ``holdout``: faces of the data (a seeded draw, :meth:`FaceSet.holdout_split`) left out of
    training so that the model can be scored on faces it never saw (0 = train on all).
    ``ema``: decay of an exponential moving average of the generator's weights, updated after every
    step (0 = off); when on, samples and the exported generator are the average.
    """

    preset: str = "smoke"
    epochs: int = 2
    batch_size: int = 16
    losses: tuple[str, ...] = LOSS_NAMES
    weights: LossWeights = field(default_factory=LossWeights)
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    amp: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = True
    data_on_device: str = "auto"
    checkpoint_every: int = 4
    log_every: int = 2
    samples: int = 8
    seed: int = 0
    synth_identities: int = 16
    synth_photos: int = 8
    perceptual_layers: tuple[str, ...] = DEFAULT_PERCEPTUAL_LAYERS
    identifier: str | None = None
    train_identifier: bool = True
    generator: GeneratorConfig = field(default_factory=lambda: GeneratorConfig.for_preset("smoke"))
    discriminator: DiscriminatorConfig = field(default_factory=lambda: DiscriminatorConfig.for_preset("smoke"))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig.for_preset("smoke"))
    identifier_training: Any = None  # IdentifierConfig for train_identifier; None -> IdentifierConfig.for_preset(preset)
    ema: float = 0.0
    holdout: int = 0

    @classmethod
    def for_preset(cls, name: str = "smoke") -> "TrainConfig":
        """smoke: CPU seconds on SynthFaces (128 faces, 8 steps per epoch); full: the paper's run on a GPU;
        cpu: the best model two CPU cores train in 150 minutes (:func:`cpu_preset`)."""
        if name == "cpu":
            return cpu_preset(cls)
        name = resolve_preset(name)
        common = dict(preset=name, generator=GeneratorConfig.for_preset(name),
                      discriminator=DiscriminatorConfig.for_preset(name), augment=AugmentConfig.for_preset(name))
        if name == "smoke":
            from .identity_net import IdentifierConfig

            # 5 identifier epochs on the training SynthFaces: a rough but working perceptual network in seconds
            return cls(epochs=2, batch_size=16, compile=False, checkpoint_every=4, log_every=2, train_identifier=True,
                       identifier_training=IdentifierConfig.for_preset("smoke", epochs=5), **common)
        return cls(epochs=100, batch_size=128, compile=True, checkpoint_every=1000, log_every=50,
                   train_identifier=False, **common)

    def __post_init__(self):
        self.losses = parse_losses(self.losses)
        self.betas = tuple(self.betas)
        self.perceptual_layers = tuple(self.perceptual_layers)
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise TrainError(f"amp={self.amp!r}: use auto, bf16, fp16 or off")
        if self.data_on_device not in ("auto", "always", "never"):
            raise TrainError(f"data_on_device={self.data_on_device!r}: use auto, always or never")
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise TrainError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """JSON-able nested dict (tuples become lists)."""
        return json.loads(json.dumps(_jsonable(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`TrainError`."""
        d = dict(d)
        ident = d.pop("identifier_training", None)
        cfg = _dataclass_from_dict(cls, d, "config")
        if ident is not None:
            from .identity_net import IdentifierConfig

            cfg.identifier_training = _dataclass_from_dict(IdentifierConfig, ident, "config.identifier_training")
        return cfg


#: The CPU preset, chosen by a wall-time-matched search (benchmarks/README.md): the paper's layout
#: at this width, drawing at this size (upsampled to 128), with these losses, batch and rates.
CPU_PRESET = dict(width=0.25, draw_size=64, losses=("adv", "l2", "mask"), batch_size=32, lr_g=2e-4, lr_d=2e-4,
                  ema=0.999, minutes=150, holdout=2000)


def network_configs(width: float, draw_size: int) -> tuple[GeneratorConfig, DiscriminatorConfig, AugmentConfig]:
    """Generator, discriminator and augmentation configs of the paper's layout at ``width`` for a
    generator drawing ``draw_size`` px faces (the discriminator judges them at that size; the
    elastic distortion keeps its shape relative to the face)."""
    g_full, d_full = GeneratorConfig(), DiscriminatorConfig()
    drop = {128: 0, 64: 1, 32: 2}.get(draw_size)
    if drop is None:
        raise TrainError(f"draw_size {draw_size}: use 128, 64 or 32")
    g = GeneratorConfig(width=width, channels=g_full.channels[:len(g_full.channels) - drop],
                        draw_size=0 if drop == 0 else draw_size)
    d = DiscriminatorConfig(width=width, channels=d_full.channels[:len(d_full.channels) - drop], in_size=draw_size)
    a = AugmentConfig()
    k = draw_size / 128
    aug = dataclasses.replace(a, alpha=a.alpha * k * k, sigma=a.sigma * k)
    return g, d, aug


def cpu_preset(cls=None) -> "TrainConfig":
    """The ``cpu`` preset: :data:`CPU_PRESET` as a :class:`TrainConfig` (epochs effectively unlimited:
    a run is bounded by ``--max-minutes``, 150 by default on the command line)."""
    p = CPU_PRESET
    g, d, aug = network_configs(p["width"], p["draw_size"])
    return (cls or TrainConfig)(preset="cpu", epochs=1000, batch_size=p["batch_size"], losses=p["losses"],
                                lr_g=p["lr_g"], lr_d=p["lr_d"], ema=p["ema"], holdout=p["holdout"], compile=False, checkpoint_every=200,
                                log_every=20, train_identifier=False, generator=g, discriminator=d, augment=aug,
                                samples=8)


def _jsonable(x):
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, Path):
        return str(x)
    return x


def _dataclass_from_dict(cls, d: dict, where: str):
    import typing

    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise TrainError(f"{where}: unknown setting(s) {unknown} for {cls.__name__}; the checkpoint comes from "
                         "another version of the course - start a new run")
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: fall back to the defaults' types
        hints = {}
    kw = {}
    for k, v in d.items():
        t = hints.get(k)
        if isinstance(t, type) and dataclasses.is_dataclass(t) and isinstance(v, dict):
            v = _dataclass_from_dict(t, v, f"{where}.{k}")
        elif isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        kw[k] = v
    return cls(**kw)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(saved: dict, current: dict, ignore=RESUME_FREE) -> list[str]:
    """Human-readable ``key: saved -> current`` lines for settings that differ (``ignore`` excepted)."""
    a, b = _flat(saved), _flat(current)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k.split(".")[0] in ignore:
            continue
        if a.get(k, "<missing>") != b.get(k, "<missing>"):
            diffs.append(f"{k}: {a.get(k, '<missing>')!r} in the checkpoint, {b.get(k, '<missing>')!r} now")
    return diffs


# ============================================================================ data
def default_data(cfg: TrainConfig) -> FaceSet:
    """The embedded SynthFaces set used when no ``--data`` is given."""
    from .synthfaces import make_synthfaces

    return make_synthfaces(cfg.synth_identities, cfg.synth_photos, seed=cfg.seed)


def load_data(path: str | os.PathLike | None, cfg: TrainConfig) -> FaceSet:
    """A prepared FaceSet folder, or SynthFaces when ``path`` is None; raises TrainError otherwise."""
    if path is None:
        return default_data(cfg)
    try:
        return FaceSet.load(path)
    except NotAPreparedSet as e:
        raise TrainError(f"--data {path}: {e}") from e


def data_fingerprint(data: FaceSet) -> dict:
    """Count, size and a hash of the face sources: a resumed run must see the same data."""
    h = hashlib.sha1("\n".join(data.sources).encode()).hexdigest()[:16]
    return {"count": len(data), "size": data.size, "sources_sha1": h, "dataset": data.meta.get("dataset", "")}


@dataclass
class DeviceData:
    """A FaceSet as tensors for training: uint8 faces (N,S,S,3) and masks (N,S,S), landmarks (N,68,2), attributes (N,3)."""

    faces: torch.Tensor
    masks: torch.Tensor
    landmarks68: torch.Tensor
    attrs: torch.Tensor
    on_device: bool

    @property
    def size(self) -> int:
        return int(self.faces.shape[1])

    def __len__(self) -> int:
        return int(self.faces.shape[0])


def to_device_data(data: FaceSet, device: torch.device, mode: str = "auto") -> DeviceData:
    """Move ``data`` to ``device`` if it fits (``mode`` auto/always/never), else pin it in host memory."""
    try:
        util = data.utility()  # every face needs age/gender/race labels
    except ValueError as e:
        raise TrainError(f"training data: {e}") from e
    def tensor(a, dtype):  # one RAM copy (memory-mapped prepared sets are read-only)
        return torch.from_numpy(np.array(a, dtype=dtype, order="C", copy=True))

    tensors = [tensor(data.faces, np.uint8), tensor(data.masks, np.uint8), tensor(data.landmarks68, np.float32),
               tensor(util[:, :N_ATTRIBUTES], np.float32)]
    on_device = device.type == "cpu"
    if device.type != "cpu" and mode != "never":
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        fits = True
        if device.type == "cuda" and mode == "auto":
            free, _ = torch.cuda.mem_get_info(device)
            fits = nbytes < 0.3 * free
        if fits:
            tensors = [t.to(device) for t in tensors]
            on_device = True
    if not on_device and device.type == "cuda":
        tensors = [t.pin_memory() for t in tensors]
    return DeviceData(*tensors, on_device=on_device)


def _reduction_matrix(device) -> torch.Tensor:
    m = torch.zeros(len(SEVEN_POINT_SOURCES), 68)
    for i, idx in enumerate(SEVEN_POINT_SOURCES):
        m[i, list(idx)] = 1.0 / len(idx)
    return m.to(device)


def reduce_68_to_7_torch(landmarks68: torch.Tensor) -> torch.Tensor:
    """(N,68,2) -> (N,7,2): ``utility.reduce_68_to_7`` as one matrix product on the tensors' device."""
    return torch.einsum("pk,nkc->npc", _reduction_matrix(landmarks68.device), landmarks68.float())


def utility_from_landmarks(attrs: torch.Tensor, landmarks68: torch.Tensor, size: int) -> torch.Tensor:
    """(N,3) encoded attributes + (N,68,2) pixel landmarks -> (N,17) utility (``encode_utility`` in torch)."""
    coords = reduce_68_to_7_torch(landmarks68) / (size / 2.0) - 1.0
    return torch.cat([attrs, coords.flatten(1)], dim=1)


# ============================================================================ precision
def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = fp32)."""
    if amp == "off" or device.type not in ("cuda",):
        if amp in ("bf16", "fp16") and device.type == "cpu":
            return torch.bfloat16 if amp == "bf16" else None
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


# ============================================================================ trainer
class Trainer:
    """Models, optimisers and one training step; :func:`train` drives it, the benchmark times it."""

    def __init__(self, cfg: TrainConfig, data: FaceSet, device: torch.device, identifier=None):
        self.cfg = cfg
        self.device = device
        self.dtype = resolve_amp(cfg.amp, device)
        cuda = device.type == "cuda"
        self.channels_last = bool(cfg.channels_last)  # faster on CPU too (oneDNN), 2.4x for the smoke G
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if data.size != cfg.generator.drawn_size:  # a generator drawing smaller faces learns from smaller faces
            data = data.resized(cfg.generator.drawn_size)
        self.data = to_device_data(data, device, cfg.data_on_device)
        if len(self.data) < 1:
            raise TrainError("the training set is empty")
        self.batch_size = min(cfg.batch_size, len(self.data))
        self.steps_per_epoch = len(self.data) // self.batch_size
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G = Generator(cfg.generator).to(device, memory_format=mf)
        self.D = Discriminator(cfg.discriminator).to(device, memory_format=mf)
        perceptual = None
        if "perceptual" in cfg.losses:
            if identifier is None:
                raise TrainError("the perceptual loss is enabled but no identifier was given")
            perceptual = PerceptualLoss(identifier.to(device, memory_format=mf), cfg.perceptual_layers)
        self.criterion = UPGANLoss(cfg.weights, cfg.losses, perceptual)
        adam = dict(betas=tuple(cfg.betas))
        if cuda:
            adam["fused"] = True
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, **adam)
        fp16 = self.dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.G_ema = None
        if cfg.ema > 0:
            if not cfg.ema < 1:
                raise TrainError(f"ema={cfg.ema}: the decay must be in (0, 1), e.g. 0.999 (0 = off)")
            self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        self.g_fwd, self.d_fwd = self.G.draw, self.D
        self.concat_d = cfg.discriminator.norm != "batch"
        self.compiled = bool(cfg.compile and cuda)
        if self.compiled:
            # static shapes: D sees 2B (real + fake) and B faces, each compiled once
            self.g_fwd = torch.compile(self.G.draw, mode=cfg.compile_mode, dynamic=False)
            self.d_fwd = torch.compile(self.D, mode=cfg.compile_mode, dynamic=False)
            if perceptual is not None:
                self.criterion.perceptual = torch.compile(perceptual, mode=cfg.compile_mode, dynamic=False)
        # RNG streams owned by the trainer (saved in checkpoints)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
        self.epoch_rng_state = self.data_gen.get_state()
        self.step = 0  # optimiser steps done
        self.epoch = 0  # completed epochs
        self.pos = 0  # steps done inside the current epoch
        self.acc = torch.zeros(len(_ACC), device=device)
        self.acc_steps = 0
        self.train_seconds = 0.0

    # ------------------------------------------------------------------ data
    def epoch_order(self) -> torch.Tensor:
        """This epoch's permutation, redrawn from the generator state saved at the epoch's start."""
        self.data_gen.set_state(self.epoch_rng_state)
        perm = torch.randperm(len(self.data), generator=self.data_gen)
        return perm.to(self.data.faces.device)

    def batch(self, idx: torch.Tensor):
        """Augmented batch: faces (B,3,S,S) [-1,1], face masks (B,1,S,S), utility (B,17)."""
        d = self.data
        faces = d.faces[idx]
        masks = d.masks[idx]
        points = d.landmarks68[idx]
        attrs = d.attrs[idx]
        if not d.on_device:
            faces, masks, points, attrs = (t.to(self.device, non_blocking=True) for t in (faces, masks, points, attrs))
        faces = faces.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # NHWC storage = channels-last NCHW
        masks = masks.unsqueeze(1).float()
        if not self.channels_last:
            faces = faces.contiguous()
        faces, masks, points = augment(faces, masks, points, self.cfg.augment, generator=self.aug_gen)
        if self.channels_last:
            faces = faces.contiguous(memory_format=torch.channels_last)
        util = utility_from_landmarks(attrs, points, d.size)  # from the WARPED landmarks (augment.py)
        return faces, masks.clamp(0.0, 1.0), util

    # ------------------------------------------------------------------ step
    def autocast(self):
        if self.dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.dtype)

    def train_step(self, real: torch.Tensor, real_mask: torch.Tensor, util: torch.Tensor) -> torch.Tensor:
        """One D and one G update; returns the (6,) loss vector (``_ACC`` order) on the device, no sync."""
        out = torch.zeros(len(_ACC), device=self.device)
        use_d = self.criterion.uses_discriminator
        with self.autocast():
            fake, mask_logits = self.g_fwd(util)
        if use_d:
            self.D.requires_grad_(True)
            with self.autocast():
                if self.concat_d:  # one pass over real + fake (no batch statistics in D to mix up)
                    logits = self.d_fwd(torch.cat([real, fake.detach()]))
                    real_logits, fake_logits_d = logits[:len(real)], logits[len(real):]
                else:
                    real_logits, fake_logits_d = self.d_fwd(real), self.d_fwd(fake.detach())
                d_loss = discriminator_bce(real_logits, fake_logits_d, self.cfg.discriminator.real_label,
                                           self.cfg.discriminator.fake_label)
            self.opt_d.zero_grad(set_to_none=True)
            self.scaler_d.scale(d_loss).backward()
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
            self.D.requires_grad_(False)
            out[0] = d_loss.detach()
        with self.autocast():
            fake_logits = self.d_fwd(fake) if use_d else None
            total, parts = self.criterion.generator_loss(fake, mask_logits, real, real_mask, fake_logits)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(total).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        if self.G_ema is not None:
            self.update_ema()
        for i, name in enumerate(("adv", "l2", "mask", "perceptual", "total")):
            if name in parts:
                out[i + 1] = parts[name].float()
        return out

    @torch.no_grad()
    def update_ema(self) -> None:
        """Move the averaged generator a step ``1 - decay`` towards the trained one. The decay warms
        up as ``(1 + step) / (10 + step)`` until it reaches ``ema``, so that early in a run the
        average is not dominated by the random initial weights."""
        decay = min(self.cfg.ema, (1.0 + self.step) / (10.0 + self.step))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - decay)

    @property
    def G_out(self) -> torch.nn.Module:
        """The generator to sample and export: the weight average when ``ema`` is on."""
        return self.G_ema if self.G_ema is not None else self.G

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        states = {
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": capture_rng(self.device),
            "trainer_rng": {"data_epoch_start": self.epoch_rng_state.clone(), "augment": self.aug_gen.get_state(),
                            "augment_device": self.device.type},
            "log_acc": {"sum": self.acc.detach().clone(), "steps": self.acc_steps},
        }
        if self.G_ema is not None:
            states["generator_ema"] = self.G_ema.state_dict()
        return states

    def load_state(self, states: dict[str, Any]) -> list[str]:
        """Restore from :meth:`state`; returns warnings (e.g. RNG streams that cannot move devices)."""
        warnings = []
        self.G.load_state_dict(states["generator"])
        if self.G_ema is not None:
            self.G_ema.load_state_dict(states.get("generator_ema", states["generator"]))
        self.D.load_state_dict(states["discriminator"])
        self.opt_g.load_state_dict(states["optimizer_g"])
        self.opt_d.load_state_dict(states["optimizer_d"])
        if self.scaler_g.is_enabled() and states.get("scaler_g"):
            self.scaler_g.load_state_dict(states["scaler_g"])
        if self.scaler_d.is_enabled() and states.get("scaler_d"):
            self.scaler_d.load_state_dict(states["scaler_d"])
        warnings += restore_rng(states["rng"], self.device)
        tr = states["trainer_rng"]
        self.epoch_rng_state = tr["data_epoch_start"].to(torch.uint8).cpu().clone()
        if tr.get("augment_device") == self.device.type:
            self.aug_gen.set_state(tr["augment"].to(torch.uint8).cpu())
        else:
            warnings.append(f"the checkpoint's augmentation RNG was on {tr.get('augment_device')}, this run is on "
                            f"{self.device.type}: reseeding it (training continues, but not bit-identically)")
            self.aug_gen.manual_seed(self.cfg.seed + 1 + self.step)
        self.acc = states["log_acc"]["sum"].to(self.device).clone()
        self.acc_steps = int(states["log_acc"]["steps"])
        return warnings


def capture_rng(device: torch.device) -> dict[str, Any]:
    """torch CPU (+ CUDA), numpy and python RNG states as checkpoint-storable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    rng = {
        "torch_cpu": torch.get_rng_state(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss_next": py_state[2]},
    }
    if device.type == "cuda":
        rng["torch_cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(rng: dict[str, Any], device: torch.device) -> list[str]:
    torch.set_rng_state(rng["torch_cpu"].to(torch.uint8).cpu())
    n = rng["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = rng["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if device.type == "cuda":
        if "torch_cuda" in rng and len(rng["torch_cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.to(torch.uint8).cpu() for s in rng["torch_cuda"]])
        else:
            return ["the checkpoint has no CUDA RNG state for this machine's GPUs: CUDA RNG left as seeded"]
    return []


# ============================================================================ identifier
def default_identifier_path(preset: str, cache: str | os.PathLike | None = None) -> Path:
    """Where notebook 06 saves the face identifier the perceptual loss uses on ``preset``."""
    return cache_dir(cache, create=False) / "models" / f"identifier_{preset}.safetensors"


def _atomic_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def resolve_identifier(cfg: TrainConfig, data: FaceSet, device: torch.device, run_dir: Path,
                       progress: bool = True, say: Callable[[str], None] = print):
    """The frozen identifier for the perceptual loss (None when the loss is off); see the module doc."""
    if "perceptual" not in cfg.losses:
        return None
    from .identity_net import IdentifierConfig, load_identifier, save_identifier, train_identifier

    copy = run_dir / IDENTIFIER_NAME
    if copy.exists():  # a resumed run keeps its network
        return load_identifier(copy, map_location=device)
    candidates = [Path(cfg.identifier)] if cfg.identifier else [default_identifier_path(cfg.preset)]
    if cfg.identifier and not candidates[0].exists():
        raise TrainError(f"--identifier {cfg.identifier}: no such file. Train one in notebook 06 "
                         "(identity_net.train_identifier + save_identifier) or drop 'perceptual' from --losses.")
    if candidates[0].exists():
        model = load_identifier(candidates[0], map_location=device)
        _atomic_copy(candidates[0], copy)
        say(f"perceptual network: {candidates[0]}")
        return model
    ids = np.asarray(data.identity)
    if cfg.train_identifier and np.all(ids >= 0) and len(np.unique(ids)) >= 2:
        icfg = cfg.identifier_training or IdentifierConfig.for_preset(cfg.preset)
        say(f"perceptual network: training a {cfg.preset} identifier on the data's {len(np.unique(ids))} identities")
        model, _ = train_identifier(data, icfg, device, progress=progress)
        save_identifier(model, copy)
        return model
    why = ("the data have no identity labels (UTKFace has none)" if np.any(ids < 0)
           else "training one here is off for this preset")
    raise TrainError(
        f"the perceptual loss needs a trained face identifier and none was found: {why}. Train one with notebook "
        f"06 (it saves {default_identifier_path(cfg.preset)}), or pass --identifier PATH (a file from "
        "identity_net.save_identifier), or train without it: --losses adv,l2,mask."
    )


# ============================================================================ samples and logs
def sample_indices(n: int, count: int, seed: int) -> np.ndarray:
    """The fixed faces whose utility vectors are rendered every epoch (same for the same data and seed)."""
    count = min(count, n)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


@torch.no_grad()
def generate(generator: torch.nn.Module, utility, batch_size: int = 256, dtype: torch.dtype | None = None):
    """Run ``generator`` on (N,17) utility vectors in eval mode -> (faces (N,3,S,S) [-1,1], p_face (N,1,S,S)) on CPU."""
    u = torch.as_tensor(np.asarray(utility, dtype=np.float32) if not torch.is_tensor(utility) else utility)
    if u.ndim != 2 or u.shape[1] != UTILITY_DIM:
        raise ValueError(f"utility must be (N, {UTILITY_DIM}), got {tuple(u.shape)}")
    p = next(generator.parameters())
    was_training = generator.training
    generator.eval()
    faces, masks = [], []
    try:
        for i in range(0, len(u), batch_size):
            with torch.autocast(p.device.type, dtype=dtype, enabled=dtype is not None):
                f, m = generator(u[i:i + batch_size].to(p.device))
            faces.append(f.float().cpu())
            masks.append(torch.softmax(m.float(), dim=1)[:, :1].cpu())
    finally:
        generator.train(was_training)
    return torch.cat(faces), torch.cat(masks)


def _draw_points(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    import cv2

    img = img.copy()
    for x, y in points:
        cv2.circle(img, (int(round(float(x))), int(round(float(y)))), 2, (255, 230, 0), -1, cv2.LINE_AA)
    return img


def sample_rows(generator, utility, real_faces=None) -> tuple[list[np.ndarray], list[str]]:
    """Rows for a sample grid: [real faces], generated faces, generated face on grey inside its mask with the
    7 target landmarks of the utility vector (yellow): utility preserved = dots on the eyes, nose and mouth."""
    from .utility import decode_utility
    from .viz import to_uint8_images

    faces, pmask = generate(generator, utility)
    size = faces.shape[-1]
    gen = to_uint8_images(faces)
    grey = np.full_like(gen, 128)
    m = pmask.permute(0, 2, 3, 1).numpy()
    comp = (gen * m + grey * (1 - m)).astype(np.uint8)
    _, _, _, pts = decode_utility(np.asarray(utility, dtype=np.float32), size=size)
    comp = np.stack([_draw_points(c, p) for c, p in zip(comp, pts)])
    rows, labels = [gen, comp], ["generated", "mask + target points"]
    if real_faces is not None:
        rows.insert(0, to_uint8_images(real_faces))
        labels.insert(0, "real")
    return rows, labels


def ablation_rows(runs: dict[str, str | os.PathLike], utility, real_faces=None,
                  with_masks: bool = False) -> tuple[list[np.ndarray], list[str]]:
    """Figure 4 side by side: one row per run (label -> run folder), the same utility vectors in every row.

    ``real_faces`` (uint8 NHWC) adds the faces the vectors came from as a first row;
    ``with_masks`` adds each run's mask + target-points row under its faces.
    """
    rows, labels = [], []
    if real_faces is not None:
        from .viz import to_uint8_images

        rows.append(to_uint8_images(real_faces))
        labels.append("real")
    for label, run_dir in runs.items():
        r, _ = sample_rows(load_generator(run_dir), utility)
        rows.append(r[0])
        labels.append(label)
        if with_masks:
            rows.append(r[1])
            labels.append(f"{label}: mask")
    return rows, labels


def tile_rows(rows: list[np.ndarray], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Stack image rows (each (n,H,W,3) uint8) into one uint8 picture with ``pad`` pixels between cells."""
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), fill, np.uint8)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img
    return out


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 picture atomically."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the PNG")
    os.replace(tmp, path)
    return path


def load_log(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``RUN_DIR/log.csv`` as column -> numpy array (empty arrays when nothing was logged yet)."""
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        raise TrainError(f"{path}: no training log; train first (`upgan train --out {run_dir}`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: np.array([float(r[c]) for r in rows]) for c in LOG_COLUMNS}


def _truncate_log(path: Path, step: int) -> None:
    """Drop rows a killed run wrote after its last checkpoint (they will be logged again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot_losses(runs: dict[str, str | os.PathLike], columns=("d_loss", "g_adv", "g_l2", "g_mask", "g_perceptual")):
    """One panel per loss column, one line per run (label -> run folder). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    logs = {label: load_log(d) for label, d in runs.items()}
    colours = {label: f"C{i}" for i, label in enumerate(logs)}  # one colour per run in every panel
    cols = [c for c in columns if any(np.any(lg[c] != 0) for lg in logs.values())]
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(3.2 * max(1, len(cols)), 2.6), squeeze=False)
    for ax, c in zip(axes[0], cols):
        for label, lg in logs.items():
            if np.any(lg[c] != 0):  # 0 = loss switched off in that run
                ax.plot(lg["step"], lg[c], label=label, color=colours[label],
                        marker="." if len(lg["step"]) < 20 else None)
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color=colours[label], label=label) for label in logs]
    axes[0][0].legend(handles=handles, fontsize=7)
    fig.tight_layout()
    return fig


# ============================================================================ training
@dataclass
class TrainResult:
    """What a :func:`train` call did. ``images_per_s`` covers this call's steps (0 if none ran)."""

    run_dir: Path
    step: int
    epoch: int
    steps_per_epoch: int
    finished: bool
    stopped: bool
    checkpoint: Path
    generator_path: Path | None
    log_path: Path
    images_per_s: float
    seconds: float
    device: str
    dtype: str
    compiled: bool
    data_on_device: bool
    warnings: list[str] = field(default_factory=list)


def _meta(cfg: TrainConfig, trainer: Trainer, data: FaceSet, data_path, finished: bool) -> dict:
    return {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "step": trainer.step, "epoch": trainer.epoch,
            "pos": trainer.pos, "steps_per_epoch": trainer.steps_per_epoch, "batch_size": trainer.batch_size,
            "data": {**data_fingerprint(data), "path": str(data_path) if data_path else None},
            "device": trainer.device.type, "finished": finished, "train_seconds": trainer.train_seconds,
            "torch": torch.__version__}


def _oom_message(e: BaseException, trainer_or_cfg, device: torch.device, last_ckpt_step: int | None) -> str:
    bs = getattr(trainer_or_cfg, "batch_size", None)
    mem = ""
    if device.type == "cuda":
        try:
            mem = f" (peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB of " \
                  f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB)"
        except Exception:
            pass
    tip = f"rerun with a smaller batch, e.g. --batch-size {max(1, bs // 2)}" if bs else "use a smaller batch"
    resume = (f"; --resume continues from the checkpoint at step {last_ckpt_step}" if last_ckpt_step else "")
    return (f"out of memory on {device} at batch size {bs}{mem}: {tip} (or turn off --compile, or free the GPU "
            f"from other processes){resume}. Original error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def train(cfg: TrainConfig, data: FaceSet, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          device: str | torch.device | None = "auto", identifier=None, data_path=None,
          stop_after_steps: int | None = None, max_seconds: float | None = None) -> TrainResult:
    """Train UP-GAN on ``data`` into ``out_dir`` (see the module doc for the files it writes).

    ``resume``: continue the run in ``out_dir`` from its last checkpoint (its config must match
    ``cfg`` except for :data:`RESUME_FREE` settings; a fresh start if there is none yet). Without
    ``resume`` an existing run there is an error, never overwritten. ``identifier``: a
    ``FaceIdentifier`` to use instead of :func:`resolve_identifier`'s search. ``stop_after_steps``:
    end this call after that many steps *without* a final checkpoint, as if the process had been
    killed (a crash drill for testing ``resume``). ``max_seconds``: a time budget for this call
    (a Colab session, a timed GPU lease): once spent, the run stops cleanly after the current step
    *with* a checkpoint, to be continued with ``resume``. Raises :class:`TrainError` on bad input and
    :class:`TrainingOOM` when the device runs out of memory.
    """
    t_start = time.perf_counter()
    run_dir = Path(out_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    if cfg.holdout:
        if cfg.holdout >= len(data):
            raise TrainError(f"holdout={cfg.holdout} leaves no training faces of the {len(data)} given")
        data = data.holdout_split(cfg.holdout)[0]  # seed 0: the same faces held out for every run
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    say = print if progress else (lambda *a, **k: None)
    saved_states = saved_meta = None
    if ckpt_path.exists():
        if not resume:
            raise TrainError(f"{run_dir} already holds a training run ({ckpt_path}); pass --resume (resume=True) to "
                             "continue it, or choose another --out folder")
        saved_states, saved_meta = load_checkpoint(ckpt_path, map_location="cpu")
        if saved_meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{ckpt_path}: not a training checkpoint (format {saved_meta.get('format')!r})")
        diffs = config_differences(saved_meta["config"], cfg.to_dict())
        if diffs:
            raise TrainError(f"{ckpt_path} was written with other settings than this run asks for:\n  " + "\n  ".join(diffs)
                             + f"\nResume with the run's settings ({run_dir / CONFIG_NAME}; `upgan train --out "
                             f"{run_dir} --resume` without other flags uses them) or start a new run in another folder.")
        fp_saved, fp_now = saved_meta["data"], data_fingerprint(data)
        if any(fp_saved.get(k) != fp_now[k] for k in ("count", "size", "sources_sha1")):
            raise TrainError(f"{ckpt_path} was trained on other data ({fp_saved.get('count')} faces from "
                             f"{fp_saved.get('path') or fp_saved.get('dataset')!r}) than given now ({fp_now['count']} "
                             f"faces): resume with the same --data, or start a new run in another folder.")
    elif resume:
        say(f"no checkpoint in {run_dir} yet: starting a new run")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    if saved_meta is None:
        seed_everything(cfg.seed)
        for stale in (LOG_NAME, GENERATOR_NAME, IDENTIFIER_NAME):  # debris of a run killed before its 1st checkpoint
            if (run_dir / stale).exists():
                (run_dir / stale).unlink()
    tmp = run_dir / f".{CONFIG_NAME}.tmp"
    tmp.write_text(json.dumps(cfg.to_dict(), indent=2))
    os.replace(tmp, run_dir / CONFIG_NAME)

    last_ckpt_step = saved_meta["step"] if saved_meta else None
    trainer = None
    try:
        if identifier is None:
            identifier = resolve_identifier(cfg, data, device, run_dir, progress=progress, say=say)
        if saved_meta is None:  # the same initial G and D with or without an identifier trained first
            seed_everything(cfg.seed)
        trainer = Trainer(cfg, data, device, identifier)
        warnings: list[str] = []
        if saved_meta is not None:
            if saved_meta["batch_size"] != trainer.batch_size or saved_meta["steps_per_epoch"] != trainer.steps_per_epoch:
                raise TrainError(f"{ckpt_path}: batch layout differs ({saved_meta['batch_size']} x "
                                 f"{saved_meta['steps_per_epoch']} steps then, {trainer.batch_size} x "
                                 f"{trainer.steps_per_epoch} now)")
            warnings += trainer.load_state(saved_states)
            trainer.step, trainer.epoch, trainer.pos = saved_meta["step"], saved_meta["epoch"], saved_meta["pos"]
            trainer.train_seconds = float(saved_meta.get("train_seconds", 0.0))
            _truncate_log(run_dir / LOG_NAME, trainer.step)
            del saved_states
            for w in warnings:
                say(f"warning: {w}")
        return _loop(cfg, trainer, data, run_dir, data_path, progress, say, stop_after_steps, t_start, warnings,
                     max_seconds)
    except Exception as e:
        if not _is_oom(e):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise TrainingOOM(_oom_message(e, trainer or cfg, device, last_ckpt_step)) from e


def _loop(cfg, trainer: Trainer, data, run_dir, data_path, progress, say, stop_after_steps, t_start, warnings,
          max_seconds=None):
    from tqdm.auto import tqdm

    ckpt_path = run_dir / CHECKPOINT_NAME
    log_path = run_dir / LOG_NAME
    spe, bs = trainer.steps_per_epoch, trainer.batch_size
    total = cfg.epochs * spe
    dtype_name = str(trainer.dtype).replace("torch.", "") if trainer.dtype else "float32"
    say(f"training {cfg.preset}: {len(data)} faces, batch {bs}, {spe} steps/epoch, epochs {trainer.epoch}->{cfg.epochs}, "
        f"losses {'+'.join(cfg.losses)}; {trainer.device} {dtype_name}, compile {'on' if trainer.compiled else 'off'}, "
        f"data {'on the device' if trainer.data.on_device else 'in host memory'}")
    idx_s = sample_indices(len(data), cfg.samples, cfg.seed)
    sample_util = data.utility()[idx_s]
    sample_real = data.faces[idx_s]

    new_file = not log_path.exists()
    logf = open(log_path, "a", newline="")
    writer = csv.DictWriter(logf, fieldnames=LOG_COLUMNS)
    if new_file:
        writer.writeheader()
        logf.flush()

    def save(finished: bool):
        save_checkpoint(ckpt_path, trainer.state(), _meta(cfg, trainer, data, data_path, finished))

    bar = tqdm(total=total, initial=min(trainer.step, total), unit="step", desc="train", disable=not progress,
               dynamic_ncols=True, leave=True)
    steps_here = 0
    t_log = time.perf_counter()
    imgs_since_log = 0
    t_call = time.perf_counter()
    stopped = out_of_time = False
    try:
        while trainer.epoch < cfg.epochs:
            perm = trainer.epoch_order()
            for pos in range(trainer.pos, spe):
                idx = perm[pos * bs:(pos + 1) * bs]
                real, real_mask, util = trainer.batch(idx)
                trainer.acc += trainer.train_step(real, real_mask, util)
                trainer.acc_steps += 1
                trainer.step += 1
                trainer.pos = pos + 1
                steps_here += 1
                imgs_since_log += bs
                bar.update(1)
                if trainer.step % cfg.log_every == 0:
                    means = (trainer.acc / max(1, trainer.acc_steps)).tolist()  # the only host sync
                    now = time.perf_counter()
                    ips = imgs_since_log / max(now - t_log, 1e-9)
                    trainer.train_seconds += now - t_log
                    t_log, imgs_since_log = now, 0
                    row = {"step": trainer.step, "epoch": round(trainer.step / spe, 4), "images": trainer.step * bs,
                           "seconds": round(trainer.train_seconds, 3), "images_per_s": round(ips, 2),
                           **{k: round(v, 6) for k, v in zip(_ACC, means)}}
                    writer.writerow(row)
                    logf.flush()
                    trainer.acc.zero_()
                    trainer.acc_steps = 0
                    bar.set_postfix_str(f"D {means[0]:.3f} G {means[5]:.3f} L2 {means[2]:.3f} {ips:.0f} img/s")
                if trainer.step % cfg.checkpoint_every == 0:
                    save(False)
                if stop_after_steps is not None and steps_here >= stop_after_steps:
                    stopped = True
                    break
                if max_seconds is not None and time.perf_counter() - t_call >= max_seconds:
                    if trainer.step % cfg.checkpoint_every:  # not just written
                        save(False)
                    stopped = out_of_time = True
                    break
            if stopped:
                break
            trainer.epoch += 1
            trainer.pos = 0
            trainer.epoch_rng_state = trainer.data_gen.get_state()  # state after this epoch's draw
            rows, _ = sample_rows(trainer.G_out, sample_util, sample_real)
            save_png(run_dir / "samples" / f"epoch_{trainer.epoch:03d}.png", tile_rows(rows))
    finally:
        bar.close()
        logf.close()
    seconds = time.perf_counter() - t_call
    gen_path = None
    if not stopped:
        save(True)
        gen_path = save_checkpoint(run_dir / GENERATOR_NAME, {"generator": trainer.G_out.state_dict()},
                                   {"format": "upgan-generator/1", "generator_config": _jsonable(cfg.generator),
                                    "step": trainer.step, "losses": list(cfg.losses)})
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    ips = steps_here * bs / seconds if steps_here else 0.0
    say(f"{'stopped' if stopped else 'done'}: step {trainer.step}, epoch {trainer.epoch}/{cfg.epochs}, "
        f"{ips:.0f} images/s over {steps_here} steps; run in {run_dir}")
    if out_of_time:
        say(f"time budget of {max_seconds:.0f} s spent: checkpoint at step {trainer.step}; continue with "
            f"`upgan train --out {run_dir} --resume`")
    return TrainResult(run_dir=run_dir, step=trainer.step, epoch=trainer.epoch, steps_per_epoch=spe,
                       finished=not stopped and trainer.epoch >= cfg.epochs, stopped=stopped, checkpoint=ckpt_path,
                       generator_path=gen_path, log_path=log_path, images_per_s=ips,
                       seconds=time.perf_counter() - t_start, device=str(trainer.device),
                       dtype=str(trainer.dtype).replace("torch.", "") if trainer.dtype else "float32",
                       compiled=trainer.compiled, data_on_device=trainer.data.on_device, warnings=warnings)


# ============================================================================ loading
def generator_file(run_dir_or_checkpoint: str | os.PathLike) -> Path:
    """The file holding a run's newest generator: for a run folder the newer (by step) of
    ``generator.safetensors`` and the last checkpoint; a file is returned as it is."""
    p = Path(run_dir_or_checkpoint)
    if not p.is_dir():
        return p
    cands = [c for c in (p / GENERATOR_NAME, p / CHECKPOINT_NAME) if c.exists()]
    if not cands:
        raise CheckpointError(f"{run_dir_or_checkpoint}: no {GENERATOR_NAME} or {CHECKPOINT_NAME}; is it a "
                              "training run folder (`upgan train --out DIR`)?")
    return max(cands, key=lambda c: read_meta(c).get("step", -1))  # ties: generator.safetensors (smaller)


def load_generator(run_dir_or_checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu") -> Generator:
    """The trained generator (eval mode) from a run folder, its ``generator.safetensors`` or a training checkpoint.

    For a run folder the newer of ``generator.safetensors`` (written when a run finishes) and the
    last checkpoint is used: a run that is still training, or was extended and then killed,
    gives the generator of its last checkpoint.
    """
    p = generator_file(run_dir_or_checkpoint)
    states, meta = load_checkpoint(p, map_location=map_location)
    if meta.get("format") == CHECKPOINT_FORMAT:
        gcfg = meta["config"]["generator"]
    elif meta.get("format") == "upgan-generator/1":
        gcfg = meta["generator_config"]
    else:
        raise CheckpointError(f"{p}: not a generator or training checkpoint (format {meta.get('format')!r})")
    G = Generator(_dataclass_from_dict(GeneratorConfig, gcfg, f"{p}: generator config"))
    try:
        G.load_state_dict(states.get("generator_ema", states["generator"]))  # the weight average when trained with one
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{p}: the generator weights do not fit its config ({str(e).splitlines()[0]})") from e
    return G.to(map_location).eval()


def export_generator(run_dir_or_checkpoint: str | os.PathLike, out: str | os.PathLike,
                     dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the run's newest generator alone, its floating-point weights cast to `dtype` (bf16
    halves the file: 50 MB for the full generator, so it fits a transfer cap on the way back from a GPU machine), with its
    metadata; :func:`load_generator` reads the result (weights cast back to float32)."""
    src = generator_file(run_dir_or_checkpoint)
    states, meta = load_checkpoint(src)
    if "generator" not in states:
        raise CheckpointError(f"{src}: holds no generator weights")
    weights = {k: (v.to(dtype) if v.is_floating_point() else v)
               for k, v in states.get("generator_ema", states["generator"]).items()}
    return save_checkpoint(out, {"generator": weights}, meta)


# ============================================================================ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="prepared face set folder (`upgan prepare`); default: embedded SynthFaces")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, samples/, generator.safetensors")
    p.add_argument("--preset", default=None, choices=["auto", "smoke", "full", "cpu"],
                   help="smoke: CPU, seconds; full: the paper's run on a GPU; cpu: the shipped model's recipe, the best "
                        "two CPU cores train in 150 minutes (default auto; on --resume: the run's)")
    p.add_argument("--width", type=float, default=None, help="network width (channels x WIDTH) of G and D")
    p.add_argument("--draw-size", type=int, default=None, choices=[32, 64, 128],
                   help="side the generator draws at (upsampled to 128); the discriminator judges that size")
    p.add_argument("--lr-g", type=float, default=None, help="generator Adam learning rate")
    p.add_argument("--lr-d", type=float, default=None, help="discriminator Adam learning rate")
    p.add_argument("--ema", type=float, default=None, help="decay of the generator weight average (0 = off)")
    p.add_argument("--holdout", type=int, default=None,
                   help="faces of --data left out of training (a fixed seeded draw) to score the model on")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (a resumed run may raise it)")
    p.add_argument("--batch-size", type=int, default=None, help="faces per step")
    p.add_argument("--losses", default=None, help="comma-separated subset of adv,l2,mask,perceptual (default all)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--identifier", default=None,
                   help="trained identifier for the perceptual loss (identity_net.save_identifier; default: "
                        "<cache>/models/identifier_<preset>.safetensors from notebook 06)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--amp", default=None, choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    p.add_argument("--compile", default=None, action=argparse.BooleanOptionalAction, help="torch.compile (CUDA)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=None, help="steps between log rows / progress updates")
    p.add_argument("--stop-after-steps", type=int, default=None,
                   help="crash drill: end after N steps of this call without a final checkpoint, then test --resume")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="time budget for this call: stop cleanly with a checkpoint once spent (continue with "
                        "--resume); for Colab sessions and timed GPU leases")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no messages (errors still go to stderr)")


def config_from_args(args) -> TrainConfig:
    """TrainConfig for the CLI: the preset (or on --resume the run's saved config) plus explicit flags."""
    ckpt = Path(args.out) / CHECKPOINT_NAME
    if args.resume and ckpt.exists() and args.preset is None:
        meta = read_meta(ckpt)
        cfg = TrainConfig.from_dict(meta["config"])
    else:
        cfg = TrainConfig.for_preset(args.preset or "auto")
    for flag, name in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed"), ("amp", "amp"),
                       ("compile", "compile"), ("checkpoint_every", "checkpoint_every"), ("log_every", "log_every"),
                       ("identifier", "identifier"), ("holdout", "holdout")):
        v = getattr(args, flag, None)
        if v is not None:
            setattr(cfg, name, v)
    if args.losses is not None:
        cfg.losses = parse_losses(args.losses)
    for flag in ("lr_g", "lr_d", "ema"):
        if getattr(args, flag, None) is not None:
            setattr(cfg, flag, getattr(args, flag))
    width, draw = getattr(args, "width", None), getattr(args, "draw_size", None)
    if width is not None or draw is not None:
        cfg.generator, cfg.discriminator, cfg.augment = network_configs(
            cfg.generator.width if width is None else width, cfg.generator.drawn_size if draw is None else draw)
    if cfg.preset == "cpu" and args.max_minutes is None and not args.resume:
        args.max_minutes = CPU_PRESET["minutes"]
    cfg.__post_init__()
    return cfg


def run(args) -> int:
    """``upgan train``: exit 0 done (or stopped by the drill), 2 bad input, 3 out of memory."""
    try:
        cfg = config_from_args(args)
        data_path = args.data
        if data_path is None and args.resume and (Path(args.out) / CHECKPOINT_NAME).exists():
            data_path = read_meta(Path(args.out) / CHECKPOINT_NAME)["data"].get("path")
        if data_path is None:
            print(f"no --data: training on the embedded SynthFaces set ({cfg.synth_identities} x {cfg.synth_photos} faces)")
            if cfg.preset == "full":
                print("note: the full preset is meant for UTKFace: `upgan prepare utkface`, then pass "
                      "--data <cache>/prepared/utkface")
        data = load_data(data_path, cfg)
        res = train(cfg, data, args.out, resume=args.resume, progress=not args.quiet, device=args.device,
                    data_path=Path(data_path).resolve() if data_path else None, stop_after_steps=args.stop_after_steps,
                    max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None)
    except TrainingOOM as e:
        print(f"upgan train: {e}", file=sys.stderr)
        return 3
    except (TrainError, CheckpointError) as e:
        print(f"upgan train: error: {e}", file=sys.stderr)
        return 2
    if res.generator_path:
        print(f"generator: {res.generator_path}")
    return 0


if __name__ == "__main__":  # python -m upgan_lib.train ... (same as `upgan train ...`)
    _p = argparse.ArgumentParser(prog="upgan train")
    add_arguments(_p)
    sys.exit(run(_p.parse_args()))
