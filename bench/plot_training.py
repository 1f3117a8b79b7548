"""Training curves of `train_gan` runs side by side: the quick metrics logged every 20 k images.

    python bench/plot_training.py runs/gan/scratch_hp5e-5 runs/gan/scratch_ctl --plot curves.png

Prints one row per logged measurement and run (mean and max continuous 1-Wasserstein, binary gap,
hair-colour total variation where logged, age-glasses correlation difference; 256 samples each, so a
single point moves by a few hundredths), and with --plot draws them against the images shown, with the
medians of the discriminator's loss and, where logged, the Hessian penalty and the attribute-statistics
mismatch per 10 k images (a D loss below 2 ln 2 = 1.386 means D tells fakes apart).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

METRICS = {
    "continuous_w1_mean": "mean continuous W1",
    "continuous_w1_max": "max continuous W1",
    "binary_gap_mean": "glasses gap",
    "categorical_tv_max": "hair-colour TV",
    "age_glasses_corr_diff": "age-glasses corr. difference",
}


def read_log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run}: no log.jsonl (is it a train_gan run folder?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def measurements(rows: list[dict]) -> list[tuple[float, dict[str, float]]]:
    """(kimg, metrics) of every logged quick measurement; a later resume that re-measures a kimg wins."""
    by_kimg = {row["kimg"]: row["metrics"] for row in rows if isinstance(row.get("metrics"), dict)}
    return sorted(by_kimg.items())


LOGGED = {"loss_d": "D loss (median per 10 k)", "hessian": "Hessian penalty (median per 10 k)",
          "attr_stats": "attribute-statistics mismatch (median per 10 k)"}


def medians(rows: list[dict], key: str, window_kimg: float = 10.0) -> list[tuple[float, float]]:
    """A logged value's median per window of images shown (empty for runs that do not log it)."""
    bins: dict[int, list[float]] = {}
    for row in rows:
        if key in row and math.isfinite(row[key]):
            bins.setdefault(int(row["kimg"] // window_kimg), []).append(row[key])
    return [((b + 0.5) * window_kimg, statistics.median(v)) for b, v in sorted(bins.items())]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="train_gan run folders (each with log.jsonl)")
    ap.add_argument("--plot", type=Path, help="save the curves here (PNG)")
    args = ap.parse_args(argv)

    logs = {run.name: read_log(run) for run in args.runs}
    points = {name: measurements(rows) for name, rows in logs.items()}
    logged = {key: {name: medians(rows, key) for name, rows in logs.items()} for key in LOGGED}
    logged = {key: runs for key, runs in logged.items() if any(runs.values())}
    print(f"{'run':<22} {'kimg':>6} " + " ".join(f"{k:>22}" for k in METRICS))
    for name, run_points in points.items():
        for kimg, m in run_points:
            print(f"{name:<22} {kimg:6.0f} " + " ".join(f"{m.get(k, float('nan')):22.3f}" for k in METRICS))
    for key, runs in logged.items():
        for name, med in runs.items():
            if med:
                print(f"{name}: {LOGGED[key]}: " + ", ".join(f"{k:.0f}k {v:.3g}" for k, v in med))

    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = len(METRICS) + len(logged)
        fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.0), constrained_layout=True)
        for name, run_points in points.items():
            for ax, key in zip(axes, METRICS):
                finite = [(k, m[key]) for k, m in run_points if math.isfinite(m.get(key, float("nan")))]
                ax.plot(*zip(*finite) if finite else ([], []), marker="o", ms=3, label=name)
            for ax, runs in zip(axes[len(METRICS):], logged.values()):
                ax.plot(*zip(*runs[name]) if runs[name] else ([], []), marker="o", ms=3, label=name)
        for ax, title in zip(axes, [*METRICS.values(), *(LOGGED[key] for key in logged)]):
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("k images shown", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.savefig(args.plot, dpi=110)
        print(f"saved {args.plot}")


if __name__ == "__main__":
    main()
