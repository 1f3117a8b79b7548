"""Part segmenter: a small U-Net giving per-pixel ``PARTS`` logits.

Input: float [N, 3, H, W] in [-1, 1] (square; resized to 64x64 inside). ``forward`` returns
logits [N, len(PARTS), H, W] at the input's resolution; ``segment`` the label map [N, H, W]
(int64 indices into ``PARTS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import check_images
from .faces import PARTS


@dataclass(frozen=True)
class SegmenterConfig:
    widths: tuple[int, ...] = (16, 32, 64, 96)    # encoder widths at 64, 32, 16, 8 pixels
    image_size: int = 64
    parts: tuple[str, ...] = PARTS


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU(inplace=True))


class PartSegmenter(nn.Module):
    def __init__(self, config: SegmenterConfig = SegmenterConfig()):
        super().__init__()
        self.config = config
        w = config.widths
        self.enc = nn.ModuleList([_block(3, w[0])] + [_block(a, b) for a, b in zip(w[:-1], w[1:])])
        self.dec = nn.ModuleList([_block(b + a, a) for a, b in zip(w[:-1], w[1:])][::-1])
        self.head = nn.Conv2d(w[0], len(config.parts), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel part logits [N, len(PARTS), H, W] for images [N, 3, H, W] in [-1, 1]."""
        size = x.shape[-1] if isinstance(x, torch.Tensor) and x.ndim == 4 else None
        skips = self.encode(x)
        h = skips[-1]
        for blk, skip in zip(self.dec, skips[-2::-1]):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = blk(torch.cat([h, skip], 1))  # [N, C_up + C_skip, H, W]
        logits = self.head(h)
        if size != self.config.image_size:
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's features at 64, 32, 16 and 8 pixels ([N, widths[i], 64 / 2^i, 64 / 2^i])."""
        h = check_images(x, self.config.image_size)
        skips = []
        for i, blk in enumerate(self.enc):
            h = blk(h if i == 0 else F.avg_pool2d(h, 2))
            skips.append(h)
        return skips

    @torch.no_grad()
    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Label map [N, H, W] (int64 indices into PARTS)."""
        return self(x).argmax(1)


__all__ = ["SegmenterConfig", "PartSegmenter", "PARTS"]
