"""Plotting helpers shared by the notebooks: image grids, landmark/mask overlays, tensor -> image."""
from __future__ import annotations

import cv2
import numpy as np

from .utility import reduce_68_to_7


def to_uint8_images(x) -> np.ndarray:
    """Torch (N,3,H,W) in [-1,1] or numpy uint8/float (N,H,W,3) -> uint8 (N,H,W,3)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).numpy()
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
