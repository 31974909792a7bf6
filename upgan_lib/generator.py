"""The UP-GAN generator: 17 utility numbers -> a 128x128 face and its 2-channel mask.

The paper builds its generator after Dosovitskiy et al. (2017), "Learning to generate chairs,
tables and cars with convolutional networks": fully connected layers encode the inputs, then
"de-convolution" blocks (2x upsampling + 5x5 convolution), each followed by a 3x3 convolution,
grow the image; a stride-1 max-pooling precedes the outputs. The layout here (full preset):

=======================  ======================================  ====================
stage                    layers                                  output
=======================  ======================================  ====================
attribute stream         FC 3 -> 512 -> 512                      512
landmark stream          FC 14 -> 512 -> 512                     512
joint                    concat, FC 1024 -> 1024 -> 1024         1024
to a map                 FC 1024 -> 512*4*4, reshape             512 x 4 x 4
up block 1..5            2x up, conv 5x5, conv 3x3               512x8, 256x16,
                                                                 128x32, 64x64,
                                                                 32x128
max-pool                 3x3, stride 1, padding 1                32 x 128 x 128
face head                conv 3x3 -> 3, tanh                     3 x 128 x 128 in [-1, 1]
mask head                conv 3x3 -> 2 (logits)                  2 x 128 x 128
=======================  ======================================  ====================

Every hidden layer is followed by LeakyReLU(0.2) (the chairs network used leaky ReLUs too).
The two input streams follow the chairs network, which also encoded its two kinds of input
(class and view) separately before joining them: the 3 attributes and the 14 landmark
coordinates have very different meanings and scales. Parameter count: 25,082,725 (full; 8.4 M
of them in the FC layer to the first map), 9.1 GFLOP per face forward; channels halve at every
block as in the chairs network, which keeps a training step (G + D + VGG-19 perceptual) at
about 70 GFLOP per image (69.7 counted by ``benchmarks/bench_train_step.py``). The smoke preset
is the same code with every width times 1/8 (394,593 parameters).

Choices the paper leaves open, made here:

* **Normalisation: pixel norm** (Karras et al. 2018: each feature vector divided by its RMS over
  channels) after every hidden convolution, no batch norm. Batch norm in train mode makes a
  face depend on the other faces of its batch and differ between train and eval mode; the
  generator must be a *function of the 17 numbers alone* (the obscuration's privacy argument
  rests on it), so it uses only per-sample operations. ``norm="none"`` switches it off.
* **Upsampling: nearest neighbour** (``upsample="nearest"``). ``"unpool"`` is Dosovitskiy's
  original: each value goes to the top-left of a 2x2 block of zeros, which followed by the 5x5
  convolution is exactly a stride-2 transposed convolution (prone to checkerboard artefacts).
* No noise input, no dropout: the same utility vector always gives the same face.
* Mask channel 0 is the face, channel 1 the background; ``softmax(mask_logits)[:, 0]`` is the
  probability of "face" used for blending (the paper's segmentation branch).

The network is channels_last friendly (call ``.to(memory_format=torch.channels_last)``; the
first map follows the weights' format) and runs under ``torch.autocast`` (bf16/fp16): pixel
norm is computed in float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import WidthScaledConfig
from .utility import N_ATTRIBUTES, N_POINTS, UTILITY_DIM

NORMS = ("pixel", "none")
UPSAMPLES = ("nearest", "unpool")


@dataclass
class GeneratorConfig(WidthScaledConfig):
    """Widths and choices of the generator (defaults = the full, paper-sized network).

    width:        multiplier applied to every unit / channel count below (smoke: 1/8).
    fc_stream:    units of the two FC layers of each input stream (attributes, landmarks).
    fc_joint:     units of the two joint FC layers after concatenation.
    start_size:   side of the first feature map (4: five up blocks to 128).
    channels:     channels of the first map, then after each up block (len = blocks + 1).
    out_size:     output side, the frame every caller sees (128).
    draw_size:    side the network draws at (start_size * 2**blocks); 0 = out_size. Smaller than
                  out_size, the drawing is upsampled (bilinear) to out_size behind the same interface:
                  a 64 px generator costs about a quarter of the compute per face, the trade the CPU
                  preset makes (most faces in photos are smaller than 64 px anyway).
    norm:         "pixel" (per-sample pixel norm after each hidden conv) or "none".
    upsample:     "nearest" or "unpool" (Dosovitskiy's zero-filled 2x unpooling).
    leak:         LeakyReLU negative slope.
    maxpool:      the stride-1 3x3 max-pool before the output heads (paper: yes).
    min_channels: floor on scaled channel counts (keeps tiny smoke nets well-formed).
    """

    SMOKE_WIDTH: ClassVar[float] = 1 / 8
    width: float = 1.0
    fc_stream: int = 512
    fc_joint: int = 1024
    start_size: int = 4
    channels: tuple[int, ...] = (512, 512, 256, 128, 64, 32)
    out_size: int = 128
    draw_size: int = 0
    norm: str = "pixel"
    upsample: str = "nearest"
    leak: float = 0.2
    maxpool: bool = True
    min_channels: int = 4

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        if self.width <= 0:
            raise ValueError(f"GeneratorConfig.width must be > 0, got {self.width}")
        if self.norm not in NORMS:
            raise ValueError(f"GeneratorConfig.norm {self.norm!r}: use one of {NORMS}")
        if self.upsample not in UPSAMPLES:
            raise ValueError(f"GeneratorConfig.upsample {self.upsample!r}: use one of {UPSAMPLES}")
        blocks = len(self.channels) - 1
        if not 0 <= self.draw_size <= self.out_size:
            raise ValueError(f"GeneratorConfig.draw_size {self.draw_size} must be in [1, out_size {self.out_size}] (0 = out_size)")
        if blocks < 1 or self.start_size * 2 ** blocks != self.drawn_size:
            raise ValueError(
                f"GeneratorConfig: start_size {self.start_size} with {blocks} up blocks (len(channels) - 1) gives "
                f"{self.start_size * 2 ** max(blocks, 0)} px, not the drawing size {self.drawn_size} (draw_size, or out_size "
                f"when draw_size is 0); "
                "adjust channels or start_size"
            )

    @property
    def drawn_size(self) -> int:
        """Side of the faces the network draws before any upsampling to ``out_size``."""
        return self.draw_size or self.out_size


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Divide each pixel's feature vector by its RMS over channels (computed in float32)."""
    scale = torch.rsqrt(x.float().pow(2).mean(dim=1, keepdim=True) + eps)
    return x * scale.to(x.dtype)


class PixelNorm(nn.Module):
    def forward(self, x):
        return pixel_norm(x)


def unpool2x(x: torch.Tensor) -> torch.Tensor:
    """Dosovitskiy's unpooling: each value to the top-left of a 2x2 block of zeros."""
    n, c, h, w = x.shape
    out = torch.empty((n, c, 2 * h, 2 * w), dtype=x.dtype, device=x.device, memory_format=_format_of(x)).zero_()
    out[:, :, ::2, ::2] = x
    return out


def _format_of(x: torch.Tensor):
    return torch.channels_last if (x.ndim == 4 and not x.is_contiguous() and
                                   x.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format


class UpBlock(nn.Module):
    """2x upsample + conv 5x5 + act (+ norm), then conv 3x3 + act (+ norm)."""

    def __init__(self, cin: int, cout: int, cfg: GeneratorConfig):
        super().__init__()
        self.upsample = cfg.upsample
        self.conv5 = nn.Conv2d(cin, cout, 5, padding=2)
        self.conv3 = nn.Conv2d(cout, cout, 3, padding=1)
        self.act = nn.LeakyReLU(cfg.leak)
        self.norm = PixelNorm() if cfg.norm == "pixel" else nn.Identity()

    def forward(self, x):
        x = unpool2x(x) if self.upsample == "unpool" else F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(self.act(self.conv5(x)))
        return self.norm(self.act(self.conv3(x)))


def _mlp(sizes: list[int], leak: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(leak)]
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """utility (N, 17) -> (face (N,3,S,S) in [-1, 1], mask_logits (N,2,S,S)); see the module doc."""

    def __init__(self, cfg: GeneratorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or GeneratorConfig()
        fs, fj = cfg.scaled(cfg.fc_stream), cfg.scaled(cfg.fc_joint)
        ch = [cfg.scaled(c) for c in cfg.channels]
        self.attributes = _mlp([N_ATTRIBUTES, fs, fs], cfg.leak)
        self.landmarks = _mlp([2 * N_POINTS, fs, fs], cfg.leak)
        self.joint = _mlp([2 * fs, fj, fj], cfg.leak)
        self.to_map = nn.Linear(fj, ch[0] * cfg.start_size ** 2)
        self.map_act = nn.LeakyReLU(cfg.leak)
        self.map_norm = PixelNorm() if cfg.norm == "pixel" else nn.Identity()
        self.blocks = nn.ModuleList(UpBlock(a, b, cfg) for a, b in zip(ch[:-1], ch[1:]))
        self.pool = nn.MaxPool2d(3, stride=1, padding=1) if cfg.maxpool else nn.Identity()
        self.face_head = nn.Conv2d(ch[-1], 3, 3, padding=1)
        self.mask_head = nn.Conv2d(ch[-1], 2, 3, padding=1)
        self.channels = ch
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He init for the leaky-ReLU layers, zero biases; small heads (outputs start near 0)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, a=self.cfg.leak, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        for head in (self.face_head, self.mask_head):
            nn.init.normal_(head.weight, std=0.5 / math.sqrt(head.weight[0].numel()))

    def forward(self, utility: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(face (N,3,out,out) in [-1, 1], mask logits (N,2,out,out)): the drawing at ``out_size``."""
        face, mask_logits = self.draw(utility)
        if self.cfg.drawn_size == self.cfg.out_size:
            return face, mask_logits
        size = (self.cfg.out_size, self.cfg.out_size)
        face = F.interpolate(face, size=size, mode="bilinear", align_corners=False).clamp(-1.0, 1.0)
        return face, F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)

    def draw(self, utility: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network itself: face and mask logits at ``cfg.drawn_size`` (what training compares)."""
        if utility.ndim != 2 or utility.shape[1] != UTILITY_DIM:
            raise ValueError(f"Generator expects utility vectors (N, {UTILITY_DIM}), got {tuple(utility.shape)}")
        u = utility.to(self.to_map.weight.dtype)
        a = self.attributes(u[:, :N_ATTRIBUTES])
        p = self.landmarks(u[:, N_ATTRIBUTES:])
        h = self.joint(torch.cat([a, p], dim=1))
        s = self.cfg.start_size
        x = self.map_act(self.to_map(h)).view(len(h), self.channels[0], s, s)
        w = self.blocks[0].conv5.weight
        if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous():
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.map_norm(x)
        for block in self.blocks:
            x = block(x)
        x = self.pool(x)
        return torch.tanh(self.face_head(x)), self.mask_head(x)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def face_probability(mask_logits: torch.Tensor) -> torch.Tensor:
    """(N,2,S,S) mask logits -> (N,1,S,S) probability that a pixel belongs to the face (softmax
    channel 0): what the notebooks show and what :func:`upgan_lib.swap.swap_face` blends with."""
    return torch.softmax(mask_logits.float(), dim=1)[:, :1]


def summarize(model: nn.Module, *inputs, expand: tuple[str, ...] = ()) -> str:
    """A plain-text table of the output shape and parameter count of each top-level layer.

    The model's children are listed in call order (``ModuleList`` children, and those of the
    children named in ``expand``, one level down); deterministic, so it suits a ``# NBVAL_CHECK_OUTPUT`` cell.
    The model runs once on ``inputs`` without gradients.
    """
    rows: list[tuple[str, str, int]] = []
    hooks = []

    def shape_of(o):
        if isinstance(o, torch.Tensor):
            return "x".join(str(s) for s in o.shape)
        if isinstance(o, (tuple, list)):
            return ", ".join(shape_of(t) for t in o)
        return type(o).__name__

    def listed():
        for name, mod in model.named_children():
            if isinstance(mod, nn.ModuleList) or name in expand:
                yield from ((f"{name}.{n}", m) for n, m in mod.named_children())
            else:
                yield name, mod

    for name, mod in listed():
        if any(True for _ in mod.parameters()) or isinstance(mod, (nn.MaxPool2d, PixelNorm)):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: rows.append((name, shape_of(o), sum(p.numel() for p in m.parameters())))))
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    width = max([len(r[0]) for r in rows] + [6])
    lines = [f"{'layer':<{width}}  {'output':<22} {'params':>12}"]
    lines += [f"{n:<{width}}  {s:<22} {p:>12,}" for n, s, p in rows]
    lines.append(f"{'total':<{width}}  {shape_of(out):<22} {sum(p.numel() for p in model.parameters()):>12,}")
    return "\n".join(lines)
