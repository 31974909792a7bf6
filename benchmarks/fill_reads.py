#!/usr/bin/env python
"""How close dlib's face recogniser reads a face greyed out to the face itself, for several fills.

`upgan obscure` fails closed by filling a face's region (``upgan_lib.swap.grey_out``). Nothing of
the face is left there, yet dlib's recogniser still reads *something* in the box, and a fill that
it reads as an average face is "the same person" (distance < 0.6) as the people who lie near the
average. For each photo this script finds the faces with dlib's HOG detector, greys each one out
as `upgan obscure` does (its region from the 68 landmarks, grown by 15 %) with every fill below,
and prints, per fill, how many faces read closer than 0.6 to their original, and the lowest,
5th-percentile and median distances:

* ``flat128``: flat grey 128 (the first fill);
* ``checker``: the default, a checkerboard of greys 64 and 192, squares 6 % of the face's width;
* ``checker_4pc``, ``checker_5pc``, ``checker_8pc``: the same with squares of 4 % (the fill
  before), 5 % and 8 %;
* ``checker_bw``: the default in black and white; ``checker_soft``: greys 96 and 160.

Each fill is drawn as it is first drawn, without the identity check's further tries
(``ObscureConfig.grey_cells``).

  python benchmarks/fill_reads.py --utkface 300 --identities 300

UTKFace faces (``$UPGAN_DATA/UTKFace.tar.gz``, 200x200 crops) are set in a 400x400 black frame so
that the fill does not cover the whole photo; identity photos are used as they are. Photos are
drawn with ``--seed``; a photo where HOG finds no face is counted and passed over.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

#: name: (grey levels, square size as a fraction of the face's width)
FILLS = {"flat128": ((128, 128), 0.06), "checker": ((64, 192), 0.06), "checker_4pc": ((64, 192), 0.04),
         "checker_5pc": ((64, 192), 0.05), "checker_8pc": ((64, 192), 0.08), "checker_bw": ((0, 255), 0.06),
         "checker_soft": ((96, 160), 0.06)}


def photos(source: str, n: int, seed: int, frame: bool):
    """``n`` photos of an archive, drawn by ``seed``: (name, rgb), UTKFace crops framed."""
    from upgan_lib.rawfiles import BadImage, RawSource, decode_image

    src = RawSource(source)
    names = sorted(e.name for e in src.list() if e.name.lower().endswith((".jpg", ".jpeg", ".png")))
    pick = [names[i] for i in np.random.default_rng(seed).choice(len(names), min(n, len(names)), replace=False)]
    for name, data in src.read_many(pick):
        if isinstance(data, Exception):
            continue
        try:
            rgb = decode_image(data, name)[0]
        except BadImage:
            continue
        if frame:
            h, w = rgb.shape[:2]
            canvas = np.zeros((2 * h, 2 * w, 3), np.uint8)
            canvas[h // 2:h // 2 + h, w // 2:w // 2 + w] = rgb
            rgb = canvas
        yield name, rgb


def measure(items, landmarker, recogniser) -> tuple[dict, int, int]:
    """Distances original -> greyed out, per fill; and photos read, photos without a face."""
    from upgan_lib.swap import grey_out

    dist = {k: [] for k in FILLS}
    n_photos = no_face = 0
    for _, rgb in items:
        n_photos += 1
        found = landmarker.detect(rgb, upsample=1)
        no_face += not found
        for f in found:
            before = recogniser.descriptor(rgb, f.box)
            for name, (levels, cell) in FILLS.items():
                out = rgb.copy()
                grey_out(out, f.box, f.landmarks68, 0.15, levels, cell)
                dist[name].append(float(np.linalg.norm(before - recogniser.descriptor(out, f.box))))
    return dist, n_photos, no_face


def report(label: str, dist: dict, n_photos: int, no_face: int) -> None:
    n = len(next(iter(dist.values())))
    print(f"{label}: {n_photos} photos, {n} faces ({no_face} photo(s) where HOG found none)")
    for name, v in dist.items():
        v = np.asarray(v)
        if not len(v):
            continue
        print(f"  {name:13s} same person (< 0.6): {int((v < 0.6).sum()):3d} ({100 * (v < 0.6).mean():.1f} %)   "
              f"min {v.min():.3f}  5th pct {np.percentile(v, 5):.3f}  median {np.median(v):.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--utkface", type=int, default=300, help="UTKFace photos (0: none)")
    p.add_argument("--identities", type=int, default=300, help="identity photos (0: none)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from upgan_lib.config import data_root
    from upgan_lib.landmarks import FaceLandmarker
    from upgan_lib.recognise import FaceRecogniser

    root = data_root()
    sets = [("UTKFace", root / "UTKFace.tar.gz", args.utkface, True),
            ("identity photos", root / "celeba-identities.tar.gz", args.identities, False)]
    missing = [str(path) for _, path, n, _ in sets if n and not path.exists()]
    if missing:
        print(f"no archive at {', '.join(missing)}: set UPGAN_DATA (see data/README.md)")
        return 2
    landmarker, recogniser = FaceLandmarker(), FaceRecogniser()
    t0 = time.time()
    for label, path, n, frame in sets:
        if n:
            report(label, *measure(photos(str(path), n, args.seed, frame), landmarker, recogniser))
    print(f"{time.time() - t0:.0f} s, dlib's HOG detector (upsample 1), 68-point landmarks, face recognition ResNet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
