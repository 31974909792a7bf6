"""``upgan train``: the command line of the UP-GAN trainer (``train.py``): fast, resumable and watchable.

The preset (or, on ``--resume``, the run's saved config) plus the flags given make the
:class:`~upgan_lib.train_config.TrainConfig`; ``--data`` is a prepared face set (default: the
embedded SynthFaces). Exit codes: 0 done (or stopped by the crash drill or the time budget),
2 bad input, 3 out of memory.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .checkpoint import CheckpointError, read_meta
from .losses import parse_losses
from .run_folder import CHECKPOINT_NAME
from .train import TrainingOOM, train
from .train_config import CPU_PRESET, TrainConfig, TrainError, network_configs
from .train_data import load_data


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="prepared face set folder (`upgan prepare`); default: embedded SynthFaces")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, samples/, generator.safetensors")
    p.add_argument("--preset", default=None, choices=["auto", "smoke", "full", "cpu"],
                   help="smoke: CPU, seconds; full: the paper's run on a GPU; cpu: the shipped model's recipe, the best "
                        "two CPU cores train in 150 minutes (default auto; on --resume: the run's)")
    p.add_argument("--width", type=float, default=None, help="network width (channels x WIDTH) of G and D")
    p.add_argument("--draw-size", type=int, default=None, choices=[32, 64, 128],
                   help="side the generator draws at (upsampled to 128); the discriminator judges that size")
    p.add_argument("--lr-g", type=float, default=None, help="generator Adam learning rate")
    p.add_argument("--lr-d", type=float, default=None, help="discriminator Adam learning rate")
    p.add_argument("--ema", type=float, default=None, help="decay of the generator weight average (0 = off)")
    p.add_argument("--holdout", type=int, default=None,
                   help="faces of --data left out of training (a fixed seeded draw) to score the model on")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (a resumed run may raise it)")
    p.add_argument("--batch-size", type=int, default=None, help="faces per step")
    p.add_argument("--losses", default=None, help="comma-separated subset of adv,l2,mask,perceptual (default all)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--identifier", default=None,
                   help="trained identifier for the perceptual loss (identity_net.save_identifier; default: "
                        "<cache>/models/identifier_<preset>.safetensors from chapter 05)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--amp", default=None, choices=["auto", "bf16", "fp16", "off"], help="mixed precision")
    p.add_argument("--compile", default=None, action=argparse.BooleanOptionalAction, help="torch.compile (CUDA)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, default=None, help="steps between log rows / progress updates")
    p.add_argument("--stop-after-steps", type=int, default=None,
                   help="crash drill: end after N steps of this call without a final checkpoint, then test --resume")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="time budget for this call: stop cleanly with a checkpoint once spent (continue with "
                        "--resume); for Colab sessions and timed GPU leases")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no messages (errors still go to stderr)")


def config_from_args(args) -> TrainConfig:
    """TrainConfig for the CLI: the preset (or on --resume the run's saved config) plus explicit flags."""
    ckpt = Path(args.out) / CHECKPOINT_NAME
    if args.resume and ckpt.exists() and args.preset is None:
        meta = read_meta(ckpt)
        cfg = TrainConfig.from_dict(meta["config"])
    else:
        cfg = TrainConfig.for_preset(args.preset or "auto")
    for flag, name in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed"), ("amp", "amp"),
                       ("compile", "compile"), ("checkpoint_every", "checkpoint_every"), ("log_every", "log_every"),
                       ("identifier", "identifier"), ("holdout", "holdout")):
        v = getattr(args, flag, None)
        if v is not None:
            setattr(cfg, name, v)
    if args.losses is not None:
        cfg.losses = parse_losses(args.losses)
    for flag in ("lr_g", "lr_d", "ema"):
        if getattr(args, flag, None) is not None:
            setattr(cfg, flag, getattr(args, flag))
    width, draw = getattr(args, "width", None), getattr(args, "draw_size", None)
    if width is not None or draw is not None:
        cfg.generator, cfg.discriminator, cfg.augment = network_configs(
            cfg.generator.width if width is None else width, cfg.generator.drawn_size if draw is None else draw)
    if cfg.preset == "cpu" and args.max_minutes is None and not args.resume:
        args.max_minutes = CPU_PRESET["minutes"]
    cfg.__post_init__()
    return cfg


def run(args) -> int:
    """``upgan train``: exit 0 done (or stopped by the drill), 2 bad input, 3 out of memory."""
    try:
        cfg = config_from_args(args)
        data_path = args.data
        if data_path is None and args.resume and (Path(args.out) / CHECKPOINT_NAME).exists():
            data_path = read_meta(Path(args.out) / CHECKPOINT_NAME)["data"].get("path")
        if data_path is None:
            print(f"no --data: training on the embedded SynthFaces set ({cfg.synth_identities} x {cfg.synth_photos} faces)")
            if cfg.preset == "full":
                print("note: the full preset is meant for UTKFace: `upgan prepare utkface`, then pass "
                      "--data <cache>/prepared/utkface")
        data = load_data(data_path, cfg)
        res = train(cfg, data, args.out, resume=args.resume, progress=not args.quiet, device=args.device,
                    data_path=Path(data_path).resolve() if data_path else None, stop_after_steps=args.stop_after_steps,
                    max_seconds=args.max_minutes * 60 if args.max_minutes is not None else None)
    except TrainingOOM as e:
        print(f"upgan train: {e}", file=sys.stderr)
        return 3
    except (TrainError, CheckpointError) as e:
        print(f"upgan train: error: {e}", file=sys.stderr)
        return 2
    if res.generator_path:
        print(f"generator: {res.generator_path}")
    return 0


if __name__ == "__main__":  # python -m upgan_lib.train_cli ... (same as `upgan train ...`)
    _p = argparse.ArgumentParser(prog="upgan train")
    add_arguments(_p)
    sys.exit(run(_p.parse_args()))
