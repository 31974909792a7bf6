"""`upgan obscure`: replace every face found in a photo (or a folder of photos), failing closed.

The command line of :mod:`upgan_lib.obscure`: its options (:func:`add_arguments`), and
:func:`run`, which loads the models, stops with status 2 before writing anything when an input,
a model or an option is wrong, obscures the photos (:func:`upgan_lib.obscure_folder.obscure_path`),
prints a line per photo and a summary, and writes the JSON report. Exit status: 0 done, 1 some
photo failed, 2 nothing was done, 3 (with ``--strict``) some photo had no face found.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import resolve_device
from .detect import DetectorModelNotFound
from .face_sources import parse_fixed_attributes, shipped_model
from .imagefile import SKIP_REASONS
from .landmarks import ModelNotFound
from .obscure import Obscurer
from .obscure_config import METHODS, ObscureConfig, ObscureError, parse_read_boxes
from .obscure_folder import obscure_path, write_report
from .swap import SwapConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="INPUT", help="a .jpg/.png photo or a folder of them (recursive)")
    p.add_argument("output", metavar="OUTPUT", help="output photo (or existing folder) for one photo; a folder for a folder")
    p.add_argument("--method", choices=METHODS, default="upgan",
                   help="upgan (generated face, default), blur, pixelate, ksame (needs --gallery), gray")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="UP-GAN run folder or generator checkpoint (method upgan; default: the generator shipped "
                        "with the course, upgan_lib/pretrained)")
    p.add_argument("--attributes", metavar="PATH",
                   help="attribute estimator checkpoint (`upgan attributes`; default: the estimator shipped with the "
                        "course): each face keeps its own estimated age, gender and race")
    p.add_argument("--fixed-attributes", nargs="?", const="paper", default=None, metavar="AGE,GENDER,RACE",
                   help="give every face the same attributes instead of estimating them: the paper's fixed values "
                        "(age 30, male, White) without a value, or e.g. 45,1,2")
    p.add_argument("--gallery", metavar="DIR", help="prepared face set averaged by --method ksame")
    p.add_argument("--report", metavar="JSON", help="write the per-photo, per-face report here")
    p.add_argument("--strength", type=int, default=25,
                   help="blur kernel / pixel block in 128-frame px, scaled to each face (paper: 5, 15, 25; default 25, "
                        "the strongest: in the canonical frame weaker settings leave most faces recognisable, see "
                        "benchmarks/identity_change_rate.py)")
    p.add_argument("--blend", choices=("poisson", "alpha", "paste"), default="poisson", help="how the face is blended in")
    p.add_argument("--detect-max-side", type=int, default=1280,
                   help="detect on a copy downscaled to this long side (raise it for small faces in large photos)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="generator precision; bf16 is faster on recent GPUs and AVX-512 BF16 CPUs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: half the cores; a one-face-at-a-time generator scales poorly "
                        "and suffers from other jobs on the CPU)")
    p.add_argument("--detectors", default="hog,centerface",
                   help="face detectors, comma-separated: hog (dlib, the paper's), centerface (high recall, tiles "
                        "and pyramid); default both: every face either finds is obscured")
    p.add_argument("--no-rotations", action="store_true",
                   help="do not search a photo turned by 90/180/270 degrees when no face is found upright")
    p.add_argument("--verify-identity", action=argparse.BooleanOptionalAction, default=True,
                   help="check every obscured face with dlib's recogniser (~0.3 s/face): a replaced face that is "
                        "not clearly another person (distance < 0.63) is replaced more strongly (with its age moved "
                        "20, then 35 years), and greyed if it still is; a blurred/pixelated one is greyed (default: on)")
    p.add_argument("--context-every-face", action=argparse.BooleanOptionalAction, default=True,
                   help="with the identity check: feather every replaced face in over its surroundings blurred "
                        "(jaw, ears, hairline) before it is judged; --no-context-every-face keeps the paper's "
                        "Poisson blend for faces the check passes clearly, at a cost in privacy (default: on)")
    p.add_argument("--sharpen", type=float, default=ObscureConfig().sharpen, metavar="AMOUNT",
                   help="with the identity check: sharpen every face it blends in (unsharp mask of this amount; "
                        "a soft generated face is read as the person it replaced more often; 0: off; "
                        "default: %(default)s)")
    p.add_argument("--identity-reads", default=",".join(ObscureConfig().identity_reads),
                   help="the boxes each face is read in for the identity check, any of own (its box), wide (1.25x "
                        "its box), cnn (where dlib's CNN detector would box it); it has to read as another person "
                        "in all of them (about 0.15 s per box and face; default: %(default)s)")
    p.add_argument("--extra-reads", default=",".join(ObscureConfig().extra_reads),
                   help="the boxes a face is read in as well once it reads closer than 0.6 + --extra-reads-margin "
                        "(any of own, wide, cnn, or none); it has to read as another person in each "
                        "(default: %(default)s)")
    p.add_argument("--extra-reads-margin", type=float, default=ObscureConfig().extra_reads_margin, metavar="M",
                   help="a face that reads closer than 0.6 + M is given the extra reads (default: %(default)s; 0.15 "
                        "caught a few more faces on the identity photos for a run about a quarter longer, see README)")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 3 when a photo has no face found (it is still written, unchanged)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args) -> int:
    try:
        cfg = _config(args)
        if not Path(args.input).exists():
            raise ObscureError(f"input {args.input} not found; nothing was written")
        if args.attributes and not Path(args.attributes).exists():
            raise ObscureError(f"attribute estimator checkpoint {args.attributes} not found; nothing was written")
        obscurer = _obscurer(args, cfg)
        progress = None if args.quiet else _print_progress
        report = obscure_path(args.input, args.output, obscurer, overwrite=args.overwrite, progress=progress)
        report["checkpoint"] = args.checkpoint or (f"shipped: {shipped_model('generator')}" if args.method == "upgan" else None)
        report["attributes"] = (args.attributes or str(obscurer.attributes)) if args.method in ("upgan", "ksame") else None
    except ObscureError as e:
        print(f"upgan obscure: error: {e}", file=sys.stderr)
        return 2
    if args.report:
        write_report(report, args.report)
    s = report["summary"]
    _print_summary(s, strict=getattr(args, "strict", False))
    if s["failed"]:
        return 1
    return 3 if s["photos_without_faces"] and getattr(args, "strict", False) else 0


def _config(args) -> ObscureConfig:
    """The settings the options ask for (``--detectors`` checked here)."""
    detectors = tuple(d.strip() for d in str(getattr(args, "detectors", "hog,centerface")).split(",") if d.strip())
    if not detectors or any(d not in ("hog", "centerface") for d in detectors):
        raise ObscureError(f"--detectors {getattr(args, 'detectors', '')!r}: use hog, centerface or hog,centerface")
    reads, extra = _read_boxes(args, "identity_reads"), _read_boxes(args, "extra_reads", allow_none=True)
    return ObscureConfig(method=args.method, strength=args.strength, detect_max_side=args.detect_max_side,
                         swap=SwapConfig(blend=args.blend), detectors=detectors,
                         search_rotations=not getattr(args, "no_rotations", False),
                         verify_identity=getattr(args, "verify_identity", True),
                         context_every_face=getattr(args, "context_every_face", True),
                         identity_reads=reads, extra_reads=extra,
                         extra_reads_margin=_not_negative(args, "extra_reads_margin"),
                         sharpen=_not_negative(args, "sharpen"))


def _not_negative(args, name: str) -> float:
    """Option ``name`` (``sharpen``, ``extra_reads_margin``; not given: ``ObscureConfig``'s default);
    a negative value is an :class:`ObscureError`."""
    value = getattr(args, name, None)
    value = getattr(ObscureConfig(), name) if value is None else value
    if not value >= 0:
        raise ObscureError(f"--{name.replace('_', '-')} {value}: use 0 (off) or more")
    return float(value)


def _read_boxes(args, name: str, allow_none: bool = False) -> tuple:
    """``--identity-reads`` / ``--extra-reads`` (``name``) as :func:`parse_read_boxes` reads them
    (not given: ``ObscureConfig``'s default); a bad value is an :class:`ObscureError`."""
    try:
        return parse_read_boxes(getattr(args, name, None) or ",".join(getattr(ObscureConfig(), name)) or "none",
                                allow_none)
    except ValueError as e:
        raise ObscureError(f"--{name.replace('_', '-')} {e}") from None


def _obscurer(args, cfg: ObscureConfig) -> Obscurer:
    """The obscurer with every model the options name loaded (and the detectors): a missing or
    wrong one stops here, before anything is written."""
    device = resolve_device(args.device)
    if device.type == "cpu":
        import torch  # only when the command runs: loading torch is slow

        torch.set_num_threads(getattr(args, "threads", None) or max(1, (os.cpu_count() or 2) // 2))
    fixed = parse_fixed_attributes(getattr(args, "fixed_attributes", None))
    if fixed is not None and args.attributes:
        raise ObscureError("--attributes and --fixed-attributes exclude each other: estimate, or fix; nothing was written")
    obscurer = Obscurer.from_paths(cfg, checkpoint=args.checkpoint, attributes=fixed or args.attributes,
                                   gallery=args.gallery, device=device, precision=getattr(args, "precision", "fp32"))
    try:
        obscurer.finder  # load the detectors now: a missing model stops before anything is written
    except (DetectorModelNotFound, ModelNotFound) as e:
        raise ObscureError(f"{e}; nothing was written") from e
    return obscurer


def _print_progress(k: int, n: int, entry: dict) -> None:
    """One line per photo: what was done to each face, or why nothing was written."""
    if "error" in entry:
        print(f"[{k}/{n}] {entry['input']}: FAILED, no output written: {entry['error']}", file=sys.stderr)
    elif not entry["faces"]:
        print(f"[{k}/{n}] {entry['input']} -> {entry['output']}: NO FACE FOUND - {entry['no_face']}", file=sys.stderr)
    else:
        acts = ", ".join(f"{f['action']}" + (f" ({f['reason']})" if f.get("reason") else "")
                         + (f" [turned {f['rotation']}]" if f.get("rotation") else "") for f in entry["faces"])
        print(f"[{k}/{n}] {entry['input']} -> {entry['output']}: {len(entry['faces'])} face(s) {acts}")


def _print_summary(s: dict, strict: bool) -> None:
    print(f"{s['written']}/{s['photos']} photo(s) written, {s['failed']} failed, {s['faces']} face(s): "
          + (", ".join(f"{v} {k}" for k, v in s["actions"].items()) or "none")
          + (f" ({s['replaced_more_strongly']} replaced more strongly after the identity check)"
             if s.get("replaced_more_strongly") else "")
          + (f"; greyed because {s['grey_reasons']}" if s["grey_reasons"] else "")
          + ("; skipped: " + ", ".join(f"{v} {SKIP_REASONS[k]}" for k, v in s["skipped_by_reason"].items())
             if s["skipped_files"] else ""))
    if s["photos_without_faces"]:
        print(f"WARNING: {s['photos_without_faces']} photo(s) with NO FACE FOUND were written unchanged (apart from "
              "metadata): check them" + ("" if strict else "; --strict makes this an error"), file=sys.stderr)
