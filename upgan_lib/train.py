"""The UP-GAN trainer behind ``upgan train`` and notebook 07: fast, resumable and watchable.

:func:`train` drives a :class:`~upgan_lib.trainer.Trainer` (what one step does, and how it is
made fast: ``trainer.py``) over the epochs. Every ``log_every`` steps the losses summed on the
device are read (the only host synchronisation) into ``log.csv`` and the progress bar; every
``checkpoint_every`` steps and at the end a checkpoint is written; after every epoch the same
fixed utility vectors are drawn into ``samples/epoch_NNN.png``. The settings are a
:class:`~upgan_lib.train_config.TrainConfig` (``train_config.py``), the data a prepared face set
or SynthFaces (``train_data.py``), the files of a run folder are listed in ``run_folder.py``, and
the command line is ``train_cli.py``.

Resuming: ``RUN_DIR/checkpoints/last.safetensors`` is rewritten atomically every
``checkpoint_every`` steps and at the end (``checkpoint.save_checkpoint``: temp file, fsync,
rename; never pickle). It holds G, D, both optimisers and GradScalers, every RNG (torch CPU and
CUDA, numpy, python, the augmentation generator, the data-order generator as it was at the start
of the epoch, so the epoch's permutation is redrawn identically), the running loss sums, the
step, and the config. A run killed at any moment loses at most ``checkpoint_every`` steps and
``resume=True`` continues it; on the CPU the result equals an uninterrupted run.

Perceptual network (the loss needs a frozen face identifier, ``identity_net.FaceIdentifier``):

1. ``identifier=PATH`` (``--identifier``), a file from ``identity_net.save_identifier``;
2. else :func:`default_identifier_path` (``<cache>/models/identifier_<preset>.safetensors``),
   where chapter 05 saves the identifier it trains;
3. else, when ``train_identifier`` is on (smoke preset) and the data carry identity labels
   (SynthFaces does), a small identifier is trained on the training faces first (seconds);
4. else a clear error: UTKFace has no identity labels, so the full preset needs (1) or (2).

Whichever is used is copied to ``RUN_DIR/identifier.safetensors`` so a resumed run uses the
very same network.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .atomic import atomic_path, atomic_write
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import cache_dir, resolve_device, seed_everything
from .faceset import FaceSet
from .identity_net import IdentifierConfig, load_identifier, save_identifier, train_identifier
# chapter 07 and other callers also read ABLATION, LOG_COLUMNS, load_generator and load_log from here
from .run_folder import (CHECKPOINT_FORMAT, CHECKPOINT_NAME, CONFIG_NAME, GENERATOR_NAME, IDENTIFIER_NAME,  # noqa: F401
                         LOG_COLUMNS, LOG_NAME, LOSS_COLUMNS, LogWriter, load_generator, load_log, save_generator,
                         truncate_log)
from .train_config import ABLATION, TrainConfig, TrainError, config_differences  # noqa: F401
from .train_data import data_fingerprint
from .trainer import Trainer
from .viz import sample_indices, sample_rows, save_png, tile_rows


class TrainingOOM(RuntimeError):
    """The device ran out of memory; the message suggests a smaller batch."""


@dataclass
class TrainResult:
    """What a :func:`train` call did. ``images_per_s`` covers this call's steps (0 if none ran)."""

    run_dir: Path
    step: int
    epoch: int
    steps_per_epoch: int
    finished: bool
    stopped: bool
    checkpoint: Path
    generator_path: Path | None
    log_path: Path
    images_per_s: float
    seconds: float
    device: str
    dtype: str
    compiled: bool
    data_on_device: bool
    warnings: list[str] = field(default_factory=list)


# ============================================================================ identifier
def default_identifier_path(preset: str, cache: str | os.PathLike | None = None) -> Path:
    """Where chapter 05 saves the face identifier the perceptual loss uses on ``preset``."""
    return cache_dir(cache, create=False) / "models" / f"identifier_{preset}.safetensors"


def resolve_identifier(cfg: TrainConfig, data: FaceSet, device: torch.device, run_dir: Path,
                       progress: bool = True, say: Callable[[str], None] = print):
    """The frozen identifier for the perceptual loss (None when the loss is off); see the module doc."""
    if "perceptual" not in cfg.losses:
        return None
    run_copy = run_dir / IDENTIFIER_NAME
    if run_copy.exists():  # a resumed run keeps its network
        return load_identifier(run_copy, map_location=device)
    candidate = Path(cfg.identifier) if cfg.identifier else default_identifier_path(cfg.preset)
    if cfg.identifier and not candidate.exists():
        raise TrainError(f"--identifier {cfg.identifier}: no such file. Train one in chapter 05 "
                         "(identity_net.train_identifier + save_identifier) or drop 'perceptual' from --losses.")
    if candidate.exists():
        model = load_identifier(candidate, map_location=device)
        with atomic_path(run_copy) as tmp:
            shutil.copyfile(candidate, tmp)
        say(f"perceptual network: {candidate}")
        return model
    ids = np.asarray(data.identity)
    if cfg.train_identifier and np.all(ids >= 0) and len(np.unique(ids)) >= 2:
        icfg = cfg.identifier_training or IdentifierConfig.for_preset(cfg.preset)
        say(f"perceptual network: training a {cfg.preset} identifier on the data's {len(np.unique(ids))} identities")
        model, _ = train_identifier(data, icfg, device, progress=progress)
        save_identifier(model, run_copy)
        return model
    why = ("the data have no identity labels (UTKFace has none)" if np.any(ids < 0)
           else "training one here is off for this preset")
    raise TrainError(
        f"the perceptual loss needs a trained face identifier and none was found: {why}. Train one with chapter "
        f"05 (it saves {default_identifier_path(cfg.preset)}), or pass --identifier PATH (a file from "
        "identity_net.save_identifier), or train without it: --losses adv,l2,mask."
    )


# ============================================================================ training
def train(cfg: TrainConfig, data: FaceSet, out_dir: str | os.PathLike, resume: bool = False, progress: bool = True,
          device: str | torch.device | None = "auto", identifier=None, data_path=None,
          stop_after_steps: int | None = None, max_seconds: float | None = None) -> TrainResult:
    """Train UP-GAN on ``data`` into ``out_dir`` (see the module doc for the files it writes).

    ``resume``: continue the run in ``out_dir`` from its last checkpoint (its config must match
    ``cfg`` except for ``train_config.RESUME_FREE`` settings; a fresh start if there is none yet). Without
    ``resume`` an existing run there is an error, never overwritten. ``identifier``: a
    ``FaceIdentifier`` to use instead of :func:`resolve_identifier`'s search. ``stop_after_steps``:
    end this call after that many steps *without* a final checkpoint, as if the process had been
    killed (a crash drill for testing ``resume``). ``max_seconds``: a time budget for this call
    (a Colab session, a timed GPU lease): once spent, the run stops cleanly after the current step
    *with* a checkpoint, to be continued with ``resume``. Raises :class:`TrainError` on bad input and
    :class:`TrainingOOM` when the device runs out of memory.
    """
    t_start = time.perf_counter()
    run_dir = Path(out_dir)
    if cfg.holdout:
        if cfg.holdout >= len(data):
            raise TrainError(f"holdout={cfg.holdout} leaves no training faces of the {len(data)} given")
        data = data.holdout_split(cfg.holdout)[0]  # seed 0: the same faces held out for every run
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    say = print if progress else (lambda *a, **k: None)
    saved_states, saved_meta = _saved_run(cfg, data, run_dir, resume, say)
    _prepare_folder(cfg, run_dir, fresh=saved_meta is None)
    trainer = None
    try:
        if identifier is None:
            identifier = resolve_identifier(cfg, data, device, run_dir, progress=progress, say=say)
        if saved_meta is None:  # the same initial G and D with or without an identifier trained first
            seed_everything(cfg.seed)
        trainer = Trainer(cfg, data, device, identifier)
        warnings: list[str] = []
        if saved_meta is not None:
            warnings = _restore(trainer, saved_states, saved_meta, run_dir, say)
            saved_states = None  # the trainer holds the weights now
        run = _Loop(cfg, trainer, data, run_dir, data_path, say, progress, stop_after_steps, max_seconds, t_start,
                    warnings)
        return _loop(run)
    except Exception as e:
        if not _is_oom(e):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        last_ckpt_step = saved_meta["step"] if saved_meta else None
        raise TrainingOOM(_oom_message(e, trainer or cfg, device, last_ckpt_step)) from e


def _saved_run(cfg: TrainConfig, data: FaceSet, run_dir: Path, resume: bool, say) -> tuple[dict | None, dict | None]:
    """The checkpoint (states, meta) a resumed run continues from, (None, None) for a new run.

    Refuses to overwrite a run without ``resume``, and to resume one with other settings or data."""
    ckpt_path = run_dir / CHECKPOINT_NAME
    if not ckpt_path.exists():
        if resume:
            say(f"no checkpoint in {run_dir} yet: starting a new run")
        return None, None
    if not resume:
        raise TrainError(f"{run_dir} already holds a training run ({ckpt_path}); pass --resume (resume=True) to "
                         "continue it, or choose another --out folder")
    saved_states, saved_meta = load_checkpoint(ckpt_path, map_location="cpu")
    if saved_meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{ckpt_path}: not a training checkpoint (format {saved_meta.get('format')!r})")
    diffs = config_differences(saved_meta["config"], cfg.to_dict())
    if diffs:
        raise TrainError(f"{ckpt_path} was written with other settings than this run asks for:\n  " + "\n  ".join(diffs)
                         + f"\nResume with the run's settings ({run_dir / CONFIG_NAME}; `upgan train --out "
                         f"{run_dir} --resume` without other flags uses them) or start a new run in another folder.")
    fp_saved, fp_now = saved_meta["data"], data_fingerprint(data)
    if any(fp_saved.get(k) != fp_now[k] for k in ("count", "size", "sources_sha1")):
        raise TrainError(f"{ckpt_path} was trained on other data ({fp_saved.get('count')} faces from "
                         f"{fp_saved.get('path') or fp_saved.get('dataset')!r}) than given now ({fp_now['count']} "
                         f"faces): resume with the same --data, or start a new run in another folder.")
    return saved_states, saved_meta


def _prepare_folder(cfg: TrainConfig, run_dir: Path, fresh: bool) -> None:
    """The run folder with ``samples/`` and this call's ``config.json``; a fresh run is seeded and
    the files of a run killed before its first checkpoint are removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)
    if fresh:
        seed_everything(cfg.seed)
        for stale in (LOG_NAME, GENERATOR_NAME, IDENTIFIER_NAME):
            if (run_dir / stale).exists():
                (run_dir / stale).unlink()
    atomic_write(run_dir / CONFIG_NAME, json.dumps(cfg.to_dict(), indent=2))


def _restore(trainer: Trainer, states: dict, meta: dict, run_dir: Path, say) -> list[str]:
    """Put ``trainer`` where the checkpoint left off and drop the log rows written after it; returns warnings."""
    if meta["batch_size"] != trainer.batch_size or meta["steps_per_epoch"] != trainer.steps_per_epoch:
        raise TrainError(f"{run_dir / CHECKPOINT_NAME}: batch layout differs ({meta['batch_size']} x "
                         f"{meta['steps_per_epoch']} steps then, {trainer.batch_size} x "
                         f"{trainer.steps_per_epoch} now)")
    warnings = trainer.load_state(states)
    trainer.step, trainer.epoch, trainer.pos = meta["step"], meta["epoch"], meta["pos"]
    trainer.train_seconds = float(meta.get("train_seconds", 0.0))
    truncate_log(run_dir / LOG_NAME, trainer.step)
    for w in warnings:
        say(f"warning: {w}")
    return warnings


# ============================================================================ the loop
@dataclass
class _Loop:
    """One :func:`train` call's loop: the run, this call's limits, and what the call has done so far."""

    cfg: TrainConfig
    trainer: Trainer
    data: FaceSet
    run_dir: Path
    data_path: Path | None
    say: Callable[[str], None]
    progress: bool
    stop_after_steps: int | None
    max_seconds: float | None
    t_start: float
    warnings: list[str]
    steps_here: int = 0  # steps of this call
    stopped: bool = False  # ended before the last epoch (crash drill or time budget)
    out_of_time: bool = False
    t_call: float = 0.0  # when this call's first step started
    t_log: float = 0.0  # when the last log row was written
    images_since_log: int = 0

    def save(self, finished: bool) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, self.trainer.state(),
                        _meta(self.cfg, self.trainer, self.data, self.data_path, finished))


def _loop(run: _Loop) -> TrainResult:
    """Epochs until ``cfg.epochs`` or until this call is stopped; then the final files."""
    cfg, trainer = run.cfg, run.trainer
    run.say(f"training {cfg.preset}: {len(run.data)} faces, batch {trainer.batch_size}, {trainer.steps_per_epoch} "
            f"steps/epoch, epochs {trainer.epoch}->{cfg.epochs}, losses {'+'.join(cfg.losses)}; {trainer.device} "
            f"{_dtype_name(trainer)}, compile {'on' if trainer.compiled else 'off'}, "
            f"data {'on the device' if trainer.data.on_device else 'in host memory'}")
    idx_s = sample_indices(len(run.data), cfg.samples, cfg.seed)
    sample_util, sample_real = run.data.utility()[idx_s], run.data.faces[idx_s]
    log = LogWriter(run.run_dir)
    total = cfg.epochs * trainer.steps_per_epoch
    bar = tqdm(total=total, initial=min(trainer.step, total), unit="step", desc="train", disable=not run.progress,
               dynamic_ncols=True, leave=True)
    run.t_log = run.t_call = time.perf_counter()
    try:
        while trainer.epoch < cfg.epochs:
            _epoch(run, log, bar)
            if run.stopped:
                break
            trainer.end_epoch()
            rows, _ = sample_rows(trainer.G_out, sample_util, sample_real)
            save_png(run.run_dir / "samples" / f"epoch_{trainer.epoch:03d}.png", tile_rows(rows))
    finally:
        bar.close()
        log.close()
    return _finish(run)


def _epoch(run: _Loop, log: LogWriter, bar) -> None:
    """The steps left in the current epoch, with log rows and checkpoints as they fall due."""
    cfg, trainer = run.cfg, run.trainer
    bs = trainer.batch_size
    perm = trainer.epoch_order()
    for pos in range(trainer.pos, trainer.steps_per_epoch):
        real, real_mask, util = trainer.batch(perm[pos * bs:(pos + 1) * bs])
        trainer.acc += trainer.train_step(real, real_mask, util)
        trainer.acc_steps += 1
        trainer.step += 1
        trainer.pos = pos + 1
        run.steps_here += 1
        run.images_since_log += bs
        bar.update(1)
        if trainer.step % cfg.log_every == 0:
            _log_row(run, log, bar)
        if trainer.step % cfg.checkpoint_every == 0:
            run.save(False)
        if _stops_here(run):
            return


def _log_row(run: _Loop, log: LogWriter, bar) -> None:
    """The mean losses since the last row (the only host synchronisation) into ``log.csv`` and the bar."""
    trainer = run.trainer
    means = (trainer.acc / max(1, trainer.acc_steps)).tolist()
    now = time.perf_counter()
    ips = run.images_since_log / max(now - run.t_log, 1e-9)
    trainer.train_seconds += now - run.t_log
    run.t_log, run.images_since_log = now, 0
    log.write({"step": trainer.step, "epoch": round(trainer.step / trainer.steps_per_epoch, 4),
               "images": trainer.step * trainer.batch_size, "seconds": round(trainer.train_seconds, 3),
               "images_per_s": round(ips, 2), **{k: round(v, 6) for k, v in zip(LOSS_COLUMNS, means)}})
    trainer.acc.zero_()
    trainer.acc_steps = 0
    bar.set_postfix_str(f"D {means[0]:.3f} G {means[5]:.3f} L2 {means[2]:.3f} {ips:.0f} img/s")


def _stops_here(run: _Loop) -> bool:
    """Whether this call ends after the step just taken: the crash drill's step count (no
    checkpoint) or the time budget (with a checkpoint, unless one was just written)."""
    if run.stop_after_steps is not None and run.steps_here >= run.stop_after_steps:
        run.stopped = True
        return True
    if run.max_seconds is not None and time.perf_counter() - run.t_call >= run.max_seconds:
        if run.trainer.step % run.cfg.checkpoint_every:  # not just written
            run.save(False)
        run.stopped = run.out_of_time = True
        return True
    return False


def _finish(run: _Loop) -> TrainResult:
    """The final checkpoint and generator file of a run that was not stopped, and the result."""
    cfg, trainer = run.cfg, run.trainer
    seconds = time.perf_counter() - run.t_call
    gen_path = None
    if not run.stopped:
        run.save(True)
        gen_path = save_generator(run.run_dir, trainer.G_out, cfg, trainer.step)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    ips = run.steps_here * trainer.batch_size / seconds if run.steps_here else 0.0
    run.say(f"{'stopped' if run.stopped else 'done'}: step {trainer.step}, epoch {trainer.epoch}/{cfg.epochs}, "
            f"{ips:.0f} images/s over {run.steps_here} steps; run in {run.run_dir}")
    if run.out_of_time:
        run.say(f"time budget of {run.max_seconds:.0f} s spent: checkpoint at step {trainer.step}; continue with "
                f"`upgan train --out {run.run_dir} --resume`")
    return TrainResult(run_dir=run.run_dir, step=trainer.step, epoch=trainer.epoch,
                       steps_per_epoch=trainer.steps_per_epoch,
                       finished=not run.stopped and trainer.epoch >= cfg.epochs, stopped=run.stopped,
                       checkpoint=run.run_dir / CHECKPOINT_NAME, generator_path=gen_path,
                       log_path=run.run_dir / LOG_NAME, images_per_s=ips, seconds=time.perf_counter() - run.t_start,
                       device=str(trainer.device), dtype=_dtype_name(trainer), compiled=trainer.compiled,
                       data_on_device=trainer.data.on_device, warnings=run.warnings)


def _dtype_name(trainer: Trainer) -> str:
    return str(trainer.dtype).replace("torch.", "") if trainer.dtype else "float32"


def _meta(cfg: TrainConfig, trainer: Trainer, data: FaceSet, data_path, finished: bool) -> dict:
    return {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "step": trainer.step, "epoch": trainer.epoch,
            "pos": trainer.pos, "steps_per_epoch": trainer.steps_per_epoch, "batch_size": trainer.batch_size,
            "data": {**data_fingerprint(data), "path": str(data_path) if data_path else None},
            "device": trainer.device.type, "finished": finished, "train_seconds": trainer.train_seconds,
            "torch": torch.__version__}


# ============================================================================ out of memory
def _oom_message(e: BaseException, trainer_or_cfg, device: torch.device, last_ckpt_step: int | None) -> str:
    bs = getattr(trainer_or_cfg, "batch_size", None)
    mem = ""
    if device.type == "cuda":
        try:
            mem = f" (peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB of " \
                  f"{torch.cuda.get_device_properties(device).total_memory / 2**30:.1f} GiB)"
        except Exception:
            pass
    tip = f"rerun with a smaller batch, e.g. --batch-size {max(1, bs // 2)}" if bs else "use a smaller batch"
    resume = (f"; --resume continues from the checkpoint at step {last_ckpt_step}" if last_ckpt_step else "")
    return (f"out of memory on {device} at batch size {bs}{mem}: {tip} (or turn off --compile, or free the GPU "
            f"from other processes){resume}. Original error: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())
