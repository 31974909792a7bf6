"""Where `upgan obscure` gets the faces it puts in, and the attributes they are generated from.

A **face source** maps ``(utility (N, 17), aligned uint8 (N, S, S, 3))`` to ``(faces uint8
(N, S, S, 3), face probability (N, S, S))``: :class:`GeneratorFaces` (UP-GAN) or
:class:`KSameFaces` (k-same over a gallery). An **attribute source** maps ``aligned uint8
(N, S, S, 3)`` to ``(age, gender, race)``: :class:`EstimatorAttributes` (the trained estimator)
or :class:`FixedAttributes` (the same values for every face, as the paper does).

The models are found here too: a generator checkpoint the user names (:func:`check_checkpoint`),
the models shipped with the course (:func:`shipped_model`) and the generator the course's later
chapters use (:func:`course_run`). Every failure is an :class:`ObscureError` that says what to do.

The modules that need torch (the estimator, the generator, checkpoints, the shipped models) are
imported when a model is found, loaded or run, so that importing this module stays cheap.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .faceset import FaceSet, NotAPreparedSet
from .obscure_config import ObscureError


# ---------------------------------------------------------------------------------------------
# attributes
# ---------------------------------------------------------------------------------------------
class FixedAttributes:
    """Attributes when no estimator is given: the same (age, gender, race) for every face;
    default ``attributes.FIXED_ATTRIBUTES``, the fixed values the paper uses for its identity photos."""

    def __init__(self, age: float | None = None, gender: float | None = None, race: float | None = None):
        from .attributes import FIXED_ATTRIBUTES

        self.age = float(FIXED_ATTRIBUTES["age"] if age is None else age)
        self.gender = float(FIXED_ATTRIBUTES["gender"] if gender is None else gender)
        self.race = float(FIXED_ATTRIBUTES["race"] if race is None else race)

    def __str__(self) -> str:
        return f"fixed: age {self.age:g}, gender {self.gender:g}, race {self.race:g}"

    def __call__(self, aligned: np.ndarray):
        n = len(aligned)
        return np.full(n, self.age, np.float32), np.full(n, self.gender, np.float32), np.full(n, self.race, np.float32)


class EstimatorAttributes:
    """The trained attribute estimator (``upgan_lib.attributes``) applied to aligned faces."""

    def __init__(self, model, device="cpu"):
        self.model, self.device = model, device

    @classmethod
    def load(cls, path, device="cpu") -> "EstimatorAttributes":
        from .attributes import load_attribute_estimator
        from .checkpoint import CheckpointError

        path = Path(path)
        if not path.exists():
            raise ObscureError(f"attribute estimator checkpoint {path} not found: train one "
                               "(attributes.train_attribute_estimator + save_attribute_estimator) or leave "
                               "--attributes out; nothing was written")
        try:
            return cls(load_attribute_estimator(path, map_location=device), device)
        except CheckpointError as e:
            raise ObscureError(f"{e}; nothing was written") from e

    def __str__(self) -> str:
        return "attribute estimator"

    def __call__(self, aligned: np.ndarray):
        from .attributes import predict_attributes

        pred = predict_attributes(self.model, np.ascontiguousarray(aligned), device=self.device)
        return (np.asarray(pred["age"], np.float32).reshape(-1), np.asarray(pred["gender"], np.float32).reshape(-1),
                np.asarray(pred["race"], np.float32).reshape(-1))


def parse_fixed_attributes(text: str | None) -> FixedAttributes | None:
    """``--fixed-attributes``: None (estimate per face), "paper" (the paper's values) or "AGE,GENDER,RACE"."""
    if text is None:
        return None
    if text == "paper":
        return FixedAttributes()
    try:
        age, gender, race = (float(v) for v in text.split(","))
    except ValueError:
        raise ObscureError(f"--fixed-attributes {text!r}: give AGE,GENDER,RACE, e.g. 30,0,0 (gender 0 male / 1 female, "
                           "race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others); nothing was written") from None
    if not (0 <= age <= 116 and gender in (0, 1) and race in (0, 1, 2, 3, 4)):
        raise ObscureError(f"--fixed-attributes {text!r}: age must be 0-116, gender 0 or 1, race 0-4; nothing was written")
    return FixedAttributes(age, gender, race)


# ---------------------------------------------------------------------------------------------
# faces
# ---------------------------------------------------------------------------------------------
class GeneratorFaces:
    """UP-GAN generator as a face source: utility (N, 17) -> faces uint8, face probability.

    Runs in inference mode with channels-last tensors (about 30 % faster convolutions on CPUs
    and GPUs). ``precision="bf16"`` autocasts to bfloat16 by the course's mixed-precision rule
    (:mod:`upgan_lib.amp`, ``"bf16"``: on CUDA GPUs and the CPU, fp32 on other devices) - the
    precision the trainer uses on recent GPUs, and another ~30 % on CPUs with AVX-512 BF16; faces
    then differ from fp32 by a few grey levels.
    """

    def __init__(self, generator, device="cpu", batch_size: int = 32, precision: str = "fp32"):
        import torch

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.device = torch.device(device)
        self.generator = generator.eval().to(self.device).to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.precision = precision

    @classmethod
    def load(cls, path, device="cpu", precision: str = "fp32") -> "GeneratorFaces":
        from .checkpoint import CheckpointError
        from .train import load_generator

        check_checkpoint(path)
        try:
            gen = load_generator(path, map_location=device)
        except CheckpointError as e:
            raise ObscureError(f"{e}; nothing was written") from e
        except (KeyError, RuntimeError, ValueError, TypeError) as e:  # metadata without a key, weights that do not fit
            what = f"its metadata lacks {e}" if isinstance(e, KeyError) else str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ObscureError(f"{path}: not a usable generator checkpoint ({what}); pass the run folder of a finished "
                               "`upgan train` or its generator.safetensors; nothing was written") from e
        return cls(gen, device, precision=precision)

    def __call__(self, utility: np.ndarray, aligned: np.ndarray | None = None):
        import torch

        from .amp import autocast, resolve_amp
        from .generator import face_probability
        from .images import to_uint8

        faces, probs = [], []
        u = np.asarray(utility, np.float32)
        dtype = resolve_amp("bf16" if self.precision == "bf16" else "off", self.device)
        with torch.inference_mode(), autocast(self.device, dtype):
            for i in range(0, len(u), self.batch_size):
                f, m = self.generator(torch.from_numpy(u[i:i + self.batch_size]).to(self.device))
                faces.append(to_uint8(f))
                probs.append(face_probability(m)[:, 0].cpu().numpy())
        return np.concatenate(faces), np.concatenate(probs)


class KSameFaces:
    """k-same (Newton et al. 2005), per face: the pixel mean of the ``k`` gallery faces nearest
    (L2 on the aligned faces) to the probe, with the gallery masks' mean as its mask."""

    def __init__(self, gallery, k: int = 10):
        if len(gallery) < k:
            raise ObscureError(f"k-same needs at least k={k} gallery faces, the gallery has {len(gallery)}")
        self.faces = np.asarray(gallery.faces)
        self.masks = np.asarray(gallery.masks).astype(np.float32)
        self.k = k
        small = np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in self.faces])
        self._keys = small.reshape(len(small), -1).astype(np.float32)

    @classmethod
    def load(cls, gallery, k: int = 10) -> "KSameFaces":
        """k-same over the prepared face set in the folder ``gallery`` (``--gallery``)."""
        try:
            return cls(FaceSet.load(gallery), k)
        except (NotAPreparedSet, ValueError, OSError) as e:
            raise ObscureError(f"--gallery {gallery}: {e}; nothing was written") from e

    def __call__(self, utility: np.ndarray, aligned: np.ndarray):
        outs, probs = [], []
        for a in np.asarray(aligned):
            key = cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA).reshape(-1).astype(np.float32)
            near = np.argsort(((self._keys - key) ** 2).sum(1))[: self.k]
            outs.append(self.faces[near].astype(np.float32).mean(0).round().astype(np.uint8))
            probs.append(self.masks[near].mean(0))
        return np.stack(outs), np.stack(probs).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# finding the models
# ---------------------------------------------------------------------------------------------
def check_checkpoint(path) -> Path:
    """A generator checkpoint (file or run folder) must exist before anything is written."""
    if path is None:
        raise ObscureError("--method upgan needs --checkpoint RUN_DIR_OR_FILE (a trained generator: "
                           "`upgan train --out RUN_DIR`, or chapter 07); nothing was written")
    p = Path(path)
    if not p.exists():
        raise ObscureError(f"generator checkpoint {p} not found: train one with `upgan train --out {p}` "
                           "or pass the right --checkpoint; nothing was written")
    if p.is_dir() and not any(p.glob("*.safetensors")):
        raise ObscureError(f"{p} holds no checkpoint (*.safetensors): is it a finished `upgan train` run? "
                           "nothing was written")
    return p


def shipped_model(kind: str) -> Path:
    """Path of the model shipped with the course (``upgan_lib.pretrained``): "generator" or "attributes"."""
    from . import pretrained

    try:
        return pretrained.generator_path() if kind == "generator" else pretrained.attributes_path()
    except pretrained.NoShippedModel as e:
        flag = "--checkpoint RUN_DIR" if kind == "generator" else "--attributes FILE (or --fixed-attributes)"
        raise ObscureError(f"{e}; or pass {flag}; nothing was written") from e


def course_run(cache_dir, checkpoint=None, preset: str = "smoke", device="cpu", out_dir=None, seed: int = 0,
               progress: bool = False) -> Path:
    """The trained run chapters 10 and 11 use (``pretrained.course_generator``: the named checkpoint,
    chapter 07's run, a smoke run, or the model shipped with the course); errors as :class:`ObscureError`."""
    from . import pretrained

    try:
        return pretrained.course_generator(cache_dir, checkpoint, preset, device, out_dir, seed, progress)
    except (FileNotFoundError, pretrained.NoShippedModel) as e:
        raise ObscureError(str(e)) from e
