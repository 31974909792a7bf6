#!/usr/bin/env python
"""Identity-change rate: how often is the obscured face *another person* to dlib's recogniser?

For identity photos (the shared ``celeba-identities`` archive, one person per photo first), every
face dlib finds is obscured by each method, and dlib's face-recognition ResNet compares the
descriptor of the original face with that of the obscured photo at the same box (an attacker
knows where the face was). dlib's rule: distance > 0.6 means a different person. Target for
UP-GAN with a trained checkpoint: >= 95 % of faces. Two UP-GAN rows: ``UP-GAN``, the paper's
pipeline (Poisson blending, nothing checked), and ``UP-GAN verified``, what ``upgan obscure`` does
by default: a face still the same person is replaced more strongly, then greyed (see
``ObscureConfig.verify_identity``) - it uses the same recogniser as this judge, so its row says
what dlib's recogniser can no longer match, not what any recogniser could. Blur and pixelation (the paper's kernel /
block sizes 5, 15, 25 in the 128 aligned frame, scaled to each face) are reported beside it.

Columns: ``another person`` - faces the method really replaced (blurred, pixelated) *and* dlib
calls someone else, over all faces: the target metric, a greyed face does not count; ``obscured``
- also counting greyed faces (fail closed: landmarks failed, mask refused, ...), which are
hidden but not replaced; ``of replaced`` - the rate over the faces that were not greyed.

  python benchmarks/identity_change_rate.py --checkpoint shipped            # the shipped model + blur + pixelation
  python benchmarks/identity_change_rate.py --checkpoint RUN_DIR            # a training run instead
  python benchmarks/identity_change_rate.py --photos 50                     # blur + pixelation only
  python benchmarks/identity_change_rate.py --checkpoint RUN --attributes est.safetensors --out rates.json

Photos are read from the archive in memory; nothing is written except ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="trained UP-GAN run folder / generator checkpoint; 'shipped': the model "
                                        "shipped with the course (omit: no UP-GAN row)")
    p.add_argument("--attributes", help="attribute estimator checkpoint (default: the one shipped with the course)")
    p.add_argument("--no-verified", action="store_true",
                   help="leave out the 'UP-GAN verified' row (`upgan obscure`'s default: --verify-identity)")
    p.add_argument("--fixed-attributes", action="store_true", help="the paper's fixed attributes instead of estimates")
    p.add_argument("--data", help="identity archive or folder (default: <data root>/celeba-identities.tar.gz)")
    p.add_argument("--photos", type=int, default=200, help="photos to use (one per person first)")
    p.add_argument("--sizes", default="5,15,25", help="blur kernel / pixelation block sizes (128-frame px; '' for none)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args(argv)

    from upgan_lib import obscure as ob
    from upgan_lib.config import data_root, resolve_device

    src = Path(args.data) if args.data else data_root() / "celeba-identities.tar.gz"
    if not src.exists():
        print(f"identity photos not found at {src}: set UPGAN_DATA or pass --data", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    methods = {}
    try:
        if args.checkpoint:
            if args.checkpoint == "shipped":
                from upgan_lib import pretrained

                args.checkpoint = str(pretrained.generator_path())
            paper = ob.Obscurer.from_paths(ob.ObscureConfig(), checkpoint=args.checkpoint,
                                           attributes=ob.FixedAttributes() if args.fixed_attributes
                                           else args.attributes, device=device, precision=args.precision)
            methods["UP-GAN"] = paper
            if not args.no_verified:
                methods["UP-GAN verified"] = ob.Obscurer(replace(paper.cfg, verify_identity=True),
                                                         faces=paper.faces, attributes=paper.attributes)
    except ob.ObscureError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    for k in sizes:
        methods[f"blur {k}"] = ob.Obscurer(ob.ObscureConfig(method="blur", strength=k))
    for k in sizes:
        methods[f"pixelate {k}"] = ob.Obscurer(ob.ObscureConfig(method="pixelate", strength=k))

    t0 = time.perf_counter()
    photos = [img for _, _, img in ob.sample_identity_photos(src, args.photos, seed=args.seed)]
    print(f"{len(photos)} identity photos from {src} ({time.perf_counter() - t0:.1f} s)")

    def progress(k, n_faces):
        if k % 20 == 0 or k == len(photos):
            print(f"  {k}/{len(photos)} photos, {n_faces} faces, {time.perf_counter() - t0:.0f} s", flush=True)

    res = ob.identity_change(photos, methods, ob.DlibFinder(), progress=progress)
    res.update(checkpoint=args.checkpoint, attributes="fixed (paper)" if args.fixed_attributes else args.attributes or "shipped estimator", data=str(src),
               seconds=round(time.perf_counter() - t0, 1))
    print(f"\n{res['faces']} faces in {res['photos']} photos ({res['photos_without_face']} photos without a face found); "
          f"changed = dlib descriptor distance > {res['threshold']}")
    def pct(x):
        return "-" if x != x else f"{x:.1%}"

    print(f"{'method':<16}{'another person':>16}{'obscured':>10}{'of replaced':>13}{'greyed':>8}{'mean dist':>11}")
    for name, m in res["methods"].items():
        print(f"{name:<16}{pct(m['another_person']):>16}{pct(m['rate']):>10}{pct(m['rate_replaced']):>13}"
              f"{m['greyed']:>8d}{m['mean_distance']:>11.3f}")
    for name in ("UP-GAN", "UP-GAN verified"):
        if name in res["methods"]:
            ok = res["methods"][name]["another_person"] >= 0.95
            print(f"{name} target (>= 95 % of faces replaced by another person): {'met' if ok else 'NOT met'}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
