"""Where data lives, which device and preset a run uses.

One setting each for the data root and the cache (environment variable, overridable by an
argument), the `auto` preset rule, and seeding. Per-module knobs live next to their module
(for example ``GeneratorConfig.for_preset``); this file only resolves the shared ones.
"""
from __future__ import annotations

import os
import random
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

PRESETS = ("smoke", "full")

#: Environment variable naming the data root (raw archives and extracted folders).
DATA_ENV = "UPGAN_DATA"
#: Environment variable naming the writable cache (prepared sets, extracted archives, runs).
CACHE_ENV = "UPGAN_CACHE"


def repo_root() -> Path | None:
    """The course checkout when installed editable (has pyproject.toml), else None."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").is_dir() else None


def _default_base() -> Path:
    root = repo_root()
    if root is not None:
        return root
    from .colab import content_root, in_colab

    if in_colab() or content_root().is_dir():  # Google Colab
        return content_root() / "upgan"
    return Path.home() / "upgan"


def _default_cache() -> Path:
    """``<repo>/.cache``; on Colab with Google Drive mounted, ``MyDrive/upgan/cache`` (it outlives the
    virtual machine, so an interrupted run resumes), else ``/content/upgan/.cache``."""
    if repo_root() is None:
        from .colab import drive_folder, in_colab

        if in_colab() and drive_folder() is not None:
            return drive_folder() / "cache"
    return _default_base() / ".cache"


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Data root: `path` if given, else $UPGAN_DATA, else ``<repo>/data``.

    The data root may be read-only (CI points it at ``../shared/datasets``); nothing is written there.
    """
    if path:
        return Path(path).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return _default_base() / "data"


def cache_dir(path: str | os.PathLike | None = None, create: bool = True) -> Path:
    """Writable cache: `path` if given, else $UPGAN_CACHE, else ``<repo>/.cache`` (on Colab: on Google
    Drive when it is mounted, see :func:`_default_cache`)."""
    if path:
        p = Path(path).expanduser()
    elif os.environ.get(CACHE_ENV):
        p = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        p = _default_cache()
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_preset(preset: str | None = "auto") -> str:
    """``auto`` (or None) means ``full`` on a CUDA GPU and ``smoke`` otherwise."""
    if preset in (None, "", "auto"):
        return "full" if has_cuda() else "smoke"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)} or 'auto'")
    return preset


def resolve_device(device: str | None = "auto"):
    """``auto`` picks cuda, then mps, then cpu."""
    import torch

    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class WidthScaledConfig:
    """Mixin for the network configs (generator, discriminator): a dataclass with ``width``,
    ``min_channels`` and ``channels`` fields whose ``smoke`` preset is the same layout with every
    width times ``SMOKE_WIDTH``."""

    SMOKE_WIDTH: float = 1.0

    @classmethod
    def for_preset(cls, name: str, **overrides):
        """``full``: the paper-sized network; ``smoke``: the same layout, widths x ``SMOKE_WIDTH``."""
        if name == "full":
            cfg = cls()
        elif name == "smoke":
            cfg = cls(width=cls.SMOKE_WIDTH)
        else:
            raise ValueError(f"unknown preset {name!r}: use 'smoke' or 'full'")
        return replace(cfg, **overrides)

    def scaled(self, n: int) -> int:
        """Channel count ``n`` of the full network at this config's width (at least ``min_channels``)."""
        return max(self.min_channels, int(round(n * self.width)))

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["channels"] = list(self.channels)
        return d
