"""Elastic distortion + rotation of faces, masks and landmarks, with ONE warp for all three.

The paper trains on UTKFace "with elastic distortion and rotation in +-30 degrees". This module
draws one random warp per face and applies it to the face, its mask and its landmarks together,
so the utility vector of an augmented face is the utility vector of the *warped* face: build it
from the warped landmarks (warp all 68 and reduce to 7 afterwards, as dlib would see the warped
face), never from the original ones.

The warp (backward map, what ``grid_sample`` needs)
---------------------------------------------------
Pixel coordinates are (x, y) with pixel (i, j) centred on x = j, y = i (the dlib / OpenCV
convention used by the landmarks); the rotation centre is the image centre c = ((W-1)/2, (H-1)/2).
Output pixel p takes its value from input position

    T(p) = c + R(-theta) (p - c) + d(p)

* ``theta`` is drawn uniformly in [-max_angle, +max_angle] degrees; positive theta turns the
  content counter-clockwise on screen, exactly like ``cv2.getRotationMatrix2D(c, theta, 1)``.
* ``d`` is Simard et al.'s (2003) elastic field: independent uniform [-1, 1] numbers per pixel
  and per axis, smoothed by a Gaussian of standard deviation ``sigma`` pixels, multiplied by
  ``alpha``. Its RMS per axis is ``alpha / (2 sqrt(3 pi) sigma)`` pixels and the RMS of each of its
  derivatives (how much the warp locally stretches) ``alpha / (2 sqrt(6 pi) sigma^2)``.

Scaling Simard's numbers to 128 px
----------------------------------
Simard used alpha = 34, sigma = 4 on 28 px MNIST digits: an RMS displacement of 1.38 px = 4.9 %
of the image, with derivatives of RMS 0.245. To keep the same *shape* of distortion at size S,
lengths scale with k = S / 28: sigma -> k sigma and, because the displacement goes as
alpha / sigma, alpha -> k^2 alpha (derivatives, which go as alpha / sigma^2, stay unchanged).
At 128 px that is sigma = 18.3, alpha = 710 (RMS 6.3 px). Digits tolerate that; faces, whose
identity and utility live in a few pixels around eyes and mouth, look caricatured. The course
keeps Simard's correlation length and halves the strength: **sigma = 18, alpha = 350**
(RMS 3.2 px per axis, max about 12 px; derivatives RMS 0.12, max about 0.5, so the warp does
not fold and the landmark inversion below converges fast). :func:`simard_scaled` gives
Simard's exact numbers at any size.

Fast smoothing
--------------
Smoothing S x S white noise with a 6-sigma-wide kernel is wasteful: the result is band-limited.
The field is drawn on a coarse grid with step ``h = max(1, sigma // 4)`` pixels (white noise of
standard deviation scaled by 1/h, which gives exactly the same variance and correlation as the
fine field), smoothed there by a separable Gaussian of sigma / h coarse cells ("valid"
convolution over a margin, so the field is statistically the same at the border as in the
middle), and upsampled bilinearly (neighbouring nodes correlate at exp(-1/64): measured RMS of
the field and of its derivatives agree with the full-resolution field within 1 %). At 128 px,
sigma = 18: a 61 x 61 noise grid, a 29-tap kernel, then one bilinear upsample. Everything is
batched torch on the tensors' device: no Python loop over images, no host synchronisation (no
``.item()``, kernels built with ``torch.arange`` on the device).

Landmarks: inverting the warp
-----------------------------
``grid_sample`` needs the backward map T (output -> input), but a landmark q of the input moves
to the output point p with T(p) = q. :meth:`Warp.warp_points` solves that equation per landmark
by Newton's method, batched: start from the exact answer for the rotation alone,
p_0 = c + R(theta)(q - c), then p <- p - J(p)^-1 (T(p) - q), with the 2 x 2 Jacobian
J = R(-theta) + grad d from central differences of the field (+-0.5 px; five bilinear lookups per
landmark and iteration, nothing per pixel). Steps are capped at 8 px (a trust region) and where
det J < 0.05 (a nearly folded warp, no reliable local inverse) the step falls back to the
fixed-point update p <- c + R(theta)(q - c - d(p)). Measured on a few thousand random landmarks
at the course strength (alpha 350, sigma 18, angles up to 30 degrees): the worst residual
|T(p) - q| is about 4 px after 1 iteration, 0.2 after 2, 0.01 after 3, 1e-4 after 4 and float32
noise (2e-5 px) from 5 on; the default is ``n_iter = 6``.
At Simard's full strength (alpha 710) a few landmarks in 10^5 sit on near-folds and need more
iterations. The residual is returned on request (``return_residual=True``) and the tests check
it, and that a dot drawn at a landmark is found at the moved landmark within 1.5 px. A plain
fixed-point iteration would also converge (rate = the field's largest derivative, up to about
0.5 here) but needs 12+ iterations for 2e-3 px.

Padding: the same warp samples faces and masks with the same ``padding_mode`` (default
``reflection``: corners revealed by the rotation show mirrored content, and the mirrored mask
marks mirrored face pixels as face, keeping face and mask consistent). Bilinear weights are a
convex combination, so warped masks stay in [0, 1] (clamped against rounding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

#: Simard et al. (2003), MNIST: elastic alpha and sigma in pixels of a 28 px image.
SIMARD_ALPHA, SIMARD_SIGMA, SIMARD_SIZE = 34.0, 4.0, 28
PADDING_MODES = ("reflection", "border", "zeros")


def simard_scaled(size: int = 128, strength: float = 1.0) -> tuple[float, float]:
    """Simard's (alpha, sigma) scaled to ``size`` px: sigma * k, alpha * k^2 * strength, k = size/28.

    Same distortion relative to the image at any size (RMS displacement 4.9 % of the side at
    strength 1). ``strength`` scales the displacement only (0.5 is about the course default).
    """
    k = size / SIMARD_SIZE
    return SIMARD_ALPHA * k * k * strength, SIMARD_SIGMA * k


def elastic_rms(alpha: float, sigma: float) -> tuple[float, float]:
    """(RMS displacement per axis in px, RMS of each spatial derivative) of an elastic field.

    Continuous-field formulas for uniform [-1, 1] noise smoothed by a unit-sum Gaussian:
    ``alpha / (2 sqrt(3 pi) sigma)`` and ``alpha / (2 sqrt(6 pi) sigma^2)``. A derivative near -1
    folds the warp; keep the second number below about 0.25.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    return alpha / (2 * math.sqrt(3 * math.pi) * sigma), alpha / (2 * math.sqrt(6 * math.pi) * sigma ** 2)


@dataclass
class AugmentConfig:
    """Knobs of the training-time augmentation (defaults = the course's choice, see module doc).

    alpha, sigma:   elastic strength and smoothness in pixels of the image being warped
                    (values are for 128 px; use :func:`simard_scaled` for another size).
    max_angle:      rotation angle drawn uniformly in [-max_angle, max_angle] degrees (paper: 30).
    p_elastic:      probability that a face gets the elastic distortion (else only rotation).
    p_rotate:       probability that a face is rotated (else angle 0).
    padding_mode:   how positions outside the input are sampled: reflection | border | zeros.
    field_step:     coarse grid step in px for the elastic field; None = max(1, sigma // 4).
    truncate:       Gaussian kernel radius in sigmas.
    n_iter:         Newton iterations that move the landmarks (see module doc).
    """

    alpha: float = 350.0
    sigma: float = 18.0
    max_angle: float = 30.0
    p_elastic: float = 1.0
    p_rotate: float = 1.0
    padding_mode: str = "reflection"
    field_step: int | None = None
    truncate: float = 3.0
    n_iter: int = 6

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(f"AugmentConfig.alpha must be >= 0, got {self.alpha}")
        if self.alpha > 0 and self.sigma <= 0:
            raise ValueError(f"AugmentConfig.sigma must be > 0 when alpha > 0, got {self.sigma}")
        if not 0 <= self.max_angle <= 180:
            raise ValueError(f"AugmentConfig.max_angle must be in [0, 180] degrees, got {self.max_angle}")
        for name in ("p_elastic", "p_rotate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"AugmentConfig.padding_mode {self.padding_mode!r}: use one of {PADDING_MODES}")
        if self.field_step is not None and int(self.field_step) < 1:
            raise ValueError(f"AugmentConfig.field_step must be >= 1 px or None, got {self.field_step}")
        if self.n_iter < 0:
            raise ValueError(f"AugmentConfig.n_iter must be >= 0, got {self.n_iter}")

    @classmethod
    def for_preset(cls, name: str, **overrides) -> "AugmentConfig":
        """Both presets use the same augmentation: it costs nothing and shrinking it would
        change the training distribution, which the smoke preset must not do."""
        if name not in ("smoke", "full"):
            raise ValueError(f"unknown preset {name!r}: use 'smoke' or 'full'")
        return replace(cls(), **overrides)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def step(self) -> int:
        """Coarse grid step of the elastic field in px."""
        if self.field_step is not None:
            return int(self.field_step)
        return max(1, int(self.sigma // 4))


# ---------------------------------------------------------------------------- the field
def _gaussian_kernel(sigma_cells: float, radius: int, device) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    if sigma_cells <= 0:
        k = (x == 0).float()
    else:
        k = torch.exp(-0.5 * (x / sigma_cells) ** 2)
    return k / k.sum()


def elastic_field(n: int, size: tuple[int, int], alpha: float, sigma: float, *, step: int | None = None,
                  truncate: float = 3.0, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Simard elastic displacement (N, 2, H, W) in pixels (channel 0 = dx, 1 = dy).

    Statistically the field of Simard et al.: uniform [-1, 1] per pixel, Gaussian-smoothed with
    ``sigma`` px, times ``alpha``; computed on a coarse grid of ``step`` px and upsampled (see the
    module docstring). ``generator`` must live on ``device`` when given.
    """
    H, W = size
    if alpha == 0 or n == 0:
        return torch.zeros(n, 2, H, W, device=device)
    if sigma <= 0:
        raise ValueError(f"elastic_field: sigma must be > 0, got {sigma}")
    h = max(1, int(step if step is not None else sigma // 4))
    s = sigma / h  # kernel std in coarse cells
    r = max(1, int(math.ceil(truncate * s)))
    gh, gw = (H - 1 + h - 1) // h + 1, (W - 1 + h - 1) // h + 1  # nodes at 0, h, ..., >= size-1
    noise = torch.rand(n * 2, 1, gh + 2 * r, gw + 2 * r, device=device, generator=generator)
    noise = (noise * 2 - 1) * (alpha / h)  # coarse cell = h*h fine pixels: std scales by 1/h
    k = _gaussian_kernel(s, r, noise.device)
    f = F.conv2d(noise, k.view(1, 1, 1, -1))  # valid: consumes the margin
    f = F.conv2d(f, k.view(1, 1, -1, 1))
    f = f.view(n, 2, gh, gw)
    if h > 1:
        f = F.interpolate(f, size=((gh - 1) * h + 1, (gw - 1) * h + 1), mode="bilinear", align_corners=True)
    return f[:, :, :H, :W].contiguous()


def _rotation(angle_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.deg2rad(angle_deg.float())
    return torch.cos(a), torch.sin(a)


@dataclass
class Warp:
    """One warp per image: rotation ``angle_deg`` (N,) and elastic ``displacement`` (N,2,H,W) px or None.

    Output pixel p samples the input at ``T(p) = c + R(-angle)(p - c) + d(p)`` (module doc).
    """

    angle_deg: torch.Tensor
    displacement: torch.Tensor | None
    size: tuple[int, int]

    def __post_init__(self):
        n = self.angle_deg.shape[0]
        if self.angle_deg.ndim != 1:
            raise ValueError(f"Warp.angle_deg must be (N,), got {tuple(self.angle_deg.shape)}")
        if self.displacement is not None and tuple(self.displacement.shape) != (n, 2, *self.size):
            raise ValueError(f"Warp.displacement must be (N, 2, H, W) = {(n, 2, *self.size)}, "
                             f"got {tuple(self.displacement.shape)}")

    def __len__(self) -> int:
        return int(self.angle_deg.shape[0])

    @property
    def centre(self) -> tuple[float, float]:
        H, W = self.size
        return (W - 1) / 2.0, (H - 1) / 2.0

    def _to_norm(self, xy: torch.Tensor) -> torch.Tensor:
        H, W = self.size
        return torch.stack(((2 * xy[..., 0] + 1) / W - 1, (2 * xy[..., 1] + 1) / H - 1), dim=-1)

    def displacement_at(self, p: torch.Tensor) -> torch.Tensor:
        """d at arbitrary pixel positions p (N,K,2) -> (N,K,2), bilinear (border outside)."""
        if self.displacement is None:
            return torch.zeros_like(p)
        g = self._to_norm(p).unsqueeze(2)  # (N,K,1,2)
        d = F.grid_sample(self.displacement.float(), g, mode="bilinear", padding_mode="border", align_corners=False)
        return d.squeeze(-1).transpose(1, 2)  # (N,K,2)

    def source(self, p: torch.Tensor) -> torch.Tensor:
        """T(p): where output positions p (N,K,2) px read the input (N,K,2) px."""
        cx, cy = self.centre
        c, s = _rotation(self.angle_deg)
        c, s = c[:, None], s[:, None]
        x, y = p[..., 0] - cx, p[..., 1] - cy
        # R(-theta) in image coordinates (y down) for counter-clockwise-on-screen content rotation
        out = torch.stack((c * x - s * y + cx, s * x + c * y + cy), dim=-1)
        return out + self.displacement_at(p)

    def grid(self) -> torch.Tensor:
        """The ``grid_sample`` grid (N,H,W,2), align_corners=False."""
        H, W = self.size
        n = len(self)
        dev = self.angle_deg.device
        cx, cy = self.centre
        xs = torch.arange(W, device=dev, dtype=torch.float32) - cx
        ys = torch.arange(H, device=dev, dtype=torch.float32) - cy
        c, s = _rotation(self.angle_deg)
        c, s = c.view(n, 1, 1), s.view(n, 1, 1)
        gx = c * xs.view(1, 1, W) - s * ys.view(1, H, 1) + cx
        gy = s * xs.view(1, 1, W) + c * ys.view(1, H, 1) + cy
        if self.displacement is not None:
            gx = gx + self.displacement[:, 0].float()
            gy = gy + self.displacement[:, 1].float()
        return torch.stack(((2 * gx + 1) / W - 1, (2 * gy + 1) / H - 1), dim=-1)

    def warp_images(self, x: torch.Tensor, padding_mode: str = "reflection", mode: str = "bilinear") -> torch.Tensor:
        """Warp (N,C,H,W) images (any C, any float dtype: sampled in float32, returned in x's dtype)."""
        if x.ndim != 4 or x.shape[0] != len(self) or tuple(x.shape[2:]) != self.size:
            raise ValueError(f"warp_images: expected (N={len(self)}, C, {self.size[0]}, {self.size[1]}), "
                             f"got {tuple(x.shape)}")
        y = F.grid_sample(x.float(), self.grid(), mode=mode, padding_mode=padding_mode, align_corners=False)
        return y.to(x.dtype)

    def warp_points(self, q: torch.Tensor, n_iter: int = 6, return_residual: bool = False):
        """Move input landmarks q (N,K,2) px to where the warped image shows them (N,K,2).

        Solves T(p) = q by Newton's method (module docstring). With ``return_residual`` also
        returns |T(p) - q| (N,K) in px: the inversion's error.
        """
        if q.ndim != 3 or q.shape[-1] != 2 or q.shape[0] != len(self):
            raise ValueError(f"warp_points: expected points (N={len(self)}, K, 2), got {tuple(q.shape)}")
        qf = q.float()
        cx, cy = self.centre
        c, s = _rotation(self.angle_deg)
        c, s = c[:, None], s[:, None]
        x, y = qf[..., 0] - cx, qf[..., 1] - cy
        p = torch.stack((c * x + s * y + cx, -s * x + c * y + cy), dim=-1)  # exact for a pure rotation
        if self.displacement is not None:
            k = qf.shape[1]
            e = 0.5  # half-step of the central differences, px
            max_step = 8.0  # trust region, px per iteration
            for _ in range(n_iter):
                px, py = p[..., 0], p[..., 1]
                probe = torch.cat([p, torch.stack((px + e, py), -1), torch.stack((px - e, py), -1),
                                   torch.stack((px, py + e), -1), torch.stack((px, py - e), -1)], dim=1)
                d = self.displacement_at(probe)
                d0, dxp, dxm, dyp, dym = d.split(k, dim=1)
                gx = (dxp - dxm) / (2 * e)  # (d_x, d_y) derivative along x
                gy = (dyp - dym) / (2 * e)  # along y
                # Jacobian of T: R(-theta) + grad d ; rows = output components (x, y)
                j00, j01 = c + gx[..., 0], -s + gy[..., 0]
                j10, j11 = s + gx[..., 1], c + gy[..., 1]
                xx, yy = px - cx, py - cy
                r = torch.stack((c * xx - s * yy + cx, s * xx + c * yy + cy), dim=-1) + d0 - qf  # T(p) - q
                det = j00 * j11 - j01 * j10
                ok = det > 0.05  # folded or nearly folded: no reliable local inverse, take a fixed-point step
                safe = torch.where(ok, det, torch.ones_like(det))
                step = torch.stack(((j11 * r[..., 0] - j01 * r[..., 1]) / safe,
                                    (-j10 * r[..., 0] + j00 * r[..., 1]) / safe), dim=-1)
                # R(theta) r
                fixed = torch.stack((c * r[..., 0] + s * r[..., 1], -s * r[..., 0] + c * r[..., 1]), dim=-1)
                step = torch.where(ok.unsqueeze(-1), step, fixed)
                # trust region: never move further than max_step px in one iteration
                norm = step.norm(dim=-1, keepdim=True)
                step = step * (max_step / norm.clamp_min(max_step))
                p = p - step
        out = p.to(q.dtype)
        if return_residual:
            return out, (self.source(p) - qf).norm(dim=-1)
        return out


def sample_warp(n: int, size: tuple[int, int] | int, cfg: AugmentConfig, device=None,
                generator: torch.Generator | None = None) -> Warp:
    """Draw N random warps (angles and elastic fields) on ``device``."""
    if isinstance(size, int):
        size = (size, size)
    if device is not None:
        dev = torch.device(device)
    else:
        dev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, 3, device=dev, generator=generator)
    angle = (u[:, 0] * 2 - 1) * cfg.max_angle * (u[:, 1] < cfg.p_rotate)
    disp = None
    if cfg.alpha > 0 and cfg.p_elastic > 0:
        disp = elastic_field(n, size, cfg.alpha, cfg.sigma, step=cfg.step, truncate=cfg.truncate,
                             device=dev, generator=generator)
        if cfg.p_elastic < 1:
            disp = disp * (u[:, 2] < cfg.p_elastic).view(n, 1, 1, 1)
    return Warp(angle_deg=angle, displacement=disp, size=tuple(size))


def augment(faces: torch.Tensor, masks: torch.Tensor | None, points: torch.Tensor | None,
            cfg: AugmentConfig | None = None, generator: torch.Generator | None = None, return_warp: bool = False):
    """Warp faces (N,C,H,W), masks (N,M,H,W) in [0,1] and points (N,K,2) px with one random warp each.

    Faces and masks go through ONE ``grid_sample`` call (channels concatenated), so they cannot
    disagree; points are moved by the inverse map. Runs on the tensors' device; ``generator``
    (on that device) makes it reproducible. Returns (faces, masks, points) (None stays None),
    plus the :class:`Warp` with ``return_warp``.
    """
    cfg = cfg or AugmentConfig()
    if faces.ndim != 4:
        raise ValueError(f"augment: faces must be (N, C, H, W), got {tuple(faces.shape)}")
    n, cf, H, W = faces.shape
    if masks is not None and (masks.ndim != 4 or masks.shape[0] != n or tuple(masks.shape[2:]) != (H, W)):
        raise ValueError(f"augment: masks must be (N={n}, M, {H}, {W}) like the faces, got {tuple(masks.shape)}")
    if points is not None and (points.ndim != 3 or points.shape[0] != n or points.shape[-1] != 2):
        raise ValueError(f"augment: points must be (N={n}, K, 2) pixel (x, y), got {tuple(points.shape)}")
    warp = sample_warp(n, (H, W), cfg, device=faces.device, generator=generator)
    both = faces.float() if masks is None else torch.cat([faces.float(), masks.float()], dim=1)
    out = warp.warp_images(both, padding_mode=cfg.padding_mode)
    f_out = out[:, :cf].to(faces.dtype)
    m_out = None if masks is None else out[:, cf:].clamp(0.0, 1.0).to(masks.dtype)
    p_out = None if points is None else warp.warp_points(points, n_iter=cfg.n_iter)
    if return_warp:
        return f_out, m_out, p_out, warp
    return f_out, m_out, p_out


# ---------------------------------------------------------------------------- checking
def render_dots(points: torch.Tensor, size: tuple[int, int], radius: float = 1.2) -> torch.Tensor:
    """One channel per landmark with a Gaussian dot (std ``radius`` px) on it: (N,K,2) -> (N,K,H,W)."""
    H, W = size
    ys = torch.arange(H, device=points.device, dtype=torch.float32).view(1, 1, H, 1)
    xs = torch.arange(W, device=points.device, dtype=torch.float32).view(1, 1, 1, W)
    px, py = points[..., 0, None, None].float(), points[..., 1, None, None].float()
    return torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * radius ** 2))


def centroids(images: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre (x, y) px of each channel: (N,K,H,W) -> (N,K,2)."""
    n, k, H, W = images.shape
    ys = torch.arange(H, device=images.device, dtype=torch.float32).view(1, 1, H, 1)
    xs = torch.arange(W, device=images.device, dtype=torch.float32).view(1, 1, 1, W)
    img = images.float()
    mass = img.sum(dim=(2, 3)).clamp_min(1e-12)
    return torch.stack(((img * xs).sum(dim=(2, 3)) / mass, (img * ys).sum(dim=(2, 3)) / mass), dim=-1)


def tracking_error(warp: Warp, points: torch.Tensor, moved: torch.Tensor | None = None, radius: float = 1.2,
                   n_iter: int = 6) -> torch.Tensor:
    """How far (px, (N,K)) the warped *pixels* of each landmark are from where ``moved`` says it went.

    Draws a dot at every landmark, warps the dots like the face (zeros outside), finds each dot's
    centroid and compares it with ``moved`` (default: :meth:`Warp.warp_points`). Keep landmarks
    a few sigma away from the border, or part of the dot leaves the picture.
    """
    if moved is None:
        moved = warp.warp_points(points, n_iter=n_iter)
    found = centroids(warp.warp_images(render_dots(points, warp.size, radius), padding_mode="zeros"))
    return (found - moved.float()).norm(dim=-1)


# ---------------------------------------------------------------------------- notebook helpers
def faceset_tensors(faceset, index=None, device=None):
    """(faces (N,3,S,S) in [-1,1], masks (N,1,S,S) in {0,1}, landmarks68 (N,68,2)) float32 tensors."""
    import numpy as np

    idx = np.arange(len(faceset)) if index is None else np.asarray(index)
    faces = torch.from_numpy(np.ascontiguousarray(faceset.faces[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
    masks = torch.from_numpy(np.ascontiguousarray(faceset.masks[idx])).unsqueeze(1).float()
    lms = torch.from_numpy(np.ascontiguousarray(faceset.landmarks68[idx], dtype=np.float32))
    return faces.to(device), masks.to(device), lms.to(device)


def augmentation_grid(faces, masks, landmarks68, cfg: AugmentConfig, n_variants: int = 4, seed: int = 0,
                      title: str | None = None):
    """Figure: each row one face, first column the original, then ``n_variants`` augmentations,
    with the 68 (red) and the 7 utility landmarks (yellow) overlaid and the mask shading."""
    from .viz import face_grid, overlay_landmarks

    g = torch.Generator(device=faces.device).manual_seed(seed)
    rows = []
    for i in range(len(faces)):
        f = faces[i:i + 1].expand(n_variants, -1, -1, -1)
        m = masks[i:i + 1].expand(n_variants, -1, -1, -1)
        p = landmarks68[i:i + 1].expand(n_variants, -1, -1)
        fa, ma, pa = augment(f, m, p, cfg, generator=g)
        imgs = torch.cat([faces[i:i + 1], fa])
        mm = torch.cat([masks[i:i + 1], ma])[:, 0].cpu().numpy() > 0.5
        pts = torch.cat([landmarks68[i:i + 1], pa]).cpu().numpy()
        rows.append(overlay_landmarks(imgs, pts, mm))
    cols = ["original"] + [f"aug {k + 1}" for k in range(n_variants)]
    return face_grid(rows, title=title, col_labels=cols)


class AugmentExplorer:
    """Sliders for alpha, sigma and angle over a few faces (built by :func:`augment_widget`).

    ``render(alpha, sigma, angle)`` draws the faces warped with a *fixed* random field (same seed)
    at that strength and exactly that angle, so moving one slider changes one thing, and returns
    the matplotlib figure. ``refresh()`` is the sliders' callback: it renders the current slider
    values as a PNG into the widget's image. Both can be called without a browser.

    (The picture is an ``ipywidgets.Image`` rather than figures captured in an ``Output`` widget:
    nbclient/papermill, which execute the smoke notebooks, stall on large captured outputs.)
    """

    def __init__(self, faces, masks, landmarks68, cfg: AugmentConfig | None = None, seed: int = 0,
                 max_alpha: float = 1000.0, max_sigma: float = 40.0, dpi: int = 90):
        import ipywidgets as widgets

        self.faces, self.masks, self.landmarks68 = faces, masks, landmarks68
        self.cfg = cfg or AugmentConfig()
        self.seed, self.dpi = seed, dpi
        self.sliders = dict(
            alpha=widgets.FloatSlider(value=self.cfg.alpha, min=0.0, max=max_alpha, step=10.0, description="alpha"),
            sigma=widgets.FloatSlider(value=self.cfg.sigma, min=1.0, max=max_sigma, step=0.5, description="sigma"),
            angle=widgets.FloatSlider(value=0.0, min=-max(self.cfg.max_angle, 1.0), max=max(self.cfg.max_angle, 1.0),
                                      step=1.0, description="angle"),
        )
        for s in self.sliders.values():
            s.continuous_update = False  # re-render when the slider is released
            s.observe(self.refresh, names="value")
        self.image = widgets.Image(format="png")
        self.widget = widgets.VBox([*self.sliders.values(), self.image])
        self.calls = 0

    def render(self, alpha: float, sigma: float, angle: float):
        import matplotlib.pyplot as plt

        from .viz import overlay_landmarks

        faces, masks, lms = self.faces, self.masks, self.landmarks68
        n, size = len(faces), tuple(faces.shape[2:])
        sigma = max(float(sigma), 0.5)
        g = torch.Generator(device=faces.device).manual_seed(self.seed)
        disp = elastic_field(n, size, float(alpha), sigma, device=faces.device, generator=g,
                             truncate=self.cfg.truncate) if alpha > 0 else None
        warp = Warp(torch.full((n,), float(angle), device=faces.device), disp, size)
        both = warp.warp_images(torch.cat([faces, masks], 1), padding_mode=self.cfg.padding_mode)
        pts, res = warp.warp_points(lms, n_iter=self.cfg.n_iter, return_residual=True)
        imgs = overlay_landmarks(torch.cat([faces, both[:, :3]]), torch.cat([lms, pts]).cpu().numpy(),
                                 torch.cat([masks, both[:, 3:]])[:, 0].cpu().numpy() > 0.5)
        rms, drms = elastic_rms(float(alpha), sigma)
        fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.imshow(imgs[k])
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][0].set_ylabel("original", fontsize=8)
        axes[1][0].set_ylabel("warped", fontsize=8)
        fig.suptitle(f"alpha={alpha:.0f}  sigma={sigma:.1f}  angle={angle:+.0f} deg | RMS shift {rms:.1f} px, "
                     f"RMS stretch {drms:.2f} | landmark residual max {float(res.max()):.1e} px", fontsize=8)
        fig.tight_layout()
        self.calls += 1
        return fig

    def refresh(self, _change=None) -> None:
        """Slider callback: render the current values into the widget's image."""
        import io

        import matplotlib.pyplot as plt

        fig = self.render(**{k: s.value for k, s in self.sliders.items()})
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=self.dpi)
        plt.close(fig)
        self.image.value = buf.getvalue()


def augment_widget(faces, masks, landmarks68, cfg: AugmentConfig | None = None, seed: int = 0,
                   max_alpha: float = 1000.0, max_sigma: float = 40.0) -> AugmentExplorer:
    """Build the alpha / sigma / angle explorer; display ``.widget`` and call ``.refresh()`` once."""
    return AugmentExplorer(faces, masks, landmarks68, cfg, seed, max_alpha, max_sigma)
