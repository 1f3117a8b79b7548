"""Images between the generator and people: tensor <-> PIL, grids, labelled grids.

    pil = tensor_to_pil(img[0])                         # [3, H, W] in about [-1, 1] -> RGB
    x = pil_to_tensor(pil, resolution=64)               # -> [1, 3, 64, 64] in [-1, 1]
    grid = grid_image(imgs, cols=4)                     # [N, 3, H, W] -> one PIL image
    sheet = labelled_grid(imgs, cols=5, col_labels=["-3", "-1.5", "0", "+1.5", "+3"], cell=128)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["grid_image", "labelled_grid", "pil_to_tensor", "tensor_to_pil"]


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """A generator image [3, H, W] (or [1, 3, H, W]) in about [-1, 1] -> RGB PIL image."""
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image, got a batch of {img.shape[0]}; use grid_image")
        img = img[0]
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor [3, H, W] or [1, H, W], got shape {tuple(img.shape)}")
    x = ((img.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [C, H, W]
    x = x.permute(1, 2, 0).numpy()                                                        # [H, W, C]
    if x.shape[2] == 1:
        return Image.fromarray(x[:, :, 0], mode="L").convert("RGB")
    return Image.fromarray(x, mode="RGB")


def pil_to_tensor(image: Image.Image, resolution: int | None = None) -> torch.Tensor:
    """RGB PIL image -> [1, 3, H, W] in [-1, 1]; resized (Lanczos) to a square ``resolution`` if given."""
    image = image.convert("RGB")
    if resolution is not None and image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # [H, W, 3]
    x = x.permute(2, 0, 1).unsqueeze(0).float()                     # [1, 3, H, W]
    return x / 127.5 - 1


def grid_image(imgs: torch.Tensor, cols: int | None = None) -> Image.Image:
    """A batch [N, 3, H, W] in [-1, 1] as one PIL image: ``cols`` columns (default ceil(sqrt(N))), no padding.

    Empty cells of the last row are black; one image comes back unchanged in size.
    """
    if imgs.dim() != 4:
        raise ValueError(f"expected a batch of images [N, C, H, W], got shape {tuple(imgs.shape)}")
    n, c, h, w = imgs.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = torch.full((rows * cols, c, h, w), -1.0, dtype=imgs.dtype, device=imgs.device)
    canvas[:n] = imgs
    canvas = canvas.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4)  # [C, rows, H, cols, W]
    return tensor_to_pil(canvas.reshape(c, rows * h, cols * w))          # [C, rows*H, cols*W]


def labelled_grid(imgs: torch.Tensor, cols: int, col_labels: Sequence[str] = (), row_labels: Sequence[str] = (),
                  cell: int = 128, gap: int = 4) -> Image.Image:
    """A grid with a header row of column labels and a left column of row labels, cells ``cell`` px wide.

    Small images are enlarged with visible pixels (nearest neighbour), so a 64x64 GAN output stays sharp.
    """
    if imgs.dim() != 4 or imgs.shape[0] % cols:
        raise ValueError(f"need a batch [rows*cols, C, H, W] for {cols} columns, got shape {tuple(imgs.shape)}")
    rows = imgs.shape[0] // cols
    font = ImageFont.load_default(size=max(12, cell // 9))
    head = font.size + 10 if col_labels else 0
    left = max((int(font.getlength(t)) for t in row_labels), default=-10) + 10
    sheet = Image.new("RGB", (left + cols * (cell + gap), head + rows * (cell + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(col_labels):
        x = left + j * (cell + gap) + (cell - font.getlength(text)) / 2
        draw.text((x, 4), text, fill="black", font=font)
    for i in range(rows):
        y = head + i * (cell + gap)
        if i < len(row_labels):
            draw.text((4, y + (cell - font.size) / 2), row_labels[i], fill="black", font=font)
        for j in range(cols):
            tile = tensor_to_pil(imgs[i * cols + j])
            resample = Image.NEAREST if tile.width <= cell else Image.LANCZOS
            sheet.paste(tile.resize((cell, cell), resample), (left + j * (cell + gap), y))
    return sheet
