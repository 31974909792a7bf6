"""Pictures and plots shared by the notebooks and the trainer: tensor -> image, landmark/mask
overlays, image grids, a generator's sample rows (the trainer's ``samples/epoch_NNN.png`` and the
paper's Figure 4) and the loss curves of training runs."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path
from .images import to_uint8
from .run_folder import generate, load_generator, load_log
from .utility import decode_utility, reduce_68_to_7


def to_uint8_images(x) -> np.ndarray:
    """Torch (N,3,H,W) in [-1,1] or numpy uint8/float (N,H,W,3) -> uint8 (N,H,W,3)."""
    if hasattr(x, "detach"):
        x = to_uint8(x)
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    return x


def overlay_landmarks(faces, landmarks68, masks=None, dim_outside: float = 0.35) -> np.ndarray:
    """Copies of `faces` (N,H,W,3 uint8) with 68 landmarks (red), the 7 utility points (yellow)
    and, if given, everything outside the mask darkened."""
    out = to_uint8_images(faces).copy()
    pts7 = reduce_68_to_7(np.asarray(landmarks68))
    for i in range(len(out)):
        img = out[i]
        if masks is not None:
            m = np.asarray(masks[i]) > 0
            img[~m] = (img[~m] * dim_outside).astype(np.uint8)
        for x, y in np.asarray(landmarks68[i]):
            cv2.circle(img, (int(round(x)), int(round(y))), 1, (255, 40, 40), -1, cv2.LINE_AA)
        for x, y in pts7[i]:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, (255, 230, 0), -1, cv2.LINE_AA)
    return out


def face_grid(rows, title: str | None = None, row_labels=None, col_labels=None, scale: float = 1.2):
    """A matplotlib figure showing `rows` (list of image batches, each (n,H,W,3)) as a grid."""
    import matplotlib.pyplot as plt

    rows = [to_uint8_images(r) for r in rows]
    ncol = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(ncol * scale, len(rows) * scale), squeeze=False)
    for i, r in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j < len(r):
                ax.imshow(r[j])
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
            if i == 0 and col_labels is not None and j < len(col_labels):
                ax.set_title(col_labels[j], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ============================================================================ a generator's samples
def sample_indices(n: int, count: int, seed: int) -> np.ndarray:
    """The fixed faces whose utility vectors are rendered every epoch (same for the same data and seed)."""
    count = min(count, n)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


def _draw_points(img: np.ndarray, points: np.ndarray) -> np.ndarray:
    img = img.copy()
    for x, y in points:
        cv2.circle(img, (int(round(float(x))), int(round(float(y)))), 2, (255, 230, 0), -1, cv2.LINE_AA)
    return img


def sample_rows(generator, utility, real_faces=None) -> tuple[list[np.ndarray], list[str]]:
    """Rows for a sample grid: [real faces], generated faces, generated face on grey inside its mask with the
    7 target landmarks of the utility vector (yellow): utility preserved = dots on the eyes, nose and mouth."""
    faces, pmask = generate(generator, utility)
    size = faces.shape[-1]
    gen = to_uint8_images(faces)
    grey = np.full_like(gen, 128)
    m = pmask.permute(0, 2, 3, 1).numpy()
    comp = (gen * m + grey * (1 - m)).astype(np.uint8)
    _, _, _, pts = decode_utility(np.asarray(utility, dtype=np.float32), size=size)
    comp = np.stack([_draw_points(c, p) for c, p in zip(comp, pts)])
    rows, labels = [gen, comp], ["generated", "mask + target points"]
    if real_faces is not None:
        rows.insert(0, to_uint8_images(real_faces))
        labels.insert(0, "real")
    return rows, labels


def ablation_rows(runs: dict[str, str | os.PathLike], utility, real_faces=None,
                  with_masks: bool = False) -> tuple[list[np.ndarray], list[str]]:
    """Figure 4 side by side: one row per run (label -> run folder), the same utility vectors in every row.

    ``real_faces`` (uint8 NHWC) adds the faces the vectors came from as a first row;
    ``with_masks`` adds each run's mask + target-points row under its faces.
    """
    rows, labels = [], []
    if real_faces is not None:
        rows.append(to_uint8_images(real_faces))
        labels.append("real")
    for label, run_dir in runs.items():
        r, _ = sample_rows(load_generator(run_dir), utility)
        rows.append(r[0])
        labels.append(label)
        if with_masks:
            rows.append(r[1])
            labels.append(f"{label}: mask")
    return rows, labels


def tile_rows(rows: list[np.ndarray], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Stack image rows (each (n,H,W,3) uint8) into one uint8 picture with ``pad`` pixels between cells."""
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), fill, np.uint8)
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img
    return out


def save_png(path: Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 picture atomically."""
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the PNG")
    return path


# ============================================================================ training curves
def plot_losses(runs: dict[str, str | os.PathLike], columns=("d_loss", "g_adv", "g_l2", "g_mask", "g_perceptual")):
    """One panel per loss column of the runs' ``log.csv``, one line per run (label -> run folder).
    Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    logs = {label: load_log(d) for label, d in runs.items()}
    colours = {label: f"C{i}" for i, label in enumerate(logs)}  # one colour per run in every panel
    cols = [c for c in columns if any(np.any(lg[c] != 0) for lg in logs.values())]
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(3.2 * max(1, len(cols)), 2.6), squeeze=False)
    for ax, c in zip(axes[0], cols):
        for label, lg in logs.items():
            if np.any(lg[c] != 0):  # 0 = loss switched off in that run
                ax.plot(lg["step"], lg[c], label=label, color=colours[label],
                        marker="." if len(lg["step"]) < 20 else None)
        ax.set_title(c, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], color=colours[label], label=label) for label in logs]
    axes[0][0].legend(handles=handles, fontsize=7)
    fig.tight_layout()
    return fig
