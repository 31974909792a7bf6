"""A training run's folder: what its files are called, its loss log, and the trained generator
in it (find, load, export, run on utility vectors).

Files in ``RUN_DIR``: ``config.json``, ``log.csv`` (one row per ``log_every`` steps),
``samples/epoch_NNN.png`` (the same fixed utility vectors every epoch), ``checkpoints/
last.safetensors``, ``generator.safetensors`` (final generator alone, for :func:`load_generator`)
and ``identifier.safetensors`` when the perceptual loss is on.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from .amp import autocast
from .atomic import atomic_path
from .checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from .generator import Generator, GeneratorConfig
from .train_config import TrainConfig, TrainError, dataclass_from_dict, jsonable
from .utility import UTILITY_DIM

#: ``meta["format"]`` of a training checkpoint and of a generator file.
CHECKPOINT_FORMAT = "upgan-train/1"
GENERATOR_FORMAT = "upgan-generator/1"
CHECKPOINT_NAME = "checkpoints/last.safetensors"
GENERATOR_NAME = "generator.safetensors"
IDENTIFIER_NAME = "identifier.safetensors"
LOG_NAME = "log.csv"
CONFIG_NAME = "config.json"
#: The losses a training step reports, in the order of its loss vector (``Trainer.train_step``).
LOSS_COLUMNS = ("d_loss", "g_adv", "g_l2", "g_mask", "g_perceptual", "g_total")
#: Columns of ``log.csv``: loss values are means over the steps since the previous row
#: (unweighted parts; ``g_total`` is the weighted sum the generator minimises; 0 = loss disabled).
LOG_COLUMNS = ("step", "epoch", "images", "seconds", "images_per_s") + LOSS_COLUMNS


# ============================================================================ the log
class LogWriter:
    """Appends rows to a run's ``log.csv`` (with the header when the file is new), each flushed at once."""

    def __init__(self, run_dir: str | os.PathLike):
        path = Path(run_dir) / LOG_NAME
        new_file = not path.exists()
        self._file = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=LOG_COLUMNS)
        if new_file:
            self._writer.writeheader()
            self._file.flush()

    def write(self, row: dict) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def load_log(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``RUN_DIR/log.csv`` as column -> numpy array (empty arrays when nothing was logged yet)."""
    path = Path(run_dir) / LOG_NAME
    if not path.exists():
        raise TrainError(f"{path}: no training log; train first (`upgan train --out {run_dir}`)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {c: np.array([float(r[c]) for r in rows]) for c in LOG_COLUMNS}


def truncate_log(path: Path, step: int) -> None:
    """Drop rows a killed run wrote after its last checkpoint (they will be logged again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(float(r["step"])) <= step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        w.writeheader()
        w.writerows(rows)


# ============================================================================ the generator
def save_generator(run_dir: Path, generator: torch.nn.Module, cfg: TrainConfig, step: int) -> Path:
    """Write ``RUN_DIR/generator.safetensors``: the generator's weights alone, with its config."""
    return save_checkpoint(run_dir / GENERATOR_NAME, {"generator": generator.state_dict()},
                           {"format": GENERATOR_FORMAT, "generator_config": jsonable(cfg.generator),
                            "step": step, "losses": list(cfg.losses)})


def generator_file(run_dir_or_checkpoint: str | os.PathLike) -> Path:
    """The file holding a run's newest generator: for a run folder the newer (by step) of
    ``generator.safetensors`` and the last checkpoint; a file is returned as it is."""
    p = Path(run_dir_or_checkpoint)
    if not p.is_dir():
        return p
    cands = [c for c in (p / GENERATOR_NAME, p / CHECKPOINT_NAME) if c.exists()]
    if not cands:
        raise CheckpointError(f"{run_dir_or_checkpoint}: no {GENERATOR_NAME} or {CHECKPOINT_NAME}; is it a "
                              "training run folder (`upgan train --out DIR`)?")
    return max(cands, key=lambda c: read_meta(c).get("step", -1))  # ties: generator.safetensors (smaller)


def load_generator(run_dir_or_checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu") -> Generator:
    """The trained generator (eval mode) from a run folder, its ``generator.safetensors`` or a training checkpoint.

    For a run folder the newer of ``generator.safetensors`` (written when a run finishes) and the
    last checkpoint is used: a run that is still training, or was extended and then killed,
    gives the generator of its last checkpoint.
    """
    p = generator_file(run_dir_or_checkpoint)
    states, meta = load_checkpoint(p, map_location=map_location)
    if meta.get("format") == CHECKPOINT_FORMAT:
        gcfg = meta["config"]["generator"]
    elif meta.get("format") == GENERATOR_FORMAT:
        gcfg = meta["generator_config"]
    else:
        raise CheckpointError(f"{p}: not a generator or training checkpoint (format {meta.get('format')!r})")
    G = Generator(dataclass_from_dict(GeneratorConfig, gcfg, f"{p}: generator config"))
    try:
        G.load_state_dict(states.get("generator_ema", states["generator"]))  # the weight average when trained with one
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{p}: the generator weights do not fit its config ({str(e).splitlines()[0]})") from e
    return G.to(map_location).eval()


def export_generator(run_dir_or_checkpoint: str | os.PathLike, out: str | os.PathLike,
                     dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write the run's newest generator alone, its floating-point weights cast to `dtype` (bf16
    halves the file: 50 MB for the full generator, so it fits a transfer cap on the way back from a GPU machine), with its
    metadata; :func:`load_generator` reads the result (weights cast back to float32)."""
    src = generator_file(run_dir_or_checkpoint)
    states, meta = load_checkpoint(src)
    if "generator" not in states:
        raise CheckpointError(f"{src}: holds no generator weights")
    weights = {k: (v.to(dtype) if v.is_floating_point() else v)
               for k, v in states.get("generator_ema", states["generator"]).items()}
    return save_checkpoint(out, {"generator": weights}, meta)


@torch.no_grad()
def generate(generator: torch.nn.Module, utility, batch_size: int = 256, dtype: torch.dtype | None = None):
    """Run ``generator`` on (N,17) utility vectors in eval mode -> (faces (N,3,S,S) [-1,1], p_face (N,1,S,S)) on CPU."""
    u = torch.as_tensor(np.asarray(utility, dtype=np.float32) if not torch.is_tensor(utility) else utility)
    if u.ndim != 2 or u.shape[1] != UTILITY_DIM:
        raise ValueError(f"utility must be (N, {UTILITY_DIM}), got {tuple(u.shape)}")
    p = next(generator.parameters())
    was_training = generator.training
    generator.eval()
    faces, masks = [], []
    try:
        for i in range(0, len(u), batch_size):
            with autocast(p.device, dtype):
                f, m = generator(u[i:i + batch_size].to(p.device))
            faces.append(f.float().cpu())
            masks.append(torch.softmax(m.float(), dim=1)[:, :1].cpu())
    finally:
        generator.train(was_training)
    return torch.cat(faces), torch.cat(masks)
