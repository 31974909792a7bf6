"""The `upgan` command: one subcommand per stage of the course.

Each subcommand lives in the module that does the work, which exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only wires them.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

SUBCOMMANDS = {
    "download": ("upgan_lib.download", "fetch / unpack / verify the official archives into the data root (Colab)"),
    "prepare": ("upgan_lib.prepare", "raw UTKFace / identity photos -> aligned, labelled 128x128 face set"),
    "pack": ("upgan_lib.faceset", "a prepared face set -> one small .npz file to carry to a GPU machine or Colab"),
    "train": ("upgan_lib.train_cli", "train UP-GAN (resumable, mixed precision on GPU)"),
    "attributes": ("upgan_lib.attributes", "train the age / gender / race estimator on a prepared UTKFace set"),
    "evaluate": ("upgan_lib.evaluate", "build Table 1: identification accuracy, FID/KID, utility"),
    "obscure": ("upgan_lib.obscure_cli", "replace every face in a photo or folder (fails closed)"),
    "course": ("upgan_lib.course", "execute every notebook of the course in order (papermill)"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="upgan", description="UP-GAN course: utility-preserving face obscuration")
    p.add_argument("--version", action="version", version=f"upgan-course {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        mod = importlib.import_module(module)
        sp = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip().splitlines()[0])
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
