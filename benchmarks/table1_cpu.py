#!/usr/bin/env python
"""Table 1 on real data, sized for a CPU: the evaluation code path of ``upgan evaluate`` on the
first ``--people`` identities of a prepared identity set and a prepared UTKFace set.

What is reduced against the full preset (and printed with the table): the number of people, the
FID/KID sample sizes, the utility sample, only dlib's descriptor as attacker by default (the
VGG-19 attacker is a GPU job), the attribute estimator (width 16, 48 px input, 6 epochs) and
k-same-net at its smoke width. Use a UTKFace set disjoint from the faces the UP-GAN run trained
on: the realism reference and the utility faces are drawn from it. The UP-GAN row comes from
``--run`` (any training run folder, e.g. one trained on CPU with ``upgan train``); without it the
row is left out and said so.

  upgan prepare utkface --source $UPGAN_DATA/UTKFace.tar.gz --out prepared/utk
  upgan prepare identities --source $UPGAN_DATA/celeba-identities.tar.gz --out prepared/ids
  upgan train --data prepared/utk10k --out RUN ...          # (prepared with --limit 10000)
  python benchmarks/table1_cpu.py --identities prepared/ids --utkface prepared/utk \
      --exclude prepared/utk10k --max-utk 4000 --run RUN --out table_cpu

Prints the Markdown table, the sizes, and seconds per method.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--identities", required=True, help="prepared identity set (upgan prepare identities)")
    p.add_argument("--utkface", required=True, help="prepared UTKFace set (upgan prepare utkface)")
    p.add_argument("--out", required=True, help="folder for table1.md/.csv, privacy_utility.png, results.json")
    p.add_argument("--exclude", nargs="+", default=[], metavar="SET_DIR",
                   help="prepared sets whose UTKFace faces (by source name) are left out, e.g. the set the "
                        "UP-GAN run trained on")
    p.add_argument("--holdout", type=int, default=None, metavar="N",
                   help="use only the N faces `upgan train --holdout N` left out of training (the same seeded draw)")
    p.add_argument("--max-utk", type=int, default=None,
                   help="then use a random sample (seeded) of this many UTKFace faces")
    p.add_argument("--run", default=None, help="UP-GAN training run folder (omit: no UP-GAN row)")
    p.add_argument("--attributes", default=None,
                   help="attribute estimator checkpoint (default: a CPU-sized one trained here on the UTKFace "
                        "training part: width 16, 48 px input, --attribute-epochs epochs)")
    p.add_argument("--attribute-epochs", type=int, default=6)
    p.add_argument("--people", type=int, default=40, help="identities used (the first N by label)")
    p.add_argument("--attackers", nargs="+", default=["dlib"], choices=["vgg", "dlib"])
    p.add_argument("--fid-images", type=int, default=100)
    p.add_argument("--fid-real", type=int, default=300)
    p.add_argument("--utility-images", type=int, default=300)
    p.add_argument("--ksame-net-epochs", type=int, default=3, help="0: leave the k-same-net row out")
    p.add_argument("--blur-by", default="ksize", choices=["ksize", "sigma"])
    p.add_argument("--rows", nargs="+", default=[], metavar="NAME",
                   help="build only these rows (none, blur-5, ..., pixelate-25, k-same, k-same-net, up-gan; default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from upgan_lib import evaluate as E
    from upgan_lib.config import seed_everything

    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    try:
        ids = E.load_set(args.identities, "identities")
        utk = E.load_set(args.utkface, "utkface")
    except (E.EvaluationError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.exclude:
        used = set()
        for d in args.exclude:
            used |= set(E.load_set(d, "utkface").sources)
        keep = np.array([i for i, name in enumerate(utk.sources) if name not in used], dtype=int)
        print(f"UTKFace: {len(utk)} faces, {len(utk) - len(keep)} left out (in {', '.join(args.exclude)})")
        utk = utk.subset(keep)
    if args.holdout:
        utk = utk.holdout_split(args.holdout)[1]
        print(f"UTKFace: the {len(utk)} faces held out of training")
    if args.max_utk and len(utk) > args.max_utk:
        utk = utk.subset(np.sort(np.random.default_rng(args.seed).choice(len(utk), args.max_utk, replace=False)))
    people = np.unique(ids.identity)[: args.people]
    ids = ids.subset(np.flatnonzero(np.isin(ids.identity, people)))
    cfg = replace(E.EvalConfig.for_preset("full"), attackers=tuple(args.attackers), fid_images=args.fid_images,
                  fid_real=args.fid_real, utility_images=args.utility_images,
                  kid_subset=min(args.fid_images, args.fid_real // 2), blur_by=args.blur_by, seed=args.seed,
                  ksame_net_preset="smoke", ksame_net_epochs=args.ksame_net_epochs or None, rows=tuple(args.rows))
    from upgan_lib.attributes import AttributeConfig

    attribute_cfg = replace(AttributeConfig.for_preset("full"), width=16, input_size=48, epochs=args.attribute_epochs)
    estimator = None
    if args.attributes:
        from upgan_lib.attributes import load_attribute_estimator

        estimator = load_attribute_estimator(args.attributes)
    upgan = E.load_upgan(args.run) if args.run else None
    ksame_net = "train" if args.ksame_net_epochs else None
    t = time.perf_counter()
    res = E.evaluate(ids, utk, cfg, upgan=upgan, ksame_net=ksame_net, estimator=estimator,
                     attribute_cfg=attribute_cfg, out_dir=args.out)
    E.write_outputs(res, args.out)
    print(E.to_markdown(res))
    print(f"\n{len(people)} people, {len(ids)} photos; sizes {json.dumps(res.info['sizes'])}")
    print(f"threads {torch.get_num_threads()}; total {time.perf_counter() - t:.0f} s; per method (s): "
          + ", ".join(f"{k} {sum(v.values()):.0f}" for k, v in res.info["timings"].items() if isinstance(v, dict)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
