"""The trainer: files it writes, exact resume after a crash (in-process drill and a real SIGKILL),
bad input (unprepared data, other config, missing identifier), OOM handling, ablation subsets."""
from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from upgan_lib import train as T
from upgan_lib import train_cli
from upgan_lib.amp import resolve_amp
from upgan_lib.augment import AugmentConfig
from upgan_lib.checkpoint import CheckpointError, load_checkpoint, read_meta
from upgan_lib.losses import LOSS_NAMES
from upgan_lib.run_folder import export_generator, generator_file, truncate_log
from upgan_lib.train_config import CPU_PRESET, network_configs
from upgan_lib.train_data import to_device_data, utility_from_landmarks
from upgan_lib.viz import ablation_rows, plot_losses, tile_rows
from upgan_lib.generator import GeneratorConfig
from upgan_lib.synthfaces import make_synthfaces

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite on a shared CPU
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    """16 faces of 2 identities: 2 steps per epoch at batch 8."""
    return make_synthfaces(2, 8, seed=3)


def tiny_cfg(**kw) -> T.TrainConfig:
    cfg = T.TrainConfig.for_preset("smoke")
    base = dict(epochs=2, batch_size=8, losses=("adv", "l2", "mask"), checkpoint_every=1, log_every=1, samples=4)
    base.update(kw)
    return replace(cfg, **base)


def weights(path) -> dict[str, torch.Tensor]:
    states, _ = load_checkpoint(path)
    return {f"{k}/{n}": v for k in ("generator", "discriminator") for n, v in states[k].items()}


def loss_rows(run_dir) -> list[list[float]]:
    log = T.load_log(run_dir)
    cols = [c for c in T.LOG_COLUMNS if c not in ("seconds", "images_per_s")]
    return np.stack([log[c] for c in cols], axis=1).tolist()


# ---------------------------------------------------------------------------- config and helpers
@pytest.mark.parametrize("preset", ["smoke", "full"])
def test_config_roundtrip_and_presets(preset):
    cfg = T.TrainConfig.for_preset(preset)
    assert cfg.preset == preset and cfg.losses == ("adv", "l2", "mask", "perceptual")
    back = T.TrainConfig.from_dict(cfg.to_dict())
    assert back == cfg
    assert T.config_differences(cfg.to_dict(), back.to_dict()) == []
    with pytest.raises(T.TrainError, match="unknown setting"):
        T.TrainConfig.from_dict({**cfg.to_dict(), "nonsense": 1})
    assert (preset == "full") == (cfg.compile and cfg.generator.width == 1.0)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown loss"):
        T.TrainConfig(losses=("adv", "l3"))
    with pytest.raises(T.TrainError, match="amp"):
        T.TrainConfig(amp="fp8")
    with pytest.raises(T.TrainError, match="batch_size"):
        T.TrainConfig(batch_size=0)


def test_config_differences_ignores_resume_free_settings():
    a = T.TrainConfig.for_preset("smoke")
    b = replace(a, epochs=9, compile=True, checkpoint_every=7, generator=GeneratorConfig.for_preset("smoke", width=0.25))
    diffs = T.config_differences(a.to_dict(), b.to_dict())
    assert diffs == ["generator.width: 0.125 in the checkpoint, 0.25 now"]


def test_utility_from_landmarks_matches_faceset_utility(tiny):
    dd = to_device_data(tiny, torch.device("cpu"))
    u = utility_from_landmarks(dd.attrs, dd.landmarks68, dd.size).numpy()
    np.testing.assert_allclose(u, tiny.utility(), atol=1e-5)


def test_amp_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None and resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) == torch.bfloat16


def test_unlabelled_attributes_are_a_clear_error(tiny):
    bad = tiny.subset(np.arange(len(tiny)))
    bad.age[:3] = -1
    with pytest.raises(T.TrainError, match="3 faces have no age label"):
        to_device_data(bad, torch.device("cpu"))


def test_tile_rows_and_log_truncation(tmp_path):
    img = tile_rows([np.zeros((3, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8)], pad=2)
    assert img.shape == (2 * 10 + 2, 3 * 10 + 2, 3)
    log = tmp_path / T.LOG_NAME
    with open(log, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=T.LOG_COLUMNS)
        w.writeheader()
        for s in (1, 2, 3, 4):
            w.writerow({c: s for c in T.LOG_COLUMNS})
    truncate_log(log, 2)
    assert T.load_log(tmp_path)["step"].tolist() == [1.0, 2.0]


# ---------------------------------------------------------------------------- a run and its files
def test_smoke_run_writes_log_samples_checkpoint_and_generator(tiny, tmp_path):
    cfg = tiny_cfg(epochs=2, checkpoint_every=3, log_every=2)
    res = T.train(cfg, tiny, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert res.finished and res.step == 4 and res.steps_per_epoch == 2 and res.dtype == "float32"
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    log = T.load_log(run)
    assert log["step"].tolist() == [2.0, 4.0] and np.all(log["d_loss"] > 0) and np.all(log["g_perceptual"] == 0)
    meta = read_meta(run / T.CHECKPOINT_NAME)
    assert meta["step"] == 4 and meta["finished"] and meta["config"] == cfg.to_dict()
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.pkl")) and not list(run.rglob(".*tmp*"))
    # the generator alone, from the run folder, the generator file or the checkpoint: same function
    u = torch.from_numpy(tiny.utility()[:3])
    outs = [T.load_generator(p)(u)[0] for p in (run, run / T.GENERATOR_NAME, run / T.CHECKPOINT_NAME)]
    assert not T.load_generator(run).training
    for o in outs[1:]:
        assert torch.equal(outs[0], o)
    import cv2

    png = cv2.imread(str(run / "samples" / "epoch_002.png"))
    assert png.shape == (3 * 130 + 2, 4 * 130 + 2, 3)  # real / generated / mask+points rows, 4 vectors
    # the notebook's helpers: Figure 4 rows and loss curves
    rows, labels = ablation_rows({"a": run, "b": run}, tiny.utility()[:3], tiny.faces[:3], with_masks=True)
    assert labels == ["real", "a", "a: mask", "b", "b: mask"] and all(r.shape == (3, 128, 128, 3) for r in rows)
    assert np.array_equal(rows[1], rows[3])  # same generator, same vectors, same faces
    import matplotlib

    matplotlib.use("Agg")
    fig = plot_losses({"a": run})
    assert [ax.get_title() for ax in fig.axes] == ["d_loss", "g_adv", "g_l2", "g_mask"]  # perceptual was off


def test_ablation_without_adv_leaves_the_discriminator_alone(tiny, tmp_path):
    res = T.train(tiny_cfg(epochs=1, losses=("l2",)), tiny, tmp_path / "r", progress=False)
    log = T.load_log(res.run_dir)
    assert np.all(log["d_loss"] == 0) and np.all(log["g_adv"] == 0) and np.all(log["g_mask"] == 0)
    np.testing.assert_allclose(log["g_total"], 5.0 * log["g_l2"], rtol=1e-5)  # lambda1 = 5
    torch.manual_seed(tiny_cfg().seed)
    trainer = T.Trainer(tiny_cfg(), tiny, torch.device("cpu"))
    states, _ = load_checkpoint(res.checkpoint)
    for k, v in trainer.D.state_dict().items():
        if "weight" in k and "_u" not in k and "_v" not in k:  # spectral-norm power-iteration vectors aside
            assert torch.equal(states["discriminator"][k], v), k


def test_figure4_ablation_runs_train_exactly_their_losses(tiny, tmp_path):
    """Each run of the paper's Figure 4 ablation adds one loss to the one before: its log shows
    exactly its losses at work (the rest 0) and ``g_total`` is their weighted sum."""
    from upgan_lib.identity_net import FaceIdentifier, IdentifierConfig, save_identifier

    torch.manual_seed(0)
    ident = save_identifier(FaceIdentifier(2, IdentifierConfig.for_preset("smoke")), tmp_path / "ident.safetensors")
    w = tiny_cfg().weights.as_dict()
    before: set = set()
    for label, losses in T.ABLATION.items():
        assert not before or (before < set(losses) and len(set(losses) - before) == 1), label
        before = set(losses)
        cfg = tiny_cfg(epochs=1, losses=losses, identifier=str(ident), train_identifier=False)
        log = T.load_log(T.train(cfg, tiny, tmp_path / label, progress=False).run_dir)
        for name in ("adv", "l2", "mask", "perceptual"):
            assert np.all(log[f"g_{name}"] > 0) == (name in losses) and np.all(log[f"g_{name}"] == 0) == (name not in losses), (label, name)
        assert np.all(log["d_loss"] > 0) == ("adv" in losses)
        np.testing.assert_allclose(log["g_total"], sum(w[k] * log[f"g_{k}"] for k in losses), rtol=1e-5)


# ---------------------------------------------------------------------------- resume
def test_crash_drill_then_resume_equals_uninterrupted_run(tiny, tmp_path):
    cfg = tiny_cfg(epochs=3, checkpoint_every=2)  # 6 steps
    full = T.train(cfg, tiny, tmp_path / "full", progress=False)
    # stop after step 3 without a final checkpoint: the last checkpoint is from step 2 (mid-epoch 2)
    part = T.train(cfg, tiny, tmp_path / "crash", progress=False, stop_after_steps=3)
    assert part.stopped and not part.finished and part.generator_path is None
    assert read_meta(part.checkpoint)["step"] == 2
    assert T.load_log(tmp_path / "crash")["step"].tolist() == [1, 2, 3]  # row 3 will be logged again
    res = T.train(cfg, tiny, tmp_path / "crash", resume=True, progress=False)
    assert res.finished and res.step == full.step == 6
    a, b = weights(full.checkpoint), weights(res.checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, _ = load_checkpoint(full.checkpoint)
    sb, _ = load_checkpoint(res.checkpoint)
    for k in ("optimizer_g", "optimizer_d"):
        for pid, st in sa[k]["state"].items():
            assert torch.equal(st["exp_avg_sq"], sb[k]["state"][pid]["exp_avg_sq"])
    assert loss_rows(tmp_path / "full") == loss_rows(tmp_path / "crash")
    assert sorted(p.name for p in (tmp_path / "crash" / "samples").iterdir()) == [f"epoch_00{i}.png" for i in (1, 2, 3)]


def test_resume_of_a_finished_run_can_extend_it(tiny, tmp_path):
    T.train(tiny_cfg(epochs=1), tiny, tmp_path / "r", progress=False)
    assert read_meta(tmp_path / "r" / T.GENERATOR_NAME)["step"] == 2
    # extended, then "killed" after step 3: load_generator takes the newer checkpoint, not the old generator file
    T.train(tiny_cfg(epochs=2), tiny, tmp_path / "r", resume=True, progress=False, stop_after_steps=1)
    u = torch.from_numpy(tiny.utility()[:2])
    assert torch.equal(T.load_generator(tmp_path / "r")(u)[0], T.load_generator(tmp_path / "r" / T.CHECKPOINT_NAME)(u)[0])
    assert not torch.equal(T.load_generator(tmp_path / "r")(u)[0], T.load_generator(tmp_path / "r" / T.GENERATOR_NAME)(u)[0])
    res = T.train(tiny_cfg(epochs=2), tiny, tmp_path / "r", resume=True, progress=False)
    assert res.step == 4 and res.epoch == 2
    assert T.load_log(tmp_path / "r")["step"].tolist() == [1, 2, 3, 4]


def test_time_budget_stops_with_a_checkpoint_and_resume_finishes_the_same(tiny, tmp_path):
    cfg = tiny_cfg(epochs=3, checkpoint_every=4)  # 6 steps; checkpoints at 4 and the end
    full = T.train(cfg, tiny, tmp_path / "full", progress=False)
    part = T.train(cfg, tiny, tmp_path / "t", progress=False, max_seconds=0.0)  # spent after the first step
    assert part.stopped and not part.finished and part.step == 1
    assert read_meta(part.checkpoint)["step"] == 1  # unlike a crash, the budget writes a checkpoint
    res = T.train(cfg, tiny, tmp_path / "t", resume=True, progress=False)
    assert res.finished and res.step == full.step == 6
    a, b = weights(full.checkpoint), weights(res.checkpoint)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _cli(["--out", "x", "--max-minutes", "1.5"]).max_minutes == 1.5


def test_export_generator_in_bf16_halves_the_file_and_loads(tiny, tmp_path):
    T.train(tiny_cfg(epochs=1), tiny, tmp_path / "r", progress=False)
    out = export_generator(tmp_path / "r", tmp_path / "g16.safetensors")
    full = tmp_path / "r" / T.GENERATOR_NAME
    assert generator_file(tmp_path / "r") == full
    assert out.stat().st_size < 0.6 * full.stat().st_size
    s16, _ = load_checkpoint(out)
    assert all(v.dtype == torch.bfloat16 for v in s16["generator"].values() if v.is_floating_point())
    u = torch.from_numpy(tiny.utility()[:2])
    a, b = T.load_generator(full)(u)[0], T.load_generator(out)(u)[0]
    assert b.dtype == torch.float32 and (a - b).abs().max() < 0.1 and not torch.equal(a, b)


def _cli(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    train_cli.add_arguments(p)
    return p.parse_args(argv)


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tiny, tmp_path):
    """A real crash: the CLI in a subprocess is SIGKILLed right after its first checkpoint."""
    data = tiny.save(tmp_path / "data")
    common = ["--data", str(data), "--preset", "smoke", "--losses", "adv,l2,mask", "--epochs", "4",
              "--batch-size", "8", "--checkpoint-every", "1", "--log-every", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    killed = tmp_path / "killed"
    code = ("import torch, sys, argparse; torch.set_num_threads(1); import upgan_lib.train_cli as C; "
            "p = argparse.ArgumentParser(); C.add_arguments(p); sys.exit(C.run(p.parse_args()))")
    proc = subprocess.Popen([sys.executable, "-c", code, "--out", str(killed), *common], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = killed / T.CHECKPOINT_NAME
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    step_at_kill = read_meta(ckpt)["step"]
    assert 1 <= step_at_kill < 8 and not (killed / T.GENERATOR_NAME).exists()
    # resume in this process (no flags but --out/--resume: the run's saved config and data path)
    assert train_cli.run(_cli(["--out", str(killed), "--resume", "--quiet"])) == 0
    assert train_cli.run(_cli(["--out", str(tmp_path / "ref"), *common])) == 0
    a, b = weights(killed / T.CHECKPOINT_NAME), weights(tmp_path / "ref" / T.CHECKPOINT_NAME)
    assert read_meta(killed / T.CHECKPOINT_NAME)["step"] == read_meta(tmp_path / "ref" / T.CHECKPOINT_NAME)["step"] == 8
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    np.testing.assert_allclose(loss_rows(killed), loss_rows(tmp_path / "ref"), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- bad input
def test_existing_run_without_resume_and_other_config_on_resume(tiny, tmp_path):
    T.train(tiny_cfg(epochs=1), tiny, tmp_path / "r", progress=False)
    with pytest.raises(T.TrainError, match="already holds a training run"):
        T.train(tiny_cfg(epochs=1), tiny, tmp_path / "r", progress=False)
    other = tiny_cfg(epochs=2, generator=GeneratorConfig.for_preset("smoke", width=0.25))
    with pytest.raises(T.TrainError, match=r"other settings(.|\n)*generator.width: 0.125 in the checkpoint, 0.25 now"):
        T.train(other, tiny, tmp_path / "r", resume=True, progress=False)
    with pytest.raises(T.TrainError, match="trained on other data"):
        T.train(tiny_cfg(epochs=2), make_synthfaces(2, 9, seed=3), tmp_path / "r", resume=True, progress=False)


def test_cli_resume_with_other_batch_size_is_refused(tiny, tmp_path, capsys):
    data = tiny.save(tmp_path / "data")
    args = ["--data", str(data), "--out", str(tmp_path / "r"), "--preset", "smoke", "--losses", "l2", "--epochs", "1",
            "--batch-size", "8", "--quiet"]
    assert train_cli.run(_cli(args)) == 0
    assert train_cli.run(_cli(["--out", str(tmp_path / "r"), "--resume", "--batch-size", "4", "--quiet"])) == 2
    err = capsys.readouterr().err
    assert "batch_size: 8 in the checkpoint, 4 now" in err and "another folder" in err


def test_data_that_is_not_a_prepared_set(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "1_0_0_x.jpg.chip.jpg").write_bytes(b"")
    assert train_cli.run(_cli(["--data", str(tmp_path / "raw"), "--out", str(tmp_path / "r"), "--quiet"])) == 2
    err = capsys.readouterr().err
    assert "not a prepared face set" in err and "upgan prepare" in err and str(tmp_path / "raw") in err
    assert not (tmp_path / "r").exists()


def test_foreign_file_as_generator_is_refused(tmp_path, tiny):
    with pytest.raises(CheckpointError, match="no generator.safetensors"):
        T.load_generator(tmp_path)
    from upgan_lib.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "x.safetensors", {"model": {"w": torch.zeros(1)}}, {"kind": "face_identifier"})
    with pytest.raises(CheckpointError, match="not a generator"):
        T.load_generator(tmp_path / "x.safetensors")


def test_out_of_memory_gives_a_batch_size_hint(tiny, tmp_path, monkeypatch, capsys):
    def boom(self, *a):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(T.Trainer, "train_step", boom)
    with pytest.raises(T.TrainingOOM, match=r"out of memory on cpu at batch size 8.*--batch-size 4"):
        T.train(tiny_cfg(), tiny, tmp_path / "r", progress=False)
    data = tiny.save(tmp_path / "data")
    rc = train_cli.run(_cli(["--data", str(data), "--out", str(tmp_path / "r2"), "--preset", "smoke", "--losses", "l2",
                     "--batch-size", "8", "--quiet"]))
    assert rc == 3 and "--batch-size 4" in capsys.readouterr().err


# ---------------------------------------------------------------------------- perceptual network
def _no_ids(fs):
    out = fs.subset(np.arange(len(fs)))
    out.identity[:] = -1
    return out


def test_perceptual_without_identifier_is_a_clear_error(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("UPGAN_CACHE", str(tmp_path / "cache"))
    cfg = tiny_cfg(losses=("adv", "l2", "mask", "perceptual"))
    with pytest.raises(T.TrainError, match=r"no identity labels.*chapter 05.*--identifier PATH.*--losses adv,l2,mask"):
        T.train(cfg, _no_ids(tiny), tmp_path / "r", progress=False)
    with pytest.raises(T.TrainError, match="no such file"):
        T.train(replace(cfg, identifier=str(tmp_path / "nope.safetensors")), tiny, tmp_path / "r2", progress=False)


def test_perceptual_uses_given_then_cached_identifier(tiny, tmp_path, monkeypatch):
    from upgan_lib.identity_net import FaceIdentifier, IdentifierConfig, save_identifier

    monkeypatch.setenv("UPGAN_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    ident = FaceIdentifier(2, IdentifierConfig.for_preset("smoke"))
    cached = save_identifier(ident, T.default_identifier_path("smoke"))
    cfg = tiny_cfg(epochs=1, losses=("adv", "l2", "mask", "perceptual"), train_identifier=False)
    res = T.train(cfg, _no_ids(tiny), tmp_path / "r", progress=False)
    assert (tmp_path / "r" / T.IDENTIFIER_NAME).read_bytes() == cached.read_bytes()
    assert np.all(T.load_log(res.run_dir)["g_perceptual"] > 0)


def test_smoke_trains_a_small_identifier_and_resume_reuses_it(tiny, tmp_path, monkeypatch):
    from upgan_lib.identity_net import IdentifierConfig

    monkeypatch.setenv("UPGAN_CACHE", str(tmp_path / "cache"))
    cfg = tiny_cfg(epochs=2, checkpoint_every=1, losses=("adv", "l2", "mask", "perceptual"),
                   identifier_training=IdentifierConfig.for_preset("smoke", epochs=1, batch_size=8))
    T.train(cfg, tiny, tmp_path / "r", progress=False, stop_after_steps=2)
    copy = tmp_path / "r" / T.IDENTIFIER_NAME
    before = copy.read_bytes()
    res = T.train(cfg, tiny, tmp_path / "r", resume=True, progress=False)
    assert res.finished and copy.read_bytes() == before
    assert np.all(T.load_log(res.run_dir)["g_perceptual"] > 0)
    # the ablation is fair: training the identifier first does not change the initial G and D
    # (the discriminator's loss at step 1 is computed before any update)
    plain = T.train(replace(cfg, losses=("adv", "l2", "mask")), tiny, tmp_path / "p", progress=False, stop_after_steps=1)
    assert T.load_log(plain.run_dir)["d_loss"][0] == T.load_log(res.run_dir)["d_loss"][0]


# ---------------------------------------------------------------------------- GPU paths (run where CUDA exists)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_mixed_precision_run_and_resume(tiny, tmp_path, amp):
    if amp == "bf16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 needs compute capability 8")
    cfg = tiny_cfg(epochs=2, amp=amp, checkpoint_every=1)
    part = T.train(cfg, tiny, tmp_path / "r", device="cuda", progress=False, stop_after_steps=3)
    assert part.dtype == {"fp16": "float16", "bf16": "bfloat16"}[amp] and part.data_on_device
    states, _ = load_checkpoint(part.checkpoint)
    assert bool(states["scaler_g"]) == (amp == "fp16")  # the loss scale is saved for fp16
    res = T.train(cfg, tiny, tmp_path / "r", device="cuda", resume=True, progress=False)
    assert res.step == 4 and not res.warnings
    assert np.all(np.isfinite(T.load_log(res.run_dir)["g_total"]))


def _eager_and_compiled_logs(tiny, tmp_path, device: str) -> dict[bool, dict]:
    """Two runs that differ only in ``compile`` (same seed, data and perceptual network, fp32, a log
    row per step): {compiled: log}."""
    from upgan_lib.identity_net import FaceIdentifier, IdentifierConfig, save_identifier

    torch.manual_seed(0)
    ident = save_identifier(FaceIdentifier(2, IdentifierConfig.for_preset("smoke")), tmp_path / "ident.safetensors")
    logs = {}
    for compiled in (False, True):
        cfg = tiny_cfg(epochs=2, compile=compiled, amp="off", losses=LOSS_NAMES, identifier=str(ident),
                       train_identifier=False, log_every=1)
        res = T.train(cfg, tiny, tmp_path / f"compile_{compiled}", device=device, progress=False)
        assert res.compiled == (compiled and device == "cuda")
        logs[compiled] = T.load_log(res.run_dir)
    return logs


@cuda
def test_cuda_compiled_step_matches_eager_losses(tiny, tmp_path):
    """torch.compile changes how a step runs, not what it computes: from the same start, every logged
    loss of 4 compiled steps matches the eager run's (kernel fusion and TF32 move the last digits)."""
    logs = _eager_and_compiled_logs(tiny, tmp_path, "cuda")
    for col in ("d_loss", "g_adv", "g_l2", "g_mask", "g_perceptual", "g_total"):
        assert np.all(logs[True][col] > 0), col
        np.testing.assert_allclose(logs[True][col], logs[False][col], rtol=2e-2, atol=1e-3, err_msg=col)


# ---------------------------------------------------------------------------- the cpu preset
def test_cpu_preset_draws_at_64_with_a_weight_average_and_a_holdout():
    cfg = T.TrainConfig.for_preset("cpu")
    assert cfg.preset == "cpu" and cfg.generator.drawn_size == 64 and cfg.generator.out_size == 128
    assert cfg.discriminator.in_size == 64 and cfg.ema > 0 and cfg.holdout > 0
    assert cfg.augment.sigma == pytest.approx(AugmentConfig().sigma / 2)  # same distortion relative to the face
    assert T.TrainConfig.from_dict(cfg.to_dict()) == cfg
    args = _cli(["--out", "x", "--preset", "cpu"])
    assert train_cli.config_from_args(args) == cfg and args.max_minutes == CPU_PRESET["minutes"]
    with pytest.raises(T.TrainError, match="draw_size"):
        network_configs(0.25, 48)


def test_small_drawing_run_with_ema_holdout_and_resume(tiny, tmp_path):
    g, d, a = network_configs(1 / 16, 32)
    cfg = tiny_cfg(epochs=2, generator=g, discriminator=d, augment=a, ema=0.9, holdout=4, batch_size=4)
    res = T.train(cfg, tiny, tmp_path / "r", progress=False)
    assert res.steps_per_epoch == (len(tiny) - 4) // 4  # the held-out faces are not trained on
    states, meta = load_checkpoint(tmp_path / "r" / T.CHECKPOINT_NAME)
    assert meta["data"]["count"] == len(tiny) - 4
    raw, avg = states["generator"], states["generator_ema"]
    assert any(not torch.equal(raw[k], avg[k]) for k in raw)  # the average lags the trained weights
    G = T.load_generator(tmp_path / "r")  # the exported generator is the average
    gen, _ = load_checkpoint(tmp_path / "r" / T.GENERATOR_NAME)
    assert all(torch.equal(gen["generator"][k], avg[k]) for k in avg)
    face, mask = G(torch.from_numpy(tiny.utility()[:2]))
    assert face.shape == (2, 3, 128, 128) and mask.shape == (2, 2, 128, 128)
    # the average is resumed exactly: 2 + 1 epochs in two calls equal 3 in one
    T.train(replace(cfg, epochs=3), tiny, tmp_path / "r", resume=True, progress=False)
    T.train(replace(cfg, epochs=3), tiny, tmp_path / "one", progress=False)
    a3, _ = load_checkpoint(tmp_path / "r" / T.CHECKPOINT_NAME)
    b3, _ = load_checkpoint(tmp_path / "one" / T.CHECKPOINT_NAME)
    assert all(torch.allclose(a3["generator_ema"][k], b3["generator_ema"][k], atol=1e-6) for k in avg)


# ---------------------------------------------------------------------------- does it learn
def _fixed_batch_trainer(tiny, **kw):
    g, d, a = network_configs(1 / 16, 32)
    a = replace(a, max_angle=0.0, alpha=0.0)  # the same batch every step: nothing random to chase
    cfg = tiny_cfg(generator=g, discriminator=d, augment=a, batch_size=8, **kw)
    torch.manual_seed(0)
    tr = T.Trainer(cfg, tiny, torch.device("cpu"))
    real, mask, util = tr.batch(torch.arange(8))
    return tr, real, mask, util


def test_generator_overfits_a_fixed_batch(tiny):
    """The generator's own L2 and mask errors (measured here, not read from the trainer's log) must
    fall clearly on one repeated batch: a sign-flipped or detached loss fails."""
    tr, real, mask, util = _fixed_batch_trainer(tiny, losses=("l2", "mask"), lr_g=2e-3)

    def errors():
        with torch.no_grad():
            fake, logits = tr.G.draw(util)
            face_prob = torch.softmax(logits, dim=1)[:, :1]
            return float(((fake - real) ** 2).mean()), float((face_prob - mask).abs().mean())

    l2_0, mask_0 = errors()
    for _ in range(60):
        tr.train_step(real, mask, util)
    l2_1, mask_1 = errors()
    assert l2_1 < 0.5 * l2_0, (l2_0, l2_1)
    assert mask_1 < 0.5 * mask_0, (mask_0, mask_1)


def test_discriminator_separates_real_from_generated(tiny):
    tr, real, mask, util = _fixed_batch_trainer(tiny, losses=("adv",), lr_d=2e-3, lr_g=0.0)
    for _ in range(40):
        tr.train_step(real, mask, util)
    with torch.no_grad():
        fake, _ = tr.G.draw(util)
        real_logit, fake_logit = tr.D(real).mean(), tr.D(fake).mean()
    assert real_logit > fake_logit + 1.0, (float(real_logit), float(fake_logit))


def test_weight_average_warms_up(tiny):
    g, d, a = network_configs(1 / 16, 32)
    tr = T.Trainer(tiny_cfg(generator=g, discriminator=d, augment=a, ema=0.999), tiny, torch.device("cpu"))
    w0 = [p.clone() for p in tr.G_ema.parameters()]
    with torch.no_grad():
        for p in tr.G.parameters():
            p.add_(1.0)
    tr.update_ema()  # step 0: decay 0.1, the average moves 90 % of the way
    moved = [float((e - s).mean()) for e, s in zip(tr.G_ema.parameters(), w0)]
    assert all(abs(m - 0.9) < 1e-4 for m in moved)
