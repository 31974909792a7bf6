"""The UP-GAN discriminator: is this 128x128 face real or generated?

The paper does not detail its discriminator; the course uses a DCGAN-style stack (Radford et
al. 2016) sized for 128x128 faces (full preset):

==============  ======================================  =================
stage           layer                                   output
==============  ======================================  =================
conv 1          4x4, stride 2, 3 -> 64, LeakyReLU 0.2   64 x 64 x 64
conv 2..5       4x4, stride 2, doubling to 512          128x32, 256x16,
                                                        512x8, 512x4
head            4x4 valid conv, 512 -> 1                one logit
==============  ======================================  =================

6,959,553 parameters (full); the smoke preset is the same code with widths x 1/16
(27,933 parameters). It sees only the face, as in the paper (not the utility vector: the
L2 and perceptual losses already tie the face to its input).

Choices, each a :class:`DiscriminatorConfig` knob:

* **Spectral normalisation** (Miyato et al. 2018) on every layer (``norm="spectral"``): each
  weight is divided by its largest singular value (one power iteration per training step), so
  the discriminator is 1-Lipschitz per layer. It stabilises GAN training without batch
  statistics, so a discriminator's logit for a face does not depend on the rest of the batch
  (real and fake batches can be scored separately without batch-norm artefacts). In eval
  mode the power iteration is frozen and the output is deterministic. Alternatives:
  ``"batch"`` (DCGAN's batch norm, except on the first layer) and ``"none"``.
* **One-sided label smoothing** (Salimans et al. 2016): the discriminator is trained towards
  ``real_label = 0.9`` on real faces and ``fake_label = 0.0`` on generated ones; only the real
  side is smoothed so the discriminator is never rewarded for calling fakes "a bit real".
  ``real_label = 1.0`` switches it off. :func:`upgan_lib.losses.discriminator_loss` computes
  that loss (the trainer passes these two labels). The generator's adversarial loss is
  unaffected (it always aims at 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import WidthScaledConfig

NORMS = ("spectral", "batch", "none")


@dataclass
class DiscriminatorConfig(WidthScaledConfig):
    """Widths, normalisation and label handling of the discriminator (defaults = full preset).

    width:        multiplier on every channel count (smoke: 1/16).
    channels:     output channels of the stride-2 4x4 convs; in_size / 2**len(channels) must be 4.
    in_size:      side of the input faces.
    norm:         "spectral" | "batch" | "none" (see the module doc).
    leak:         LeakyReLU negative slope.
    real_label:   training target for real faces (0.9 = one-sided label smoothing, 1.0 = off).
    fake_label:   training target for generated faces (keep 0.0: one-sided).
    min_channels: floor on scaled channel counts.
    """

    SMOKE_WIDTH: ClassVar[float] = 1 / 16
    width: float = 1.0
    channels: tuple[int, ...] = (64, 128, 256, 512, 512)
    in_size: int = 128
    norm: str = "spectral"
    leak: float = 0.2
    real_label: float = 0.9
    fake_label: float = 0.0
    min_channels: int = 4

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.width <= 0:
            raise ValueError(f"DiscriminatorConfig.width must be > 0, got {self.width}")
        if self.norm not in NORMS:
            raise ValueError(f"DiscriminatorConfig.norm {self.norm!r}: use one of {NORMS}")
        if not self.channels or self.in_size != 4 * 2 ** len(self.channels):
            raise ValueError(f"DiscriminatorConfig: {len(self.channels)} stride-2 convs take {self.in_size} px to "
                             f"{self.in_size / 2 ** max(len(self.channels), 1):g}, the head needs 4; "
                             f"use {max(1, (self.in_size // 4).bit_length() - 1)} entries in channels")
        for name in ("real_label", "fake_label"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DiscriminatorConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.fake_label >= self.real_label:
            raise ValueError(f"DiscriminatorConfig: fake_label {self.fake_label} must be below "
                             f"real_label {self.real_label}")


class Discriminator(nn.Module):
    """face (N, 3, S, S) in [-1, 1] -> logits (N,) (positive = "real")."""

    def __init__(self, cfg: DiscriminatorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DiscriminatorConfig()
        sn = spectral_norm if cfg.norm == "spectral" else (lambda m: m)
        ch = [cfg.scaled(c) for c in cfg.channels]
        layers: list[nn.Module] = []
        cin = 3
        for i, cout in enumerate(ch):
            use_bn = cfg.norm == "batch" and i > 0  # DCGAN: no batch norm on the input layer
            layers.append(sn(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not use_bn)))
            if use_bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(cfg.leak))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = sn(nn.Conv2d(cin, 1, 4))
        self.channels = ch

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        s = self.cfg.in_size
        if face.ndim != 4 or face.shape[1] != 3 or tuple(face.shape[2:]) != (s, s):
            raise ValueError(f"Discriminator expects faces (N, 3, {s}, {s}), got {tuple(face.shape)}")
        return self.head(self.features(face)).flatten()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
