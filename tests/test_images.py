"""uint8 faces <-> float [-1, 1] tensors (upgan_lib/images.py)."""
import numpy as np
import torch

from upgan_lib.images import to_tensor, to_uint8


def test_to_uint8_range_and_layout():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    u = to_uint8(x)
    assert u.shape == (1, 2, 2, 3) and u.dtype == np.uint8 and u.flags.c_contiguous
    assert u[0, :, :, 0].ravel().tolist() == [0, 128, 255, 255]  # 0 -> 127.5 rounds to even; clamped above 1
    assert to_uint8(x.to(torch.bfloat16)).tolist() == u.tolist()


def test_round_trip():
    f = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = to_tensor(f)
    assert t.shape == (2, 3, 5, 7) and t.dtype == torch.float32 and t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(to_uint8(t), f)
