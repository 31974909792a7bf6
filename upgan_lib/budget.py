"""Time budgets: how long a full-preset chapter should take on the GPU it finds, said before it starts.

An estimate is ``FLOP of the work / sustained FLOP/s of the GPU``:

* the FLOP are *counted*, not guessed: :func:`count_flop` runs the chapter's networks once on
  PyTorch's ``meta`` device (no memory, no arithmetic, milliseconds) under
  ``torch.utils.flop_counter.FlopCounterMode`` and multiplies by the images the chapter will push
  through them (epochs x set size);
* the FLOP/s come from :data:`GPU_PEAK_TFLOPS` (each card's dense fp16/bf16 tensor-core peak from its
  data sheet) times :data:`UTILIZATION`, the fraction of the peak a small-image conv-net training
  loop sustains. ``UTILIZATION`` is an assumption until a run on the card is measured
  (``benchmarks/bench_train_step.py`` prints the sustained TFLOP/s); pass ``tflops=`` to use a
  measured value instead.

Treat the result as the order of magnitude (x0.5 .. x2), enough to decide between "run it now",
"set MAX_MINUTES and resume", and "use fewer epochs".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

#: Dense fp16/bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets (substring of the
#: CUDA device name -> peak). Longest matching key wins ("A100" before "A10").
GPU_PEAK_TFLOPS = {
    "T4": 65.0,
    "P100": 18.7,
    "V100": 125.0,
    "A10": 125.0,
    "A100": 312.0,
    "L4": 121.0,
    "L40S": 362.0,
    "A6000": 155.0,
    "RTX 3090": 71.0,
    "RTX 4090": 165.0,
    "H100": 989.0,
    "H200": 989.0,
}
#: Fraction of the peak sustained by a small-image (128 px) GAN training loop: an assumption, see
#: the module doc.
UTILIZATION = 0.25


@dataclass
class Work:
    """``images`` images through a network costing ``flop_per_image`` (forward + backward if trained)."""

    label: str
    images: float
    flop_per_image: float

    @property
    def flop(self) -> float:
        return self.images * self.flop_per_image


def count_flop(fn, *shapes, **kwargs) -> float:
    """FLOP of ``fn(*tensors)`` where ``tensors`` are random inputs of ``shapes`` on the meta device.

    ``fn`` gets the meta tensors and must build its networks under ``torch.device("meta")`` itself
    (see :func:`train_flop`); its return value, if a tensor, is back-propagated so that the
    backward pass is counted too (``backward=False`` to skip).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    backward = kwargs.pop("backward", True)
    with torch.device("meta"):
        xs = [torch.randn(*s) for s in shapes]
        with FlopCounterMode(display=False) as fc:
            out = fn(*xs)
            if backward and isinstance(out, torch.Tensor) and out.requires_grad:
                out.sum().backward()
    return float(fc.get_total_flops())


def train_flop(make_model, *shape_per_image) -> float:
    """Forward + backward FLOP of one image through ``make_model()`` (built on the meta device)."""
    import torch

    with torch.device("meta"):
        model = make_model()

    def step(*xs):
        out = model(*xs)
        if isinstance(out, dict):
            out = list(out.values())
        return sum(o.sum() for o in out) if isinstance(out, (tuple, list)) else out

    return count_flop(step, *[(1, *s) for s in shape_per_image])


def gpu_name(device=None) -> str | None:
    """The CUDA device's name, or None on a CPU/MPS device."""
    import torch

    if device is not None and getattr(device, "type", str(device)) != "cuda":
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(device)


def peak_tflops(name: str | None) -> float | None:
    """The data-sheet peak for a CUDA device name (None when the card is not in the table)."""
    if not name:
        return None
    hits = [k for k in GPU_PEAK_TFLOPS if k.lower() in name.lower()]
    return GPU_PEAK_TFLOPS[max(hits, key=len)] if hits else None


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(work: list[Work], device=None, name: str | None = None, tflops: float | None = None) -> dict:
    """``{"gpu", "tflops", "flop", "seconds", "lines"}`` for ``work`` on ``device`` (seconds None when
    the sustained rate is unknown: a CPU, or a card not in :data:`GPU_PEAK_TFLOPS`)."""
    name = name or gpu_name(device)
    if tflops is None:
        peak = peak_tflops(name)
        tflops = peak * UTILIZATION if peak else None
    total = sum(w.flop for w in work)
    seconds = total / (tflops * 1e12) if tflops else None
    lines = [f"  {w.label}: {w.images:,.0f} images x {w.flop_per_image / 1e9:.2f} GFLOP = {w.flop / 1e15:,.1f} PFLOP"
             for w in work]
    return {"gpu": name, "tflops": tflops, "flop": total, "seconds": seconds, "lines": lines}


def print_estimate(chapter: str, work: list[Work], device=None, name: str | None = None,
                   tflops: float | None = None) -> dict:
    """Print the chapter's expected time on this GPU, with the arithmetic; returns :func:`estimate`."""
    est = estimate(work, device, name, tflops)
    where = est["gpu"] or "this device"
    if est["seconds"] is None:
        why = ("not a CUDA GPU" if not est["gpu"] else
               "a GPU missing from upgan_lib.budget.GPU_PEAK_TFLOPS: add its data-sheet peak there")
        head = f"{chapter}: {est['flop'] / 1e15:,.1f} PFLOP of work; no time estimate for {where} ({why})"
    else:
        head = (f"{chapter}: expected about {format_duration(est['seconds'])} on {where} "
                f"({est['flop'] / 1e15:,.1f} PFLOP at {est['tflops']:.0f} TFLOP/s sustained, "
                f"{UTILIZATION:.0%} of the card's peak: an estimate, x0.5..x2)")
    print(head, *est["lines"], sep="\n")
    return est


# ---------------------------------------------------------------------------- the course's networks
def generator_train_flop(preset: str = "full") -> float:
    """One face through the generator, forward + backward."""
    from .generator import Generator, GeneratorConfig
    from .utility import UTILITY_DIM

    return train_flop(lambda: Generator(GeneratorConfig.for_preset(preset)), (UTILITY_DIM,))


def discriminator_train_flop(preset: str = "full") -> float:
    from .discriminator import Discriminator, DiscriminatorConfig

    cfg = DiscriminatorConfig.for_preset(preset)
    return train_flop(lambda: Discriminator(cfg), (3, cfg.in_size, cfg.in_size))


def attribute_train_flop(cfg=None, preset: str = "full") -> float:
    """One face through the attribute estimator (chapters 08, 09), forward + backward."""
    from .attributes import AttributeConfig, AttributeEstimator

    cfg = cfg or AttributeConfig.for_preset(preset)
    return train_flop(lambda: AttributeEstimator(cfg), (3, cfg.input_size, cfg.input_size))


def identifier_train_flop(num_classes: int = 160, cfg=None, preset: str = "full") -> float:
    """One face through the VGG-19 identifier, forward + backward (chapter 05, the attackers of 09)."""
    from .identity_net import FaceIdentifier, IdentifierConfig

    cfg = cfg or IdentifierConfig.for_preset(preset)
    return train_flop(lambda: FaceIdentifier(num_classes, cfg), (3, cfg.input_size, cfg.input_size))


def upgan_step_flop(preset: str = "full", losses=("adv", "l2", "mask", "perceptual"), identifier_classes: int = 160) -> float:
    """One image of a UP-GAN training step as ``upgan_lib.train`` does it: the discriminator on a real
    and a (detached) fake face, then the generator's pass through D and, with the perceptual loss,
    through the frozen VGG-19 identifier up to its perceptual layers; forward and backward of both
    updates. Counts the networks only (augmentation and the pixel losses are small next to them)."""
    import torch

    from .discriminator import Discriminator, DiscriminatorConfig
    from .generator import Generator, GeneratorConfig
    from .identity_net import FaceIdentifier, IdentifierConfig
    from .losses import PerceptualLoss
    from .utility import UTILITY_DIM

    dcfg = DiscriminatorConfig.for_preset(preset)
    with torch.device("meta"):
        G, D = Generator(GeneratorConfig.for_preset(preset)), Discriminator(dcfg)
        P = PerceptualLoss(FaceIdentifier(identifier_classes, IdentifierConfig.for_preset(preset))) \
            if "perceptual" in losses else None

    def step(u, real):
        fake, _ = G(u)
        d_loss = D(real).sum() + D(fake.detach()).sum()
        g_loss = D(fake).sum() + (P(fake, real) if P is not None else 0)
        return d_loss + g_loss

    s = dcfg.in_size
    return count_flop(step, (1, UTILITY_DIM), (1, 3, s, s))


# ---------------------------------------------------------------------------- preparation (CPU)
#: Seconds per input of `upgan prepare` on one worker, measured on the course's 2-core x86 VM with
#: the shared archives (README, "What has been measured"): UTKFace 22,000 crops in 108 s, identity
#: photos 3,789 in 109 s (in-the-wild photos are upsampled to find small faces).
PREPARE_SECONDS_PER_INPUT = {"utkface": 108 / 22_000, "identities": 109 / 3_789}


def print_prepare_estimate(sources: dict, limit: int | None = None, workers: int | None = None) -> float:
    """Print the expected preparation time of each source (``{"utkface": path, "identities": path}``)
    on ``workers`` processes (None: all CPUs); returns the total seconds. Sets already prepared in
    the cache load in seconds instead."""
    from .rawfiles import RawSource, is_image_name

    workers = workers or os.cpu_count() or 1
    total = 0.0
    for name, path in sources.items():
        n = sum(is_image_name(e.name) for e in RawSource(path).list())
        n = min(n, limit) if limit else n
        sec = n * PREPARE_SECONDS_PER_INPUT[name] / workers
        total += sec
        print(f"01 prepare {name}: {n:,} images, expected about {format_duration(sec)} on {workers} CPU worker(s) "
              f"(unless already prepared in the cache)")
    return total
