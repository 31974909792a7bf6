"""The settings of a UP-GAN training run: :class:`TrainConfig`, its presets, and how a saved
config is compared with the one a resumed run asks for.

Presets (``TrainConfig.for_preset``):

* ``smoke``: the class defaults: CPU seconds on SynthFaces (16 people x 8 photos, 8 steps of 16
  faces per epoch), networks at 1/8 (G) and 1/16 (D) width, a small identifier trained first
  for the perceptual loss;
* ``full``: the paper's run on a GPU (100 epochs of 128 faces, full width, ``torch.compile``);
* ``cpu``: the best model two CPU cores train in 150 minutes (:data:`CPU_PRESET`).

:data:`SMOKE_RUN` is the few-step run a chapter trains when it needs a generator of its own in
seconds; :data:`ABLATION` the loss subsets of the paper's Figure 4.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .augment import AugmentConfig
from .config import resolve_preset
from .discriminator import DiscriminatorConfig
from .generator import GeneratorConfig
from .identity_net import IdentifierConfig
from .losses import DEFAULT_PERCEPTUAL_LAYERS, LOSS_NAMES, LossWeights, parse_losses

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


@dataclass
class TrainConfig:
    """Every knob of a training run; ``for_preset("smoke"|"full"|"cpu")`` gives the presets (the
    defaults are the smoke preset).

    ``epochs``/``batch_size``: passes over the data and faces per step (the last partial batch of
    an epoch is dropped). ``losses``: the enabled generator losses (``LOSS_NAMES`` order) and
    ``weights`` their lambdas. ``lr_g``/``lr_d``, ``betas``: Adam. ``amp``: ``"auto"`` (bf16 on
    GPUs with compute capability >= 8, fp16 + GradScaler below, fp32 on CPU; see ``amp.py``),
    ``"bf16"``, ``"fp16"`` or ``"off"``. ``compile``: ``torch.compile`` G, D and the perceptual network
    (CUDA only; the first steps are slow while it compiles; ``compile_mode`` is passed on, e.g.
    ``"max-autotune-no-cudagraphs"``). ``channels_last``: NHWC tensors and weights.
    ``data_on_device``: ``"auto"``/``"always"``/``"never"`` (see ``train_data.py``). ``checkpoint_every``/``log_every``:
    steps. ``samples``: how many fixed utility vectors go into ``samples/epoch_NNN.png``.
    ``synth_identities``/``synth_photos``: the SynthFaces set used when no data are given.
    ``identifier``: path of a trained identifier for the perceptual loss (see ``train.py``);
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
            # 5 identifier epochs on the training SynthFaces: a rough but working perceptual network in seconds
            return cls(identifier_training=IdentifierConfig.for_preset("smoke", epochs=5), **common)
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
        return json.loads(json.dumps(jsonable(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`TrainError`."""
        d = dict(d)
        ident = d.pop("identifier_training", None)
        cfg = dataclass_from_dict(cls, d, "config")
        if ident is not None:
            cfg.identifier_training = dataclass_from_dict(IdentifierConfig, ident, "config.identifier_training")
        return cfg


# ============================================================================ the cpu preset
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


# ============================================================================ the smoke run
@dataclass(frozen=True)
class SmokeRun:
    """The few-step UP-GAN run a chapter trains when it needs a generator of its own and chapter
    07 has not been run (``pretrained.course_generator``): the smoke preset's networks on
    ``identities`` x ``photos`` SynthFaces, ``epochs`` of ``batch_size`` faces (4 steps, seconds on
    a CPU), without the perceptual loss (so no identifier is trained first). It runs every part of
    the pipeline; it does not draw faces yet."""

    identities: int = 4
    photos: int = 8
    epochs: int = 1
    batch_size: int = 8
    losses: tuple[str, ...] = ("adv", "l2", "mask")
    checkpoint_every: int = 4
    log_every: int = 1
    samples: int = 4

    def config(self, seed: int = 0) -> TrainConfig:
        """The smoke preset with this run's sizes."""
        return dataclasses.replace(TrainConfig.for_preset("smoke"), epochs=self.epochs, batch_size=self.batch_size,
                                   losses=self.losses, checkpoint_every=self.checkpoint_every,
                                   log_every=self.log_every, samples=self.samples, seed=seed, train_identifier=False)


SMOKE_RUN = SmokeRun()


# ============================================================================ saving and comparing
def jsonable(x):
    """Dataclasses, tuples, dicts and paths as plain JSON values (nested)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, Path):
        return str(x)
    return x


def dataclass_from_dict(cls, d: dict, where: str):
    """``cls`` rebuilt from :func:`jsonable`'s dict (nested dataclasses too); unknown keys raise
    :class:`TrainError` naming ``where``."""
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
            v = dataclass_from_dict(t, v, f"{where}.{k}")
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
