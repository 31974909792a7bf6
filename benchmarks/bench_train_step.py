#!/usr/bin/env python
"""Throughput of one UP-GAN training step (images/s), the exact inner loop of ``upgan train``.

Each timed step = draw a batch from the device-resident set, elastic + rotation augmentation on the
device, one discriminator and one generator update (adv + L2 + mask + perceptual through the
VGG-19 identifier, whose weights are random here: the speed does not depend on them). Prints
one row per compile setting: device, dtype, compile on/off, batch, images/s, ms/step, peak GPU
memory, and the model FLOPs per image (counted once with ``torch.utils.flop_counter``) with the
sustained TFLOP/s they imply.

  python benchmarks/bench_train_step.py --preset full                 # the H100 target: >= 3,000 images/s
  python benchmarks/bench_train_step.py --preset full --compile both  # compiled vs eager
  python benchmarks/bench_train_step.py --preset smoke --device cpu   # CPU smoke sizes (not comparable)

Timings are for the device printed; compare numbers only from the same card.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from upgan_lib.config import resolve_device  # noqa: E402
from upgan_lib.faceset import FaceSet  # noqa: E402
from upgan_lib.identity_net import FaceIdentifier, IdentifierConfig  # noqa: E402
from upgan_lib.losses import parse_losses  # noqa: E402
from upgan_lib.synthfaces import make_synthfaces  # noqa: E402
from upgan_lib.train_config import TrainConfig  # noqa: E402
from upgan_lib.trainer import Trainer  # noqa: E402


def bench_data(n: int) -> FaceSet:
    """``n`` SynthFaces (16 drawn, tiled) with distinct source names."""
    base = make_synthfaces(4, 4, seed=0)
    idx = np.arange(n) % len(base)
    fs = base.subset(idx)
    fs.sources = [f"bench:{i}" for i in range(n)]
    return fs


def flops_per_image(trainer: Trainer, perm: torch.Tensor) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode
    except ImportError:
        return None
    batch = trainer.batch(perm[: trainer.batch_size])
    g, d = trainer.g_fwd, trainer.d_fwd
    trainer.g_fwd, trainer.d_fwd = trainer.G, trainer.D  # count the eager graph
    crit_p = trainer.criterion.perceptual
    if crit_p is not None and hasattr(crit_p, "_orig_mod"):
        trainer.criterion.perceptual = crit_p._orig_mod
    try:
        with FlopCounterMode(display=False) as fc:
            trainer.train_step(*batch)
    finally:
        trainer.g_fwd, trainer.d_fwd, trainer.criterion.perceptual = g, d, crit_p
    return fc.get_total_flops() / trainer.batch_size


def run_one(cfg: TrainConfig, device: torch.device, steps: int, warmup: int, count_flops: bool) -> dict:
    data = bench_data(max(4 * cfg.batch_size, 64))
    ident = None
    if "perceptual" in cfg.losses:
        torch.manual_seed(0)
        ident = FaceIdentifier(16, IdentifierConfig.for_preset(cfg.preset))
    trainer = Trainer(cfg, data, device, ident)
    perm = torch.randperm(len(trainer.data)).to(trainer.data.faces.device)
    bs, n = trainer.batch_size, len(trainer.data)

    def step(i: int):
        j = (i * bs) % (n - bs + 1)
        trainer.acc += trainer.train_step(*trainer.batch(perm[j:j + bs]))

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync()
    warm_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    dt = time.perf_counter() - t0
    float(trainer.acc.sum())  # the loop never syncs; make sure the losses were finite
    fpi = flops_per_image(trainer, perm) if count_flops else None
    ips = steps * bs / dt
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(trainer.dtype).replace("torch.", "") if trainer.dtype else "float32",
        "compile": "on" if trainer.compiled else "off", "batch": bs, "images/s": ips, "ms/step": 1e3 * dt / steps,
        "warmup_s": warm_s, "peak_GiB": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"),
        "GFLOP/img": fpi / 1e9 if fpi else float("nan"), "TFLOP/s": fpi * ips / 1e12 if fpi else float("nan"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="full", choices=["smoke", "full"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 50 on GPU, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 15 on GPU, 1 on CPU)")
    ap.add_argument("--compile", default="auto", choices=["auto", "on", "off", "both"],
                    help="auto: the preset's setting (on for full; CUDA only)")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--losses", default="adv,l2,mask,perceptual")
    ap.add_argument("--no-flops", action="store_true", help="skip counting FLOPs")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    gpu = device.type == "cuda"
    steps = a.steps or (50 if gpu else 3)
    warmup = a.warmup if a.warmup is not None else (15 if gpu else 1)
    base = TrainConfig.for_preset(a.preset)
    base = replace(base, amp=a.amp, losses=parse_losses(a.losses), compile_mode=a.compile_mode,
                   batch_size=a.batch_size or base.batch_size)
    settings = {"auto": [base.compile], "on": [True], "off": [False], "both": [False, True]}[a.compile]
    print(f"UP-GAN train step, preset {a.preset}, losses {'+'.join(base.losses)}, {steps} timed steps after "
          f"{warmup} warm-up; torch {torch.__version__}")
    if not gpu:
        print(f"note: {device} run - not comparable with the GPU target (the smoke preset shrinks every network's widths)")
    cols = ["device", "dtype", "compile", "batch", "images/s", "ms/step", "warmup_s", "peak_GiB", "GFLOP/img", "TFLOP/s"]
    print("  ".join(f"{c:>10}" for c in cols))
    for comp in settings:
        r = run_one(replace(base, compile=comp), device, steps, warmup, not a.no_flops)
        print("  ".join(f"{r[c]:>10.1f}" if isinstance(r[c], float) else f"{str(r[c])[:24]:>10}" for c in cols),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
