"""The generator: 17 numbers -> face + mask (upgan_lib/generator.py)."""
import pytest
import torch

from upgan_lib.generator import Generator, GeneratorConfig, face_probability, pixel_norm, summarize, unpool2x
from upgan_lib.synthfaces import make_synthfaces
from upgan_lib.utility import UTILITY_DIM

SMOKE = GeneratorConfig.for_preset("smoke")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def utility():
    return torch.from_numpy(make_synthfaces(n_identities=2, photos_per_identity=2, seed=1).utility())


def _net(cfg=SMOKE, seed=0):
    torch.manual_seed(seed)
    return Generator(cfg)


def test_presets_and_parameter_counts():
    full = Generator(GeneratorConfig.for_preset("full"))
    assert full.num_parameters() == 25_082_725
    assert full.channels == [512, 512, 256, 128, 64, 32]
    smoke = Generator(SMOKE)
    assert smoke.num_parameters() == 394_593
    assert GeneratorConfig.for_preset("smoke", norm="none").norm == "none"
    with pytest.raises(ValueError, match="preset"):
        GeneratorConfig.for_preset("tiny")
    with pytest.raises(ValueError, match="out_size"):
        GeneratorConfig(channels=(8, 8, 8))
    with pytest.raises(ValueError, match="norm"):
        GeneratorConfig(norm="batch")


@pytest.mark.parametrize("preset", ["smoke", "full"])
def test_shapes_and_ranges(preset, utility):
    g = _net(GeneratorConfig.for_preset(preset)).eval()
    u = utility[:1] if preset == "full" else utility
    with torch.no_grad():
        face, mask = g(u)
    assert face.shape == (len(u), 3, 128, 128) and mask.shape == (len(u), 2, 128, 128)
    assert face.dtype == torch.float32 and torch.isfinite(mask).all()
    assert face.min() >= -1 and face.max() <= 1
    # untrained but alive: neither constant nor saturated
    assert 0.02 < face.std().item() < 0.9
    assert (face.abs() > 0.999).float().mean().item() < 0.01
    p = face_probability(mask)
    assert p.shape == (len(u), 1, 128, 128) and p.min() >= 0 and p.max() <= 1


def test_face_probability_is_softmax_channel_0():
    logits = torch.randn(2, 2, 8, 8) * 5
    torch.testing.assert_close(face_probability(logits), torch.softmax(logits, 1)[:, :1])
    extreme = torch.zeros(1, 2, 4, 4)
    extreme[:, 0], extreme[:, 1] = 900.0, -900.0  # no overflow or NaN at extreme logits
    assert face_probability(extreme).min() == 1.0


def test_rejects_wrong_input():
    g = _net()
    with pytest.raises(ValueError, match="17"):
        g(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="17"):
        g(torch.zeros(UTILITY_DIM))


def test_same_inputs_same_face_and_no_batch_dependence(utility):
    g = _net().eval()
    with torch.no_grad():
        a = g(utility)
        b = g(utility)
        alone = g(utility[1:2])
        mixed = g(torch.cat([utility[1:2], torch.rand(5, 17)]))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # a face depends on its own 17 numbers only, not on the batch around it
    torch.testing.assert_close(alone[0][0], a[0][1], atol=1e-4, rtol=0)  # float noise of batched GEMMs only
    torch.testing.assert_close(mixed[0][0], a[0][1], atol=1e-4, rtol=0)
    # train vs eval mode does not matter (no batch norm, no dropout)
    g.train()
    with torch.no_grad():
        c = g(utility)
    torch.testing.assert_close(c[0], a[0], atol=1e-6, rtol=0)
    # a fresh network built with the same seed is the same function
    with torch.no_grad():
        d = _net().eval()(utility)
    assert torch.equal(d[0], a[0])


@pytest.mark.parametrize("index", [0, 1, 2, 3, 8, 16])  # age, gender, race, some landmark coordinates
def test_different_utility_different_face(utility, index):
    g = _net().eval()
    u2 = utility.clone()
    u2[:, index] += 0.1
    with torch.no_grad():
        f1, m1 = g(utility)
        f2, m2 = g(u2)
    # every face changes visibly (mean |change| ~ 1e-2 for a 0.1 step), and so does the mask
    assert (f1 - f2).abs().mean(dim=(1, 2, 3)).min().item() > 2e-3
    assert (m1 - m2).abs().mean().item() > 1e-3


@pytest.mark.parametrize("cfg", [SMOKE, GeneratorConfig.for_preset("smoke", norm="none", upsample="unpool",
                                                                    maxpool=False)])
def test_gradients_reach_every_parameter(cfg, utility):
    g = _net(cfg).train()
    face, mask = g(utility)
    (face.square().mean() + mask.square().mean()).backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in g.parameters())


def test_channels_last_matches_contiguous(utility):
    g = _net().eval()
    with torch.no_grad():
        ref = g(utility)
        g = g.to(memory_format=torch.channels_last)
        face, mask = g(utility)
    assert face.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(face, ref[0], atol=5e-4, rtol=0)  # different conv kernels: float noise only
    torch.testing.assert_close(mask, ref[1], atol=5e-4, rtol=0)


def test_autocast_bf16(utility):
    g = _net().eval()
    with torch.no_grad():
        ref, _ = g(utility)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            face, mask = g(utility)
    assert face.dtype == torch.bfloat16 and torch.isfinite(mask.float()).all()
    # bf16 keeps ~3 significant digits: close on average (max-pool may switch at a few pixels)
    assert (face.float() - ref).abs().mean().item() < 0.03
    assert torch.corrcoef(torch.stack([face.float().flatten(), ref.flatten()]))[0, 1].item() > 0.99
    # and gradients flow under autocast
    g.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        face, mask = g(utility)
        loss = face.float().square().mean() + mask.float().square().mean()
    loss.backward()
    assert all(p.grad is not None for p in g.parameters())


def test_building_blocks():
    x = torch.randn(2, 6, 3, 3)
    y = pixel_norm(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(2, 3, 3), atol=1e-5, rtol=0)
    u = unpool2x(x)
    assert u.shape == (2, 6, 6, 6)
    assert torch.equal(u[..., ::2, ::2], x) and u[..., 1::2, :].abs().sum() == 0 and u[..., 1::2].abs().sum() == 0


def test_summary_lists_shapes_and_total(utility):
    text = summarize(_net().eval(), utility)
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "output", "params"]
    assert any(line.startswith("blocks.4") and "4x4x128x128" in line for line in lines)
    assert lines[-1].endswith("394,593")


def test_drawing_at_64_upsampled_behind_the_128_interface():
    cfg = GeneratorConfig(width=1 / 16, channels=(512, 512, 256, 128, 64), draw_size=64)
    G = Generator(cfg).eval()
    u = torch.randn(3, 17)
    face64, mask64 = G.draw(u)
    face, mask = G(u)
    assert face64.shape == (3, 3, 64, 64) and mask64.shape == (3, 2, 64, 64)
    assert face.shape == (3, 3, 128, 128) and mask.shape == (3, 2, 128, 128)
    # the 128 face is the 64 drawing enlarged (bilinear, pixel centres kept)
    up = torch.nn.functional.interpolate(face64, size=(128, 128), mode="bilinear", align_corners=False)
    assert torch.allclose(face, up.clamp(-1, 1)) and torch.allclose(face[:, :, 1::2, 1::2].mean(), face64.mean(), atol=0.05)
    assert face.abs().max() <= 1.0
    with pytest.raises(ValueError, match="drawing size 64"):
        GeneratorConfig(channels=(8, 8, 8, 8, 8, 8), draw_size=64)
    with pytest.raises(ValueError, match="draw_size"):
        GeneratorConfig(draw_size=256)
