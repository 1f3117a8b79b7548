"""Evaluate the built-in judges and the renderer on a fresh held-out set.

    python -m interp.builtin.evaluate [--json] [--n 2000] [--device auto]

The held-out factors come from ``sample_factors(n, EVAL_SEED)``; training uses seeds in a
disjoint range (see ``common.TRAIN_SEED_BASE``). Metrics (targets in ``TARGETS``):

- predictor: accuracy per binary (and categorical) factor, R^2 per continuous factor
- segmenter: IoU per part (intersections and unions summed over the set), and their mean
- tiny CLIP: zero-shot accuracy of the prompt pair per binary factor (positive prompt closer),
  Spearman rho of sim(positive) - sim(negative) with each continuous factor, 4-way hair colour accuracy
- renderer: images/s at 64x64 with the torch threads given (default 1: when another process
  keeps the second core busy, torch's 2-thread elementwise kernels stall; see bench/bench_renderer.py)
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from .common import EVAL_SEED, pick_device
from .faces import FACTOR_BY_NAME, FACTORS, PARTS, render, render_torch, sample_factors

TARGETS = {
    "predictor_binary_accuracy": 0.97,
    "predictor_continuous_r2": 0.95,
    "segmenter_mean_iou": 0.90,
    "clip_binary_zero_shot_accuracy": 0.90,
    "clip_continuous_spearman": 0.80,
    "renderer_images_per_s_64": 1000.0,
}


def r2_score(pred: np.ndarray, true: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot."""
    ss_res = float(((pred - true) ** 2).sum())
    ss_tot = float(((true - true.mean()) ** 2).sum())
    return 1.0 - ss_res / max(ss_tot, 1e-12)


def part_ious(pred: np.ndarray, true: np.ndarray, num_parts: int = len(PARTS)) -> np.ndarray:
    """Per-part IoU [num_parts] with intersections and unions summed over all pixels of the set."""
    ious = np.full(num_parts, np.nan)
    for k in range(num_parts):
        p, t = pred == k, true == k
        union = np.logical_or(p, t).sum()
        if union:
            ious[k] = np.logical_and(p, t).sum() / union
    return ious


@torch.no_grad()
def eval_predictor(model, x: torch.Tensor, f: dict[str, np.ndarray], batch: int = 256) -> dict[str, float]:
    outs: dict[str, list] = {}
    for s in range(0, len(x), batch):
        for k, v in model.predict(x[s:s + batch]).items():
            outs.setdefault(k, []).append(v.cpu())
    res = {}
    for spec in FACTORS:
        pred = torch.cat(outs[spec.name]).numpy()
        true = np.asarray(f[spec.name])
        if spec.kind == "continuous":
            res[f"r2/{spec.name}"] = r2_score(pred, true)
        else:
            res[f"accuracy/{spec.name}"] = float((pred == true).mean())
    return res


@torch.no_grad()
def eval_segmenter(model, x: torch.Tensor, parts: torch.Tensor, batch: int = 128) -> dict[str, float]:
    pred = torch.cat([model.segment(x[s:s + batch]).cpu() for s in range(0, len(x), batch)])
    ious = part_ious(pred.numpy(), parts.cpu().numpy())
    res = {f"iou/{name}": float(v) for name, v in zip(PARTS, ious)}
    res["mean_iou"] = float(np.nanmean(ious))
    return res


@torch.no_grad()
def eval_clip(model, tokenizer, x: torch.Tensor, f: dict[str, np.ndarray]) -> dict[str, float]:
    from .clip import zero_shot_scores

    scores = zero_shot_scores(model, tokenizer, x)
    res = {}
    for name, s in scores.items():
        true = np.asarray(f[name])
        kind = FACTOR_BY_NAME[name].kind
        if kind == "binary":
            res[f"zero_shot_accuracy/{name}"] = float(((s.numpy() > 0).astype(int) == true).mean())
        elif kind == "categorical":
            res[f"zero_shot_accuracy/{name}"] = float((s.argmax(1).numpy() == true).mean())
        else:
            res[f"spearman/{name}"] = float(spearmanr(s.numpy(), true).statistic)
    return res


def renderer_speed(n: int = 2048, size: int = 64, threads: int = 1, repeats: int = 3) -> float:
    """Best-of-``repeats`` images/s of ``render`` (uint8 output, parts included)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        f = sample_factors(n, 0)
        render({k: v[:64] for k, v in f.items()}, size)   # warm-up
        best = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            render(f, size)
            best = max(best, n / (time.perf_counter() - t))
        return best
    finally:
        torch.set_num_threads(old)


def summarize(metrics: dict[str, float]) -> dict[str, dict]:
    """Worst value per target family and whether it meets the target."""
    fam = {
        "predictor_binary_accuracy": [v for k, v in metrics.items()
                                      if k.startswith("predictor/accuracy/") and FACTOR_BY_NAME[k.split("/")[-1]].kind == "binary"],
        "predictor_continuous_r2": [v for k, v in metrics.items() if k.startswith("predictor/r2/")],
        "segmenter_mean_iou": [v for k, v in metrics.items() if k == "segmenter/mean_iou"],
        "clip_binary_zero_shot_accuracy": [v for k, v in metrics.items()
                                           if k.startswith("clip/zero_shot_accuracy/") and not k.endswith("hair_color")],
        "clip_continuous_spearman": [v for k, v in metrics.items() if k.startswith("clip/spearman/")],
        "renderer_images_per_s_64": [v for k, v in metrics.items() if k == "renderer/images_per_s_64"],
    }
    return {k: {"worst": min(v), "target": TARGETS[k], "met": min(v) >= TARGETS[k]} for k, v in fam.items() if v}


def evaluate(n: int = 2000, device: str = "auto", seg_n: int = 500, renderer: bool = True,
             threads: int = 1) -> dict[str, float]:
    from . import load_clip, load_predictor, load_segmenter

    dev = pick_device(device)
    f = sample_factors(n, EVAL_SEED)
    x, parts = render_torch(f, 64, device=dev)
    metrics: dict[str, float] = {"n_heldout": n, "eval_seed": EVAL_SEED}
    metrics.update({f"predictor/{k}": v for k, v in eval_predictor(load_predictor(dev), x, f).items()})
    metrics.update({f"segmenter/{k}": v for k, v in eval_segmenter(load_segmenter(dev), x[:seg_n], parts[:seg_n]).items()})
    model, _, tok = load_clip(dev)
    metrics.update({f"clip/{k}": v for k, v in eval_clip(model, tok, x, f).items()})
    if renderer:
        metrics["renderer/images_per_s_64"] = renderer_speed(threads=threads)
        metrics["renderer/images_per_s_128"] = renderer_speed(n=512, size=128, threads=threads)
        metrics["renderer/threads"] = threads
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ap.add_argument("--n", type=int, default=2000, help="held-out images for predictor and CLIP")
    ap.add_argument("--seg-n", type=int, default=500, help="held-out images for the segmenter")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the renderer benchmark")
    ap.add_argument("--no-renderer", action="store_true", help="skip the renderer speed measurement")
    args = ap.parse_args(argv)
    metrics = evaluate(args.n, args.device, args.seg_n, not args.no_renderer, args.threads)
    summary = summarize(metrics)
    if args.json:
        print(json.dumps({"metrics": metrics, "targets": summary}, indent=2))
    else:
        for k, v in metrics.items():
            print(f"{k:45s} {v:.4f}" if isinstance(v, float) else f"{k:45s} {v}")
        for k, v in summary.items():
            print(f"{k:35s} worst {v['worst']:.4f}  target {v['target']}  {'OK' if v['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
