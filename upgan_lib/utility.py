"""The utility vector: what UP-GAN is allowed to know about a face.

17 numbers = 3 attributes (age, gender, race) + 7 landmarks x 2 coordinates, the landmarks
reduced from dlib's 68-point layout as in the paper: the two eye centres (mean of points 36-41
and of 42-47), the nose tip (30) and four mouth points (48 and 54, the corners; 51 and 57, the
top and bottom of the outer lip).

Normalisation (exactly invertible, see :func:`decode_utility`):

==========  =======================================  ================
entry       encoded as                               range
==========  =======================================  ================
age         age / 100                                0 .. 1.16
gender      0 male, 1 female (UTKFace convention)    {0, 1}
race        race / 4 (0 White, 1 Black, 2 Asian,     {0, .25, .5,
            3 Indian, 4 Others)                      .75, 1}
x, y        coordinate / (size / 2) - 1, in the      about -1 .. 1
            aligned ``size`` x ``size`` frame
==========  =======================================  ================

Race is one ordinal number because the paper feeds 3 attribute numbers to the generator; the
ordering carries no meaning beyond that.
"""
from __future__ import annotations

import numpy as np

#: dlib-68 index groups that make the paper's 7 points, in output order.
SEVEN_POINT_SOURCES: tuple[tuple[int, ...], ...] = (
    tuple(range(36, 42)),  # eye centre, image-left eye (subject's right)
    tuple(range(42, 48)),  # eye centre, image-right eye
    (30,),  # nose tip
    (48,),  # mouth corner, image left
    (54,),  # mouth corner, image right
    (51,),  # top of the upper lip
    (57,),  # bottom of the lower lip
)
SEVEN_POINT_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right", "mouth_top", "mouth_bottom")
N_ATTRIBUTES = 3
N_POINTS = 7
UTILITY_DIM = N_ATTRIBUTES + 2 * N_POINTS  # 17
AGE_SCALE = 100.0
N_RACES = 5
RACE_NAMES = ("White", "Black", "Asian", "Indian", "Others")
GENDER_NAMES = ("male", "female")


def reduce_68_to_7(landmarks68: np.ndarray) -> np.ndarray:
    """(..., 68, 2) dlib landmarks -> (..., 7, 2) paper points (float32)."""
    l68 = np.asarray(landmarks68, dtype=np.float32)
    if l68.shape[-2:] != (68, 2):
        raise ValueError(f"expected landmarks of shape (..., 68, 2), got {l68.shape}")
    return np.stack([l68[..., list(idx), :].mean(axis=-2) for idx in SEVEN_POINT_SOURCES], axis=-2)


def encode_utility(age, gender, race, points7, size: int = 128) -> np.ndarray:
    """Attributes (N,) each and points (N, 7, 2) in pixels of a size x size frame -> (N, 17) float32."""
    age = np.asarray(age, dtype=np.float32).reshape(-1)
    gender = np.asarray(gender, dtype=np.float32).reshape(-1)
    race = np.asarray(race, dtype=np.float32).reshape(-1)
    pts = np.asarray(points7, dtype=np.float32).reshape(-1, N_POINTS, 2)
    if not (len(age) == len(gender) == len(race) == len(pts)):
        raise ValueError(f"length mismatch: age {len(age)}, gender {len(gender)}, race {len(race)}, points {len(pts)}")
    half = size / 2.0
    coords = (pts / half - 1.0).reshape(len(pts), 2 * N_POINTS)
    attrs = np.stack([age / AGE_SCALE, gender, race / (N_RACES - 1)], axis=1)
    return np.concatenate([attrs, coords], axis=1).astype(np.float32)


def decode_utility(utility: np.ndarray, size: int = 128):
    """Inverse of :func:`encode_utility`: returns (age, gender, race, points7 in pixels)."""
    u = np.asarray(utility, dtype=np.float32).reshape(-1, UTILITY_DIM)
    age = u[:, 0] * AGE_SCALE
    gender = u[:, 1]
    race = u[:, 2] * (N_RACES - 1)
    pts = (u[:, N_ATTRIBUTES:].reshape(-1, N_POINTS, 2) + 1.0) * (size / 2.0)
    return age, gender, race, pts
