"""Shared plumbing for the built-in judges: image input checks, config/weights I/O, training helpers.

Image convention of every built-in judge (predictor, segmenter): float tensors [N, 3, H, W] with
values in [-1, 1] (what the generator's ``synthesis`` returns; ``faces.images_to_tensor`` turns
renders into it). Square images of any size are accepted and resized to the model's 64x64.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from .faces import FACTORS, render_torch, sample_factors

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "builtin"
RUNS = Path(__file__).resolve().parents[2] / "runs" / "builtin"

# Data seeds: training batch ``step`` of a run with seed s renders sample_factors(batch, TRAIN_SEED_BASE + s * 10**7 + step).
# The held-out evaluation set uses EVAL_SEED, far outside that range.
TRAIN_SEED_BASE = 1_000_000
EVAL_SEED = 987_654_321


def check_images(x: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Validate a [N, 3, H, W] float image batch in [-1, 1] and resize it to ``size`` x ``size``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor [N, 3, H, W] in [-1, 1], got {type(x).__name__}; "
                         "use interp.builtin.images_to_tensor for uint8 arrays")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, H, W] (RGB, channels first), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"images must be floating point in [-1, 1], got dtype {x.dtype}; "
                         "use interp.builtin.images_to_tensor for uint8 images")
    if x.shape[2] != x.shape[3] or x.shape[2] < 8:
        raise ValueError(f"images must be square and at least 8x8 pixels, got {x.shape[2]}x{x.shape[3]}")
    if x.shape[2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=x.shape[2] > size)
    return x


def training_meta(args, device: torch.device, t0: float, **extra: Any) -> dict:
    """What a training CLI records next to its weights: budget, seed and wall time of this session."""
    return {**extra, "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
            "images_seen": args.steps * args.batch, "device": str(device),
            "last_session_seconds": round(time.time() - t0, 1)}


def save_model(model: torch.nn.Module, config: Any, stem: Path, meta: dict | None = None) -> None:
    """Write ``stem``.safetensors (weights) and ``stem``.json (config dataclass + meta)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(stem) + ".safetensors")
    os.chmod(str(stem) + ".safetensors", 0o644)
    with open(str(stem) + ".json", "w") as fh:
        json.dump({"config": dataclasses.asdict(config), "meta": meta or {}}, fh, indent=2)


def load_config(stem: Path, cls: type) -> Any:
    with open(str(stem) + ".json") as fh:
        cfg = json.load(fh)["config"]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})


def load_weights(model: torch.nn.Module, stem: Path) -> torch.nn.Module:
    sd = load_file(str(stem) + ".safetensors")
    model.load_state_dict(sd)
    return model


# ----------------------------------------------------------------------------- training helpers

def pick_device(name: str = "auto") -> torch.device:
    from interp.devices import resolve_device

    return torch.device(resolve_device(name))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train_batch(step: int, batch: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Render training batch ``step``: (images [B,3,64,64] in [-1,1], parts [B,64,64], factors {name: [B]})."""
    f = sample_factors(batch, TRAIN_SEED_BASE + seed * 10**7 + step)
    x, parts = render_torch(f, 64, device=device)
    x = x.contiguous(memory_format=torch.channels_last)
    ft = {k: torch.as_tensor(v, device=device) for k, v in f.items()}
    return x, parts, ft


def factor_targets(f: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Factors -> training targets: continuous mapped to [-1, 1], binary float, categorical long."""
    out = {}
    for spec in FACTORS:
        v = f[spec.name]
        if spec.kind == "continuous":
            out[spec.name] = (v.float() - spec.low) / (spec.high - spec.low) * 2.0 - 1.0
        elif spec.kind == "binary":
            out[spec.name] = v.float()
        else:
            out[spec.name] = v.long()
    return out


class Checkpointer:
    """Resumable training state in runs/builtin/<name>/last.pt (model, optimizer, scheduler, step)."""

    def __init__(self, name: str, root: Path | None = None):
        self.dir = (root or RUNS) / name
        self.path = self.dir / "last.pt"

    def load(self, model, opt, sched) -> int:
        if not self.path.exists():
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        if sched is not None:
            sched.load_state_dict(state["sched"])
        return int(state["step"])

    def save(self, model, opt, sched, step: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict() if sched is not None else None, "step": step}, tmp)
        os.replace(tmp, self.path)


def add_train_args(parser, steps: int, batch: int, lr: float) -> None:
    parser.add_argument("--steps", type=int, default=steps, help="total optimisation steps")
    parser.add_argument("--batch", type=int, default=batch, help="images per step (rendered on the fly)")
    parser.add_argument("--lr", type=float, default=lr, help="peak learning rate (one-cycle schedule)")
    parser.add_argument("--seed", type=int, default=0, help="run seed (model init and data stream)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda', ...")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    parser.add_argument("--ckpt-every", type=int, default=200, help="save a resumable checkpoint every N steps")
    parser.add_argument("--run", default=None, help="run name under runs/builtin/ (default: the model name)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    parser.add_argument("--out", default=None, help="output stem for .safetensors/.json (default: assets/builtin/<model>)")


def train_loop(name: str, model: torch.nn.Module, step_loss, args, params=None) -> torch.nn.Module:
    """Generic resumable loop: AdamW + one-cycle LR, fresh rendered batch per step, tqdm bar.

    ``step_loss(model, step) -> (loss, {metric: float})`` renders its own batch for ``step``.
    """
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    opt = torch.optim.AdamW(params if params is not None else model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    ck = Checkpointer(args.run or name)
    start = 0 if args.fresh else ck.load(model, opt, sched)
    model.to(memory_format=torch.channels_last)
    model.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc=f"train {name}", mininterval=5)
    ema: dict[str, float] = {}
    for step in bar:
        loss, logs = step_loss(model, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k, v in {"loss": loss.item(), **logs}.items():
            ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
        bar.set_postfix({k: f"{v:.4f}" for k, v in ema.items()}, refresh=False)
        if (step + 1) % args.ckpt_every == 0 or step + 1 == args.steps:
            ck.save(model, opt, sched, step + 1)
    model.eval()
    return model
