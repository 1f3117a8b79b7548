"""Train the part segmenter on renders made on the fly.

    python -m interp.builtin.train_segmenter [--steps 1000 --batch 64 --device auto]

Loss: cross-entropy plus a soft Dice term per part (so small parts such as eyes count as much
as the background). Resumable (runs/builtin/segmenter/), seeded; writes
assets/builtin/segmenter.{safetensors,json}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import (ASSETS, add_train_args, pick_device, save_model,
                     seed_everything, training_meta, train_batch, train_loop)
from .segmenter import PartSegmenter, SegmenterConfig


def segmenter_loss(model: PartSegmenter, x: torch.Tensor, parts: torch.Tensor):
    logits = model(x)                                                    # [N, K, H, W]
    ce = F.cross_entropy(logits, parts)
    prob = logits.softmax(1)
    onehot = F.one_hot(parts, logits.shape[1]).permute(0, 3, 1, 2).float()  # [N, K, H, W]
    inter = (prob * onehot).sum((0, 2, 3))
    denom = (prob + onehot).sum((0, 2, 3))
    dice = 1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean()
    return ce + dice, {"ce": ce.item(), "dice": dice.item()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(ap, steps=1000, batch=64, lr=3e-3)
    args = ap.parse_args(argv)
    dev = pick_device(args.device)
    seed_everything(args.seed)
    model = PartSegmenter(SegmenterConfig()).to(dev)

    def step_loss(m, step):
        x, parts, _ = train_batch(step, args.batch, args.seed + 1000, dev)
        return segmenter_loss(m, x, parts)

    t0 = time.time()
    train_loop("segmenter", model, step_loss, args)
    stem = Path(args.out) if args.out else ASSETS / "segmenter"
    save_model(model.cpu(), model.config, stem, meta=training_meta(args, dev, t0))
    print(f"wrote {stem}.safetensors")


if __name__ == "__main__":
    main()
