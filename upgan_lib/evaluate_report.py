"""Table 1 written out: its columns, the markdown table with its notes, the CSV and JSON files,
the privacy-versus-utility plot, and the one-line progress summary of a row."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .evaluate_setup import EvalResult


COLUMNS = [  # key, header, format
    ("label", "Method", "{}"),
    ("tm1_vgg", "TM-I VGG-19", "{:.3f}"),
    ("tm2_vgg", "TM-II VGG-19", "{:.3f}"),
    ("tm1_dlib", "TM-I dlib", "{:.3f}"),
    ("tm2_dlib", "TM-II dlib", "{:.3f}"),
    ("fid_realism", "FID realism", "{:.1f}"),
    ("kid_realism", "KID realism", "{:.4f}"),
    ("fid_paired", "FID paired", "{:.1f}"),
    ("kid_paired", "KID paired", "{:.4f}"),
    ("fid_utk", "FID in-dist", "{:.1f}"),
    ("kid_utk", "KID in-dist", "{:.4f}"),
    ("age_mae", "Age MAE (y)", "{:.1f}"),
    ("gender_acc", "Gender acc", "{:.3f}"),
    ("race_acc", "Race acc", "{:.3f}"),
    ("landmark_err", "Landmark err (px)", "{:.2f}"),
    ("landmark_failed", "Re-detect fails", "{}"),
]


def _fmt(v, f: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f.format(v)


def summary_line(row: dict) -> str:
    """One short progress line per evaluated method (the whole row goes into Table 1)."""
    keys = [k for k in ("tm2_vgg", "tm2_dlib", "fid_realism", "gender_acc") if k in row]
    cols = {k: (h, f) for k, h, f in COLUMNS}
    parts = ", ".join(f"{cols[k][0]} {_fmt(row[k], cols[k][1])}" for k in keys)
    return f"{row['label']:<18} {parts} ({row['seconds']:.0f} s)"


def format_row(row: dict) -> str:
    return "  ".join(f"{h}={_fmt(row[k], f)}" for k, h, f in COLUMNS if k in row)


def table_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [c for c in COLUMNS if any(c[0] in r for r in rows)]


def to_markdown(result: EvalResult) -> str:
    cols = table_columns(result.rows)
    info = result.info
    s = info["sizes"]
    lines = ["| " + " | ".join(h for _, h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in result.rows:
        lines.append("| " + " | ".join(_fmt(r.get(k), f) for k, _, f in cols) + " |")
    fid = info["fid"]
    fl = fid["floor_real_vs_real"]
    notes = [
        "",
        f"Identification: top-1 accuracy on {s['test_photos']} held-out photos of {s['identities']} people "
        f"(trained on {s['train_photos']}); chance {s['chance']:.3f}. TM-I: identifier trained on clear photos; "
        "TM-II: on clear + obscured photos."
        + ("" if "utility_identification" not in info else
           f" The utility alone (an identifier fitted on the 17 numbers of the training photos, attributes "
           f"and 7 landmarks) names {info['utility_identification']:.3f} of the held-out photos: a method that "
           f"keeps the utility readable (that is its purpose) leaves this much to a TM-II attacker who reads "
           f"it back, whatever face it draws."),
        f"FID/KID: standard Inception-v3 pool features; {fid['n_obscured']} obscured test photos per method. "
        f"Realism: against {fid['n_real_reference']} held-out real UTKFace faces; paired: against the same photos "
        f"clear; in-dist: {fid['n_utk_obscured']} obscured held-out UTKFace faces against the same real UTKFace "
        f"reference (the protocol that reproduces the paper's ordering when its 'Gaussian 5' is read as sigma = 5 px). "
        f"Real-vs-real floor at n={fl['n']}: FID {fl['fid']:.1f}, KID {fl['kid']:.4f}.",
        f"Utility: attribute estimator on {s['utk_utility']} held-out UTKFace faces, obscured, against their labels "
        f"(clear: age MAE {info['attribute_estimator_accuracy']['age_mae']:.1f} y, gender "
        f"{info['attribute_estimator_accuracy']['gender_acc']:.3f}, race {info['attribute_estimator_accuracy']['race_acc']:.3f}); "
        "landmark error: 7 utility points re-detected by dlib on the obscured face vs the original's, px at 128, "
        "over the faces re-detected (fails counted).",
        f"Identity photos' attributes: {info['identity_attributes']}.",
    ]
    for k, why in info.get("skipped", {}).items():
        notes.append(f"Not measured: {k} ({why}).")
    return "\n".join(lines + notes) + "\n"


def write_outputs(result: EvalResult, out_dir) -> dict[str, Path]:
    """table1.md, table1.csv, results.json and privacy_utility.png in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "table1.md", "csv": out / "table1.csv", "json": out / "results.json",
             "png": out / "privacy_utility.png"}
    paths["md"].write_text(to_markdown(result))
    keys = ["method"] + [k for k, _, _ in table_columns(result.rows)]
    with open(paths["csv"], "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in result.rows:
            w.writerow({k: r.get(k) for k in keys})
    paths["json"].write_text(json.dumps({"rows": result.rows, "info": result.info}, indent=1, default=str))
    fig = plot_privacy_utility(result)
    fig.savefig(paths["png"], dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _annotate_spread(ax, labels, xs, ys) -> None:
    """Label each point; labels of points that (nearly) coincide are stacked, not printed over each
    other. Points with a missing value (NaN: nothing measured) are not drawn, so not labelled."""
    pts = [(lab, x, y) for lab, x, y in zip(labels, xs, ys) if np.isfinite(x) and np.isfinite(y)]
    if not pts:
        return
    x0, x1 = min(p[1] for p in pts), max(p[1] for p in pts)
    y0, y1 = min(p[2] for p in pts), max(p[2] for p in pts)

    def cell(v, lo, hi):  # 1/25 of the range
        return round((v - lo) / ((hi - lo) or 1.0) * 25)

    seen: dict[tuple[int, int], int] = {}
    for label, x, y in pts:
        key = (cell(x, x0, x1), cell(y, y0, y1))
        k = seen.get(key, 0)
        seen[key] = k + 1
        ax.annotate(label, (x, y), fontsize=7, xytext=(4, 3 - 9 * k), textcoords="offset points")


def plot_privacy_utility(result: EvalResult):
    """Identification accuracy under threat model II (x; left is more private) against utility
    (y): gender accuracy (left panel) and landmark error (right panel), one point per method."""
    import matplotlib.pyplot as plt  # the caller's backend: inline in a notebook, a file writer elsewhere

    rows = result.rows
    attackers = [a for a in ("dlib", "vgg") if f"tm2_{a}" in rows[0]]
    panels = [("gender_acc", "gender accuracy on obscured faces (higher = more utility)")]
    if "landmark_err" in rows[0]:
        panels.append(("landmark_err", "landmark error, px (lower = more utility)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    markers = {"dlib": "o", "vgg": "s"}
    for ax, (key, ylabel) in zip(axes[0], panels):
        for a in attackers:
            xs = [r[f"tm2_{a}"] for r in rows]
            ys = [r[key] for r in rows]
            ax.scatter(xs, ys, marker=markers[a], label=f"{a} (TM-II)", alpha=0.8)
            if a == attackers[0]:
                _annotate_spread(ax, [r["method"] for r in rows], xs, ys)
        ax.axvline(result.info["sizes"]["chance"], color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel("identification accuracy, threat model II (lower = more private)")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.suptitle("Privacy versus utility", fontsize=10)
    fig.tight_layout()
    return fig
