"""Measure a generator against the renderer with the built-in judges (predictor and segmenter).

    python -m interp.builtin.evaluate_gan --json                # the shipped faces64, 5,000 samples each
    python -m interp.builtin.evaluate_gan --model runs/... -n 1000

Figures (all on held-out render seeds):
- Frechet distance in the predictor's penultimate feature space, with its floor (two independent
  sets of renders) and ceiling (a randomly initialised generator of the same architecture);
  normalised = (FD - floor) / (ceiling - floor).
- Per factor, the gap between the predicted values on generated images and on renders:
  |difference of means| for binary factors, 1-Wasserstein / range for continuous ones, total
  variation of the class histogram for categorical ones.
- The age-glasses correlation in generated images and in renders.
- Part-area fractions from the segmenter, generated vs rendered, and their relative difference.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from scipy import linalg
from scipy.stats import wasserstein_distance

from interp.builtin.faces import FACTORS, PARTS, render_torch, sample_factors
from interp.models.stylegan2 import Generator

TARGETS = {"fd_normalised": 0.03, "binary_gap": 0.05, "continuous_w1_over_range": 0.08, "categorical_tv": 0.05,
           "age_glasses_corr": 0.1, "part_fraction_rel": 0.20}
HELD_OUT_SEEDS = (7_000_000_001, 7_000_000_002)  # never used by training (see train_gan.step_seed)


@torch.no_grad()
def generated_batches(G: Generator, n: int, seed: int, psi: float = 1.0, batch: int = 250):
    """Images [B, 3, H, W] in [-1, 1], resized to 64x64 if needed, for n seeded latents."""
    z = G.sample_z(n, seed)
    for i in range(0, n, batch):
        img = G.synthesis(G.mapping(z[i:i + batch], truncation_psi=psi), noise_mode="const").clamp(-1, 1)
        yield img


def rendered_batches(n: int, seed: int, batch: int = 250):
    factors = sample_factors(n, seed=seed)
    for i in range(0, n, batch):
        part = {k: v[i:i + batch] for k, v in factors.items()}
        yield render_torch(part, size=64)[0]


@torch.no_grad()
def judge(batches, predictor, segmenter) -> dict[str, np.ndarray]:
    """Predictor features and predictions, and segmenter part fractions, over an image stream."""
    out: dict[str, list] = {"features": [], "parts": []}
    for img in batches:
        out["features"].append(predictor.features(img).double().numpy())
        for name, v in predictor.predict(img).items():
            out.setdefault(name, []).append(v.double().numpy())
        if segmenter is not None:
            labels = segmenter.segment(img)                                                  # [B, H, W]
            counts = torch.stack([(labels == k).float().mean(dim=[1, 2]) for k in range(len(PARTS))], 1)
            out["parts"].append(counts.double().numpy())                                      # [B, P]
    return {k: np.concatenate(v) for k, v in out.items() if v}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def age_glasses_corr(d: dict[str, np.ndarray]) -> float:
    """Pearson correlation of predicted age and glasses; NaN when either is constant."""
    if d["age"].std() == 0 or d["glasses"].std() == 0:
        return float("nan")
    return float(np.corrcoef(d["age"], d["glasses"])[0, 1])


def compare(gen: dict[str, np.ndarray], real: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per-factor gaps, the age-glasses correlation and part fractions, generated vs rendered."""
    factors = {}
    for f in FACTORS:
        g, r = gen[f.name], real[f.name]
        if f.kind == "binary":
            factors[f.name] = {"kind": "binary", "gen_mean": g.mean(), "real_mean": r.mean(),
                               "gap": abs(g.mean() - r.mean())}
        elif f.kind == "continuous":
            w1 = wasserstein_distance(g, r)
            factors[f.name] = {"kind": "continuous", "w1": w1, "w1_over_range": w1 / (f.high - f.low)}
        else:
            k = int(f.high) + 1
            hg, hr = np.bincount(g.astype(int), minlength=k) / len(g), np.bincount(r.astype(int), minlength=k) / len(r)
            factors[f.name] = {"kind": "categorical", "tv": 0.5 * np.abs(hg - hr).sum(),
                               "gen_hist": hg.tolist(), "real_hist": hr.tolist()}
    out: dict[str, dict] = {"factors": factors}
    g, r = age_glasses_corr(gen), age_glasses_corr(real)
    out["age_glasses_corr"] = {"gen": g, "real": r, "diff": abs(g - r)}
    if "parts" in gen and "parts" in real:
        pg, pr = gen["parts"].mean(0), real["parts"].mean(0)
        out["part_fractions"] = {p: {"gen": pg[i], "real": pr[i], "rel": abs(pg[i] - pr[i]) / max(pr[i], 1e-9)}
                                 for i, p in enumerate(PARTS)}
    return out


def factor_gaps(G: Generator, n: int = 256, seed: int = 12345) -> dict[str, float]:
    """Quick summary for training logs: mean binary gap, mean and max continuous W1/range, max categorical TV,
    the age-glasses correlation difference."""
    from interp.builtin import load_predictor

    predictor = load_predictor()
    c = compare(judge(generated_batches(G, n, seed), predictor, None),
                judge(rendered_batches(n, HELD_OUT_SEEDS[0] + seed), predictor, None))
    bin_gaps = [v["gap"] for v in c["factors"].values() if v["kind"] == "binary"]
    cont = [v["w1_over_range"] for v in c["factors"].values() if v["kind"] == "continuous"]
    tv = [v["tv"] for v in c["factors"].values() if v["kind"] == "categorical"]
    return {"binary_gap_mean": float(np.mean(bin_gaps)), "continuous_w1_mean": float(np.mean(cont)),
            "continuous_w1_max": float(np.max(cont)), "categorical_tv_max": float(np.max(tv)),
            "age_glasses_corr_diff": c["age_glasses_corr"]["diff"]}


def evaluate(G: Generator, n: int = 5000, seed: int = 0) -> dict:
    from interp.builtin import load_predictor, load_segmenter

    predictor, segmenter = load_predictor(), load_segmenter()
    G = G.cpu().eval()
    gen = judge(generated_batches(G, n, seed), predictor, segmenter)
    real = judge(rendered_batches(n, HELD_OUT_SEEDS[0]), predictor, segmenter)
    real2 = judge(rendered_batches(n, HELD_OUT_SEEDS[1]), predictor, None)
    torch.manual_seed(seed)
    rand = judge(generated_batches(Generator(G.config).eval(), n, seed), predictor, None)
    fd, floor, ceiling = (frechet_distance(x["features"], real["features"]) for x in (gen, real2, rand))
    result = {"n": n, "frechet": {"fd": fd, "floor": floor, "ceiling": ceiling,
                                  "normalised": (fd - floor) / (ceiling - floor)}}
    result.update(compare(gen, real))
    bin_gaps = [v["gap"] for v in result["factors"].values() if v["kind"] == "binary"]
    cont = [v["w1_over_range"] for v in result["factors"].values() if v["kind"] == "continuous"]
    rel = [v["rel"] for v in result["part_fractions"].values()]
    tv = [v["tv"] for v in result["factors"].values() if v["kind"] == "categorical"]
    result["targets"] = {
        "fd_normalised": {"value": result["frechet"]["normalised"], "target": TARGETS["fd_normalised"]},
        "binary_gap_mean": {"value": float(np.mean(bin_gaps)), "target": TARGETS["binary_gap"]},
        "continuous_w1_over_range_max": {"value": float(np.max(cont)), "target": TARGETS["continuous_w1_over_range"]},
        "categorical_tv_max": {"value": float(np.max(tv)), "target": TARGETS["categorical_tv"]},
        "age_glasses_corr_diff": {"value": result["age_glasses_corr"]["diff"], "target": TARGETS["age_glasses_corr"]},
        "part_fraction_rel_max": {"value": float(np.max(rel)), "target": TARGETS["part_fraction_rel"]},
    }
    for t in result["targets"].values():
        t["met"] = bool(t["value"] <= t["target"])
    return result


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return x


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m interp.builtin.evaluate_gan", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="faces64", help="zoo id or checkpoint path (default: the shipped faces64)")
    p.add_argument("-n", type=int, default=5000, help="samples per set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = p.parse_args(argv)
    from interp import load_generator

    result = _jsonable(evaluate(load_generator(args.model), n=args.n, seed=args.seed))
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
        return
    for name, t in result["targets"].items():
        print(f"{name:32s} {t['value']:.4f}  target <= {t['target']}  {'met' if t['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
