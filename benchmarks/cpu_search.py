#!/usr/bin/env python
"""The search behind the ``cpu`` training preset: variants of the paper's generator and losses,
each trained for the same wall time on this machine, scored on UTKFace faces none of them saw.

Every variant is ``TrainConfig.for_preset("cpu")`` with a few settings changed (see VARIANTS), trained
with :func:`upgan_lib.train.train` on the training part of the prepared set (the preset's fixed
held-out draw is left out), for ``--minutes`` of wall time. Scores, in-distribution protocol of
``upgan evaluate``: FID and KID between faces generated from the utility of ``--fid-gen`` held-out
faces and ``--fid-real`` *other* held-out real faces, with the real-vs-real floor at the same sizes.
Variants with a weight average are also scored without it (the raw generator of the same run).

  upgan prepare utkface --source $UPGAN_DATA/UTKFace.tar.gz --out prepared/utk
  python benchmarks/cpu_search.py --data prepared/utk --out search --minutes 8
  python benchmarks/cpu_search.py --data prepared/utk --out search --score upgan_lib/pretrained/generator.safetensors

Prints a Markdown table (also written to OUT/search.md, with OUT/search.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

#: name -> (what it tests, settings changed from the cpu preset)
VARIANTS = {
    "w4-d64": ("the preset: width 1/4, drawn at 64 px", {}),
    "w8-d128": ("width 1/8 drawn at 128 px (the earlier CPU recipe's network)", {"width": 0.125, "draw_size": 128}),
    "w2-d64": ("width 1/2, drawn at 64 px", {"width": 0.5}),
    "w4-d32": ("width 1/4, drawn at 32 px", {"draw_size": 32}),
    "w4-d64-lr": ("the preset with two time-scale rates (G 1e-4, D 4e-4)", {"lr_g": 1e-4, "lr_d": 4e-4}),
    "w4-d64-b64": ("the preset at batch 64", {"batch_size": 64}),
}


def variant_config(name: str):
    from upgan_lib.train_config import TrainConfig, network_configs

    cfg = TrainConfig.for_preset("cpu")
    changes = dict(VARIANTS[name][1])
    width, draw = changes.pop("width", cfg.generator.width), changes.pop("draw_size", cfg.generator.drawn_size)
    cfg.generator, cfg.discriminator, cfg.augment = network_configs(width, draw)
    return replace(cfg, **changes)


def score(generator, util, real_feats, features, kid_subset: int) -> dict:
    """In-distribution FID and KID of the faces ``generator`` draws from ``util`` against ``real_feats``."""
    from upgan_lib.fid import fid_from_features, kid
    from upgan_lib.run_folder import generate
    from upgan_lib.viz import to_uint8_images

    feats = features(to_uint8_images(generate(generator, util)[0]))
    return {"fid": fid_from_features(feats, real_feats), "kid": kid(feats, real_feats, subset_size=kid_subset)[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="prepared UTKFace set (upgan prepare utkface)")
    p.add_argument("--out", required=True, help="folder for the runs and search.md/.json")
    p.add_argument("--minutes", type=float, default=8.0, help="wall time each variant trains")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--fid-gen", type=int, default=500, help="held-out utility vectors to generate from")
    p.add_argument("--fid-real", type=int, default=1000, help="other held-out real faces as the reference")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--score", nargs="+", default=None, metavar="RUN_OR_FILE",
                   help="only score these trained runs or generator files (e.g. upgan_lib/pretrained/generator.safetensors) "
                        "with the same protocol, and train nothing")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from upgan_lib.checkpoint import load_checkpoint
    from upgan_lib.faceset import FaceSet
    from upgan_lib.fid import InceptionFeatures, fid_from_features, kid
    from upgan_lib.generator import Generator
    from upgan_lib.run_folder import CHECKPOINT_NAME, load_generator
    from upgan_lib.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    data = FaceSet.load(args.data)
    cfg0 = variant_config(args.variants[0])
    held = data.holdout_split(cfg0.holdout)[1]
    if args.fid_gen + args.fid_real > len(held):
        print(f"error: --fid-gen + --fid-real = {args.fid_gen + args.fid_real} > {len(held)} held-out faces", file=sys.stderr)
        return 2
    util = held.utility()[:args.fid_gen].astype(np.float32)
    features = InceptionFeatures("cpu", batch_size=50)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    cache = out / f"reference_features_{args.fid_gen}_{args.fid_real}.npz"  # the same held-out faces every time
    if cache.exists():
        with np.load(cache) as z:
            real_feats, floor_feats = z["real"], z["floor"]
    else:
        real_feats = features(np.asarray(held.faces[args.fid_gen:args.fid_gen + args.fid_real]))
        floor_feats = features(np.asarray(held.faces[:args.fid_gen]))  # the generated faces' real counterparts
        np.savez(cache, real=real_feats, floor=floor_feats)
    kid_subset = min(args.fid_gen, args.fid_real) // 2
    floor = {"fid": fid_from_features(floor_feats, real_feats), "kid": kid(floor_feats, real_feats, subset_size=kid_subset)[0]}
    print(f"held out {len(held)} faces; features in {time.perf_counter() - t:.0f} s; real-vs-real floor "
          f"FID {floor['fid']:.1f}, KID {floor['kid']:.4f} ({args.fid_gen} vs {args.fid_real})", flush=True)
    results = []
    if args.score:
        for path in args.score:
            G = load_generator(path)
            row = {"generator": str(path), "params_g": G.num_parameters(), **score(G, util, real_feats, features, kid_subset)}
            print(json.dumps(row), flush=True)
        return 0
    for name in args.variants:
        cfg = variant_config(name)
        run = out / name
        t = time.perf_counter()
        res = train(cfg, data, run, resume=True, progress=False, device="cpu", data_path=Path(args.data).resolve(),
                    max_seconds=args.minutes * 60)
        secs = time.perf_counter() - t
        G = load_generator(run)
        row = {"variant": name, "what": VARIANTS[name][0], "steps": res.step, "images": res.step * cfg.batch_size,
               "epochs": round(res.step / res.steps_per_epoch, 2), "train_s": round(secs), "params_g": G.num_parameters(),
               **{k: v for k, v in score(G, util, real_feats, features, kid_subset).items()}}
        if cfg.ema:
            states, _ = load_checkpoint(run / CHECKPOINT_NAME)
            raw = Generator(G.cfg)
            raw.load_state_dict(states["generator"])
            s = score(raw.eval(), util, real_feats, features, kid_subset)
            row.update(fid_no_ema=s["fid"], kid_no_ema=s["kid"])
        results.append(row)
        print(json.dumps(row), flush=True)
    lines = ["| variant | what | steps | epochs | G params | FID in-dist | KID in-dist | FID without EMA |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r["fid"]):
        lines.append(f"| {r['variant']} | {r['what']} | {r['steps']} | {r['epochs']} | {r['params_g']:,} | "
                     f"{r['fid']:.1f} | {r['kid']:.4f} | {r.get('fid_no_ema', float('nan')):.1f} |")
    lines.append(f"\nEach variant: {args.minutes:g} min wall time, {torch.get_num_threads()} threads; scored on "
                 f"{args.fid_gen} generated vs {args.fid_real} real held-out faces; floor FID {floor['fid']:.1f}, "
                 f"KID {floor['kid']:.4f}.")
    (out / "search.md").write_text("\n".join(lines) + "\n")
    (out / "search.json").write_text(json.dumps({"floor": floor, "results": results, "minutes": args.minutes}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
