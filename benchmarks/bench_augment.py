#!/usr/bin/env python
"""Augmentation throughput: faces per second through `upgan_lib.augment.augment` at 128x128.

Times the full training-time call (random angle + elastic field, one grid_sample for face and
mask, Newton inversion of 68 landmarks) on random data, after warm-up. Prints the device.
On CUDA it synchronises only around the timed loop, and first runs one call under
``torch.cuda.set_sync_debug_mode("error")`` to confirm that augment itself never waits for the GPU.

  python benchmarks/bench_augment.py                      # auto device, batch 256 on CPU / 4096 on GPU
  python benchmarks/bench_augment.py --device cuda --batch 8192 --iters 50 --dtype bf16
"""
from __future__ import annotations

import argparse
import time

import torch

from upgan_lib.augment import AugmentConfig, augment
from upgan_lib.config import resolve_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=None, help="faces per call (default 256 on CPU, 4096 on GPU)")
    p.add_argument("--iters", type=int, default=None, help="timed calls (default 5 on CPU, 50 on GPU)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--landmarks", type=int, default=68)
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="dtype of the face tensor")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile the augment call")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    n = args.batch or (4096 if gpu else 256)
    iters = args.iters or (50 if gpu else 5)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    cfg = AugmentConfig.for_preset("full")
    s = args.size
    faces = (torch.rand(n, 3, s, s, device=dev) * 2 - 1).to(dtype)
    masks = (torch.rand(n, 1, s, s, device=dev) > 0.5).float()
    points = torch.rand(n, args.landmarks, 2, device=dev) * (s / 2) + s / 4
    gen = torch.Generator(device=dev).manual_seed(0)
    fn = torch.compile(augment) if args.compile else augment

    def sync():
        if gpu:
            torch.cuda.synchronize(dev)

    for _ in range(3):  # warm-up (cuDNN / allocator / compile)
        fn(faces, masks, points, cfg, generator=gen)
    sync()
    syncs = "not checked (CPU)"
    if gpu:  # one call with PyTorch's sync detector armed: any host synchronisation raises
        torch.cuda.set_sync_debug_mode("error")
        try:
            fn(faces, masks, points, cfg, generator=gen)
            syncs = "none"
        except RuntimeError as e:
            syncs = f"FOUND ({str(e).splitlines()[0]})"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        out = fn(faces, masks, points, cfg, generator=gen)
    sync()
    dt = time.perf_counter() - t0
    del out
    name = torch.cuda.get_device_name(dev) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {dev} [{name}]  torch {torch.__version__}")
    print(f"config: alpha={cfg.alpha} sigma={cfg.sigma} max_angle={cfg.max_angle} field_step={cfg.step} px "
          f"n_iter={cfg.n_iter}  batch={n} size={s} landmarks={args.landmarks} dtype={args.dtype}")
    print(f"augment: {iters * n / dt:,.0f} faces/s  ({dt / iters * 1e3:.2f} ms per batch of {n})")
    print(f"host synchronisations inside augment: {syncs}")
    if gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(dev) / 2**20:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
