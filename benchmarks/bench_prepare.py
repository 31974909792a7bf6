"""Throughput of `upgan prepare`: images per second and the projected time for the whole set.

    python benchmarks/bench_prepare.py                        # UTKFace, 1,000 images spread over the set
    python benchmarks/bench_prepare.py --limit 0              # the whole set (22,000 images)
    python benchmarks/bench_prepare.py --dataset identities --limit 500

Reads the archive from the data root ($UPGAN_DATA) unless --source is given, writes into a
temporary folder (always re-prepared, never the cache) and prints images/s, the detection rate
and which detector path found the faces. Target: all of UTKFace in at most 5 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--dataset", default="utkface", choices=["utkface", "identities"])
    p.add_argument("--source", help="archive or folder (default: looked up in the data root)")
    p.add_argument("--limit", type=int, default=1000, help="images to prepare (0 = all)")
    p.add_argument("--workers", type=int, help="worker processes (default: all CPUs)")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", help="also write the prepare report here")
    args = p.parse_args(argv)

    from upgan_lib.prepare import PrepareConfig, PrepareError, default_source, prepare
    from upgan_lib.rawfiles import RawSource, is_image_name

    try:
        source = args.source or default_source(args.dataset)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    t0 = time.time()
    total = sum(is_image_name(e.name) for e in RawSource(source).list())
    t_list = time.time() - t0
    cfg = PrepareConfig(limit=args.limit or None, workers=args.workers)
    def cpu():
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.time(), cpu()
        res = prepare(args.dataset, source, tmp, cfg, progress=args.progress, force=True, verbose=False)
        wall, cpu_s = time.time() - t0, cpu() - c0
    rep = res.report
    n = rep["inputs"]
    rate = n / wall
    # a run of the whole set pays the fixed costs (listing, worker start-up, saving) once: scale the rest
    fixed = max(0.0, wall - rep["seconds"]) + t_list
    projected = fixed + rep["seconds"] * total / n
    print(f"data set          {args.dataset} ({source}), {total} images in the source")
    print(f"prepared          {n} inputs on {rep['workers']} worker(s) in {wall:.1f} s wall "
          f"({rep['seconds']:.1f} s in the pipeline)")
    print(f"throughput        {rate:.1f} images/s wall, {rep['images_per_second']} images/s in the pipeline")
    print(f"projected total   {projected:.0f} s ({projected / 60:.1f} min) for all {total} images")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU time          {cpu_s:.1f} s ({1000 * cpu_s / n:.1f} ms per image, all processes); on {ncpu} idle "
          f"core(s) the whole set would take about {cpu_s * total / n / ncpu / 60:.1f} min")
    print(f"machine load      {os.getloadavg()[0]:.1f} (1-min load average; above {ncpu} means other work shares the CPU)")
    print(f"kept              {rep['kept']} / {n}; face found on {100 * (rep['detection_rate'] or 0):.2f}% "
          "of the decoded images")
    print(f"detector paths    {json.dumps(rep['detection_paths'])}")
    print(f"skipped           {json.dumps(rep['skipped'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
