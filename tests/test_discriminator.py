"""The discriminator (upgan_lib/discriminator.py)."""
import math

import pytest
import torch

import torch.nn.functional as F

from upgan_lib.discriminator import Discriminator, DiscriminatorConfig
from upgan_lib.generator import Generator, GeneratorConfig, summarize
from upgan_lib.losses import discriminator_loss

SMOKE = DiscriminatorConfig.for_preset("smoke")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _net(cfg=SMOKE, seed=0):
    torch.manual_seed(seed)
    return Discriminator(cfg)


def _faces(n=4, seed=0):
    return torch.rand(n, 3, 128, 128, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_presets_and_parameter_counts():
    assert Discriminator(DiscriminatorConfig.for_preset("full")).num_parameters() == 6_959_553
    assert _net().num_parameters() == 27_933
    full = DiscriminatorConfig.for_preset("full")
    assert full.norm == "spectral" and full.real_label == 0.9 and full.fake_label == 0.0
    assert DiscriminatorConfig.for_preset("smoke", real_label=1.0).real_label == 1.0
    with pytest.raises(ValueError, match="preset"):
        DiscriminatorConfig.for_preset("huge")
    with pytest.raises(ValueError, match="norm"):
        DiscriminatorConfig(norm="layer")
    with pytest.raises(ValueError, match="channels"):
        DiscriminatorConfig(channels=(8, 8))
    with pytest.raises(ValueError, match="real_label"):
        DiscriminatorConfig(real_label=1.2)
    with pytest.raises(ValueError, match="below"):
        DiscriminatorConfig(real_label=0.5, fake_label=0.5)


@pytest.mark.parametrize("preset", ["smoke", "full"])
def test_output_shape(preset):
    d = _net(DiscriminatorConfig.for_preset(preset)).eval()
    x = _faces(2 if preset == "full" else 4)
    with torch.no_grad():
        out = d(x)
    assert out.shape == (len(x),) and out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="128"):
        d(torch.zeros(1, 3, 64, 64))


@pytest.mark.parametrize("norm", ["spectral", "batch", "none"])
def test_gradients_reach_every_parameter(norm):
    d = _net(DiscriminatorConfig.for_preset("smoke", norm=norm)).train()
    out = d(_faces())
    discriminator_loss(out[:2], out[2:], SMOKE.real_label, SMOKE.fake_label).backward()
    missing = [n for n, p in d.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for {missing}"


def test_generator_gets_gradient_through_discriminator():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig.for_preset("smoke"))
    d = _net()
    face, _ = g(torch.rand(3, 17))
    torch.nn.functional.softplus(-d(face)).mean().backward()
    face_path = [(n, p) for n, p in g.named_parameters() if not n.startswith("mask_head")]  # D sees the face only
    assert all(p.grad is not None and torch.any(p.grad != 0) for _, p in face_path)
    assert g.mask_head.weight.grad is None


def test_spectral_norm_bounds_the_layers_and_eval_is_deterministic():
    d = _net().train()
    for _ in range(15):  # power iterations converge during training forwards
        d(_faces(2))
    d.eval()
    for m in d.modules():
        if isinstance(m, torch.nn.Conv2d):
            sigma = torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item()
            assert sigma < 1.05, f"{m}: largest singular value {sigma:.3f}"
    x = _faces(3, seed=1)
    with torch.no_grad():
        a, b = d(x), d(x)
        alone = d(x[1:2])
    assert torch.equal(a, b)
    torch.testing.assert_close(alone, a[1:2], atol=1e-5, rtol=0)  # no batch dependence


def test_channels_last_and_autocast():
    d = _net().eval()
    x = _faces()
    with torch.no_grad():
        ref = d(x)
        d = d.to(memory_format=torch.channels_last)
        out = d(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = d(x)
    assert torch.isfinite(low.float()).all() and (low.float() - ref).abs().max().item() < 0.05 + 0.05 * ref.abs().max()


def test_label_smoothing_loss():
    real, fake = torch.randn(8), torch.randn(8)
    # labels (1, 0), the defaults, = the plain GAN loss
    torch.testing.assert_close(discriminator_loss(real, fake), F.softplus(-real).mean() + F.softplus(fake).mean())
    # with 0.9 (the config's real label) the real term is smallest at logit ln 9, not at +infinity
    assert DiscriminatorConfig().real_label == 0.9
    grid = torch.linspace(-2, 8, 1001)
    vals = torch.stack([discriminator_loss(x.view(1), torch.tensor([-50.0]), 0.9) for x in grid])
    assert abs(grid[vals.argmin()].item() - math.log(9)) < 0.02
    # gradient pushes a confident real logit back down
    x = torch.tensor([6.0], requires_grad=True)
    discriminator_loss(x, torch.tensor([-50.0]), 0.9).backward()
    assert x.grad.item() > 0


def test_summary():
    text = summarize(_net().eval(), _faces(2), expand=("features",))
    assert "features.8" in text and "2x32x4x4" in text and text.splitlines()[-1].endswith("27,933")
