"""One UP-GAN training step, and the trainer state a checkpoint needs to resume it exactly.

One step (paper, Section 3): draw a batch of aligned faces, warp faces, masks and landmarks
together (elastic distortion + rotation, ``augment.py``), build the 17-number utility vectors
from the *warped* landmarks, then

1. discriminator: ``losses.discriminator_loss(D(x), D(G(u)), real_label, fake_label)`` (fakes
   detached; real faces labelled ``DiscriminatorConfig.real_label``, 0.9 = one-sided label
   smoothing; real and fake go through D as one batch unless D uses batch norm), one Adam step;
2. generator: ``adv + 5 L2 + 1 mask + 1 perceptual`` (``losses.UPGANLoss``; any subset with
   ``losses=("adv", "l2")`` etc. for the paper's Figure 4 ablation), one Adam step.

Speed (the same code on CPU and GPU, only switched on where it helps):

* the training set is held on the device (``train_data.py``); augmentation runs there;
* mixed precision: bf16 autocast on GPUs that have it (compute capability >= 8), fp16 with a
  GradScaler on older ones (T4), fp32 on the CPU (``amp="auto"``, ``amp.py``);
* channels-last tensors (on the CPU too: 2.4x faster for the smoke generator), and on CUDA
  cuDNN autotuning, TF32 matmuls, fused Adam, optional ``torch.compile`` of G, D and the
  perceptual network;
* no host synchronisation inside a step: losses are summed on the device (``Trainer.acc``) and
  read only when a log row is written.

State (:meth:`Trainer.state`): G, D, both optimisers and GradScalers, every RNG (torch CPU and
CUDA, numpy, python, the augmentation generator, the data-order generator as it was at the start
of the epoch, so the epoch's permutation is redrawn identically) and the running loss sums.
"""
from __future__ import annotations

import copy
import random
from typing import Any

import numpy as np
import torch

from .amp import autocast, grad_scaler, resolve_amp
from .augment import augment
from .discriminator import Discriminator
from .faceset import FaceSet
from .generator import Generator
from .losses import PerceptualLoss, UPGANLoss, discriminator_loss
from .run_folder import LOSS_COLUMNS
from .train_config import TrainConfig, TrainError
from .train_data import to_device_data, utility_from_landmarks


class Trainer:
    """Models, optimisers and one training step; :func:`train` drives it, the benchmark times it."""

    def __init__(self, cfg: TrainConfig, data: FaceSet, device: torch.device, identifier=None):
        self.cfg = cfg
        self.device = device
        self.dtype = resolve_amp(cfg.amp, device)
        self.channels_last = bool(cfg.channels_last)  # faster on CPU too (oneDNN), 2.4x for the smoke G
        if device.type == "cuda":
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
        perceptual = self._build_networks(identifier)
        self._build_optimisers()
        self._compile(perceptual)
        # RNG streams owned by the trainer (saved in checkpoints)
        self.data_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
        self.epoch_rng_state = self.data_gen.get_state()
        self.step = 0  # optimiser steps done
        self.epoch = 0  # completed epochs
        self.pos = 0  # steps done inside the current epoch
        self.acc = torch.zeros(len(LOSS_COLUMNS), device=device)
        self.acc_steps = 0
        self.train_seconds = 0.0

    def _build_networks(self, identifier) -> PerceptualLoss | None:
        """G, D (and the weight average of G), the losses; returns the perceptual loss (None when off)."""
        cfg, device = self.cfg, self.device
        mf = torch.channels_last if self.channels_last else torch.contiguous_format
        self.G = Generator(cfg.generator).to(device, memory_format=mf)
        self.D = Discriminator(cfg.discriminator).to(device, memory_format=mf)
        perceptual = None
        if "perceptual" in cfg.losses:
            if identifier is None:
                raise TrainError("the perceptual loss is enabled but no identifier was given")
            perceptual = PerceptualLoss(identifier.to(device, memory_format=mf), cfg.perceptual_layers)
        self.criterion = UPGANLoss(cfg.weights, cfg.losses, perceptual)
        self.G_ema = None
        if cfg.ema > 0:
            if not cfg.ema < 1:
                raise TrainError(f"ema={cfg.ema}: the decay must be in (0, 1), e.g. 0.999 (0 = off)")
            self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        return perceptual

    def _build_optimisers(self) -> None:
        cfg = self.cfg
        adam = dict(betas=tuple(cfg.betas))
        if self.device.type == "cuda":
            adam["fused"] = True
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, **adam)
        self.scaler_g = grad_scaler(self.device, self.dtype)
        self.scaler_d = grad_scaler(self.device, self.dtype)

    def _compile(self, perceptual: PerceptualLoss | None) -> None:
        """The forward passes the step calls: ``torch.compile``d on CUDA when ``cfg.compile``."""
        cfg = self.cfg
        self.g_fwd, self.d_fwd = self.G.draw, self.D
        self.concat_d = cfg.discriminator.norm != "batch"
        self.compiled = bool(cfg.compile and self.device.type == "cuda")
        if self.compiled:
            # static shapes: D sees 2B (real + fake) and B faces, each compiled once
            self.g_fwd = torch.compile(self.G.draw, mode=cfg.compile_mode, dynamic=False)
            self.d_fwd = torch.compile(self.D, mode=cfg.compile_mode, dynamic=False)
            if perceptual is not None:
                self.criterion.perceptual = torch.compile(perceptual, mode=cfg.compile_mode, dynamic=False)

    # ------------------------------------------------------------------ data
    def epoch_order(self) -> torch.Tensor:
        """This epoch's permutation, redrawn from the generator state saved at the epoch's start."""
        self.data_gen.set_state(self.epoch_rng_state)
        perm = torch.randperm(len(self.data), generator=self.data_gen)
        return perm.to(self.data.faces.device)

    def end_epoch(self) -> None:
        """The epoch is done: the next one starts at its first step, its order drawn from here."""
        self.epoch += 1
        self.pos = 0
        self.epoch_rng_state = self.data_gen.get_state()  # state after this epoch's draw

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
        """Autocast in the run's mixed-precision dtype (``amp.py``)."""
        return autocast(self.device, self.dtype)

    def train_step(self, real: torch.Tensor, real_mask: torch.Tensor, util: torch.Tensor) -> torch.Tensor:
        """One D and one G update; returns the (6,) loss vector (``LOSS_COLUMNS`` order) on the device, no sync."""
        out = torch.zeros(len(LOSS_COLUMNS), device=self.device)
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
                d_loss = discriminator_loss(real_logits, fake_logits_d, self.cfg.discriminator.real_label,
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
        """Everything a checkpoint needs to continue this run exactly (see the module doc)."""
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
    """Set the RNGs :func:`capture_rng` saved; returns warnings (a CUDA state that does not fit this machine)."""
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
