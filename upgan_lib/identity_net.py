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
the ImageNet normalisation itself (:meth:`VGGTrunk.normalise`), from scratch as well, so a
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
import re
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.hub import get_dir
from tqdm.auto import tqdm

from .amp import autocast, grad_scaler, resolve_amp
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .faceset import FaceSet
from .images import to_tensor

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
    cross-entropy with label smoothing, mixed precision on CUDA (``amp.py``: bf16 on GPUs with
    compute capability >= 8, else fp16 with a gradient scaler). Augmentation (on tensors, per
    photo): horizontal flip, a shift of up to ``max_shift`` of the image size,
    brightness/contrast/saturation jitter of +-``jitter``.
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
    weight_decay: float = 0.05  # AdamW's decoupled decay (with SGD use about 5e-4); not on biases / bn
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
        """``smoke``: a 1/16-width VGG-19 (hidden 64, 0.18 M parameters) reading faces downsized to
        64x64, for a few seconds on a CPU (about 0.5 closed-set accuracy on 16 SynthFaces identities
        after 15 epochs); ``full``: the real VGG-19 at 128x128 (batch-norm; from scratch unless
        ``imagenet=True``, which also downloads)."""
        if name == "smoke":
            cfg = cls(width=1 / 16, hidden=64, dropout=0.0, input_size=64, epochs=15, batch_size=16, lr=2e-3,
                      warmup_epochs=0.5, max_shift=0.03, jitter=0.1)
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
class VGGTrunk(nn.Sequential):
    """The convolutional part of VGG-19 (torchvision's ``vgg19().features`` indices).

    Called with images in [-1, 1]: ``trunk(x)`` returns the pool5 activations; ``trunk(x, layers)``
    returns the activations of the named layers (``["relu1_2", "relu3_4"]``), in the order asked,
    running only as deep as the deepest one. The mapping to ImageNet normalisation (and a resize
    to ``input_size``) happens inside, so every caller passes course images unchanged.
    """

    def __init__(self, width: float = 1.0, batch_norm: bool = True, input_size: int = 128):
        layers: list[nn.Module] = []
        names: list[str] = []
        in_ch, block, conv = 3, 1, 1
        for v in VGG19_LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                names.append(f"pool{block}")
                block, conv = block + 1, 1
                continue
            out_ch = max(1, int(round(v * width)))
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
            names.append(f"conv{block}_{conv}")
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
                names.append(f"bn{block}_{conv}")
            # not in place, so that a returned conv / bn activation is never overwritten
            layers.append(nn.ReLU(inplace=False))
            names.append(f"relu{block}_{conv}")
            in_ch, conv = out_ch, conv + 1
        super().__init__(*layers)
        self.layer_names: tuple[str, ...] = tuple(names)
        self._index = {n: i for i, n in enumerate(names)}
        self.out_channels = in_ch
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> ImageNet-normalised input, resized to ``input_size`` if needed."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"the identifier expects (N, 3, H, W) RGB images in [-1, 1], got {tuple(x.shape)}")
        s = self.input_size
        if tuple(x.shape[-2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return ((x + 1.0) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def layer_index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(f"unknown layer {name!r}; this VGG-19 has {', '.join(self.layer_names)}") from None

    def forward(self, x: torch.Tensor, layers: list[str] | None = None):  # type: ignore[override]
        h = self.normalise(x)
        if layers is None:
            for module in self:
                h = module(h)
            return h
        wanted = [self.layer_index(n) for n in layers]
        if not wanted:
            return []
        last, keep, found = max(wanted), set(wanted), {}
        for i, module in enumerate(self):
            h = module(h)
            if i in keep:
                found[i] = h
            if i == last:
                break
        return [found[i] for i in wanted]


class FaceIdentifier(nn.Module):
    """VGG-19 face identifier in torchvision's layout (``features`` / ``avgpool`` / ``classifier``).

    * ``forward(x)`` -> logits (N, num_classes) for images (N, 3, H, W) in [-1, 1];
    * ``features(x, layers)`` -> list of activations of the named layers (perceptual loss);
    * ``embedding(x)`` -> (N, hidden) penultimate activations.

    ``classes`` is the label mapping: output ``i`` means FaceSet identity ``classes[i]``
    (default ``0 .. num_classes-1``). It is saved with the weights.
    """

    def __init__(self, num_classes: int, cfg: IdentifierConfig | None = None, classes=None):
        super().__init__()
        cfg = cfg or IdentifierConfig()
        if num_classes < 2:
            raise ValueError(f"an identifier needs at least 2 identities, got {num_classes}")
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.classes = [int(c) for c in (classes if classes is not None else range(num_classes))]
        if len(self.classes) != self.num_classes or len(set(self.classes)) != self.num_classes:
            raise ValueError(f"classes must list {num_classes} distinct identity ids, got {len(self.classes)} "
                             f"({len(set(self.classes))} distinct)")
        self.features = VGGTrunk(cfg.width, cfg.batch_norm, cfg.input_size)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(self.features.out_channels * 7 * 7, cfg.hidden), nn.ReLU(True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden), nn.ReLU(True), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, self.num_classes),
        )
        self.history: dict | None = None  # set by load_identifier when the checkpoint has one
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
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return self.features.layer_names

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self._pooled(x))

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (N, hidden): after the second ReLU, before the last layer."""
        return self.classifier[:5](self._pooled(x))

    def parameter_table(self) -> list[tuple[str, int]]:
        """Parameter count per part: ``block1`` .. ``block5`` (convs + bn) and ``classifier``."""
        rows: dict[str, int] = {}
        for name, module in zip(self.layer_names, self.features):
            block = "block" + re.search(r"\d+", name).group(0)  # conv3_4 -> block3, pool3 -> block3
            rows[block] = rows.get(block, 0) + sum(p.numel() for p in module.parameters())
        rows["classifier"] = sum(p.numel() for p in self.classifier.parameters())
        return list(rows.items())


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------- ImageNet weights
class ImageNetWeightsUnavailable(RuntimeError):
    """torchvision's ImageNet VGG-19 weights could not be downloaded or read."""


def imagenet_weights_enum(batch_norm: bool):
    """torchvision's weights entry: ``VGG19_Weights.IMAGENET1K_V1`` (or the ``_BN`` one)."""
    from torchvision.models import VGG19_BN_Weights, VGG19_Weights

    return VGG19_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG19_Weights.IMAGENET1K_V1


def load_imagenet_weights(model: FaceIdentifier, progress: bool = True) -> int:
    """Copy torchvision's ImageNet VGG-19 weights into ``model`` except the last (class) layer.

    Downloads once into torch's hub cache (``$TORCH_HOME/hub/checkpoints``); torchvision verifies
    the SHA-256 prefix in the file name. Returns the number of tensors copied. Raises
    ``ValueError`` when the model is not full width, ``ImageNetWeightsUnavailable`` when the file
    cannot be had (offline): then train from scratch (``imagenet=False``) or put the file into the
    hub cache by hand.
    """
    cfg = model.cfg
    if cfg.width != 1.0 or cfg.hidden != 4096:
        raise ValueError(f"ImageNet weights need the full VGG-19 (width 1.0, hidden 4096), this model has width "
                         f"{cfg.width}, hidden {cfg.hidden}: use IdentifierConfig.for_preset('full') or imagenet=False")
    weights = imagenet_weights_enum(cfg.batch_norm)
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as e:  # URLError, hash mismatch (RuntimeError), unreadable file, ...
        fname = Path(weights.url).name
        raise ImageNetWeightsUnavailable(
            f"could not get torchvision's ImageNet VGG-19 weights ({weights.url}): {type(e).__name__}: {e}. "
            f"Without internet, either train from scratch (IdentifierConfig.imagenet=False, the offline default) "
            f"or copy {fname} into {Path(get_dir()) / 'checkpoints'} yourself."
        ) from e
    state = {k: v for k, v in state.items() if not k.startswith("classifier.6.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    not_head = [k for k in missing if not k.startswith("classifier.6.")]
    if not_head or unexpected:
        raise ImageNetWeightsUnavailable(f"ImageNet weights do not match the VGG-19 layout: missing {not_head}, "
                                         f"unexpected {list(unexpected)}")
    return len(state)


# ---------------------------------------------------------------------------- data
def faces_to_tensor(faces, device=None) -> torch.Tensor:
    """The identifier's input: uint8 faces (N, S, S, 3) (numpy or tensor), shape checked -> contiguous
    float (N, 3, S, S) in [-1, 1] (:func:`upgan_lib.images.to_tensor`); float NCHW passes."""
    if isinstance(faces, np.ndarray):
        faces = torch.from_numpy(np.ascontiguousarray(faces))
    if faces.dtype == torch.uint8:
        if faces.ndim != 4 or faces.shape[-1] != 3:
            raise ValueError(f"uint8 faces must be (N, S, S, 3), got {tuple(faces.shape)}")
        return to_tensor(faces, device).contiguous()
    if faces.ndim != 4 or faces.shape[1] != 3:
        raise ValueError(f"float faces must be (N, 3, S, S) in [-1, 1], got {tuple(faces.shape)}")
    return faces.to(device)


def augment_faces(x: torch.Tensor, cfg: IdentifierConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-photo random flip, shift and colour jitter of a batch (N, 3, S, S) in [-1, 1].

    Shift: up to ``cfg.max_shift`` of the image size in x and y (bilinear, border pixels repeat).
    Jitter: brightness, contrast and saturation factors each uniform in 1 +- ``cfg.jitter``.
    Random numbers come from ``generator`` (CPU) so a seeded run repeats exactly.
    """
    n, dev = x.shape[0], x.device

    def uniform(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    if cfg.flip:
        flip = (uniform(n) < 0.5).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(-1), x)
    if cfg.max_shift > 0:
        shift = (uniform(n, 2) * 2 - 1) * (2 * cfg.max_shift)  # affine_grid units: the image spans 2
        theta = torch.zeros(n, 2, 3, device=dev, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, :, 2] = shift.to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.jitter > 0:
        b, c, s = (1 + (uniform(3, n, 1, 1, 1) * 2 - 1) * cfg.jitter).to(x.dtype)
        y = (x + 1) * 0.5 * b
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * c + mean
        grey = (0.299 * y[:, :1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3])
        y = (y - grey) * s + grey
        x = y.clamp(0, 1) * 2 - 1
    return x


def class_labels(model: FaceIdentifier, identity) -> torch.Tensor:
    """FaceSet identity ids -> class indices of ``model``; raises naming ids it was not trained on."""
    identity = np.asarray(identity).reshape(-1)
    lookup = {c: i for i, c in enumerate(model.classes)}
    unknown = sorted({int(v) for v in identity if int(v) not in lookup})
    if unknown:
        raise ValueError(
            f"{len(unknown)} identities are not among the identifier's {model.num_classes} classes "
            f"(e.g. {unknown[:5]}): closed-set identification only scores photos of trained identities. "
            "Pass FaceSet identity ids (not class indices) and split with split_photos_by_identity."
        )
    return torch.tensor([lookup[int(v)] for v in identity], dtype=torch.long)


# ---------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_logits(model: FaceIdentifier, faces, batch_size: int = 256) -> torch.Tensor:
    """Logits (N, classes) on the CPU for faces (uint8 NHWC or float NCHW in [-1, 1]), eval mode."""
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    try:
        for i in range(0, len(faces), batch_size):
            out.append(model(faces_to_tensor(faces[i:i + batch_size], dev)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.num_classes)


def predict_identities(model: FaceIdentifier, faces, batch_size: int = 256) -> np.ndarray:
    """Predicted FaceSet identity id per face (arg-max class mapped through ``model.classes``)."""
    idx = predict_logits(model, faces, batch_size).argmax(1).numpy()
    return np.asarray(model.classes, dtype=np.int64)[idx]


def identification_accuracy(model: FaceIdentifier, faces, labels, batch_size: int = 256) -> float:
    """Closed-set top-1 accuracy: share of faces whose predicted identity is ``labels`` (identity ids).

    ``faces``: float (N, 3, S, S) in [-1, 1] or uint8 (N, S, S, 3); every label must be one of the
    model's classes (raises otherwise). Chance level is 1 / num_classes.
    """
    target = class_labels(model, labels)
    if len(target) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(target)} labels")
    if len(target) == 0:
        raise ValueError("identification_accuracy: no faces given")
    pred = predict_logits(model, faces, batch_size).argmax(1)
    return float((pred == target).float().mean())


# ---------------------------------------------------------------------------- training
def train_identifier(train: FaceSet, cfg: IdentifierConfig | None = None, device="cpu", val: FaceSet | None = None,
                     progress: bool = True) -> tuple[FaceIdentifier, dict]:
    """Train a :class:`FaceIdentifier` on the identities of ``train``; returns ``(model, history)``.

    One class per distinct identity in ``train`` (``model.classes`` holds the ids). ``val`` (held-out
    photos of the same people) is scored after every epoch; photos of identities absent from
    ``train`` cannot be scored closed-set: they are left out, counted in
    ``history["val_unknown"]`` and warned about. ``history`` has per-epoch lists ``train_loss``,
    ``train_acc`` (on augmented batches), ``val_acc`` (None without ``val``), ``lr``, and
    ``seconds``. The model is returned in eval mode on ``device``.
    """
    cfg = cfg or IdentifierConfig.for_preset("smoke")
    device = torch.device(device)
    ids = np.asarray(train.identity)
    if len(ids) == 0 or np.any(ids < 0):
        raise ValueError(f"train_identifier needs identity-labelled faces; {np.sum(ids < 0)} of {len(ids)} have none")
    classes = np.unique(ids)
    if len(classes) < 2:
        raise ValueError(f"train_identifier needs at least 2 identities, the training set has {len(classes)}")
    torch.manual_seed(cfg.seed)
    model = FaceIdentifier(len(classes), cfg, classes=classes.tolist())
    if cfg.imagenet:
        load_imagenet_weights(model, progress=progress)
    model.to(device)
    history: dict = {"epoch": [], "train_loss": [], "train_acc": [], "val_acc": [], "lr": [], "seconds": 0.0,
                     "classes": len(classes), "train_photos": len(ids), "val_photos": 0, "val_unknown": 0}
    fit = _IdentifierFit.start(model, train, np.searchsorted(classes, ids), cfg, device)
    val_faces, val_ids = _known_photos(val, classes, history)
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc="identifier", unit="epoch", disable=not progress)
    for epoch in bar:
        loss, acc = fit.epoch()
        va = identification_accuracy(model, val_faces, val_ids) if val_faces is not None and len(val_ids) else None
        history["epoch"].append(epoch + 1)
        history["train_loss"].append(loss)
        history["train_acc"].append(acc)
        history["lr"].append(fit.opt.param_groups[0]["lr"])
        history["val_acc"].append(va)
        post = {"loss": f"{loss:.3f}", "acc": f"{acc:.2f}"}
        if va is not None:
            post["val"] = f"{va:.2f}"
        bar.set_postfix(post)
    history["seconds"] = time.perf_counter() - t0
    model.eval()
    return model, history


def _known_photos(val: FaceSet | None, classes: np.ndarray, history: dict):
    """``val``'s faces and identities of the trained classes (None, None without ``val``); the
    photos of other identities are counted in ``history`` and warned about."""
    if val is None:
        return None, None
    known = np.isin(np.asarray(val.identity), classes)
    history["val_unknown"] = int((~known).sum())
    if history["val_unknown"]:
        warnings.warn(f"{history['val_unknown']} of {len(val)} validation photos show identities absent from "
                      "the training set; they are left out of the closed-set accuracy", stacklevel=3)
    history["val_photos"] = int(known.sum())
    return val.faces[known], np.asarray(val.identity)[known]


@dataclass
class _IdentifierFit:
    """An identifier's training state: its photos and labels, batches, optimiser, learning-rate
    schedule, mixed precision (``amp.py``) and the seeded generator of the data order and augmentation."""

    model: FaceIdentifier
    cfg: IdentifierConfig
    device: torch.device
    faces_u8: torch.Tensor
    labels: torch.Tensor
    batch_size: int
    steps_per_epoch: int
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None
    gen: torch.Generator

    @classmethod
    def start(cls, model: FaceIdentifier, train: FaceSet, labels: np.ndarray, cfg: IdentifierConfig,
              device: torch.device) -> "_IdentifierFit":
        labels = torch.from_numpy(labels).long()
        # uint8 images stay uint8 until the batch is drawn; on the GPU if they fit comfortably
        faces_u8 = torch.from_numpy(np.ascontiguousarray(train.faces))
        if device.type == "cuda" and faces_u8.numel() < 2**31:
            faces_u8, labels = faces_u8.to(device), labels.to(device)
        n = len(labels)
        bs = min(cfg.batch_size, n)
        steps_per_epoch = max(1, n // bs)  # drop the ragged tail (reshuffled every epoch): no batch of 1 for BN
        opt = _optimiser(model, cfg)
        sched = _warmup_cosine(opt, int(round(cfg.warmup_epochs * steps_per_epoch)), steps_per_epoch * cfg.epochs)
        dtype = resolve_amp(cfg.amp, device)
        return cls(model, cfg, device, faces_u8, labels, bs, steps_per_epoch, opt, sched, grad_scaler(device, dtype),
                   dtype, torch.Generator().manual_seed(cfg.seed))

    def epoch(self) -> tuple[float, float]:
        """One pass over the photos in a new order; returns the mean loss and accuracy on the augmented batches."""
        model, cfg, device, bs = self.model, self.cfg, self.device, self.batch_size
        model.train()
        perm = torch.randperm(len(self.labels), generator=self.gen)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        for step in range(self.steps_per_epoch):
            idx = perm[step * bs:(step + 1) * bs].to(self.faces_u8.device)
            x = faces_to_tensor(self.faces_u8[idx], device)
            y = self.labels[idx].to(device)
            x = augment_faces(x, cfg, self.gen)
            with autocast(device, self.dtype):
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
        return float(loss_sum) / seen, float(correct) / seen


def _optimiser(model: FaceIdentifier, cfg: IdentifierConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD with Nesterov momentum) with weight decay on the weights, not on biases and bn."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim == 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def _warmup_cosine(opt: torch.optim.Optimizer, warmup: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per step: a linear warm-up over ``warmup`` steps, then a cosine decay to 0 at ``total_steps``."""
    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        t = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)


# ---------------------------------------------------------------------------- save / load
def save_identifier(model: FaceIdentifier, path, history: dict | None = None) -> Path:
    """Write weights + config + label mapping (+ optional training history) to one checkpoint file."""
    meta = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "config": asdict(model.cfg),
            "num_classes": model.num_classes, "classes": list(model.classes)}
    if history is not None:
        meta["history"] = history
    return save_checkpoint(path, {"model": model.state_dict()}, meta)


def load_identifier(path, map_location="cpu") -> FaceIdentifier:
    """Rebuild a :class:`FaceIdentifier` saved by :func:`save_identifier` (eval mode).

    Raises ``CheckpointError`` naming the file when it is missing, corrupt, of another kind
    (a generator checkpoint, say) or does not fit the saved configuration. The training history,
    if saved, is in ``model.history``.
    """
    states, meta = load_checkpoint(path, map_location=map_location)
    kind = meta.get("kind")
    if kind != CHECKPOINT_KIND:
        raise CheckpointError(f"{path}: this is a {kind!r} checkpoint, not a face identifier ({CHECKPOINT_KIND!r}); "
                              "pass the file written by save_identifier / the identifier notebook")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: identifier checkpoint version {meta.get('version')}, this course reads "
                              f"version {CHECKPOINT_VERSION}; train the identifier again")
    known = {f.name for f in fields(IdentifierConfig)}
    extra = sorted(set(meta["config"]) - known)
    if extra:
        raise CheckpointError(f"{path}: unknown identifier settings {extra} (saved by a newer course version?)")
    try:
        cfg = IdentifierConfig(**meta["config"])
        model = FaceIdentifier(meta["num_classes"], cfg, classes=meta["classes"])
        model.load_state_dict(states["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: identifier checkpoint does not match its saved configuration: {e}") from e
    model.history = meta.get("history")
    return model.to(map_location).eval()
