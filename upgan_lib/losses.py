"""The four UP-GAN losses (paper, Section 3.2) and their weighted sum.

The generator G maps a utility vector u to a face F = G(u) and a two-channel mask M. Its loss is

    L_G = L_adv + lambda1 * L_2 + lambda2 * L_mask + lambda3 * L_p,    lambda = (5, 1, 1)

==============  =============================================================  =====================
part            definition (means over every element of the batch)            value at "no signal"
==============  =============================================================  =====================
``adv``         non-saturating GAN loss: mean softplus(-D(F)) = -log sigmoid   ln 2 = 0.693 for
                D(F); the discriminator minimises the binary cross-entropy     logits 0 (D cannot
                towards 0.9 on real faces and 0 on generated ones (one-sided   tell; D's loss 2 ln 2)
                label smoothing, :func:`discriminator_loss`)
``l2``          mean (F - x)^2 over pixels and channels, images in [-1, 1]     0 when F = x; 4 when
                                                                               F = -x = +-1
``mask``        per-pixel two-class cross-entropy between softmax(M) and the   ln 2 for logits 0
                target (channel 0 face = the face mask, channel 1 background
                = 1 - mask); soft targets (warped masks) are allowed
``perceptual``  mean over the chosen layers l of mean (phi_l(F) - phi_l(x))^2, 0 when F = x
                phi = the frozen face-identity VGG-19 (``identity_net.py``)
==============  =============================================================  =====================

Choices the paper leaves open, made here (and what to change):

* Adversarial: the standard non-saturating GAN objective (Goodfellow et al. 2014), computed from
  logits with ``softplus`` for numerical stability. The discriminator's targets are smoothed on
  the real side only (Salimans et al. 2016): training uses ``DiscriminatorConfig.real_label`` =
  0.9 and ``fake_label`` = 0, so D is never rewarded for calling a fake "a bit real"; the
  generator still aims at 1.
* Perceptual layers: ``DEFAULT_PERCEPTUAL_LAYERS`` = relu1_2, relu2_2, relu3_4, relu4_4 of the
  VGG-19 identifier (low-level edges up to part-level features; the deepest block, relu5_4, is
  left out because it is almost pure identity). Each layer's mean squared error is averaged over
  the layers, so lambda3 = 1 weights "one typical layer"; pass ``layer_weights`` to change it.
* The perceptual network is frozen: its parameters get no gradient, it always runs in eval mode
  (dropout off, batch-norm statistics fixed), and the real image's features are computed without
  a graph. Inputs are in the course's [-1, 1] range; the network maps them to the
  normalisation it expects itself (ImageNet mean/std for VGG, see ``identity_net.VGGTrunk.normalise``).

:class:`UPGANLoss` combines the parts for training and for the ablation study: it takes
:class:`LossWeights` and the enabled subset (``"adv,l2,mask,perceptual"``) and returns the
weighted total plus a dict of the unweighted parts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Names of the four generator losses, in the paper's order.
LOSS_NAMES = ("adv", "l2", "mask", "perceptual")
#: VGG-19 layers used by the perceptual loss by default (torchvision layout names).
DEFAULT_PERCEPTUAL_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4")


@dataclass
class LossWeights:
    """Weights of the generator's losses; the paper's lambda1..3 = (5, 1, 1), adversarial 1."""

    adv: float = 1.0
    l2: float = 5.0
    mask: float = 1.0
    perceptual: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def parse_losses(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"adv,l2,mask,perceptual"`` (or a list, or ``"all"``/None) -> ordered tuple of loss names.

    Raises ``ValueError`` naming unknown or missing entries; at least one loss must be enabled.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return LOSS_NAMES
    items = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    items = [s for s in items if s]
    unknown = [s for s in items if s not in LOSS_NAMES]
    if unknown:
        raise ValueError(f"unknown loss name(s) {unknown}: choose from {','.join(LOSS_NAMES)} (comma-separated)")
    if not items:
        raise ValueError(f"no loss enabled: give at least one of {','.join(LOSS_NAMES)}")
    return tuple(n for n in LOSS_NAMES if n in items)


# ---------------------------------------------------------------------------- adversarial
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, real_label: float = 1.0,
                       fake_label: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy of the discriminator: real faces labelled ``real_label``, generated
    ones ``fake_label``, each term averaged over its batch.

    BCE(x, t) = t * softplus(-x) + (1 - t) * softplus(x) (numerically stable, from logits). The
    defaults (1, 0) give the plain ``mean softplus(-real) + mean softplus(fake)``; training passes
    ``DiscriminatorConfig.real_label`` = 0.9 (one-sided label smoothing), which makes the real
    term minimal (0.325 instead of 0) at logit ln 9 = 2.2, so D stops pushing real logits up
    there. 2 ln 2 = 1.386 when all logits are 0, whatever the labels. Pass ``fake_logits``
    computed on detached fakes so no gradient reaches the generator.
    """
    r, f = real_logits.float(), fake_logits.float()
    real = real_label * F.softplus(-r) + (1.0 - real_label) * F.softplus(r)
    fake = fake_label * F.softplus(-f) + (1.0 - fake_label) * F.softplus(f)
    return real.mean() + fake.mean()


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``mean softplus(-D(G(u)))`` = -log sigmoid; ln 2 at logit 0."""
    return F.softplus(-fake_logits.float()).mean()


# ---------------------------------------------------------------------------- reconstruction
def l2_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all pixels and channels (images in [-1, 1]; max 4)."""
    if fake.shape != real.shape:
        raise ValueError(f"l2_loss: fake {tuple(fake.shape)} and real {tuple(real.shape)} must have the same shape")
    return F.mse_loss(fake.float(), real.float())


def mask_loss(mask_logits: torch.Tensor, face_mask: torch.Tensor) -> torch.Tensor:
    """Two-class per-pixel cross-entropy of the generated mask.

    ``mask_logits`` (N, 2, S, S): channel 0 = face, 1 = background (the generator's output).
    ``face_mask`` (N, 1, S, S) or (N, S, S), 1 inside the face; values in [0, 1] are treated as soft
    targets (p_face = mask), which equals the usual hard cross-entropy on a {0, 1} mask.
    Returns the mean over pixels; ln 2 = 0.693 when both logits are equal.
    """
    if mask_logits.ndim != 4 or mask_logits.shape[1] != 2:
        raise ValueError(f"mask_loss: mask_logits must be (N, 2, S, S), got {tuple(mask_logits.shape)}")
    if face_mask.ndim == 3:
        face_mask = face_mask.unsqueeze(1)
    if face_mask.shape != (mask_logits.shape[0], 1, *mask_logits.shape[2:]):
        raise ValueError(f"mask_loss: face_mask must be (N, 1, S, S) matching the logits {tuple(mask_logits.shape)}, "
                         f"got {tuple(face_mask.shape)}")
    logp = F.log_softmax(mask_logits.float(), dim=1)
    m = face_mask.float()  # values are not range-checked here (that would sync the GPU every step)
    return -(m * logp[:, :1] + (1.0 - m) * logp[:, 1:]).mean()


# ---------------------------------------------------------------------------- perceptual
class PerceptualLoss(nn.Module):
    """Feature-matching loss through a frozen network.

    ``feature_net`` must provide ``features(x, layers) -> list[Tensor]`` taking images in [-1, 1]
    (``FaceIdentifier`` does, mapping them to its own normalisation). The network is frozen here:
    ``requires_grad_(False)`` on all its parameters and eval mode, kept even if ``.train()`` is
    called on a parent module. Gradients still flow to ``fake`` through the network.

    Value: ``sum_l w_l * mean (phi_l(fake) - phi_l(real))^2`` with ``w_l = 1 / len(layers)`` by
    default (the mean over layers).
    """

    def __init__(self, feature_net: nn.Module, layers: Sequence[str] = DEFAULT_PERCEPTUAL_LAYERS,
                 layer_weights: Sequence[float] | None = None):
        super().__init__()
        if not hasattr(feature_net, "features") or not callable(feature_net.features):
            raise TypeError(f"PerceptualLoss needs a network with .features(x, layers), got {type(feature_net).__name__}")
        self.layers = tuple(layers)
        if not self.layers:
            raise ValueError("PerceptualLoss needs at least one layer")
        valid = getattr(feature_net, "layer_names", None)
        if valid is not None:
            bad = [name for name in self.layers if name not in valid]
            if bad:
                raise ValueError(f"PerceptualLoss: unknown layer(s) {bad}; the network has {list(valid)}")
        if layer_weights is None:
            layer_weights = [1.0 / len(self.layers)] * len(self.layers)
        if len(layer_weights) != len(self.layers):
            raise ValueError(f"{len(layer_weights)} layer weights for {len(self.layers)} layers")
        self.layer_weights = tuple(float(w) for w in layer_weights)
        self.feature_net = feature_net
        self.feature_net.requires_grad_(False)
        self.feature_net.eval()

    def train(self, mode: bool = True):  # keep the frozen network in eval mode
        super().train(mode)
        self.feature_net.eval()
        return self

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if fake.shape != real.shape:
            raise ValueError(f"PerceptualLoss: fake {tuple(fake.shape)} and real {tuple(real.shape)} differ in shape")
        with torch.no_grad():
            target = self.feature_net.features(real, list(self.layers))
        pred = self.feature_net.features(fake, list(self.layers))
        total = fake.new_zeros((), dtype=torch.float32)
        for w, p, t in zip(self.layer_weights, pred, target):
            total = total + w * F.mse_loss(p.float(), t.float())
        return total


# ---------------------------------------------------------------------------- combined
class UPGANLoss(nn.Module):
    """The generator's weighted loss with an enabled subset (for the ablation); D's loss is
    :func:`discriminator_loss`.

    >>> crit = UPGANLoss(LossWeights(), "adv,l2,mask", perceptual=None)
    >>> total, parts = crit.generator_loss(fake, mask_logits, real, real_mask, fake_logits=D(fake))

    ``parts`` maps each enabled loss name to its *unweighted* value (a detached scalar tensor) and
    ``"total"`` to the weighted sum. A disabled part is not computed at all (a run without the
    perceptual loss does not need the identifier; without ``adv`` it does not need ``fake_logits``
    and the trainer can skip the discriminator: see :attr:`uses_discriminator`).
    """

    def __init__(self, weights: LossWeights | None = None, enabled: str | Iterable[str] | None = None,
                 perceptual: PerceptualLoss | None = None):
        super().__init__()
        self.weights = weights or LossWeights()
        self.enabled = parse_losses(enabled)
        if "perceptual" in self.enabled and perceptual is None:
            raise ValueError("the perceptual loss is enabled but no PerceptualLoss was given: pass "
                             "perceptual=PerceptualLoss(identifier) or drop 'perceptual' from the enabled losses")
        self.perceptual = perceptual if "perceptual" in self.enabled else None

    @property
    def uses_discriminator(self) -> bool:
        return "adv" in self.enabled

    def generator_loss(self, fake: torch.Tensor, mask_logits: torch.Tensor | None, real: torch.Tensor,
                       real_mask: torch.Tensor | None, fake_logits: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted total and unweighted parts; arguments a disabled loss needs may be None."""
        parts: dict[str, torch.Tensor] = {}
        if "adv" in self.enabled:
            if fake_logits is None:
                raise ValueError("the adversarial loss is enabled: pass fake_logits = discriminator(fake)")
            parts["adv"] = generator_adversarial_loss(fake_logits)
        if "l2" in self.enabled:
            parts["l2"] = l2_loss(fake, real)
        if "mask" in self.enabled:
            if mask_logits is None or real_mask is None:
                raise ValueError("the mask loss is enabled: pass mask_logits and real_mask")
            parts["mask"] = mask_loss(mask_logits, real_mask)
        if "perceptual" in self.enabled:
            parts["perceptual"] = self.perceptual(fake, real)
        w = self.weights.as_dict()
        total = sum(w[name] * value for name, value in parts.items())
        out = {name: value.detach() for name, value in parts.items()}
        out["total"] = total.detach()
        return total, out

    def forward(self, fake, mask_logits, real, real_mask, fake_logits=None):
        return self.generator_loss(fake, mask_logits, real, real_mask, fake_logits)
