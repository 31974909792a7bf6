"""SynthFaces: the course's embedded, procedurally drawn face set.

Every notebook and test runs on it with no download. Faces are drawn from a seeded random
*identity* (face shape, eye spacing and size, brow, nose, mouth, iris, hair) and *labels* in
UTKFace's conventions (age 1-90, gender 0 male / 1 female, race 0-4 setting the skin tone).
Each *photo* of an identity varies pose (roll, scale, shift), expression (mouth opening),
lighting, background and noise, so identification is learnable but not trivial.

The 68 landmarks are the points the face is drawn from, in dlib's order (jaw 0-16, brows
17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67), in pixels of the aligned
``size`` x ``size`` frame. The mask is the drawn face region: jaw line plus forehead.

What it is not: photographs. dlib's detector does not reliably find these cartoon faces, FID
against real faces is meaningless, and an attribute learnt here does not transfer. SynthFaces
exists so that code paths run and shapes, losses and tables can be checked in seconds; every
claim about the paper's numbers is made on real data (UTKFace and the identity photos).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .align import FIT_WEIGHTS, LOOSE_TEMPLATE_128, align_face, canonical_points7, matrix_scale, similarity_fit
from .faceset import FaceSet

#: base skin colours (RGB) for UTKFace race codes 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others
SKIN_TONES = np.array([[232, 196, 170], [110, 72, 50], [225, 190, 150], [170, 120, 85], [200, 160, 120]], np.float32)
HAIR_COLOURS = np.array([[30, 22, 18], [80, 50, 30], [150, 110, 60], [200, 170, 110], [110, 40, 20]], np.float32)
IRIS_COLOURS = np.array([[60, 40, 25], [70, 110, 160], [80, 120, 70], [40, 30, 20]], np.float32)
_RENDER_SCALE = 2  # draw at 2x then area-downsample, for anti-aliased edges
_SHIFT = 4  # fractional bits of the positions cv2 draws with
#: Mean positions of the 7 utility points in the layout the faces are designed in (a 128 frame with
#: room for hair and neck); each face is then moved into the canonical frame (:mod:`upgan_lib.align`).
_DESIGN_POINTS7 = LOOSE_TEMPLATE_128.astype(np.float64)


def design_to_frame(size: int = 128) -> np.ndarray:
    """(3, 3) similarity taking the design layout (``size`` pixels) to the canonical aligned frame."""
    k = size / 128.0
    m = similarity_fit(_DESIGN_POINTS7 * k, canonical_points7(size), FIT_WEIGHTS)
    return np.vstack([m, [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Identity:
    """Everything fixed about one synthetic person."""

    age: int
    gender: int
    race: int
    face_w: float
    face_h: float
    jaw_taper: float
    eye_sep: float
    eye_w: float
    eye_h: float
    eye_y: float
    brow_gap: float
    brow_arch: float
    brow_thick: int
    nose_len: float
    nose_w: float
    mouth_w: float
    mouth_y: float
    lip_h: float
    skin: tuple
    hair: tuple
    iris: tuple
    hair_style: int  # 0 short, 1 medium, 2 long, 3 bald-ish
    hair_line: float


def random_identity(rng: np.random.Generator) -> Identity:
    age = int(rng.integers(1, 91))
    gender = int(rng.integers(0, 2))
    race = int(rng.choice(5, p=[0.42, 0.19, 0.15, 0.17, 0.07]))  # roughly UTKFace's mix
    child = age < 13
    skin = np.clip(SKIN_TONES[race] * rng.uniform(0.9, 1.08) + rng.normal(0, 6, 3), 0, 255)
    hair = HAIR_COLOURS[int(rng.integers(0, 5))].copy()
    grey = np.clip((age - 40) / 40.0, 0, 1) * rng.uniform(0.5, 1.0)
    hair = hair * (1 - grey) + np.array([200, 200, 200]) * grey
    style = int(rng.choice(4, p=[0.2, 0.3, 0.5, 0.0] if gender == 1 else [0.55, 0.3, 0.05, 0.1]))
    return Identity(
        age=age, gender=gender, race=race,
        face_w=rng.uniform(33, 41) * (0.93 if gender == 1 else 1.0) * (1.04 if child else 1.0),
        face_h=rng.uniform(48, 56) * (0.92 if child else 1.0),
        jaw_taper=rng.uniform(0.05, 0.35) + (0.1 if gender == 1 else 0.0),
        eye_sep=rng.uniform(32, 42), eye_w=rng.uniform(11, 16) * (1.12 if child else 1.0),
        eye_h=rng.uniform(3.5, 6.5), eye_y=rng.uniform(54, 60),
        brow_gap=rng.uniform(7, 12), brow_arch=rng.uniform(0.5, 4), brow_thick=int(rng.integers(2, 5)),
        nose_len=rng.uniform(18, 27), nose_w=rng.uniform(12, 20),
        mouth_w=rng.uniform(20, 32), mouth_y=rng.uniform(93, 101), lip_h=rng.uniform(3, 7),
        skin=tuple(float(v) for v in skin), hair=tuple(float(v) for v in hair),
        iris=tuple(float(v) for v in IRIS_COLOURS[int(rng.integers(0, 4))]),
        hair_style=style, hair_line=rng.uniform(20, 30),
    )


def _arc(cx, cy, rx, ry, start, stop, n):
    t = np.linspace(start, stop, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def identity_landmarks(ident: Identity, mouth_open: float = 0.0, size: int = 128) -> np.ndarray:
    """The identity's 68 landmarks (dlib order) in a frontal pose, pixels of a 128 frame scaled to `size`."""
    cx = 64.0
    top = ident.eye_y  # jaw starts at eye level
    p = np.zeros((68, 2), np.float64)
    # jaw 0..16: from the image-left temple down to the chin and up to the image-right temple
    t = np.linspace(np.pi, 0.0, 17)
    s = np.sin(t)
    p[0:17, 0] = cx + ident.face_w * np.cos(t) * (1 - ident.jaw_taper * s ** 3)
    p[0:17, 1] = top + ident.face_h * s
    # eyes 36..41 (image left) and 42..47 (image right): corners, two top, corner, two bottom
    for start, ex, outer_first in ((36, cx - ident.eye_sep / 2, True), (42, cx + ident.eye_sep / 2, False)):
        w, h = ident.eye_w / 2, ident.eye_h / 2
        left, right = ex - w, ex + w
        pts = [(left, ident.eye_y), (ex - w / 3, ident.eye_y - h), (ex + w / 3, ident.eye_y - h),
               (right, ident.eye_y), (ex + w / 3, ident.eye_y + h * 0.8), (ex - w / 3, ident.eye_y + h * 0.8)]
        p[start:start + 6] = pts
        del outer_first
    # brows 17..21 and 22..26, left to right
    by = ident.eye_y - ident.eye_h / 2 - ident.brow_gap
    for start, ex in ((17, cx - ident.eye_sep / 2), (22, cx + ident.eye_sep / 2)):
        xs = np.linspace(ex - ident.eye_w * 0.75, ex + ident.eye_w * 0.75, 5)
        arch = ident.brow_arch * (1 - ((xs - ex) / (ident.eye_w * 0.75)) ** 2)
        p[start:start + 5, 0] = xs
        p[start:start + 5, 1] = by - arch
    # nose bridge 27..30 and base 31..35
    ny0, ny1 = ident.eye_y - 2, ident.eye_y + ident.nose_len
    p[27:31, 0] = cx
    p[27:31, 1] = np.linspace(ny0, ny1, 4)
    base_y = ny1 + 3
    p[31:36, 0] = np.linspace(cx - ident.nose_w / 2, cx + ident.nose_w / 2, 5)
    p[31:36, 1] = base_y - np.array([1.5, 0.5, 0.0, 0.5, 1.5])
    # mouth: outer 48..59, inner 60..67
    my, mw, lh = ident.mouth_y, ident.mouth_w / 2, ident.lip_h
    gap = mouth_open / 2
    outer_top = [(cx - mw, my), (cx - mw * 0.6, my - lh * 0.8 - gap), (cx - mw * 0.2, my - lh - gap),
                 (cx, my - lh * 0.8 - gap), (cx + mw * 0.2, my - lh - gap), (cx + mw * 0.6, my - lh * 0.8 - gap)]
    outer_bottom = [(cx + mw, my), (cx + mw * 0.6, my + lh + gap), (cx + mw * 0.2, my + lh * 1.2 + gap),
                    (cx, my + lh * 1.25 + gap), (cx - mw * 0.2, my + lh * 1.2 + gap), (cx - mw * 0.6, my + lh + gap)]
    p[48:60] = outer_top + outer_bottom
    p[60:68] = [(cx - mw * 0.85, my), (cx - mw * 0.35, my - gap - 0.5), (cx, my - gap - 0.5),
                (cx + mw * 0.35, my - gap - 0.5), (cx + mw * 0.85, my), (cx + mw * 0.35, my + gap + 0.5),
                (cx, my + gap + 0.5), (cx - mw * 0.35, my + gap + 0.5)]
    return (p * (size / 128.0)).astype(np.float32)


def _forehead(ident: Identity, size: int) -> np.ndarray:
    """Forehead arc from the image-right temple over the top to the image-left temple (128 frame)."""
    cx = 64.0
    arc = _arc(cx, ident.eye_y, ident.face_w, ident.eye_y - ident.hair_line + 6, 0.0, -np.pi, 15)
    return (arc * (size / 128.0)).astype(np.float32)


def face_outline(ident: Identity, size: int = 128) -> np.ndarray:
    """Polygon of the face region (jaw + forehead), frontal pose, pixels."""
    return np.concatenate([identity_landmarks(ident, 0.0, size)[0:17], _forehead(ident, size)[1:-1]])


def _similarity(angle_deg: float, scale: float, shift, size: int) -> np.ndarray:
    c = (size / 2.0, size / 2.0)
    m = cv2.getRotationMatrix2D(c, angle_deg, scale)
    m[:, 2] += shift
    return m


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def render_face(ident: Identity, rng: np.random.Generator, size: int = 128, pose: bool = True):
    """Draw one photo of `ident`. Returns (rgb uint8 (S,S,3), mask uint8 (S,S), landmarks68 float32).

    The random draws, in order: expression (mouth opening), pose (roll, scale, shift), background,
    lighting, noise. The face is drawn at ``_RENDER_SCALE`` times the size, then area-downsampled.
    """
    mouth_open = float(rng.uniform(0, 5)) if rng.random() < 0.4 else 0.0
    if pose:
        m = _similarity(rng.uniform(-8, 8), rng.uniform(0.95, 1.05), rng.uniform(-2.5, 2.5, 2), size)
    else:
        m = _similarity(0.0, 1.0, (0.0, 0.0), size)
    m = (design_to_frame(size) @ np.vstack([m, [0.0, 0.0, 1.0]]))[:2]
    l68 = _apply(m, identity_landmarks(ident, mouth_open, size)).astype(np.float32)
    outline = _apply(m, face_outline(ident, size))
    img = _background(rng, size * _RENDER_SCALE)
    _draw_head(img, ident, m, outline, _apply(m, _forehead(ident, size)))
    _draw_features(img, ident, m, l68, mouth_open)
    img = _develop(img, rng, size)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return img, mask, l68


def _poly(pts: np.ndarray) -> np.ndarray:
    """Frame pixels -> canvas positions with ``_SHIFT`` fractional bits (what cv2 draws with)."""
    return np.round(pts * _RENDER_SCALE * 16).astype(np.int32)


def _background(rng: np.random.Generator, big: int) -> np.ndarray:
    """A float canvas (big, big, 3): a vertical gradient between two random colours."""
    bg = rng.uniform(40, 220, 3)
    bg2 = np.clip(bg + rng.normal(0, 40, 3), 0, 255)
    ramp = np.linspace(0, 1, big, dtype=np.float32)[:, None, None]
    img = (bg * (1 - ramp) + bg2 * ramp) * np.ones((big, big, 3), np.float32)
    return np.ascontiguousarray(img)


def _draw_head(img: np.ndarray, ident: Identity, m: np.ndarray, outline: np.ndarray, fore: np.ndarray) -> None:
    """Hair behind the head, neck, face, hair on the forehead, age lines (later ones cover earlier)."""
    k, aa = _RENDER_SCALE, cv2.LINE_AA
    sc = matrix_scale(m)  # design pixels -> frame pixels, for radii and widths
    hair = tuple(ident.hair)
    skin = np.array(ident.skin)
    if ident.hair_style in (1, 2):
        cx, cy = _apply(m, np.array([[64.0, ident.eye_y + (20 if ident.hair_style == 2 else 0)]]))[0]
        axes = (ident.face_w * 1.25 * k * sc, (ident.face_h * (1.05 if ident.hair_style == 2 else 0.7) + 8) * k * sc)
        cv2.ellipse(img, (int(cx * k * 16), int(cy * k * 16)), (int(axes[0] * 16), int(axes[1] * 16)),
                    0, 180, 360 + (180 if ident.hair_style == 2 else 0), hair, -1, aa, _SHIFT)
    neck = _apply(m, np.array([[64 - ident.face_w * 0.45, 100], [64 + ident.face_w * 0.45, 100],
                               [64 + ident.face_w * 0.55, 140], [64 - ident.face_w * 0.55, 140]]))
    cv2.fillPoly(img, [_poly(neck)], tuple(skin * 0.85), aa, _SHIFT)
    cv2.fillPoly(img, [_poly(outline)], tuple(skin), aa, _SHIFT)
    if ident.hair_style != 3:
        cap = np.concatenate([fore, _apply(m, _arc(64, ident.eye_y, ident.face_w * 1.1,
                                                    ident.eye_y - ident.hair_line + 14, -np.pi, 0.0, 15))])
        cv2.fillPoly(img, [_poly(cap)], hair, aa, _SHIFT)
    if ident.age > 50:
        for j in range(2 if ident.age > 65 else 1):
            y = 36 + 4 * j
            a = _apply(m, np.array([[54.0, y], [74.0, y]]))
            cv2.line(img, tuple(_poly(a[0])), tuple(_poly(a[1])), tuple(skin * 0.75), round(k * sc), aa, _SHIFT)


def _draw_features(img: np.ndarray, ident: Identity, m: np.ndarray, l68: np.ndarray, mouth_open: float) -> None:
    """Brows, eyes (white, iris, pupil, outline), nose and mouth along the landmarks."""
    k, aa = _RENDER_SCALE, cv2.LINE_AA
    sc = matrix_scale(m)
    skin = np.array(ident.skin)
    for s in (17, 22):
        cv2.polylines(img, [_poly(l68[s:s + 5])], False, tuple(np.array(ident.hair) * 0.8),
                      round(ident.brow_thick * k * sc), aa, _SHIFT)
    for s in (36, 42):
        eye = l68[s:s + 6]
        cv2.fillPoly(img, [_poly(eye)], (245, 245, 240), aa, _SHIFT)
        c = eye.mean(axis=0)
        r = max(1.5, ident.eye_h * 0.45) * sc
        cv2.circle(img, tuple(_poly(c)), int(r * k * 16), ident.iris, -1, aa, _SHIFT)
        cv2.circle(img, tuple(_poly(c)), int(r * 0.45 * k * 16), (10, 10, 10), -1, aa, _SHIFT)
        cv2.polylines(img, [_poly(eye)], True, (40, 30, 30), round(k * sc), aa, _SHIFT)
    cv2.polylines(img, [_poly(l68[27:31])], False, tuple(skin * 0.7), round(k * sc), aa, _SHIFT)
    cv2.polylines(img, [_poly(l68[31:36])], False, tuple(skin * 0.6), round(k * sc), aa, _SHIFT)
    lip = (170, 70, 80) if ident.gender == 1 else tuple(skin * np.array([0.85, 0.6, 0.6]))
    cv2.fillPoly(img, [_poly(l68[48:60])], lip, aa, _SHIFT)
    if mouth_open > 0:
        cv2.fillPoly(img, [_poly(l68[60:68])], (50, 20, 25), aa, _SHIFT)


def _develop(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Lighting (a brightness and a left-right gradient), area-downsampling to ``size``, sensor noise."""
    big = img.shape[0]
    light = rng.uniform(0.8, 1.15) * (1 + rng.uniform(-0.15, 0.15) * np.linspace(-1, 1, big, dtype=np.float32))[None, :, None]
    img = np.clip(img * light, 0, 255)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(img + rng.normal(0, 3.0, img.shape), 0, 255).astype(np.uint8)


def make_synthfaces(n_identities: int = 16, photos_per_identity: int = 8, seed: int = 0,
                    size: int = 128, pose: bool = True) -> FaceSet:
    """A FaceSet of ``n_identities * photos_per_identity`` faces, identical for the same arguments."""
    if n_identities < 1 or photos_per_identity < 1:
        raise ValueError("n_identities and photos_per_identity must be at least 1")
    root = np.random.SeedSequence(seed)
    faces, masks, lms, ages, genders, races, ids, sources = [], [], [], [], [], [], [], []
    for i, child in enumerate(root.spawn(n_identities)):
        id_seq, photo_seq = child.spawn(2)
        ident = random_identity(np.random.default_rng(id_seq))
        for j, ps in enumerate(photo_seq.spawn(photos_per_identity)):
            img, mask, l68 = render_face(ident, np.random.default_rng(ps), size=size, pose=pose)
            faces.append(img)
            masks.append(mask)
            lms.append(l68)
            ages.append(ident.age)
            genders.append(ident.gender)
            races.append(ident.race)
            ids.append(i)
            sources.append(f"synth:{seed}:{i:04d}:{j:03d}")
    return FaceSet(
        faces=np.stack(faces), masks=np.stack(masks), landmarks68=np.stack(lms),
        age=np.array(ages, np.int32), gender=np.array(genders, np.int32), race=np.array(races, np.int32),
        identity=np.array(ids, np.int32), sources=sources,
        meta={"dataset": "SynthFaces", "seed": seed, "n_identities": n_identities,
              "photos_per_identity": photos_per_identity, "size": size},
    )


def crops_like_utkface(n: int = 8, seed: int = 0, size: int = 200) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` SynthFaces cut the way UTKFace cuts its "aligned & cropped" faces (each face in the
    canonical frame at ``size`` px): (list of uint8 (size, size, 3) images, landmarks68 (n, 68, 2) in them)."""
    fs = make_synthfaces(n, 1, seed=seed)
    out = [align_face(np.ascontiguousarray(f), p, size) for f, p in zip(fs.faces, fs.landmarks68)]
    return [a.image for a in out], np.stack([a.landmarks68 for a in out])
