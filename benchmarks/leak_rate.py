#!/usr/bin/env python
"""Faces `upgan obscure` leaves clear, by an independent judge (dlib's CNN detector).

For identity photos (``--photos N`` of ``$UPGAN_DATA/celeba-identities.tar.gz``, one person each
as far as possible; ``--photos 0``: all 3,789) and for the constructed cases of
``upgan_lib.leak`` (rotations, small-face group photos, a 6000x4000 photo, sunglasses; built from
``--constructed`` further photos at run time, never stored), prints how many of the faces the judge
finds are left unchanged in the output and how many are still the same person to dlib's recogniser
(distance < 0.6), and how many of those are matches on a box left all grey (dlib's recogniser
reads a blank square as close to some faces); see ``upgan_lib/leak.py`` for the exact rules.

The obscurer is `upgan obscure`'s default: the generator and attribute estimator shipped with the
course (``--checkpoint RUN`` for another), both detectors, and ``--verify-identity`` (a replaced
face still the same person to dlib's recogniser is replaced more strongly, then greyed; its
recogniser is the judge's recogniser, so "same person" here is what dlib can still match).
``--no-verify-identity`` measures the paper's pipeline alone. ``--method`` compares blur,
pixelate, gray. The dlib CNN judge takes ~1-3 s per photo on one CPU thread (``--judge-upsample
0`` is several times faster and misses the smallest faces); ``--max-minutes`` stops early and says how far it got.

  python benchmarks/leak_rate.py --photos 150 --constructed 20 --out leak.json
  python benchmarks/leak_rate.py --photos 0 --constructed 0      # every identity photo (hours)
  python benchmarks/leak_rate.py --photos 0 --constructed 0 --judge-upsample 0 --max-minutes 60

Every identity photo on two cores: two runs, each a shard (photo k goes to shard k mod N, so
shards stopped early still cover the photos evenly), then their records merged:

  python benchmarks/leak_rate.py --photos 0 --constructed 0 --shard 0/2 --out a.json &
  python benchmarks/leak_rate.py --photos 0 --constructed 0 --shard 1/2 --out b.json
  python benchmarks/leak_rate.py --merge a.json b.json

The judge's boxes depend only on the photos: ``--judge-boxes a.json b.json`` re-uses those of
earlier runs, and a rerun with another obscurer setting takes about half the time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def ob_default(name: str):
    from upgan_lib.obscure_config import ObscureConfig

    return getattr(ObscureConfig(), name)


def read_boxes(text: str, allow_none: bool = False) -> tuple:
    """``--identity-reads`` (``--extra-reads``: ``allow_none``) parsed as `upgan obscure` parses it."""
    from upgan_lib.obscure_config import parse_read_boxes

    try:
        return parse_read_boxes(text, allow_none)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def make_obscurer(args):
    from upgan_lib import obscure as ob

    cfg = ob.ObscureConfig(method=args.method, detectors=tuple(args.detectors.split(",")),
                           verify_identity=args.verify_identity, identity_margin=args.identity_margin,
                           feather_margin=args.feather_margin, identity_reads=args.identity_reads,
                           extra_reads=args.extra_reads, extra_reads_margin=args.extra_reads_margin,
                           context_every_face=args.context_every_face, context_blur=args.context_blur,
                           sharpen=args.sharpen)
    if args.method != "upgan":
        return ob.Obscurer(cfg), f"method {args.method}"
    checkpoint = None if args.checkpoint == "shipped" else args.checkpoint
    return ob.Obscurer.from_paths(cfg, checkpoint=checkpoint), f"generator {args.checkpoint}"


def print_summary(label: str, s: dict, identity: bool = True, records: list = ()) -> None:
    from upgan_lib.leak import judge_box_offsets

    print(f"{label}: {s['photos']} photos, {s['judge_faces']} judge faces: {s['left_unchanged']} left unchanged "
          f"({100 * s['left_unchanged_rate']:.2f} %), "
          + ("" if not identity else f"{s['same_person']} still the same person ({100 * s['same_person_rate']:.2f} %; "
             f"{s['same_person_on_grey']} of them on a box that is all grey, "
             f"{100 * s['same_person_rate_not_grey']:.2f} % without those; {s.get('same_person_like_blank', 0)} "
             "faces it matches to a blank photo too), ")
          + f"{s['photos_reported_without_faces']} photo(s) reported without faces")
    for shape, off in judge_box_offsets(list(records)).items():
        print(f"  the judge's box against the obscurer's {shape} boxes, medians over {off['faces']} faces both found: "
              f"centre {100 * off['centre_x']:+.1f} % of the width across, {100 * off['centre_y']:+.1f} % of the height "
              f"down; size {off['width']:.3f} x {off['height']:.3f}")


def load_judge_boxes(paths: list, judge_name: str):
    """The judge's boxes of earlier runs' ``--out`` files (:class:`upgan_lib.leak.KnownBoxes`);
    a file from another judge is refused."""
    from upgan_lib.leak import KnownBoxes

    boxes = {}
    for f in paths:
        run = json.loads(Path(f).read_text())
        if run.get("judge") != judge_name or "judge_boxes" not in run:
            raise SystemExit(f"{f}: no judge boxes of this judge ({judge_name}) in it (judge: {run.get('judge')}); "
                             "give --out files of runs with the same --judge-upsample")
        boxes.update(run["judge_boxes"])
    return KnownBoxes(boxes)


def merge(paths: list) -> int:
    """Print the combined counts of several runs' ``--out`` files (e.g. the shards of one run)."""
    from upgan_lib.leak import LeakResult

    runs = [json.loads(Path(f).read_text()) for f in paths]
    print(f"{runs[0]['obscurer']}; detectors {runs[0]['detectors']}; judge {runs[0]['judge']}; "
          f"shards {', '.join(r.get('shard', '0/1') for r in runs)}")
    for label in ("identity photos", "constructed cases"):
        parts = [r[label] for r in runs if label in r]
        if not parts:
            continue
        total = LeakResult(photos=sum(p["photos"] for p in parts), faces=sum(p["judge_faces"] for p in parts),
                           unchanged=sum(p["left_unchanged"] for p in parts),
                           same_person=sum(p["same_person"] for p in parts),
                           same_person_on_grey=sum(p.get("same_person_on_grey", 0) for p in parts),
                           same_person_like_blank=sum(p.get("same_person_like_blank", 0) for p in parts),
                           photos_without_faces=sum(p["photos_reported_without_faces"] for p in parts))
        print_summary(label, total.summary(), records=[x for p in parts for x in p.get("records", [])])
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", help="identity archive (default $UPGAN_DATA/celeba-identities.tar.gz)")
    p.add_argument("--photos", type=int, default=150, help="identity photos to check as they are (0: all)")
    p.add_argument("--constructed", type=int, default=20, help="further photos to build the constructed cases from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="upgan", choices=["upgan", "blur", "pixelate", "gray"])
    p.add_argument("--checkpoint", default="shipped",
                   help="generator run/checkpoint (default: the model shipped with the course, as `upgan obscure`)")
    p.add_argument("--detectors", default="hog,centerface")
    p.add_argument("--judge-upsample", type=int, default=1)
    p.add_argument("--verify-identity", action=argparse.BooleanOptionalAction, default=True,
                   help="as `upgan obscure --verify-identity` (default: on, as there)")
    p.add_argument("--identity-margin", type=float, default=ob_default("identity_margin"),
                   help="a replaced face counts as changed from dlib distance 0.6 + this (default: as `upgan obscure`)")
    p.add_argument("--context-every-face", action=argparse.BooleanOptionalAction,
                   default=ob_default("context_every_face"),
                   help="every replaced face feathered in over its blurred surroundings before it is judged "
                        "(default: as `upgan obscure`)")
    p.add_argument("--context-blur", type=float, default=ob_default("context_blur"),
                   help="sigma of that blur, times the face's width (default: as `upgan obscure`)")
    p.add_argument("--sharpen", type=float, default=ob_default("sharpen"),
                   help="as `upgan obscure --sharpen` (default: as there)")
    p.add_argument("--feather-margin", type=float, default=ob_default("feather_margin"),
                   help="with --no-context-every-face: a face that passed closer than 0.6 + this is given "
                        "that step if it reads farther (default: as `upgan obscure`)")
    p.add_argument("--identity-reads", type=read_boxes, default=ob_default("identity_reads"),
                   help="as `upgan obscure --identity-reads` (default: as there)")
    p.add_argument("--extra-reads", type=lambda t: read_boxes(t, allow_none=True), default=ob_default("extra_reads"),
                   help="as `upgan obscure --extra-reads` (default: as there)")
    p.add_argument("--extra-reads-margin", type=float, default=ob_default("extra_reads_margin"),
                   help="a face closer than 0.6 + this is given the extra reads (default: as `upgan obscure`)")
    p.add_argument("--judge-boxes", nargs="+", metavar="JSON",
                   help="earlier runs' --out files: the judge's boxes recorded there are re-used for the same "
                        "photos (the judge, ~60 %% of the time, runs only on new ones; one re-used photo in 50 "
                        "is judged again and must agree)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop checking identity photos after this long (the photos checked are reported)")
    p.add_argument("--no-identity", action="store_true", help="skip the recogniser (leak only)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the per-face records here (JSON)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="check only identity photos k with k mod N = I")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print the combined results of runs' --out files")
    args = p.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    shard, shards = (int(v) for v in args.shard.split("/"))

    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from upgan_lib.config import data_root
    from upgan_lib.identities import list_identity_photos
    from upgan_lib.landmarks import FaceLandmarker
    from upgan_lib.leak import Judge, LeakResult, constructed_cases, measure, photo_cases
    from upgan_lib.identity_change import sample_identity_photos
    from upgan_lib.rawfiles import RawSource
    from upgan_lib.recognise import FaceRecogniser

    src = args.source or str(data_root() / "celeba-identities.tar.gz")
    if not Path(src).exists():
        print(f"no identity archive at {src}: set UPGAN_DATA or --source")
        return 2
    n_all = len(list_identity_photos(RawSource(src)).photos)
    n = n_all if args.photos == 0 else min(args.photos + args.constructed, n_all)
    photos = [(name, rgb) for name, _, rgb in sample_identity_photos(src, n, seed=args.seed)]
    as_is, for_cases = (photos, []) if args.photos == 0 else (photos[:args.photos], photos[args.photos:])
    as_is = as_is[shard::shards]
    judge = Judge(args.judge_upsample)
    judge_name = f"dlib CNN mmod, upsample {args.judge_upsample}"
    known = load_judge_boxes(args.judge_boxes, judge_name) if args.judge_boxes else None
    rec = None if args.no_identity else FaceRecogniser()
    obscurer, note = make_obscurer(args)
    t0 = time.time()

    def progress(k, total, r):
        if k % 25 == 0 or k == total:
            s = r.summary()
            print(f"  [{k}/{total}] faces {s['judge_faces']}, unchanged {s['left_unchanged']}, same person "
                  f"{s['same_person']}, {time.time() - t0:.0f} s", flush=True)

    context = ("context every face" if args.context_every_face else f"feather {args.feather_margin}")
    note += (f"; --verify-identity (margin {args.identity_margin}, {context}, context blur {args.context_blur}, "
             f"sharpen {args.sharpen}, "
             f"reads {args.identity_reads}, extra reads {args.extra_reads or 'none'} below {0.6 + args.extra_reads_margin:.2f}, "
             f"fills tried {obscurer.cfg.grey_cells})"
             if args.verify_identity else "; --no-verify-identity")
    out = {"obscurer": note, "detectors": args.detectors, "judge": judge_name, "shard": args.shard, "judge_boxes": {}}
    print(f"{note}; detectors {args.detectors}; judge dlib CNN (upsample {args.judge_upsample})", flush=True)
    parts = []
    if as_is:
        print(f"identity photos: {len(as_is)}", flush=True)
        r = LeakResult()
        for i in range(0, len(as_is), 25):  # judge and obscure in chunks: progress stays visible
            cases = photo_cases(as_is[i:i + 25], judge, known)
            out["judge_boxes"].update({c.name: [list(b) for b in c.boxes] for c in cases})
            measure(cases, obscurer, rec, r)
            progress(min(i + 25, len(as_is)), len(as_is), r)
            if args.max_minutes and time.time() - t0 > 60 * args.max_minutes and i + 25 < len(as_is):
                print(f"  stopped by --max-minutes after {i + 25} of {len(as_is)} photos", flush=True)
                break
        parts.append(("identity photos", r))
    if for_cases:
        cases = constructed_cases(for_cases, judge, FaceLandmarker(), seed=args.seed)
        print(f"constructed cases: {len(cases)} ({', '.join(sorted({c.kind for c in cases}))})", flush=True)
        r = measure(cases, obscurer, rec, progress=progress)
        parts.append(("constructed cases", r))
    for label, r in parts:
        s = r.summary()
        out[label] = {**s, "records": r.records}
        print_summary(label, s, rec is not None, r.records)
        for rr in r.records:
            if rr["unchanged"] or rr.get("same_person"):
                print(f"    {rr['case']}: box {rr['box']} unchanged={rr['unchanged']} distance={rr.get('distance')} "
                      f"grey={rr.get('grey')} actions={rr['actions']}")
    if known:
        print(f"judge boxes re-used for {known.used} photo(s), {known.rechecked} of them judged again: all agreed")
    print(f"{time.time() - t0:.0f} s on {args.threads} thread(s); load average {os.getloadavg()[0]:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
