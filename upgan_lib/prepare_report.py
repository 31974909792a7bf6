"""`upgan prepare`'s report: what was kept and what was skipped, by reason and by name, counted
while the photos are processed (:class:`Tally`), built into ``report.json`` (:func:`build_report`,
checked to add up) and summarised for people (:func:`format_report`)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_write

REPORT_NAME = "report.json"
REPORT_NAMES_PER_REASON = 200


@dataclass
class Tally:
    """What a run counts as it goes: skipped files by reason, detection paths, conversions, photos with
    several faces."""

    skipped: dict = field(default_factory=dict)  # reason -> [(name, message)]
    paths: dict = field(default_factory=dict)
    conversions: dict = field(default_factory=dict)
    several: list = field(default_factory=list)

    def skip(self, reason: str, name: str, message: str) -> None:
        self.skipped.setdefault(reason, []).append((name, message))


def _names(items: list[tuple[str, str]]) -> list[dict]:
    return [{"name": n, "message": m} for n, m in items[:REPORT_NAMES_PER_REASON]]


def build_report(dataset, source, out, fp, code, cfg, n_workers, inputs, usable, keep, tally, facts,
                 seconds) -> dict:
    """The report of one run (``code``: the code version, :func:`upgan_lib.prepare.code_version`); kept plus
    skipped must add up to the inputs."""
    skipped = {k: len(v) for k, v in sorted(tally.skipped.items())}
    attempted = len(usable) - sum(skipped.get(r, 0) for r in ("empty", "truncated", "corrupt", "too_small",
                                                               "too_large", "read_error"))
    found = len(keep) + skipped.get("face_too_small", 0)
    report = {
        "dataset": dataset, "source": str(source), "out": str(out), "fingerprint": fp,
        "code_version": code, "upgan_version": __version__,
        "options": {k: v for k, v in asdict(cfg).items()}, "detect": cfg.detect_config(dataset).as_dict(),
        "inputs": len(inputs), "kept": int(len(keep)), "skipped": skipped,
        "skipped_files": {k: _names(v) for k, v in sorted(tally.skipped.items())},
        "repaired": [{"name": i.name, "note": i.note} for i in inputs if i.note],
        "detection_rate": round(found / attempted, 5) if attempted else None,
        "detection_paths": dict(sorted(tally.paths.items())),
        "several_faces_kept_largest": {"count": len(tally.several), "names": tally.several[:REPORT_NAMES_PER_REASON]},
        "conversions": dict(sorted(tally.conversions.items())),
        "seconds": round(seconds, 2), "images_per_second": round(len(usable) / seconds, 2) if seconds > 0 else None,
        "workers": n_workers,
    }
    if dataset == "identities" and len(keep):
        ids, counts = np.unique([usable[i].labels[3] for i in keep], return_counts=True)
        report["identities"] = {"count": int(len(ids)), "photos_min": int(counts.min()),
                                "photos_median": float(np.median(counts)), "photos_max": int(counts.max()),
                                "with_one_photo": int(np.sum(counts == 1))}
        report["layout"] = facts.get("layout")
        report["identity_file"] = facts.get("identity_file")
        report["bad_identity_lines"] = facts.get("bad_identity_lines", [])[:REPORT_NAMES_PER_REASON]
        report["unlisted_files"] = {"count": len(facts.get("unlisted_files", [])),
                                    "names": facts.get("unlisted_files", [])[:20]}
    if dataset == "utkface":
        ign = facts.get("ignored_files", [])
        report["ignored_files"] = {"count": len(ign), "names": ign[:20]}
    if facts.get("not_listed"):  # folder sources: paths that are not files that could be read
        nl = facts["not_listed"]
        report["not_read_paths"] = {"count": len(nl), "by_reason": {r: sum(1 for _, x in nl if x == r)
                                                                   for r in sorted({x for _, x in nl})},
                                    "names": [f"{n} ({r})" for n, r in nl[:REPORT_NAMES_PER_REASON]]}
    total = report["kept"] + sum(skipped.values())
    if total != report["inputs"]:  # a bug, never bad input
        raise AssertionError(f"report does not add up: kept {report['kept']} + skipped {sum(skipped.values())} "
                             f"!= inputs {report['inputs']}")
    return report


def write_report(out: Path, report: dict) -> None:
    atomic_write(out / REPORT_NAME, json.dumps(report, indent=1))


def format_report(report: dict, max_names: int = 8) -> str:
    """Human-readable summary of a prepare report (what was kept, skipped and why, by name)."""
    lines = [f"{report['dataset']}: {report['kept']} of {report['inputs']} inputs kept -> {report['out']}"]
    if report.get("detection_rate") is not None:
        lines.append(f"  face found on {100 * report['detection_rate']:.2f}% of the decoded images; paths: "
                     + ", ".join(f"{k} {v}" for k, v in report["detection_paths"].items()))
    for reason, files in report["skipped_files"].items():
        lines.append(f"  skipped {report['skipped'][reason]} ({reason}):")
        for f in files[:max_names]:
            lines.append(f"    {f['name']}: {f['message']}")
        if report["skipped"][reason] > max_names:
            lines.append(f"    ... {report['skipped'][reason] - max_names} more in {REPORT_NAME}")
    for r in report.get("repaired", []):
        lines.append(f"  repaired name {r['name']!r}: {r['note']}")
    sev = report.get("several_faces_kept_largest", {})
    if sev.get("count"):
        lines.append(f"  {sev['count']} images held several faces; the largest was kept (e.g. {sev['names'][0]})")
    if report.get("conversions"):
        lines.append("  converted: " + ", ".join(f"{k} {v}" for k, v in report["conversions"].items()))
    if report.get("identities"):
        i = report["identities"]
        lines.append(f"  {i['count']} identities, {i['photos_min']}-{i['photos_max']} photos each "
                     f"(median {i['photos_median']:g})")
    if report.get("seconds") is not None:
        lines.append(f"  {report['seconds']:.1f} s, {report['images_per_second']} images/s on {report['workers']} worker(s)")
    return "\n".join(lines)
