"""Face images between the course's two formats.

* **uint8 (N, H, W, 3) RGB arrays**: how faces are stored (:class:`~upgan_lib.faceset.FaceSet`),
  shown, and released (an obscured face that is published is an 8-bit image).
* **float (N, 3, H, W) tensors in [-1, 1]**: what the networks take and give.

:func:`to_tensor` and :func:`to_uint8` cross between them; the callers check the shapes they
expect and say so in their own words.
"""
from __future__ import annotations

import numpy as np
import torch


def to_tensor(faces: np.ndarray | torch.Tensor, device=None) -> torch.Tensor:
    """uint8 (N, H, W, 3) array or tensor -> float (N, 3, H, W) in [-1, 1], on ``device`` (the bytes
    travel, then the floats are made there)."""
    x = faces if isinstance(faces, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(faces))
    if device is not None:
        x = x.to(device)
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) tensor in [-1, 1] -> uint8 (N, H, W, C): clamped, then rounded."""
    x = x.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()
