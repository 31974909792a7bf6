"""Packed face sets: one small .npz that travels (GPU machine, Colab) and loads like a folder."""
import numpy as np
import pytest

from upgan_lib import cli
from upgan_lib.faceset import FaceSet, NotAPreparedSet, load_packed, pack


def test_round_trip_is_exact_except_the_lossy_faces(small_synthfaces, tmp_path):
    fs = small_synthfaces
    summary = pack(fs, tmp_path / "set.npz")
    back = FaceSet.load(tmp_path / "set.npz")  # the same entry point as a prepared folder
    assert len(back) == len(fs) and back.sources == fs.sources
    np.testing.assert_array_equal(back.masks, fs.masks)
    np.testing.assert_array_equal(back.landmarks68, fs.landmarks68)
    for name in ("age", "gender", "race", "identity"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fs, name))
    err = np.abs(back.faces.astype(int) - fs.faces.astype(int))
    assert err.mean() < 4 and summary["psnr_db"] > 30
    mse = (err.astype(float) ** 2).mean()
    assert summary["psnr_db"] == pytest.approx(10 * np.log10(255 ** 2 / mse), rel=1e-6)  # the reported PSNR is real
    raw = fs.faces.nbytes + fs.masks.nbytes + fs.landmarks68.nbytes
    assert summary["bytes"] < raw / 3
    assert back.meta["packed"]["quality"] == 80 and back.meta.get("dataset") == fs.meta.get("dataset")


def test_higher_quality_is_closer_and_larger(small_synthfaces, tmp_path):
    lo, hi = pack(small_synthfaces, tmp_path / "lo.npz", quality=30), pack(small_synthfaces, tmp_path / "hi.npz", quality=95)
    assert hi["psnr_db"] > lo["psnr_db"] and hi["bytes"] > lo["bytes"]


def test_bad_inputs_are_clear(small_synthfaces, tmp_path):
    with pytest.raises(ValueError, match=r"\.npz"):
        pack(small_synthfaces, tmp_path / "set.bin")
    with pytest.raises(ValueError, match="quality"):
        pack(small_synthfaces, tmp_path / "set.npz", quality=0)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(NotAPreparedSet, match="not a packed face set"):
        FaceSet.load(other)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file at all")
    with pytest.raises(NotAPreparedSet, match="unreadable"):
        load_packed(broken)


def test_upgan_pack_command(small_synthfaces, tmp_path, capsys):
    small_synthfaces.save(tmp_path / "prepared")
    assert cli.main(["pack", str(tmp_path / "prepared"), str(tmp_path / "p.npz"), "--quality", "90"]) == 0
    out = capsys.readouterr().out
    assert f"packed {len(small_synthfaces)} faces" in out and "PSNR" in out
    assert len(FaceSet.load(tmp_path / "p.npz")) == len(small_synthfaces)
    assert cli.main(["pack", str(tmp_path / "missing"), str(tmp_path / "q.npz")]) == 2
    assert "no such folder" in capsys.readouterr().out
    assert not (tmp_path / "q.npz").exists()


def test_training_reads_a_packed_set(small_synthfaces, tmp_path):
    from upgan_lib.train_config import TrainConfig
    from upgan_lib.train_data import load_data

    pack(small_synthfaces, tmp_path / "set.npz")
    data = load_data(tmp_path / "set.npz", TrainConfig.for_preset("smoke"))
    assert len(data) == len(small_synthfaces) and data.utility().shape == (len(small_synthfaces), 17)
