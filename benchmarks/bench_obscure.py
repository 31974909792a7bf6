#!/usr/bin/env python
"""`upgan obscure` speed: seconds per 640x480 one-face photo over a folder, model load included.

Target: under 0.5 s/photo on the course's CPU, with the model load amortised over the folder.
Runs exactly what the command runs - read (JPEG), detect (dlib HOG, one x2-upsampled pass on a
640x480 photo, and CenterFace over its pyramid and tiles: ``upgan_lib.detect``), 68 landmarks,
align, attributes, generator, Poisson swap, identity check (dlib's recogniser; ``--no-verify-identity``
leaves it out), write (JPEG) - over a temporary folder of ``--photos``
photos, and prints s/photo with the stage breakdown. ``--size 6000x4000`` times larger photos.

Photos: with the real identity archive (``$UPGAN_DATA``) and ``--real``, identity photos with one
face enlarged onto a 640x480 canvas (kept in a temporary folder, deleted after). Otherwise
SynthFaces scenes: dlib does not find cartoon faces, so the detector *runs* (its full cost is
timed) and the known face is then handed on.

Generator: ``--checkpoint RUN`` (a trained run), else an untrained generator of ``--preset``
(same cost as a trained one) saved to a temporary checkpoint so that loading is timed too;
an untrained mask would be refused by the fail-closed check (face greyed, swap skipped), so in
that case the generator's mask is replaced by the canonical face mask to time the full swap.

  python benchmarks/bench_obscure.py                       # full-size generator, 20 synthetic photos
  python benchmarks/bench_obscure.py --real --photos 30    # identity photos ($UPGAN_DATA)
  python benchmarks/bench_obscure.py --checkpoint runs/full --threads 1
  python benchmarks/bench_obscure.py --size 6000x4000 --photos 3   # the cost of tiles on a large photo
  python benchmarks/bench_obscure.py --detectors hog               # the old detection alone
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_photos(n: int, seed: int = 0, size=(640, 480)):
    from upgan_lib.swap import compose_scene
    from upgan_lib.synthfaces import make_synthfaces

    fs = make_synthfaces(n, 1, seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    w, h = size
    k = min(w / 640, h / 480)
    for i in range(n):
        sc = compose_scene(fs, [i], size=(w, h), centres=[(rng.uniform(0.3, 0.7) * w, rng.uniform(0.35, 0.65) * h)],
                           face_widths=[rng.uniform(180, 300) * k], angles=[rng.uniform(-10, 10)], seed=seed + i)
        out.append((sc.image, sc.faces))
    return out


def real_photos(n: int):
    import cv2

    from upgan_lib.config import data_root
    from upgan_lib.identities import list_identity_photos
    from upgan_lib.landmarks import FaceLandmarker
    from upgan_lib.rawfiles import RawSource, decode_image

    src = RawSource(data_root() / "celeba-identities.tar.gz")
    names = [p.name for p in list_identity_photos(src).photos[:: 7]][: 4 * n]
    lm = FaceLandmarker()
    out = []
    for name, data in src.read_many(names):
        if isinstance(data, Exception):
            continue
        img = decode_image(data, name)[0]
        s = 480 / img.shape[0]
        img = cv2.resize(img, (min(640, round(img.shape[1] * s)), 480), interpolation=cv2.INTER_LINEAR)
        canvas = cv2.resize(cv2.GaussianBlur(img, (0, 0), 25), (640, 480))
        x = (640 - img.shape[1]) // 2
        canvas[:, x:x + img.shape[1]] = img
        if len(lm.detect(canvas, upsample=1)) == 1:
            out.append((canvas, None))
        if len(out) == n:
            break
    return out


class TimedDetectKnownFaces:
    """Runs the detectors for their cost, then returns the scene's known faces (cartoons)."""

    full_resolution = True  # as upgan_lib.detect.HybridFinder: sees the photo as it is

    def __init__(self, dlib_finder, known: dict):
        self.dlib, self.known = dlib_finder, known

    def detect(self, rgb):
        from upgan_lib.obscure import KnownFaces

        found = self.dlib.detect(rgb)
        return found or KnownFaces(self.known[rgb[::37, ::41].tobytes()]).detect(rgb)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="trained run folder / generator checkpoint, or 'shipped' (the model shipped "
                                        "with the course; default: untrained --preset)")
    p.add_argument("--preset", default="full", choices=["smoke", "full"], help="generator size when no checkpoint")
    p.add_argument("--photos", type=int, default=20)
    p.add_argument("--real", action="store_true", help="identity photos from $UPGAN_DATA instead of SynthFaces scenes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: half the cores, as `upgan obscure` does)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="generator precision")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="640x480", help="synthetic photo size WxH")
    p.add_argument("--detectors", default="hog,centerface", help="as `upgan obscure --detectors`")
    p.add_argument("--verify-identity", action=argparse.BooleanOptionalAction, default=True,
                   help="as `upgan obscure --verify-identity` (default: on, as there)")
    p.add_argument("--identity-reads", default=None,
                   help="as `upgan obscure --identity-reads` (default: as there)")
    args = p.parse_args(argv)
    from upgan_lib.obscure_config import ObscureConfig, parse_read_boxes

    try:
        reads = parse_read_boxes(args.identity_reads) if args.identity_reads else ObscureConfig().identity_reads
    except ValueError as e:
        p.error(f"--identity-reads {e}")
    size = tuple(int(v) for v in args.size.lower().split("x"))

    import torch
    from PIL import Image

    from upgan_lib import obscure as ob

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))
    if args.threads:
        import cv2

        cv2.setNumThreads(args.threads)
    photos = real_photos(args.photos) if args.real else synthetic_photos(args.photos, args.seed, size)
    if not photos:
        print("no photos")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for i, (img, _) in enumerate(photos):
            Image.fromarray(img).save(tmp / "in" / f"{i:04d}.jpg", quality=92)
        ckpt = args.checkpoint
        if ckpt == "shipped":
            from upgan_lib import pretrained

            ckpt = pretrained.generator_path()
        note = f"checkpoint {ckpt}"
        if ckpt is None:
            from upgan_lib.checkpoint import save_checkpoint
            from upgan_lib.generator import Generator, GeneratorConfig

            cfg = GeneratorConfig.for_preset(args.preset)
            ckpt = save_checkpoint(tmp / "generator.safetensors", {"generator": Generator(cfg).state_dict()},
                                   {"format": "upgan-generator/1", "generator_config": cfg.as_dict()})
            note = f"untrained {args.preset} generator (mask replaced by the canonical face mask)"

        # ---- timed: exactly the command's work, model load included
        t0, c0 = time.perf_counter(), time.process_time()
        cfg = ob.ObscureConfig(detectors=tuple(args.detectors.split(",")), verify_identity=args.verify_identity,
                               identity_reads=reads)
        obscurer = ob.Obscurer.from_paths(cfg, checkpoint=ckpt, precision=args.precision)
        finder = obscurer.finder  # upgan_lib.detect.HybridFinder: the command's detection
        if args.checkpoint is None:
            from upgan_lib.align import canonical_points7, face_mask
            from upgan_lib.detect import landmarks68_from_points5

            mean_face = landmarks68_from_points5(canonical_points7()[:5])  # dlib's mean shape, aligned frame
            mask = face_mask(mean_face).astype(np.float32)
            gen = obscurer.faces

            def with_mask(u, aligned=None):
                f, _ = gen(u, aligned)
                return f, np.repeat(mask[None], len(f), 0)

            obscurer.faces = with_mask
        if not args.real:
            # the detector sees the decoded JPEG: key the known faces on it
            known = {}
            for i, (_, faces) in enumerate(photos):
                dec = ob.read_image(tmp / "in" / f"{i:04d}.jpg").rgb
                known[dec[::37, ::41].tobytes()] = faces
            finder = TimedDetectKnownFaces(finder, known)
        obscurer = obscurer.with_finder(finder)
        t_load = time.perf_counter() - t0
        report = ob.obscure_path(tmp / "in", tmp / "out", obscurer)
        total = time.perf_counter() - t0
        cpu = time.process_time() - c0

    n = len(photos)
    s = report["summary"]
    per = [e["seconds"] for e in report["images"] if "seconds" in e]
    stages = {}
    for e in report["images"]:
        for k, v in e.get("stages", {}).items():
            stages.setdefault(k, []).append(v)
    print(f"device: cpu, torch threads {torch.get_num_threads()}, generator {args.precision}; {note}")
    check = f"on, read in {','.join(reads)}" if args.verify_identity else "off"
    print(f"detectors: {args.detectors}; identity check {check}; "
          f"greyed because {s['grey_reasons'] or 'nothing'}")
    print(f"photos: {n} x {'640x480' if args.real else args.size} ({'identity photos' if args.real else 'SynthFaces scenes'}), "
          f"faces {s['faces']}: {s['actions']}")
    print(f"model load {t_load:.2f} s; obscure median {statistics.median(per):.3f} s/photo (without read/write)")
    print("stages (median s): " + ", ".join(f"{k} {statistics.median(v):.3f}" for k, v in stages.items()))
    print(f"CPU time {cpu / n:.3f} s/photo (all threads; wall time is inflated when other jobs share the CPU - "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"{total / n:.3f} s/photo  (folder of {n}, load amortised, read + write included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
