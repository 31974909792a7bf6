#!/usr/bin/env python
"""Which FID did the paper compute? FID and KID of the baselines under three protocols, on real data.

* realism: obscured identity photos vs held-out real UTKFace faces;
* paired: obscured identity photos vs the same photos clear;
* in-distribution: obscured held-out UTKFace faces vs other real UTKFace faces.

Blur is measured both ways it can be read: "Gaussian 5" as a 5x5 kernel (OpenCV's sigma for it,
about 1 px) and as sigma = 5 px. Also prints the real-vs-real floor at the sample size (every FID
at that size carries the same upward bias; KID is unbiased). Notebook 09 quotes the result.

  python benchmarks/fid_protocols.py --identities prepared/ids --utkface prepared/utk
  python benchmarks/fid_protocols.py ... --n 250 --n-ref 500 --out fid_protocols.json

About 10 minutes on 2 CPU cores at the defaults (Inception features of ~5,000 faces).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--identities", required=True, help="prepared identity set (upgan prepare identities)")
    p.add_argument("--utkface", required=True, help="prepared UTKFace set (upgan prepare utkface)")
    p.add_argument("--n", type=int, default=250, help="obscured faces per method and protocol")
    p.add_argument("--n-ref", type=int, default=500, help="real UTKFace reference faces")
    p.add_argument("--k", type=int, default=10, help="k of k-same")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)

    import numpy as np

    from upgan_lib import baselines as B
    from upgan_lib.attributes import fill_attributes
    from upgan_lib.evaluate import EvaluationError, load_set
    from upgan_lib.faceset import split_photos_by_identity
    from upgan_lib.fid import InceptionFeatures, fid_from_features, kid, real_floor

    try:
        ids, utk = load_set(args.identities, "identities"), load_set(args.utkface, "utkface")
    except (EvaluationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _, test_idx = split_photos_by_identity(ids.identity, 0.3, seed=args.seed)
    if len(test_idx) < args.n or len(utk) < args.n_ref + args.n:
        print(f"error: need {args.n} held-out identity photos (have {len(test_idx)}) and {args.n_ref + args.n} "
              f"UTKFace faces (have {len(utk)}); lower --n / --n-ref", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    test = fill_attributes(ids.subset(np.sort(rng.choice(test_idx, args.n, replace=False))), "fixed")
    perm = rng.permutation(len(utk))
    ref, held = utk.subset(np.sort(perm[:args.n_ref])), utk.subset(np.sort(perm[args.n_ref:args.n_ref + args.n]))

    methods = {"none": lambda d: np.asarray(d.faces)}
    for s in B.BLUR_SIZES:
        methods[f"blur {s}x{s} kernel"] = lambda d, s=s: B.gaussian_blur(np.asarray(d.faces), s)
    for s in B.BLUR_SIZES:
        methods[f"blur sigma={s}"] = lambda d, s=s: B.gaussian_blur_sigma(np.asarray(d.faces), s)
    for s in B.PIXEL_SIZES:
        methods[f"pixelate {s}"] = lambda d, s=s: B.pixelate(np.asarray(d.faces), s)
    methods[f"k-same k={args.k}"] = lambda d: B.k_same(np.asarray(d.faces), d.identity, args.k,
                                                       features=d.utility())[0]

    t0 = time.perf_counter()
    features = InceptionFeatures(batch_size=25)
    ref_f = features(np.asarray(ref.faces))
    clear_ids, clear_utk = features(np.asarray(test.faces)), features(np.asarray(held.faces))
    out = {"n": args.n, "n_ref": args.n_ref, "floor": real_floor(ref_f, args.n, seed=args.seed), "methods": {}}
    print(f"{args.n} faces per method; reference {args.n_ref} real UTKFace faces; real-vs-real floor at "
          f"n={args.n}: FID {out['floor']['fid']:.1f}\n")
    print(f"{'method':<20} {'FID realism':>11} {'FID paired':>10} {'FID in-dist':>11} {'KID realism':>11} "
          f"{'KID in-dist':>11}")
    for name, fn in methods.items():
        a = clear_ids if name == "none" else features(fn(test))
        u = clear_utk if name == "none" else features(fn(held))
        r = {"fid_realism": fid_from_features(a, ref_f), "fid_paired": fid_from_features(a, clear_ids),
             "fid_in_distribution": fid_from_features(u, ref_f),
             "kid_realism": kid(a, ref_f, subset_size=args.n, seed=args.seed)[0],
             "kid_in_distribution": kid(u, ref_f, subset_size=args.n, seed=args.seed)[0]}
        out["methods"][name] = r
        print(f"{name:<20} {r['fid_realism']:>11.1f} {r['fid_paired']:>10.1f} {r['fid_in_distribution']:>11.1f} "
              f"{r['kid_realism']:>11.4f} {r['kid_in_distribution']:>11.4f}", flush=True)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\n{out['seconds']:.0f} s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
