"""`upgan evaluate`: the paper's Table 1 plus utility, for every obscuration method.

Rows: none, Gaussian blur 5/15/25, pixelation 5/15/25, k-same (k=10), k-same-net, UP-GAN.

Columns, and the data each is measured on:

* **Privacy** (identity photos, closed-set split of held-out *photos*): top-1 identification
  accuracy of two attackers (:mod:`upgan_lib.attackers`: the paper's VGG-19 and dlib's ResNet
  descriptor + softmax) under threat model I (trained on clear photos) and II (clear +
  obscured). Lower is more private; chance is 1 / identities.
* **Realism / fidelity** (:mod:`upgan_lib.fid`, standard Inception-v3): FID and KID of the
  obscured identity test photos against (a) *realism*: held-out real UTKFace faces, and (b)
  *paired*: the same test photos clear. Sample sizes and the real-vs-real floor are reported.
* **Utility** (held-out UTKFace faces, which carry true labels): age MAE (years), gender and race
  accuracy of the attribute estimator (:mod:`upgan_lib.attributes`) on the obscured faces
  against the original labels; landmark error (mean px over the 7 utility points at 128) of
  landmarks re-detected on the obscured face (``landmarks.FaceLandmarker``) against the
  original's, and the number of faces where re-detection found no face.

Identity photos have no attribute labels; the utility vectors that k-same and the generators
need are filled either with fixed values (the paper's way) or by the attribute estimator
(``EvalConfig.attribute_source``); the table says which.

Outputs in ``--out``: ``table1.md``, ``table1.csv``, ``privacy_utility.png`` and
``results.json`` (every number, sizes, floors, what was skipped and why).

**Where things are.** This module holds the command line (``add_arguments``, ``run``). The
settings, the inputs and the setup every row shares are in :mod:`upgan_lib.evaluate_setup`, the
rows and the whole table in :mod:`upgan_lib.evaluate_rows`, the written table, its files and the
plot in :mod:`upgan_lib.evaluate_report`. The names a notebook or script uses are importable from
here as well.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .attributes import load_attribute_estimator
from .checkpoint import CheckpointError
from .config import resolve_device, resolve_preset, seed_everything
from .evaluate_report import (COLUMNS, format_row, plot_privacy_utility, summary_line, table_columns, to_markdown,
                              write_outputs)
from .evaluate_rows import (evaluate, evaluate_method, ksame_net_from_checkpoint, landmark_errors, load_upgan,
                            obscure, smoke_upgan, table_methods, train_ksame_net_for_eval)
from .evaluate_setup import (EvalConfig, EvalContext, EvalResult, EvaluationError, check_inputs, load_set, smoke_data,
                             setup_evaluation, split_utk)
from .utility import reduce_68_to_7

#: what a notebook or script imports from here; most of it lives in the modules named in the module doc
__all__ = [
    "COLUMNS", "EvalConfig", "EvalContext", "EvalResult", "EvaluationError", "add_arguments", "check_inputs",
    "evaluate", "evaluate_method", "format_row", "ksame_net_from_checkpoint", "landmark_errors", "load_set",
    "load_upgan", "obscure", "plot_privacy_utility", "reduce_68_to_7", "run", "setup_evaluation", "smoke_data",
    "smoke_upgan", "split_utk", "summary_line", "table_columns", "table_methods", "to_markdown",
    "train_ksame_net_for_eval", "write_outputs",
]


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=None, help="UP-GAN training run folder (or generator/checkpoint file)")
    p.add_argument("--identities", default=None, help="prepared identity set (`upgan prepare identities --out DIR`)")
    p.add_argument("--utkface", default=None, help="prepared UTKFace set (`upgan prepare utkface --out DIR`)")
    p.add_argument("--out", required=True, help="folder for table1.md, table1.csv, privacy_utility.png, results.json")
    p.add_argument("--preset", default="auto", choices=["auto", "smoke", "full"],
                   help="smoke: SynthFaces and tiny models when no data are given (CPU, about a minute)")
    p.add_argument("--ksame-net", default=None, help="k-same-net checkpoint (ksame_net.save_ksame_net); trained on the UTKFace training part when absent")
    p.add_argument("--attributes", default=None, help="attribute estimator checkpoint; trained on UTKFace when absent")
    p.add_argument("--attribute-source", default=None, choices=["fixed", "estimator"],
                   help="how identity photos get age/gender/race (default from the preset: estimator)")
    p.add_argument("--attackers", nargs="+", default=None, choices=["vgg", "dlib"])
    p.add_argument("--fid-images", type=int, default=None, help="obscured test photos per method for FID/KID")
    p.add_argument("--region", default=None, choices=["crop", "face"])
    p.add_argument("--blur-by", default=None, choices=["ksize", "sigma"],
                   help="read blur 5/15/25 as kernel sizes (default) or as sigmas in px")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    preset = resolve_preset(args.preset)
    cfg = EvalConfig.for_preset(preset)
    over = {k: v for k, v in {"attribute_source": args.attribute_source, "region": args.region,
                              "attackers": tuple(args.attackers) if args.attackers else None,
                              "fid_images": args.fid_images, "blur_by": args.blur_by}.items() if v is not None}
    cfg = replace(cfg, seed=args.seed, **over)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    out = Path(args.out)
    try:
        if args.identities is None and args.utkface is None:
            if preset != "smoke":
                raise EvaluationError("--identities and --utkface are required with the full preset "
                                      "(use --preset smoke for the SynthFaces table)")
            identities, utk = smoke_data(cfg, args.seed)
        elif args.identities is None or args.utkface is None:
            raise EvaluationError("pass both --identities and --utkface (or neither, with --preset smoke)")
        else:
            identities, utk = load_set(args.identities, "identities"), load_set(args.utkface, "utkface")
        check_inputs(identities, utk)
        if args.run:
            upgan = load_upgan(args.run, device)
        elif preset == "smoke":
            upgan = smoke_upgan(out, cfg, device, args.seed)
        else:
            raise EvaluationError("--run RUN_DIR is required with the full preset (the trained UP-GAN)")
        estimator = None
        if args.attributes:
            try:
                estimator = load_attribute_estimator(args.attributes, map_location=device)
            except CheckpointError as e:
                raise EvaluationError(f"--attributes: {e}") from e
        ksame_net = ksame_net_from_checkpoint(args.ksame_net, device) if args.ksame_net else "train"
        result = evaluate(identities, utk, cfg, device, upgan=upgan, ksame_net=ksame_net, estimator=estimator,
                          out_dir=out)
    except (EvaluationError, FileNotFoundError) as e:
        print(f"upgan evaluate: {e}")
        return 2
    paths = write_outputs(result, out)
    print(to_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
