"""The face-identity network: VGG-19 trained as a closed-set face identifier (paper, Section 3.2).

It plays two parts in the course:

* the **perceptual network** of UP-GAN's perceptual loss (``losses.PerceptualLoss`` reads its
  ``relu*_*`` activations), and
* the **attacker** of the evaluation (Table 1): an identifier trained on clear faces (threat
  model I) or on clear + obscured faces (threat model II) tries to name the person behind an
  obscured face; a low accuracy means good privacy.

Architecture: torchvision's ``vgg19`` layer layout exactly (``features.N`` / ``classifier.N``
indices, 16 3x3 convolutions in five blocks, 7x7 adaptive average pool, 4096-4096-classes
classifier), optionally with batch-norm (the ``vgg19_bn`` layout), and a *width multiplier* that
scales every channel count and the classifier's hidden width for the CPU smoke preset. Layers
are named like the VGG papers: ``conv3_4``, ``bn3_4``, ``relu3_4``, ``pool3`` (see
``FaceIdentifier.layer_names``). Input: 128x128 RGB faces in [-1, 1]; the network maps them to
the ImageNet normalisation itself (:meth:`FaceIdentifier.normalise`), from scratch as well, so a
model behaves the same whether or not it started from ImageNet weights.

ImageNet weights. The paper fine-tunes from ImageNet. Set ``IdentifierConfig.imagenet = True``
(width 1, hidden 4096) to start from torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (or
``VGG19_BN_Weights.IMAGENET1K_V1`` with batch-norm): torchvision downloads the file from
download.pytorch.org into ``$TORCH_HOME/hub/checkpoints`` and checks its SHA-256 prefix against the
file name (``check_hash=True``). That needs internet (Colab has it). The default is ``False``:
train from scratch, which is what runs offline and in every test; no test downloads anything.

Accuracy is *closed-set identification*: every test identity is among the training classes
(``faceset.split_photos_by_identity`` holds out photos, not people), and a prediction is right
when the arg-max class is the photo's identity.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .faceset import FaceSet

#: torchvision's VGG-19 ("configuration E"): conv widths, "M" = 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``meta["kind"]`` of an identifier checkpoint.
CHECKPOINT_KIND = "face_identifier"
CHECKPOINT_VERSION = 1


@dataclass
class IdentifierConfig:
    """Knobs of the face identifier and its training.

    Architecture: ``width`` multiplies every conv width (1.0 = VGG-19), ``hidden`` is the
    classifier's hidden width (4096 in VGG-19), ``batch_norm`` switches to the vgg19_bn layout.
    ``imagenet`` starts from torchvision's ImageNet weights (download; needs width 1, hidden 4096).
    Training: AdamW (or SGD with momentum) with a linear warm-up then cosine decay to 0 per step,
    cross-entropy with label smoothing, mixed precision on CUDA (bf16 where supported, else fp16
    with a gradient scaler). Augmentation (on tensors, per photo): horizontal flip, a shift of up
    to ``max_shift`` of the image size, brightness/contrast/saturation jitter of +-``jitter``.
    """

    width: float = 1.0
    hidden: int = 4096
    batch_norm: bool = True
    dropout: float = 0.5
    imagenet: bool = False
    input_size: int = 128
    epochs: int = 40
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # "adamw" | "sgd"
    momentum: float = 0.9  # SGD only
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    flip: bool = True
    max_shift: float = 0.06  # fraction of the image size (about 8 px at 128)
    jitter: float = 0.2
    amp: bool = True
    test_fraction: float = 0.3  # held-out photos per identity (split_photos_by_identity)
    seed: int = 0

    @classmethod
    def for_preset(cls, name: str, **overrides) -> "IdentifierConfig":
        """``smoke``: a 1/16-width VGG-19 (about 0.6 M parameters) for seconds on a CPU; ``full``:
        the real VGG-19 (batch-norm, from scratch unless ``imagenet=True``)."""
        if name == "smoke":
            cfg = cls(width=1 / 16, hidden=256, dropout=0.2, epochs=10, batch_size=32, lr=2e-3,
                      warmup_epochs=0.5, max_shift=0.04, jitter=0.1)
        elif name == "full":
            cfg = cls()
        else:
            raise ValueError(f"unknown preset {name!r}: use 'smoke' or 'full'")
        return replace(cfg, **overrides)

    def __post_init__(self):
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"IdentifierConfig.optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if not 0 < self.width <= 4:
            raise ValueError(f"IdentifierConfig.width must be in (0, 4], got {self.width}")


# ---------------------------------------------------------------------------- the network
class FaceIdentifier(nn.Module):
    """VGG-19 face identifier (torchvision layout). ``forward(x in [-1, 1]) -> logits (N, classes)``.

    ``classes`` lists the identity id of each output (the label mapping: output ``i`` means
    identity ``classes[i]`` of the FaceSet); default ``0 .. num_classes-1``.
    """

    def __init__(self, num_classes: int, cfg: IdentifierConfig | None = None, classes: list[int] | None = None):
        super().__init__()
        cfg = cfg or IdentifierConfig()
        if num_classes < 2:
            raise ValueError(f"an identifier needs at least 2 identities, got {num_classes}")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.classes = [int(c) for c in (classes if classes is not None else range(num_classes))]
        if len(self.classes) != self.num_classes or len(set(self.classes)) != self.num_classes:
            raise ValueError(f"classes must list {num_classes} distinct identity ids, got {len(self.classes)}")
        layers: list[nn.Module] = []
        names: list[str] = []
        in_ch, block, conv = 3, 1, 1
        for v in VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                names.append(f"pool{block}")
                block, conv = block + 1, 1
                continue
            out_ch = max(1, int(round(v * cfg.width)))
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
            names.append(f"conv{block}_{conv}")
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
                names.append(f"bn{block}_{conv}")
            # not in-place, so that a returned conv/bn activation is never overwritten
            layers.append(nn.ReLU(inplace=False))
            names.append(f"relu{block}_{conv}")
            in_ch, conv = out_ch, conv + 1
        self.features = nn.Sequential(*layers)
        self.layer_names: tuple[str, ...] = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(in_ch * 7 * 7, cfg.hidden), nn.ReLU(True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, self.num_classes),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:  # torchvision's VGG initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ inputs
    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> ImageNet-normalised input; resized to ``cfg.input_size`` if needed."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"FaceIdentifier expects (N, 3, H, W) images in [-1, 1], got {tuple(x.shape)}")
        s = self.cfg.input_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return ((x + 1.0) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    # ------------------------------------------------------------------ outputs
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self._pooled(x))

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(self.normalise(x))), 1)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden) (after the second ReLU, before the last layer)."""
        return self.classifier[:5](self._pooled(x))

    def layer_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(f"unknown layer {name!r}; this network has {', '.join(self.layer_names)}") from None

    def features_at(self, x: torch.Tensor, layers: list[str]) -> list[torch.Tensor]:
        """Activations of the named layers (in the order asked), running only as deep as needed."""
        wanted = [self.layer_index(n) for n in layers]
        if not wanted:
            return []
        last = max(wanted)
        keep = set(wanted)
        found: dict[int, torch.Tensor] = {}
        h = self.normalise(x)
        for i, module in enumerate(self.features[: last + 1]):
            h = module(h)
            if i in keep:
                found[i] = h
        return [found[i] for i in wanted]

    def parameter_table(self) -> list[tuple[str, int]]:
        """(block, parameter count) rows: conv blocks 1-5 and the classifier."""
        rows: dict[str, int] = {}
        for name, module in zip(self.layer_names, self.features):
            block = "block" + name.rstrip("0123456789_").lstrip("convbnrelupool") + name.lstrip("convbnrelupool")[0]
            rows[block] = rows.get(block, 0) + sum(p.numel() for p in module.parameters())
        rows["classifier"] = sum(p.numel() for p in self.classifier.parameters())
        return list(rows.items())


def _features(self: FaceIdentifier, x: torch.Tensor, layers: list[str] | None = None):
    """Without ``layers``: the ``nn.Sequential`` trunk (torchvision's ``.features``). With a list of
    layer names: their activations, as ``PerceptualLoss`` needs (``features(x, ["relu1_2"])``)."""
    raise NotImplementedError  # replaced below


class _FeatureTrunk(nn.Sequential):
    """torchvision-compatible ``.features`` Sequential that can also be called as
    ``features(x, layers)`` to return named activations (the perceptual-loss API)."""

    owner_ref = None

    def forward(self, x, layers=None):  # type: ignore[override]
        if layers is None:
            return super().forward(x)
        return self.owner_ref().features_at(x, layers)


# ---------------------------------------------------------------------------- helpers
def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
