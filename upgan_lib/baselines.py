"""The obscuration methods of the paper's Table 1, on aligned 128x128 faces.

Convention: every method takes and returns **uint8 (N, S, S, 3) RGB numpy arrays** - the
format of :class:`~upgan_lib.faceset.FaceSet` and of a released photo (an obscured face that
is published is an 8-bit image, so the quantisation is part of what an attacker sees).
Use :func:`to_tensor` / :func:`to_uint8` to cross to the course's float [-1, 1] NCHW tensors.

Methods (all applied to the whole aligned crop unless composited with :func:`composite`):

* **Gaussian blur** ``ksize`` in {5, 15, 25}: ``cv2.GaussianBlur(img, (k, k), sigmaX=0)``, so
  OpenCV derives sigma from the kernel size: ``sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8``
  (k=15: 2.6 px, k=25: 4.1 px) - except for k <= 7, where OpenCV uses tabulated kernels: k=5 is
  the binomial ``[1 4 6 4 1] / 16`` (standard deviation 1.0 px; the formula would give 1.1).
  Border ``BORDER_REFLECT_101``.
* **Pixelation** ``block`` in {5, 15, 25}: each ``block x block`` cell (cells anchored at the
  top-left corner; the last row/column of cells is smaller when S is not a multiple) is replaced
  by its exact mean colour.
* **k-same** (Newton, Sweeney & Malin 2005), k = 10: faces are grouped so that every group holds
  at least k *distinct people*, grouping by distance between utility vectors (or pixels /
  eigenface coefficients); every face of a group is replaced by the group's surrogate, so each
  released face stands for at least k people. Surrogate ``pixel``: the mean image of the group.
  ``eigen``: the same mean projected onto the set's top principal components (k-Same-Eigen:
  averaging eigenface coefficients and reconstructing is that projection).
* **k-same-net** and **UP-GAN**: generators mapping (N, 17) utility vectors to faces; any
  callable ``utility -> faces`` (tensor in [-1, 1] or uint8) is wrapped by
  :func:`generator_method`.

A :class:`Method` bundles a name, a label and a function ``FaceSet -> uint8 faces`` (k-same
and the generators need the utility vectors and identities, not only pixels).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch

from . import images
from .faceset import FaceSet

BLUR_SIZES = (5, 15, 25)
PIXEL_SIZES = (5, 15, 25)
KSAME_K = 10


# ---------------------------------------------------------------------------- conversions
def to_tensor(faces: np.ndarray, device=None) -> torch.Tensor:
    """uint8 (N,S,S,3) -> float (N,3,S,S) in [-1, 1] (:func:`upgan_lib.images.to_tensor`, faces checked)."""
    return images.to_tensor(check_faces(faces), device)


def to_uint8(x) -> np.ndarray:
    """float (N,3,S,S) tensor in [-1, 1] (or uint8 array) -> uint8 (N,S,S,3), rounded."""
    if isinstance(x, np.ndarray):
        return check_faces(x)
    return images.to_uint8(x)


def check_faces(faces: np.ndarray, size: int | None = None) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"faces must be uint8 (N, S, S, 3) RGB, got {faces.dtype} {faces.shape}")
    if size is not None and faces.shape[1] != size:
        raise ValueError(f"faces are {faces.shape[1]}x{faces.shape[2]}, expected {size}x{size}")
    return faces


# ---------------------------------------------------------------------------- blur, pixelation
def opencv_sigma(ksize: int) -> float:
    """OpenCV's sigma rule for ``GaussianBlur(..., sigmaX=0)``: ``0.3*((k-1)*0.5 - 1) + 0.8``.

    OpenCV applies it for k > 7; for k in {1, 3, 5, 7} it uses fixed tables instead (k=5: the
    binomial [1 4 6 4 1]/16, std 1.0 px). :func:`effective_sigma` gives what is really applied."""
    return 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8


def effective_sigma(ksize: int) -> float:
    """Standard deviation (px) of the 1-D kernel ``GaussianBlur(..., sigmaX=0)`` really applies."""
    k = cv2.getGaussianKernel(ksize, 0).ravel()
    x = np.arange(ksize) - ksize // 2
    return float(np.sqrt((k * x * x).sum()))


def gaussian_blur(faces: np.ndarray, ksize: int) -> np.ndarray:
    """Blur each face with a ``ksize x ksize`` Gaussian, sigma from :func:`opencv_sigma`."""
    faces = check_faces(faces)
    if ksize < 1 or ksize % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be odd and positive, got {ksize}")
    return np.stack([cv2.GaussianBlur(f, (ksize, ksize), 0) for f in faces]) if len(faces) else faces.copy()


def gaussian_blur_sigma(faces: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each face with a Gaussian of standard deviation `sigma` px (kernel size from sigma,
    OpenCV's rule ``2 * round(3 sigma) + 1`` for uint8) - the reading of "Gaussian blur 5" as
    sigma = 5 px rather than a 5 x 5 kernel."""
    faces = check_faces(faces)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return np.stack([gaussian_blur_image(f, sigma) for f in faces]) if len(faces) else faces.copy()


def pixelate(faces: np.ndarray, block: int) -> np.ndarray:
    """Replace every ``block x block`` cell by its mean colour (exact, rounded to uint8)."""
    faces = check_faces(faces)
    return _pixelate_any(faces, block)


def _pixelate_any(faces: np.ndarray, block: int) -> np.ndarray:
    """Block means of uint8 (N, H, W, 3) images; cells anchored at the top-left corner."""
    if block < 1:
        raise ValueError(f"block size must be positive, got {block}")
    n, h, w = faces.shape[:3]
    if n == 0:
        return faces.copy()
    rs, cs = np.arange(0, h, block), np.arange(0, w, block)
    rsz, csz = np.diff(np.append(rs, h)), np.diff(np.append(cs, w))
    sums = np.add.reduceat(np.add.reduceat(faces.astype(np.float64), rs, axis=1), cs, axis=2)
    means = sums / (rsz[None, :, None, None] * csz[None, None, :, None])
    out = np.repeat(np.repeat(means, rsz, axis=1), csz, axis=2)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def gaussian_blur_image(image: np.ndarray, sigma: float) -> np.ndarray:
    """One RGB image of any size blurred with a Gaussian of `sigma` px (kernel size from sigma,
    OpenCV's rule), for the obscuring tool's ``--method blur``."""
    return cv2.GaussianBlur(np.asarray(image), (0, 0), float(sigma))


def pixelate_image(image: np.ndarray, block: float) -> np.ndarray:
    """One uint8 RGB image of any size pixelated with ``round(block)`` px cells (exact cell means)."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"pixelate_image needs a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    return _pixelate_any(img[None], max(1, int(round(block))))[0]


# ---------------------------------------------------------------------------- k-same
def ksame_groups(features: np.ndarray, identity: np.ndarray, k: int) -> np.ndarray:
    """Group faces so that every group holds faces of at least `k` distinct people.

    Greedy k-Same grouping (Newton et al. 2005), made identity-aware: take the first ungrouped
    face, add the ungrouped faces nearest to it (Euclidean in `features`) that belong to people
    not yet in the group until k people are in; all photos of those people that are still
    ungrouped join too, so no person is split across groups. When fewer than 2k people remain,
    they all form the last group. ``identity == -1`` means every such face is its own person.

    Returns (N,) int group ids 0..G-1. Raises when the set has fewer than k people.
    """
    feats = np.asarray(features, np.float64).reshape(len(features), -1)
    ident = np.asarray(identity).astype(np.int64).copy()
    n = len(feats)
    if len(ident) != n:
        raise ValueError(f"{n} feature rows but {len(ident)} identities")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    unknown = ident < 0
    ident[unknown] = ident.max(initial=-1) + 1 + np.arange(unknown.sum())  # each unknown face: its own person
    people = np.unique(ident)
    if len(people) < k:
        raise ValueError(f"k-same with k={k} needs at least {k} distinct people; this set has {len(people)}")
    group = np.full(n, -1, np.int64)
    g = 0
    while True:
        free = np.flatnonzero(group < 0)
        if len(free) == 0:
            break
        free_people = np.unique(ident[free])
        if len(free_people) < 2 * k:
            group[free] = g
            break
        seed = free[0]
        d = np.linalg.norm(feats[free] - feats[seed], axis=1)
        chosen: list[int] = []
        for i in free[np.argsort(d, kind="stable")]:
            if ident[i] not in chosen:
                chosen.append(int(ident[i]))
                if len(chosen) == k:
                    break
        group[free[np.isin(ident[free], chosen)]] = g
        g += 1
    return group


def _pca_project(x: np.ndarray, n_components: int) -> Callable[[np.ndarray], np.ndarray]:
    mean = x.mean(axis=0)
    xc = x - mean
    # eigenfaces from the Gram matrix (N x N), cheap when N << pixels
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    v = vt[:n_components]

    def project(y: np.ndarray) -> np.ndarray:
        return mean + ((y - mean) @ v.T) @ v

    return project


def k_same(faces: np.ndarray, identity: np.ndarray, k: int = KSAME_K, features: np.ndarray | None = None,
           variant: str = "pixel", n_components: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """k-same obscuration of a set of faces.

    `features` chooses the grouping space (default: the pixels; the Table 1 method passes the
    utility vectors). ``variant="pixel"``: surrogate = mean image of the group; ``"eigen"``:
    that mean projected onto the top `n_components` principal components of this set
    (default ``min(N - 1, 50)``). Returns (obscured uint8 faces, group ids).
    """
    faces = check_faces(faces)
    x = faces.reshape(len(faces), -1).astype(np.float64)
    group = ksame_groups(x if features is None else features, identity, k)
    if variant == "pixel":
        project = None
    elif variant == "eigen":
        nc = min(len(faces) - 1, 50) if n_components is None else int(n_components)
        if nc < 1:
            raise ValueError("the eigenface variant needs at least 2 faces")
        project = _pca_project(x, nc)
    else:
        raise ValueError(f"unknown k-same variant {variant!r}: use 'pixel' or 'eigen'")
    out = np.empty_like(x)
    for gid in np.unique(group):
        members = group == gid
        mean = x[members].mean(axis=0, keepdims=True)
        out[members] = project(mean) if project is not None else mean
    return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(faces.shape), group


# ---------------------------------------------------------------------------- compositing
def composite(obscured: np.ndarray, original: np.ndarray, masks: np.ndarray, feather: int = 0) -> np.ndarray:
    """Keep `original` outside the face mask and `obscured` inside (optionally feathered by a
    Gaussian of ``feather`` px): what a released photo would show if only the face were replaced."""
    obscured, original = check_faces(obscured), check_faces(original)
    if obscured.shape != original.shape or masks.shape != original.shape[:3]:
        raise ValueError(f"shapes differ: obscured {obscured.shape}, original {original.shape}, masks {masks.shape}")
    m = (np.asarray(masks) > 0).astype(np.float32)
    if feather > 0:
        k = 2 * feather + 1
        m = np.stack([cv2.GaussianBlur(mi, (k, k), 0) for mi in m])
    m = m[..., None]
    return np.clip(np.round(obscured * m + original * (1 - m)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- methods
@dataclass
class Method:
    """One row of Table 1: ``fn(FaceSet) -> uint8 (N,S,S,3)`` obscured faces."""

    name: str  # short key: none, blur-5, pixelate-15, k-same, k-same-net, up-gan
    label: str  # as printed in the table
    fn: Callable[[FaceSet], np.ndarray]
    family: str = ""
    params: dict = field(default_factory=dict)

    def __call__(self, data: FaceSet) -> np.ndarray:
        out = to_uint8(self.fn(data))
        if out.shape != data.faces.shape:
            raise ValueError(f"method {self.name} returned {out.shape}, expected {data.faces.shape}")
        return out


def generator_method(name: str, label: str, generate: Callable, batch_size: int = 64, device="cpu",
                     family: str = "generator") -> Method:
    """Wrap ``generate(utility (N,17) float tensor) -> faces`` as a :class:`Method`.

    `generate` may return a (N,3,S,S) tensor in [-1, 1], a tuple whose first item is that
    (the UP-GAN generator returns ``(face, mask_logits)``), or uint8 (N,S,S,3). The utility
    vectors come from :meth:`FaceSet.utility`, so unknown attributes must be filled first
    (:func:`upgan_lib.attributes.fill_attributes`).
    """

    @torch.no_grad()
    def fn(data: FaceSet) -> np.ndarray:
        u = torch.from_numpy(data.utility())
        outs = []
        for i in range(0, len(u), batch_size):
            y = generate(u[i:i + batch_size].to(device))
            if isinstance(y, (tuple, list)):
                y = y[0]
            outs.append(to_uint8(y))
        out = np.concatenate(outs) if outs else np.zeros_like(data.faces)
        if out.shape[1:3] != data.faces.shape[1:3]:
            raise ValueError(f"{name}: generated {out.shape[1]}x{out.shape[2]} faces for {data.size}x{data.size} inputs")
        return out

    return Method(name, label, fn, family)


def module_generator(model: torch.nn.Module, device="cpu") -> Callable:
    """A ``utility -> faces`` callable from a generator module (eval mode, on `device`)."""
    model = model.to(device).eval()

    def generate(u: torch.Tensor):
        return model(u.to(device))

    return generate


def standard_methods(k: int = KSAME_K, ksame_variant: str = "pixel", ksame_net: Callable | None = None,
                     upgan: Callable | None = None, device="cpu", blur_by: str = "ksize") -> list[Method]:
    """Table 1's rows in the paper's order. The generator rows are included only when given
    (``utility -> faces`` callables, e.g. :func:`module_generator` of ``load_generator(run)``).
    ``blur_by="ksize"``: blur 5/15/25 are kernel sizes (the default reading); ``"sigma"``: they are
    standard deviations in px (names ``blur-s5`` ...)."""
    methods = [Method("none", "None (clear)", lambda d: np.array(d.faces), "none")]
    for s in BLUR_SIZES:
        if blur_by == "ksize":
            methods.append(Method(f"blur-{s}", f"Gaussian blur {s}", lambda d, s=s: gaussian_blur(np.asarray(d.faces), s),
                                  "blur", {"ksize": s, "sigma": round(effective_sigma(s), 2)}))
        elif blur_by == "sigma":
            methods.append(Method(f"blur-s{s}", f"Gaussian blur σ={s}",
                                  lambda d, s=s: gaussian_blur_sigma(np.asarray(d.faces), s), "blur", {"sigma": s}))
        else:
            raise ValueError(f"blur_by must be 'ksize' or 'sigma', got {blur_by!r}")
    for s in PIXEL_SIZES:
        methods.append(Method(f"pixelate-{s}", f"Pixelation {s}", lambda d, s=s: pixelate(np.asarray(d.faces), s),
                              "pixelation", {"block": s}))
    methods.append(Method("k-same", f"k-same (k={k})",
                          lambda d: k_same(np.asarray(d.faces), d.identity, k, features=d.utility(), variant=ksame_variant)[0],
                          "k-same", {"k": k, "variant": ksame_variant, "grouping": "utility"}))
    if ksame_net is not None:
        methods.append(generator_method("k-same-net", "k-same-net", ksame_net, device=device, family="k-same-net"))
    if upgan is not None:
        methods.append(generator_method("up-gan", "UP-GAN", upgan, device=device, family="up-gan"))
    return methods
