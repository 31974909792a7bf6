"""The training data: which face set a run trains on, and that set as tensors on the device.

The whole prepared set is held on the GPU as uint8 when it fits (``data_on_device="auto"``:
under 30 % of the free memory; UTKFace's 22k faces and masks are 1.4 GB), otherwise in pinned
host memory; augmentation then runs on the device. The 17-number utility vectors are built on
the device too, from the *warped* landmarks of each batch (:func:`utility_from_landmarks`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from .faceset import FaceSet, NotAPreparedSet
from .synthfaces import make_synthfaces
from .train_config import TrainConfig, TrainError
from .utility import N_ATTRIBUTES, SEVEN_POINT_SOURCES


def default_data(cfg: TrainConfig) -> FaceSet:
    """The embedded SynthFaces set used when no ``--data`` is given."""
    return make_synthfaces(cfg.synth_identities, cfg.synth_photos, seed=cfg.seed)


def load_data(path: str | os.PathLike | None, cfg: TrainConfig) -> FaceSet:
    """A prepared FaceSet folder, or SynthFaces when ``path`` is None; raises TrainError otherwise."""
    if path is None:
        return default_data(cfg)
    try:
        return FaceSet.load(path)
    except NotAPreparedSet as e:
        raise TrainError(f"--data {path}: {e}") from e


def data_fingerprint(data: FaceSet) -> dict:
    """Count, size and a hash of the face sources: a resumed run must see the same data."""
    h = hashlib.sha1("\n".join(data.sources).encode()).hexdigest()[:16]
    return {"count": len(data), "size": data.size, "sources_sha1": h, "dataset": data.meta.get("dataset", "")}


@dataclass
class DeviceData:
    """A FaceSet as tensors for training: uint8 faces (N,S,S,3) and masks (N,S,S), landmarks (N,68,2), attributes (N,3)."""

    faces: torch.Tensor
    masks: torch.Tensor
    landmarks68: torch.Tensor
    attrs: torch.Tensor
    on_device: bool

    @property
    def size(self) -> int:
        return int(self.faces.shape[1])

    def __len__(self) -> int:
        return int(self.faces.shape[0])


def to_device_data(data: FaceSet, device: torch.device, mode: str = "auto") -> DeviceData:
    """Move ``data`` to ``device`` if it fits (``mode`` auto/always/never), else pin it in host memory."""
    try:
        util = data.utility()  # every face needs age/gender/race labels
    except ValueError as e:
        raise TrainError(f"training data: {e}") from e
    def tensor(a, dtype):  # one RAM copy (memory-mapped prepared sets are read-only)
        return torch.from_numpy(np.array(a, dtype=dtype, order="C", copy=True))

    tensors = [tensor(data.faces, np.uint8), tensor(data.masks, np.uint8), tensor(data.landmarks68, np.float32),
               tensor(util[:, :N_ATTRIBUTES], np.float32)]
    on_device = device.type == "cpu"
    if device.type != "cpu" and mode != "never":
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        fits = True
        if device.type == "cuda" and mode == "auto":
            free, _ = torch.cuda.mem_get_info(device)
            fits = nbytes < 0.3 * free
        if fits:
            tensors = [t.to(device) for t in tensors]
            on_device = True
    if not on_device and device.type == "cuda":
        tensors = [t.pin_memory() for t in tensors]
    return DeviceData(*tensors, on_device=on_device)


def _reduction_matrix(device) -> torch.Tensor:
    m = torch.zeros(len(SEVEN_POINT_SOURCES), 68)
    for i, idx in enumerate(SEVEN_POINT_SOURCES):
        m[i, list(idx)] = 1.0 / len(idx)
    return m.to(device)


def reduce_68_to_7_torch(landmarks68: torch.Tensor) -> torch.Tensor:
    """(N,68,2) -> (N,7,2): ``utility.reduce_68_to_7`` as one matrix product on the tensors' device."""
    return torch.einsum("pk,nkc->npc", _reduction_matrix(landmarks68.device), landmarks68.float())


def utility_from_landmarks(attrs: torch.Tensor, landmarks68: torch.Tensor, size: int) -> torch.Tensor:
    """(N,3) encoded attributes + (N,68,2) pixel landmarks -> (N,17) utility (``encode_utility`` in torch)."""
    coords = reduce_68_to_7_torch(landmarks68) / (size / 2.0) - 1.0
    return torch.cat([attrs, coords.flatten(1)], dim=1)
