"""How style mixing moves the age-glasses correlation of a generator (prints figures; no thresholds):

    python bench/bench_mixing.py faces64 assets/builtin/faces64_v2.safetensors [--n 2000]

Training shows D mixed batches nine times in ten (`style_mixing` 0.9): ws rows below a random cutoff
from one latent, the rest from another. If age and glasses come from different rows, a mixed image takes
them from independent latents and their correlation drops, so a D that matches the renders' correlation
on mixed batches leaves it too high on the unmixed images a user samples. For each model this prints the
predictor's age-glasses correlation and glasses rate on unmixed samples and on samples mixed at each
cutoff (the same latents everywhere), and the renders' correlation.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp import load_generator  # noqa: E402
from interp.builtin import load_predictor  # noqa: E402
from interp.builtin.evaluate_gan import HELD_OUT_SEEDS, age_glasses_corr, judge, rendered_batches  # noqa: E402


@torch.no_grad()
def age_glasses(G, ws: torch.Tensor, predictor) -> tuple[float, float]:
    """(correlation of predicted age and glasses, glasses rate) over the images of ws [N, num_ws, w_dim]."""
    batches = (G.synthesis(ws[i:i + 250], noise_mode="const").clamp(-1, 1) for i in range(0, len(ws), 250))
    d = judge(batches, predictor, None)
    return age_glasses_corr(d), float(d["glasses"].mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="zoo ids or checkpoint paths")
    ap.add_argument("--n", type=int, default=2000, help="samples per row")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    predictor = load_predictor()
    real = judge(rendered_batches(args.n, HELD_OUT_SEEDS[0]), predictor, None)
    print(f"renders: age-glasses correlation {age_glasses_corr(real):.3f}, "
          f"glasses {real['glasses'].mean():.3f}")
    for model in args.models:
        G = load_generator(model).cpu().eval()
        with torch.no_grad():
            w1, w2 = G.mapping(G.sample_z(args.n, args.seed)), G.mapping(G.sample_z(args.n, args.seed + 1))
        rows = [("unmixed", w1)] + [(f"mixed at row {c}", torch.cat([w1[:, :c], w2[:, c:]], 1))
                                    for c in range(1, G.num_ws)]
        print(f"\n{model}  (rows below the cutoff from one latent, the rest from another)")
        corrs = []
        for name, ws in rows:
            corr, rate = age_glasses(G, ws, predictor)
            corrs.append(corr)
            print(f"  {name:<16} correlation {corr:6.3f}  glasses {rate:.3f}")
        print(f"  mixed, mean over the cutoffs training draws: {np.mean(corrs[1:]):.3f}")


if __name__ == "__main__":
    main()
