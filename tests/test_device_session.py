"""tools/device_session.sh, the prepared GPU call, dry-run on the CPU (DRY=1): same steps, tiny."""
import os
import subprocess
import sys
from pathlib import Path

from upgan_lib.faceset import pack
from upgan_lib.train import load_generator

REPO = Path(__file__).resolve().parent.parent


def test_dry_run_brings_back_bench_log_and_a_loadable_generator(small_synthfaces, tmp_path):
    packs, out = tmp_path / "pack", tmp_path / "out"
    pack(small_synthfaces, packs / "utkface.npz")
    pack(small_synthfaces, packs / "identities.npz")
    env = {**os.environ, "DRY": "1", "TRAIN_SECONDS": "3", "ID_EPOCHS": "1", "PACK": str(packs), "OUT": str(out),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "tools" / "device_session.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = (out / "bench.txt").read_text()
    assert "images/s" in bench and "faces/s" in bench and "held-out accuracy" in bench and "train exit 0" in bench
    assert (out / "log.csv").read_text().startswith("step,")
    parts = sorted(out.glob("generator.bf16.part-*"))
    assert parts and len(list(out.iterdir())) <= 8  # a rented machine's transfer cap: 8 files at most
    joined = tmp_path / "generator.safetensors"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    assert sum(p.numel() for p in load_generator(joined).parameters()) > 0
    assert not (out / "run").exists()  # nothing large left behind in $OUT


def test_missing_packs_are_a_clear_error(tmp_path):
    env = {**os.environ, "DRY": "1", "PACK": str(tmp_path), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO / "tools" / "device_session.sh")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "upgan pack" in proc.stdout
