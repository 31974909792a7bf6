"""The four UP-GAN losses on inputs whose value is known in closed form."""
import math

import pytest
import torch
import torch.nn as nn

from upgan_lib.identity_net import FaceIdentifier, IdentifierConfig
from upgan_lib.losses import (
    DEFAULT_PERCEPTUAL_LAYERS,
    LOSS_NAMES,
    LossWeights,
    PerceptualLoss,
    UPGANLoss,
    discriminator_loss,
    generator_adversarial_loss,
    l2_loss,
    mask_loss,
    parse_losses,
)

LN2 = math.log(2.0)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # see test_identity_net.one_thread
    yield
    torch.set_num_threads(before)


class TwoLayerStub(nn.Module):
    """features(x, layers): 'a' = x, 'b' = 2x, with one parameter to check freezing."""

    layer_names = ("a", "b")

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.dropout = nn.Dropout(0.5)

    def features(self, x, layers):
        out = {"a": x * self.scale, "b": 2 * x * self.scale}
        return [out[n] for n in layers]


def test_weights_are_the_papers():
    w = LossWeights()
    assert (w.adv, w.l2, w.mask, w.perceptual) == (1.0, 5.0, 1.0, 1.0)
    assert w.as_dict() == {"adv": 1.0, "l2": 5.0, "mask": 1.0, "perceptual": 1.0}


def test_parse_losses():
    assert parse_losses("adv,l2,mask,perceptual") == LOSS_NAMES
    assert parse_losses(None) == LOSS_NAMES and parse_losses("all") == LOSS_NAMES
    assert parse_losses(" l2 , adv") == ("adv", "l2")  # paper order, spaces ignored
    assert parse_losses(["mask"]) == ("mask",)
    with pytest.raises(ValueError, match="unknown loss name.*'vgg'"):
        parse_losses("l2,vgg")
    with pytest.raises(ValueError, match="no loss enabled"):
        parse_losses(",")


def test_adversarial_losses_closed_form():
    zeros = torch.zeros(8)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * LN2)
    assert generator_adversarial_loss(zeros).item() == pytest.approx(LN2)
    # D(x) = log 3 -> sigmoid 3/4 -> -log(3/4); D(F) = -log 3 -> sigmoid 1/4 -> -log(1 - 1/4)
    real, fake = torch.full((4,), math.log(3)), torch.full((4,), -math.log(3))
    assert discriminator_loss(real, fake).item() == pytest.approx(2 * math.log(4 / 3), rel=1e-6)
    # generator: -log sigmoid(-log 3) = log 4
    assert generator_adversarial_loss(fake).item() == pytest.approx(math.log(4), rel=1e-6)
    # mean over a batch of mixed logits
    mixed = torch.tensor([0.0, math.log(3)])
    assert generator_adversarial_loss(mixed).item() == pytest.approx((LN2 + math.log(4 / 3)) / 2, rel=1e-6)
    # huge logits stay finite (softplus, not log(sigmoid))
    assert torch.isfinite(discriminator_loss(torch.full((2,), -1e4), torch.full((2,), 1e4)))


def test_l2_closed_form():
    a = torch.ones(2, 3, 8, 8)
    assert l2_loss(a, a).item() == 0.0
    assert l2_loss(a, -a).item() == pytest.approx(4.0)  # the largest possible in [-1, 1]
    half = torch.zeros(2, 3, 8, 8)
    half[:, :, :4] = 1.0  # half the pixels off by 1
    assert l2_loss(half, torch.zeros_like(half)).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        l2_loss(a, a[:1])


def test_mask_loss_closed_form():
    n, s = 2, 8
    target = torch.zeros(n, 1, s, s)
    target[:, :, : s // 2] = 1.0
    assert mask_loss(torch.zeros(n, 2, s, s), target).item() == pytest.approx(LN2)
    # logits (a, 0): face pixels cost log(1 + e^-a), background pixels log(1 + e^a)
    a = 2.0
    logits = torch.zeros(n, 2, s, s)
    logits[:, 0] = a
    expected = 0.5 * math.log1p(math.exp(-a)) + 0.5 * math.log1p(math.exp(a))
    assert mask_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # a (N, S, S) mask works too, and a perfect prediction costs ~0
    perfect = torch.stack([target[:, 0] * 40 - 20, 20 - target[:, 0] * 40], dim=1)
    assert mask_loss(perfect, target[:, 0]).item() < 1e-6
    # soft target 0.5 with equal logits: still ln 2
    assert mask_loss(torch.zeros(n, 2, s, s), torch.full((n, 1, s, s), 0.5)).item() == pytest.approx(LN2)
    with pytest.raises(ValueError, match=r"\(N, 2, S, S\)"):
        mask_loss(torch.zeros(n, 3, s, s), target)
    with pytest.raises(ValueError, match="face_mask must be"):
        mask_loss(torch.zeros(n, 2, s, s), torch.zeros(n, 1, s, s + 1))


def test_perceptual_closed_form_and_frozen():
    net = TwoLayerStub()
    loss = PerceptualLoss(net, layers=("a", "b"))
    fake = torch.zeros(2, 3, 4, 4, requires_grad=True)
    real = torch.full((2, 3, 4, 4), 0.5)
    value = loss(fake, real)
    # layer a: mse 0.25, layer b: mse 1.0, averaged over the two layers
    assert value.item() == pytest.approx((0.25 + 1.0) / 2)
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0  # gradient reaches the generator output
    assert net.scale.grad is None and not net.scale.requires_grad  # nothing reaches the frozen net
    loss.train()
    assert not net.training  # stays in eval mode
    weighted = PerceptualLoss(TwoLayerStub(), layers=("a", "b"), layer_weights=(1.0, 0.0))
    assert weighted(fake.detach(), real).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown layer"):
        PerceptualLoss(TwoLayerStub(), layers=("c",))
    with pytest.raises(TypeError, match="features"):
        PerceptualLoss(nn.Linear(2, 2))


def test_perceptual_through_the_identifier():
    torch.manual_seed(0)
    ident = FaceIdentifier(4, IdentifierConfig.for_preset("smoke")).train()
    loss = PerceptualLoss(ident, DEFAULT_PERCEPTUAL_LAYERS)
    assert not ident.training and not any(p.requires_grad for p in ident.parameters())
    x = torch.rand(2, 3, 128, 128) * 2 - 1
    assert loss(x, x).item() == 0.0
    fake = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    v = loss(fake, x)
    v.backward()
    assert v.item() > 0 and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in ident.parameters())


def test_combined_loss_total_and_parts():
    n, s = 2, 8
    fake, real = torch.ones(n, 3, s, s), -torch.ones(n, 3, s, s)
    mask_logits, real_mask = torch.zeros(n, 2, s, s), torch.ones(n, 1, s, s)
    fake_logits = torch.zeros(n)
    crit = UPGANLoss(LossWeights(), "adv,l2,mask,perceptual", perceptual=PerceptualLoss(TwoLayerStub(), ("a",)))
    total, parts = crit.generator_loss(fake, mask_logits, real, real_mask, fake_logits)
    assert set(parts) == {"adv", "l2", "mask", "perceptual", "total"}
    assert parts["adv"].item() == pytest.approx(LN2)
    assert parts["l2"].item() == pytest.approx(4.0)
    assert parts["mask"].item() == pytest.approx(LN2)
    assert parts["perceptual"].item() == pytest.approx(4.0)  # layer a is the identity
    assert total.item() == pytest.approx(LN2 + 5 * 4.0 + LN2 + 4.0, rel=1e-6)
    assert parts["total"].item() == pytest.approx(total.item())
    assert crit.uses_discriminator
    assert discriminator_loss(torch.zeros(n), torch.zeros(n), 0.9).item() == pytest.approx(2 * LN2)


def test_combined_loss_subsets_for_the_ablation():
    n, s = 2, 8
    fake, real = torch.ones(n, 3, s, s), -torch.ones(n, 3, s, s)
    crit = UPGANLoss(LossWeights(l2=2.0), "l2")
    total, parts = crit(fake, None, real, None)  # no D, no mask needed
    assert set(parts) == {"l2", "total"} and total.item() == pytest.approx(8.0)
    assert not crit.uses_discriminator and crit.perceptual is None
    with pytest.raises(ValueError, match="no PerceptualLoss"):
        UPGANLoss(LossWeights(), "l2,perceptual")
    with pytest.raises(ValueError, match="fake_logits"):
        UPGANLoss(LossWeights(), "adv,l2").generator_loss(fake, None, real, None)
    with pytest.raises(ValueError, match="mask_logits"):
        UPGANLoss(LossWeights(), "mask").generator_loss(fake, None, real, None)
    # a perceptual net given while the loss is off is ignored (not run)
    assert UPGANLoss(LossWeights(), "l2", perceptual=PerceptualLoss(TwoLayerStub(), ("a",))).perceptual is None


def test_combined_loss_gradients_reach_the_generator_output():
    n, s = 2, 8
    fake = torch.zeros(n, 3, s, s, requires_grad=True)
    mask_logits = torch.zeros(n, 2, s, s, requires_grad=True)
    logits = torch.zeros(n, requires_grad=True)
    crit = UPGANLoss(LossWeights(), "adv,l2,mask")
    total, _ = crit.generator_loss(fake, mask_logits, torch.ones(n, 3, s, s), torch.ones(n, 1, s, s), logits)
    total.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (fake, mask_logits, logits))
