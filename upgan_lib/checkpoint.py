"""Safe, atomic checkpoints: one safetensors file, no pickle.

A checkpoint holds named *states* - any nesting of dicts, lists and tuples whose leaves are
tensors or plain JSON values (a model's or an optimiser's ``state_dict``, RNG states, a
GradScaler's state) - plus a JSON ``meta`` (config, step, ...). Tensors go into the safetensors
payload under their path (``optimizer_g/state/3/exp_avg``); the structure with the plain
values goes into the safetensors header's metadata. Loading never executes code.

Writes are atomic (:mod:`upgan_lib.atomic`): the file is written next to its destination,
fsync'ed, then renamed over it, so a run killed at any moment leaves either the previous
checkpoint or the new one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .atomic import atomic_path

FORMAT = "upgan-checkpoint/1"
_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INTKEYS = "__intkeys__"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or from an incompatible configuration."""


def _flatten(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[path] = obj.detach().to("cpu").contiguous()
        return {_TENSOR: path}
    if isinstance(obj, dict):
        intkeys = all(isinstance(k, int) for k in obj) and len(obj) > 0
        if not intkeys and not all(isinstance(k, str) for k in obj):
            raise TypeError(f"{path}: dict keys must be all str or all int, got {[type(k) for k in obj]}")
        out = {str(k): _flatten(v, f"{path}/{k}", tensors) for k, v in obj.items()}
        return {_INTKEYS: out} if intkeys else out
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return {_TUPLE: items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"{path}: cannot store a {type(obj).__name__} in a checkpoint (tensors and JSON values only)")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(_unflatten(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_INTKEYS}:
            return {int(k): _unflatten(v, tensors) for k, v in obj[_INTKEYS].items()}
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | os.PathLike, states: dict[str, Any], meta: dict | None = None) -> Path:
    """Write `states` and `meta` to `path` atomically; returns the path."""
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    structure = {name: _flatten(state, name, tensors) for name, state in states.items()}
    # safetensors refuses tensors that share memory: store independent copies
    seen: dict[int, str] = {}
    for key, t in list(tensors.items()):
        if t.numel() and t.data_ptr() in seen:
            tensors[key] = t.clone()
        elif t.numel():
            seen[t.data_ptr()] = key
    header = {"format": FORMAT, "structure": json.dumps(structure), "meta": json.dumps(meta or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """Only the JSON meta of a checkpoint (cheap: reads the header)."""
    path = Path(path)
    _check_exists(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e}); it may be truncated or not a safetensors file") from e
    _check_format(path, header)
    return json.loads(header["meta"])


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], dict]:
    """Read a checkpoint written by :func:`save_checkpoint`: returns ``(states, meta)``."""
    path = Path(path)
    _check_exists(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({e}); it may be truncated or not a safetensors file") from e
    _check_format(path, header)
    try:
        structure = json.loads(header["structure"])
        states = {name: _unflatten(s, tensors) for name, s in structure.items()}
        meta = json.loads(header["meta"])
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: the checkpoint's header is incomplete or damaged ({type(e).__name__}: {e}); "
                              "write it again with save_checkpoint (or `upgan train`)") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the checkpoint's metadata is not a JSON object; write it again")
    return states, meta


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint. Train one first (`upgan train --out RUN_DIR`) or check the path.")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; pass the checkpoint file inside it (e.g. {path}/checkpoints/last.safetensors)")


def _check_format(path: Path, header: dict) -> None:
    if header.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an upgan-course checkpoint (format {header.get('format')!r}, expected {FORMAT!r})"
        )
