"""The models that ship with the course: a UP-GAN generator and an attribute estimator trained
by the course's own code on a CPU (``MODEL_CARD.md`` beside this file says how, on what, and how
well they do).

They make every chapter and ``upgan obscure`` work out of the box: a chapter that needs a trained
generator and finds no run of chapter 07 uses :func:`generator` and says so; ``upgan obscure``
uses both when no ``--checkpoint`` / ``--attributes`` is given, so each face keeps its own
estimated age, gender and race.

Files (bf16 safetensors, loaded back as float32; :func:`fingerprints` are their SHA-256, also
written in the model card and checked by the tests):

- ``generator.safetensors``: the ``cpu`` training preset (``upgan train --preset cpu``).
- ``attributes.safetensors``: the attribute estimator (``upgan_lib.attributes``).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from .. import train
from ..align import canonical_points7
from ..attributes import load_attribute_estimator
from ..checkpoint import load_checkpoint, save_checkpoint
from ..run_folder import GENERATOR_NAME, export_generator, generate, load_generator
from ..synthfaces import make_synthfaces
from ..train_config import SMOKE_RUN
from ..utility import encode_utility
from ..viz import tile_rows, to_uint8_images

HERE = Path(__file__).resolve().parent
GENERATOR_FILE = HERE / "generator.safetensors"
ATTRIBUTES_FILE = HERE / "attributes.safetensors"
MODEL_CARD = HERE / "MODEL_CARD.md"


class NoShippedModel(FileNotFoundError):
    """The installed course has no shipped model file (e.g. a trimmed install)."""


def _need(path: Path) -> Path:
    if not path.exists():
        raise NoShippedModel(f"the shipped model file {path} is missing: reinstall the course "
                             "(`pip install -e .` in a checkout), or train your own (`upgan train --preset cpu`)")
    return path


def available() -> bool:
    """True when both shipped files are installed."""
    return GENERATOR_FILE.exists() and ATTRIBUTES_FILE.exists()


def generator_path() -> Path:
    return _need(GENERATOR_FILE)


def attributes_path() -> Path:
    return _need(ATTRIBUTES_FILE)


def generator(map_location="cpu"):
    """The shipped UP-GAN generator (float32, eval mode): utility (N, 17) -> 128 px faces and mask logits."""
    return load_generator(generator_path(), map_location=map_location)


def attribute_estimator(map_location="cpu"):
    """The shipped attribute estimator (eval mode): aligned faces -> age, gender, race."""
    return load_attribute_estimator(attributes_path(), map_location=map_location)


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprints() -> dict[str, str]:
    """SHA-256 of the shipped files, by file name."""
    return {p.name: sha256(_need(p)) for p in (GENERATOR_FILE, ATTRIBUTES_FILE)}


def card_fingerprints(card: str | None = None) -> dict[str, str]:
    """The fingerprints the model card states (lines ``sha256 FILE HEX``)."""
    text = MODEL_CARD.read_text() if card is None else card
    return dict(re.findall(r"sha256\s+`?([\w.]+)`?\s+`?([0-9a-f]{64})`?", text))


def export(run_dir, estimator_path, out_dir=HERE) -> dict[str, str]:
    """Write a training run's generator and an attribute estimator as the shipped bf16 files in
    ``out_dir``; returns their fingerprints (paste them into the model card)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_generator(run_dir, out / GENERATOR_FILE.name)
    states, meta = load_checkpoint(estimator_path)
    # BatchNorm's running statistics stay float32: bf16 would shift every prediction a little
    half = {k: (v.to(torch.bfloat16) if v.is_floating_point() and "running_" not in k else v)
            for k, v in states["model"].items()}
    save_checkpoint(out / ATTRIBUTES_FILE.name, {"model": half}, meta)
    return {p: sha256(out / p) for p in (GENERATOR_FILE.name, ATTRIBUTES_FILE.name)}


# ---------------------------------------------------------------------------- the course's generator
#: chapter 07's main training run, relative to the cache folder
COURSE_RUN = Path("course") / "07_training" / "runs" / "adv+l2+mask+perceptual"


def course_generator(cache_dir, checkpoint=None, preset: str = "smoke", device="cpu", out_dir=None, seed: int = 0,
                     progress: bool = False, say=print) -> Path:
    """The generator a later chapter uses, as a path ``run_folder.load_generator`` reads, first found of:

    1. ``checkpoint`` (a run folder or generator file the student names);
    2. chapter 07's main run in the cache (``<cache>/course/07_training/runs/adv+l2+mask+perceptual``);
    3. on the smoke preset, the smoke run (``train_config.SMOKE_RUN``: 4 steps on 32 SynthFaces, seconds
       on a CPU, and it will not draw faces yet: chapters show the shipped model beside it) trained
       here into ``out_dir`` (default ``<cache>/course/smoke_generator``, shared by the chapters);
    4. on any other preset, the model shipped with the course (:func:`generator_path`).

    ``say`` is told which one it is.
    """
    if checkpoint:
        p = Path(checkpoint)
        if not p.exists():
            raise FileNotFoundError(f"CHECKPOINT {p} not found: pass a run folder of `upgan train --out DIR` or a "
                                    "generator file, or None for chapter 07's run")
        say(f"generator: {p}")
        return p
    run = Path(cache_dir) / COURSE_RUN
    if (run / GENERATOR_NAME).exists():
        say(f"generator: chapter 07's run {run}")
        return run
    if preset == "smoke":
        tiny = Path(out_dir) if out_dir else Path(cache_dir) / "course" / "smoke_generator"
        if not (tiny / GENERATOR_NAME).exists():
            data = make_synthfaces(SMOKE_RUN.identities, SMOKE_RUN.photos, seed=seed)
            train.train(SMOKE_RUN.config(seed), data, tiny, resume=True, progress=progress, device=device)
        say(f"generator: a few-step smoke run on SynthFaces ({tiny}); chapter 07 was not run")
        return tiny
    say(f"generator: the model shipped with the course ({generator_path()}), because chapter 07 has not been "
        f"run (no {run / GENERATOR_NAME}); see upgan_lib/pretrained/MODEL_CARD.md")
    return generator_path()


# ---------------------------------------------------------------------------- what it draws
def attribute_grid_utility(ages=(8, 25, 45, 70), races=(0, 1, 2, 3, 4), genders=(0, 1), turn: float = 0.0):
    """Utility vectors for a grid of people: every (gender, age, race), the 7 landmarks at the
    canonical template turned by ``turn`` degrees. Returns (utility (N, 17) float32, labels)."""
    t = canonical_points7()
    a = np.deg2rad(turn)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    p7 = (t - 64.0) @ rot.T + 64.0
    rows = [(g, age, r) for g in genders for age in ages for r in races]
    g, age, r = (np.array(v, np.float32) for v in zip(*rows))
    util = encode_utility(age, g, r, np.repeat(p7[None], len(rows), 0), size=128)
    names = ("White", "Black", "Asian", "Indian", "Others")
    return util, [f"{'female' if gi else 'male'} {int(ai)} {names[int(ri)]}" for gi, ai, ri in rows]


def sample_sheet(model=None, pad: int = 2):
    """One picture of generated faces only (no photograph): rows male / female at ages 8, 25, 45
    and 70, columns the five UTKFace race labels; ``model`` defaults to the shipped generator."""
    G = model if model is not None else generator()
    util, _ = attribute_grid_utility()
    faces, _ = generate(G, util)
    imgs = to_uint8_images(faces)
    return tile_rows([imgs[i:i + 5] for i in range(0, len(imgs), 5)], pad=pad)
