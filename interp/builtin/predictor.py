"""Attribute predictor: a small CNN that reads every factor of ``FACTORS`` from a face image.

Input: float [N, 3, H, W] in [-1, 1] (square; resized to 64x64 inside). Output of ``forward``:
a dict keyed by factor name, differentiable, in the units of ``FACTORS``:

- continuous factor -> [N] value on the factor's scale (not clamped, so gradients never vanish)
- binary factor     -> [N] probability that the factor is 1
- categorical factor-> [N, K] class probabilities (K = len(categories))

``logits(x)`` gives the raw heads (binary logits, categorical logits, continuous values),
``predict(x)`` hard values (continuous clamped to range, binary 0/1, categorical argmax), and
``features(x)`` the penultimate features [N, feature_dim] (used for a Frechet distance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .common import check_images
from .faces import FACTOR_BY_NAME, FACTOR_NAMES, FACTORS


@dataclass(frozen=True)
class PredictorConfig:
    widths: tuple[int, ...] = (24, 32, 64, 128)   # stem (stride 2) then stage widths at 32, 16, 8 pixels
    feature_dim: int = 256                         # penultimate feature size
    image_size: int = 64
    factors: tuple[str, ...] = FACTOR_NAMES


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True))


class AttributePredictor(nn.Module):
    def __init__(self, config: PredictorConfig = PredictorConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        layers = [_conv(3, w[0], 2), _conv(w[0], w[1])]                      # 32x32
        for cin, cout in zip(w[1:-1], w[2:]):
            layers += [_conv(cin, cout, 2), _conv(cout, cout)]               # 16x16, 8x8
        layers += [_conv(w[-1], config.feature_dim, 2)]                      # 4x4
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        outs = {n: (len(FACTOR_BY_NAME[n].categories) if FACTOR_BY_NAME[n].kind == "categorical" else 1)
                for n in config.factors}
        self.heads = nn.ModuleDict({n: nn.Linear(config.feature_dim, k) for n, k in outs.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [N, feature_dim] of images [N, 3, H, W] in [-1, 1]."""
        x = check_images(x, self.config.image_size)
        return self.pool(self.body(x)).flatten(1)  # [N, feature_dim]

    def raw(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads on features: continuous in [-1, 1]-normalised units, binary / categorical logits."""
        return {n: (h(feats) if FACTOR_BY_NAME[n].kind == "categorical" else h(feats).squeeze(1))
                for n, h in self.heads.items()}

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs: binary logits [N], categorical logits [N, K], continuous values in FACTORS units [N]."""
        out = self.raw(self.features(x))
        for n in out:
            f = FACTOR_BY_NAME[n]
            if f.kind == "continuous":
                out[n] = f.low + (out[n] + 1.0) * 0.5 * (f.high - f.low)
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.logits(x)
        for n in out:
            kind = FACTOR_BY_NAME[n].kind
            if kind == "binary":
                out[n] = torch.sigmoid(out[n])
            elif kind == "categorical":
                out[n] = out[n].softmax(-1)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Hard predictions: continuous clamped to the factor range, binary 0/1, categorical class index."""
        out = self.logits(x)
        for n in out:
            f = FACTOR_BY_NAME[n]
            if f.kind == "continuous":
                out[n] = out[n].clamp(f.low, f.high)
            elif f.kind == "binary":
                out[n] = (out[n] > 0).long()
            else:
                out[n] = out[n].argmax(-1)
        return out


__all__ = ["PredictorConfig", "AttributePredictor", "FACTORS"]
