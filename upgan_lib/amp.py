"""Mixed precision: which autocast dtype and which gradient scaling a device gets.

One rule for every network the course trains (UP-GAN, the face identifier, k-same-net):

* ``"auto"``: bf16 autocast on CUDA GPUs with compute capability >= 8 (A100, L4, H100), which
  have bf16 tensor cores; bf16 keeps fp32's exponent range, so no gradient scaling is needed.
  fp16 autocast with a ``GradScaler`` on older GPUs (T4): fp16 is fast there but its small range
  would flush small gradients to zero, so the loss is scaled up before ``backward`` and the
  gradients scaled back down before the optimiser step. fp32 on the CPU and other devices.
* ``"bf16"`` / ``"fp16"``: that dtype on CUDA; on the CPU only ``"bf16"`` runs in autocast
  (fp16 autocast on the CPU is slow and gains nothing).
* ``"off"``: fp32 everywhere.

``True`` and ``False`` (the identifier's and k-same-net's ``amp`` switch) mean ``"auto"`` and
``"off"``. The generator at inference (``face_sources.GeneratorFaces``) follows the same rule: its
``precision="bf16"`` is ``"bf16"``, ``"fp32"`` is ``"off"``.
"""
from __future__ import annotations

import torch

AMP_MODES = ("auto", "bf16", "fp16", "off")


def resolve_amp(amp: str | bool, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None = fp32)."""
    amp = {True: "auto", False: "off"}.get(amp, amp) if isinstance(amp, bool) else amp
    if amp not in AMP_MODES:
        raise ValueError(f"amp={amp!r}: use {', '.join(AMP_MODES)}")
    if device.type == "cpu":
        return torch.bfloat16 if amp == "bf16" else None
    if amp == "off" or device.type != "cuda":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` in ``dtype`` on ``device``; a disabled one (fp32) for None."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """A ``GradScaler`` that scales only where it is needed: fp16 autocast."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
