import numpy as np
import pytest
import torch

from upgan_lib.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint


def test_roundtrip_model_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    states = {"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state(),
              "misc": {"tuple": (1, 2.5, "x"), "none": None, "list": [torch.ones(2), 3]}}
    path = save_checkpoint(tmp_path / "c.safetensors", states, {"step": 7, "config": {"w": 2}})
    loaded, meta = load_checkpoint(path)
    assert meta == {"step": 7, "config": {"w": 2}}
    assert read_meta(path) == meta
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded["model"][k])
    opt2 = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["opt"])  # int keys and param_groups survive
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(loaded["rng"], torch.get_rng_state())
    assert loaded["misc"]["tuple"] == (1, 2.5, "x") and loaded["misc"]["none"] is None
    assert torch.equal(loaded["misc"]["list"][0], torch.ones(2))


def test_shared_tensors_are_stored(tmp_path):
    t = torch.arange(6.0)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "s.safetensors", {"a": {"x": t, "y": t}}))
    assert torch.equal(loaded["a"]["x"], loaded["a"]["y"])


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.safetensors")
    good = save_checkpoint(tmp_path / "g.safetensors", {"a": {"x": torch.randn(100)}})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not an upgan-course checkpoint"):
        load_checkpoint(tmp_path / "foreign.safetensors")


def test_write_is_atomic_no_temp_left(tmp_path):
    save_checkpoint(tmp_path / "c.safetensors", {"a": {"x": torch.zeros(3)}})
    save_checkpoint(tmp_path / "c.safetensors", {"a": {"x": torch.ones(3)}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]
    assert torch.equal(load_checkpoint(tmp_path / "c.safetensors")[0]["a"]["x"], torch.ones(3))


def test_rejects_unstorable_values(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_checkpoint(tmp_path / "c.safetensors", {"a": {"x": np.zeros(2)}})
