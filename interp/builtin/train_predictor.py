"""Train the attribute predictor on renders made on the fly.

    python -m interp.builtin.train_predictor [--steps 2000 --batch 128 --device auto]

Resumable (checkpoint in runs/builtin/predictor/), seeded; writes assets/builtin/predictor.{safetensors,json}.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .common import (ASSETS, add_train_args, factor_targets, pick_device,
                     save_model, seed_everything, training_meta, train_batch, train_loop)
from .faces import FACTOR_BY_NAME
from .predictor import AttributePredictor, PredictorConfig


def predictor_loss(model: AttributePredictor, x: torch.Tensor, f: dict[str, torch.Tensor]):
    out = model.raw(model.features(x))
    tgt = factor_targets(f)
    losses = {}
    for n, o in out.items():
        kind = FACTOR_BY_NAME[n].kind
        if kind == "continuous":
            losses[n] = 4.0 * F.mse_loss(o, tgt[n])
        elif kind == "binary":
            losses[n] = F.binary_cross_entropy_with_logits(o, tgt[n])
        else:
            losses[n] = F.cross_entropy(o, tgt[n])
    return sum(losses.values()), losses


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(ap, steps=2000, batch=128, lr=3e-3)
    args = ap.parse_args(argv)
    dev = pick_device(args.device)
    seed_everything(args.seed)
    model = AttributePredictor(PredictorConfig()).to(dev)

    def step_loss(m, step):
        x, _, f = train_batch(step, args.batch, args.seed, dev)
        loss, parts = predictor_loss(m, x, f)
        return loss, {k: v.item() for k, v in parts.items() if k in ("smile", "age", "glasses", "face_width")}

    t0 = time.time()
    train_loop("predictor", model, step_loss, args)
    stem = Path(args.out) if args.out else ASSETS / "predictor"
    save_model(model.cpu(), model.config, stem, meta=training_meta(args, dev, t0))
    print(f"wrote {stem}.safetensors")


if __name__ == "__main__":
    main()
