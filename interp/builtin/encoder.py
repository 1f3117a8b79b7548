"""Encoders for the built-in generator: one image in, one latent out, in a single forward pass.

    from interp.builtin.encoder import load_encoder
    E = load_encoder("w+")                  # or "s"; shipped in assets/builtin/encoder_wplus|encoder_s
    code = E(images)                        # images [N, 3, 64, 64] in [-1, 1] -> [N, out_dim]
    ws = E.to_ws(code)                      # "w+" encoder: [N, num_ws, w_dim]
    styles = split_styles(G, code)          # "s" encoder: {layer: [N, C]} (interp.edit.split_styles)

``interp.methods.invert.encode(G, E, image)`` turns the code into a ``Latent`` (and ``hybrid`` goes on
with a few optimisation steps). Two targets, the same network otherwise (the lecture's question: is
StyleSpace the better target for an encoder?):

- ``w+``: every row of ws (num_ws * w_dim numbers);
- ``s``:  every style layer's affine output, ``G.style_layers`` order (StyleSpace).

The network: a residual CNN (64 -> 32 -> 16 -> 8 -> 4 pixels, GroupNorm, leaky ReLU), a head that reads
the 4x4 map and the average of every stage, and an MLP to the code. It predicts the code in units of
the code's spread over generator samples (``mean`` + ``std`` * output, both stored as buffers), so
both targets start on the same scale. Trained by ``python -m interp.builtin.train_encoder``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import ASSETS, check_images, load_config, load_weights

__all__ = ["ENCODER_SPACES", "Encoder", "EncoderConfig", "encoder_stem", "load_encoder"]

ENCODER_SPACES = ("w+", "s")


def encoder_stem(space: str, root: Path = ASSETS) -> Path:
    """Where an encoder is shipped: ``assets/builtin/encoder_wplus`` or ``encoder_s`` (+ .safetensors/.json)."""
    if space not in ENCODER_SPACES:
        raise ValueError(f"unknown encoder space {space!r}; allowed: {', '.join(ENCODER_SPACES)}")
    return Path(root) / ("encoder_wplus" if space == "w+" else "encoder_s")


@dataclass(frozen=True)
class EncoderConfig:
    space: str = "w+"                                  # Target: "w+" (ws rows) or "s" (every style layer).
    out_dim: int = 1280                                # Code size: num_ws * w_dim, or the S size.
    num_ws: int = 10                                   # Generator's ws rows (for to_ws).
    w_dim: int = 128                                   # Generator's W size (for to_ws).
    image_size: int = 64                               # Input side; other square sizes are resized.
    widths: tuple[int, ...] = (32, 64, 128, 192)       # Channels at 32, 16, 8 and 4 pixels.
    head_channels: int = 64                            # 1x1 reduction of the 4x4 map before flattening.
    hidden: int = 512                                  # MLP width of the head.
    model_id: str = "faces64"                          # The generator it encodes for ...
    model_hash: str = ""                               # ... and its weights (interp.diskcache.model_hash).

    def __post_init__(self) -> None:
        if self.space not in ENCODER_SPACES:
            raise ValueError(f"unknown encoder space {self.space!r}; allowed: {', '.join(ENCODER_SPACES)}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class DownBlock(nn.Module):
    """conv-norm-act, strided conv-norm-act, plus an average-pooled 1x1 skip; halves the side."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm0 = _norm(cout)
        self.conv1 = nn.Conv2d(cout, cout, 3, stride=2, padding=1)
        self.norm1 = _norm(cout)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = F.leaky_relu(self.norm0(self.conv0(x)), 0.2)
        y = F.leaky_relu(self.norm1(self.conv1(y)), 0.2)
        return (y + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class Encoder(nn.Module):
    def __init__(self, config: EncoderConfig = EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        self.stem = nn.Conv2d(3, w[0], 3, padding=1)                       # 64x64
        self.stages = nn.ModuleList(DownBlock(cin, cout) for cin, cout in zip((w[0],) + w[:-1], w))  # 32, 16, 8, 4
        self.reduce = nn.Conv2d(w[-1], config.head_channels, 1)
        side = config.image_size // 2 ** len(w)
        flat = config.head_channels * side * side + sum(w)
        self.fc0 = nn.Linear(flat, config.hidden)
        self.fc1 = nn.Linear(config.hidden, config.out_dim)
        nn.init.zeros_(self.fc1.weight)                                    # start at the mean code
        nn.init.zeros_(self.fc1.bias)
        self.register_buffer("mean", torch.zeros(config.out_dim))
        self.register_buffer("std", torch.ones(config.out_dim))

    def forward(self, images: Tensor) -> Tensor:
        """Images [N, 3, H, W] in [-1, 1] -> the code [N, out_dim] (ws rows flattened, or S)."""
        x = check_images(images, self.config.image_size)
        x = F.leaky_relu(self.stem(x), 0.2)
        pooled = []
        for stage in self.stages:
            x = stage(x)
            pooled.append(x.mean(dim=(2, 3)))                               # [N, C_i]
        h = torch.cat([F.leaky_relu(self.reduce(x), 0.2).flatten(1), *pooled], dim=1)
        h = F.leaky_relu(self.fc0(h), 0.2)
        return self.mean + self.std * self.fc1(h)

    def to_ws(self, code: Tensor) -> Tensor:
        """A "w+" code [N, num_ws * w_dim] -> ws [N, num_ws, w_dim]."""
        if self.config.space != "w+":
            raise ValueError("to_ws is for a 'w+' encoder; an 's' encoder's code is split with "
                             "interp.edit.split_styles")
        return code.reshape(code.shape[0], self.config.num_ws, self.config.w_dim)


_CACHE: dict[tuple[str, str], Encoder] = {}


def load_encoder(space: str, device: str | torch.device = "cpu", root: Path = ASSETS) -> Encoder:
    """A shipped encoder ("w+" or "s"), frozen, cached per device; FileNotFoundError says how to train it."""
    stem = encoder_stem(space, root)
    key = (str(stem), str(device))
    if key not in _CACHE:
        if not stem.with_suffix(".safetensors").is_file():
            raise FileNotFoundError(f"encoder weights {stem}.safetensors not found; train them with "
                                    f"`python -m interp.builtin.train_encoder --space {space} --run RUN` and "
                                    f"export with `--export`")
        E = load_weights(Encoder(load_config(stem, EncoderConfig)), stem)
        _CACHE[key] = E.to(device).eval().requires_grad_(False)
    return _CACHE[key]
