#!/usr/bin/env bash
# The course's GPU checks as ONE prepared call on a rented GPU machine with a time limit (about 10
# minutes a call) and a transfer cap (8 files, 16 MiB each, come back). Prepare on the CPU machine:
#
#   echo /.pack/ >> .git/info/exclude
#   upgan pack <cache>/prepared/utkface    .pack/utkface.npz      # ~43 MiB
#   upgan pack <cache>/prepared/identities .pack/identities.npz   # ~7 MiB
#   DRY=1 bash tools/device_session.sh                              # the same steps, tiny, on this CPU
#
# then run on the GPU machine, with .pack/ copied beside the checkout and a 590 s limit:
#   bash tools/device_session.sh
# What comes back in $OUT (each file < 16 MiB, 8 files at most): bench.txt (training step and
# augmentation throughput, the identifier's accuracy, the training's messages), log.csv, the last
# sample grid, and the trained generator in bf16 split into generator.bf16.part-aa, -ab, ... (four
# for the full 25 M-parameter generator). Join them here with
#   cat generator.bf16.part-* > generator.safetensors      # loads with train.load_generator
# The sample grid shows real UTKFace faces in its first row: look, never commit it.
#
# Knobs (environment): TRAIN_SECONDS (default 180; the full preset also compiles first, about a
# minute), BENCH_COMPILE (off|on|both, default both), ID_EPOCHS (identifier epochs, default 8),
# BATCH (default: the full preset's), DRY=1 (CPU, smoke preset, a few steps: checks the plumbing;
# tests/test_device_session.py runs it). Not yet run on a GPU; the GPU machine's torch may differ
# from the one setup.sh pins; read bench.txt first.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT=${OUT:-outputs/device}
mkdir -p "$OUT"
PACK=${PACK:-.pack}
if [[ "${DRY:-0}" == 1 ]]; then
  DEVICE=cpu PRESET=smoke STEPS_BENCH="--steps 1 --warmup 1 --compile off" AUG="--iters 2" TRAIN_SECONDS=${TRAIN_SECONDS:-20}
  ID_EPOCHS=${ID_EPOCHS:-1}
else
  DEVICE=cuda PRESET=full STEPS_BENCH="--compile ${BENCH_COMPILE:-both}" AUG="" TRAIN_SECONDS=${TRAIN_SECONDS:-180}
  ID_EPOCHS=${ID_EPOCHS:-8}
fi
for f in utkface identities; do
  [[ -f "$PACK/$f.npz" ]] || { echo "missing $PACK/$f.npz: make it with upgan pack (see the top of this file)"; exit 2; }
done
PY=${PYTHON:-python3}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "1. throughput" | tee "$OUT/bench.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$OUT/bench.txt"
$PY benchmarks/bench_train_step.py --preset "$PRESET" --device "$DEVICE" $STEPS_BENCH 2>&1 | tee -a "$OUT/bench.txt"
$PY benchmarks/bench_augment.py --device "$DEVICE" $AUG 2>&1 | tee -a "$OUT/bench.txt"

stamp "2. the perceptual network: VGG-19 identifier on the identity photos ($ID_EPOCHS epochs)" | tee -a "$OUT/bench.txt"
$PY - "$PACK/identities.npz" "$OUT/identifier_init.safetensors" "$PRESET" "$DEVICE" "$ID_EPOCHS" <<'EOF' 2>&1 | tee -a "$OUT/bench.txt"
import sys, time
from pathlib import Path
from upgan_lib.faceset import FaceSet, split_photos_by_identity
from upgan_lib.identity_net import IdentifierConfig, save_identifier, train_identifier
src, dst, preset, device, epochs = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ids = FaceSet.load(src)
tr, te = split_photos_by_identity(ids.identity, 0.2, seed=0)
t = time.time()
model, hist = train_identifier(ids.subset(tr), IdentifierConfig.for_preset(preset, epochs=epochs), device,
                               val=ids.subset(te), progress=False)
dst.parent.mkdir(parents=True, exist_ok=True)
save_identifier(model, dst, hist)
print(f"{len(tr)} training / {len(te)} held-out photos, {len(set(ids.identity))} people; {time.time() - t:.0f} s; "
      f"held-out accuracy per epoch: {hist.get('val_acc')}")
EOF

stamp "3. UP-GAN, $PRESET preset, on the packed UTKFace for about $TRAIN_SECONDS s"
# a time budget, not a step count (the throughput is only known once measured): the run stops
# cleanly with a checkpoint when the budget is spent
$PY -m upgan_lib.train_cli --data "$PACK/utkface.npz" --out "$OUT/run" --preset "$PRESET" --device "$DEVICE" \
  --identifier "$OUT/identifier_init.safetensors" --epochs 1000 --max-minutes "$(awk "BEGIN {print $TRAIN_SECONDS / 60}")" \
  ${BATCH:+--batch-size $BATCH} --quiet > "$OUT/train.log" 2>&1
echo "train exit $?" >> "$OUT/train.log"
cat "$OUT/train.log" >> "$OUT/bench.txt" && rm "$OUT/train.log"
cp "$OUT/run/log.csv" "$OUT/log.csv" 2>/dev/null
last=$(ls "$OUT"/run/samples/*.png 2>/dev/null | tail -1); [[ -n "$last" ]] && cp "$last" "$OUT/samples_last.png"
tail -3 "$OUT/log.csv" 2>/dev/null

stamp "4. the generator, bf16, in parts small enough to come back"
$PY - "$OUT/run" "$OUT/generator.bf16.safetensors" <<'EOF'
import sys
from upgan_lib.run_folder import export_generator, generator_file, load_generator
print(f"{generator_file(sys.argv[1])} -> {export_generator(sys.argv[1], sys.argv[2])}")
load_generator(sys.argv[2])  # it loads
EOF
(cd "$OUT" && split -b 15m generator.bf16.safetensors generator.bf16.part- && rm generator.bf16.safetensors)
rm -rf "$OUT/run" "$OUT/identifier_init.safetensors"
ls -la "$OUT"
stamp "done"
