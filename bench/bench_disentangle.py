"""Disentanglement of built-in-domain generators, side by side (prints figures; no thresholds):

    python bench/bench_disentangle.py faces64 runs/gan/ft_hp/G.safetensors runs/gan/ft_ctl/G.safetensors

For each model (a zoo id or a checkpoint of the faces64 architecture), judged by the built-in attribute
predictor on the same samples (the effect matrix: change of each true factor per standard deviation):

- mean purity of the top-10 SeFa directions in W for each layer preset (all / coarse / middle / fine)
  and of the top-10 GANSpace directions in Z, W and S (every layer);
- CLIP-name agreement: how often the tiny CLIP's name of a SeFa direction (40: 10 per preset) names
  its dominant true factor;
- W axes: the mean purity of the 10 coordinate axes of W with the largest effect (the Hessian penalty
  acts on these axes, so its claim is tested there too); S channels: the same for the single StyleSpace
  channels (StyleSpace's claim: its channels are the most disentangled units).

With ``--supervised``, also what a linear W direction can reach on the same generator, one direction per
non-categorical factor (10), found with the factors' labels (so an upper reference for the unsupervised
methods above, not a target for them):

- InterFaceGAN: linear SVM boundaries on predictor-labelled samples (``--supervised-samples``, top and bottom
  2 %), and the same boundaries conditioned on all the others (each made orthogonal to the other normals);
- Jacobian: the least-norm W offset that, to first order, moves the factor and no other predicted factor
  (``interfacegan.gradient_boundaries``, the Attributes tab's "judge's gradient" directions).

Each with its CLIP-name agreement: on directions that do move one factor, how often the tiny CLIP names it
(the naming's own accuracy, apart from the directions' entanglement).

Purity is the dominant factor's share of a direction's total (absolute) effect. ``--plot DIR`` also saves
each model's effect matrix of the top SeFa directions (all layers) as ``DIR/effects_<model>.png``.
``--seeds 0,1,2`` measures each model again from other samples and gives each figure's mean and range.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp import diskcache, load_generator  # noqa: E402
from interp.directions import DirectionSet  # noqa: E402
from interp.edit import layer_rows, projection_stds, sample_latents  # noqa: E402
from interp.methods import effects, naming, sefa  # noqa: E402
from interp.methods import interfacegan as ifg  # noqa: E402

PRESETS = ("all", "coarse", "middle", "fine")


def label(spec: str) -> str:
    """A model's short name: a zoo id itself, a checkpoint its run folder's name."""
    return Path(spec).parent.name or spec


def supervised(G, predictor, clip, mh: str, w_samples: torch.Tensor, n_samples: int, n_labelled: int,
               seed: int) -> dict[str, float]:
    """Mean purity of the label-guided W directions, one per non-categorical factor (see the module text)."""
    from interp.builtin.faces import FACTORS

    factors = [f.name for f in FACTORS if f.kind != "categorical"]
    rows = layer_rows(G, "all")
    labelled = ifg.score_samples(G, ifg.PredictorScorer(predictor), n_labelled, seed=seed, space="w")
    bounds = ifg.train_boundaries(labelled, factors, seed=seed)
    normals = torch.stack([b.normal for b in bounds])
    conditioned = torch.stack([ifg.condition(normals[i], torch.cat([normals[:i], normals[i + 1:]]))
                               for i in range(len(factors))])
    jacobian = torch.stack([b.normal for b in ifg.gradient_boundaries(G, ifg.PredictorScorer(predictor), factors,
                                                                       n=8, seed=seed)])
    out = {}
    for name, dirs in (("InterFaceGAN W", normals), ("InterFaceGAN W, conditioned on the others", conditioned),
                       ("Jacobian W (first-order pure)", jacobian)):
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        ds = DirectionSet.create(dirs, torch.ones(len(factors)), projection_stds(w_samples, dirs), space="w",
                                 layers=rows, method="supervised", model_id="faces64", model_hash=mh, names=factors)
        eff = effects.effect_matrix(G, predictor, ds, strength=1.0, n_samples=n_samples, seed=seed + 1)
        out[f"{name}, 10 factors"] = float(eff.purity.mean())
        out[f"{name}: dominant = its factor"] = sum(d == f for d, f in zip(eff.dominant, factors)) / len(factors)
        names = naming.name_directions(G, ds, clip, naming.default_vocabulary("faces64"), n_samples=16,
                                       seed=seed + 2)
        out[f"{name}: CLIP name = dominant factor"] = effects.clip_agreement(names, eff)["factor_agreement"]
    return out


def measure(spec: str, k: int, n_samples: int, plot: Path | None = None, seed: int = 0,
            n_labelled: int = 0) -> dict[str, float | str]:
    """The figures of one model; ``seed`` draws other samples (GANSpace: other PCA samples too), which measures
    how much a figure moves by resampling alone."""
    from interp.builtin import load_predictor

    G = load_generator(spec)
    predictor = load_predictor()
    clip, why = naming.load_paired_clip("faces64")
    if clip is None:
        sys.exit(f"the tiny CLIP is needed: {why}")
    vocab = naming.default_vocabulary("faces64")
    mh = diskcache.model_hash(G)
    w_samples = sample_latents(G, "w", 4000, seed=0)
    out: dict[str, float | str] = {}
    agree, total = 0, 0
    for preset in PRESETS:
        rows = layer_rows(G, preset)
        dirs, values = sefa.directions(G, rows, k)
        ds = DirectionSet.create(dirs, values, projection_stds(w_samples, dirs), space="w", layers=rows,
                                 method="sefa", model_id="faces64", model_hash=mh)
        eff = effects.effect_matrix(G, predictor, ds, strength=1.0, n_samples=n_samples, seed=seed + 1)
        out[f"SeFa W, {preset}"] = float(eff.purity.mean())
        if plot is not None and preset == "all":
            plot.mkdir(parents=True, exist_ok=True)
            fig = effects.plot_effects(eff, title=f"{label(spec)}: top {k} SeFa directions in W, all layers")
            fig.savefig(plot / f"effects_{label(spec)}.png")
        names = naming.name_directions(G, ds, clip, vocab, n_samples=16, seed=seed + 2)
        a = effects.clip_agreement(names, eff)
        agree += sum(p["agrees"] for p in a["per_direction"])
        total += a["n"]
    out["CLIP name = dominant factor"] = agree / total
    for s in effects.compare_spaces(G, predictor, k=k, n_pca=10_000, n_samples=n_samples, include_sefa=False,
                                    model_id="faces64", seed=seed):
        out[f"GANSpace {s.space.upper()}"] = s.mean_purity
    axes = torch.eye(G.w_dim)
    rows = layer_rows(G, "all")
    ds = DirectionSet.create(axes, torch.ones(G.w_dim), projection_stds(w_samples, axes), space="w", layers=rows,
                             method="axes", model_id="faces64", model_hash=mh)
    eff = effects.effect_matrix(G, predictor, ds, strength=1.0, n_samples=n_samples // 2, seed=seed + 1)
    strongest = eff.matrix.abs().sum(dim=1).argsort(descending=True)[:k]
    out[f"W axes, top {k}"] = float(eff.purity[strongest].mean())
    s_samples = sample_latents(G, "s", 4000, seed=0)                       # every StyleSpace channel alone
    axes = torch.eye(s_samples.shape[1])
    ds = DirectionSet.create(axes, torch.ones(len(axes)), s_samples.std(0).clamp_min(1e-8), space="s", layers=rows,
                             method="axes", model_id="faces64", model_hash=mh)
    eff = effects.effect_matrix(G, predictor, ds, strength=1.0, n_samples=n_samples // 2, seed=seed + 1)
    strongest = eff.matrix.abs().sum(dim=1).argsort(descending=True)[:k]
    out[f"S channels, top {k}"] = float(eff.purity[strongest].mean())
    if n_labelled:
        out.update(supervised(G, predictor, clip, mh, w_samples, n_samples, n_labelled, seed))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", help="zoo ids or checkpoint paths")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--samples", type=int, default=32, help="samples per direction for the effect matrix")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, help="save each model's SeFa effect matrix here (PNG)")
    ap.add_argument("--seeds", default="0",
                    help="measurement seeds, e.g. 0,1,2: each measures again from other samples; the table gives "
                         "the mean and the range, i.e. how far resampling alone moves a figure")
    ap.add_argument("--supervised", action="store_true",
                    help="also the label-guided W directions (InterFaceGAN, conditioned, Jacobian): a reference")
    ap.add_argument("--supervised-samples", type=int, default=4000, help="labelled samples for InterFaceGAN")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(args.threads)
    results: dict[str, list[dict[str, float | str]]] = {}
    for spec in args.models:
        results[spec] = []
        for i, seed in enumerate(seeds):
            results[spec].append(measure(spec, args.k, args.samples, args.plot if i == 0 else None, seed,
                                         args.supervised_samples if args.supervised else 0))
            print(f"{spec} (seed {seed}): " + ", ".join(f"{k} {v:.0%}" for k, v in results[spec][-1].items()),
                  flush=True)
    keys = list(results[args.models[0]][0])

    def cell(runs: list[dict[str, float | str]], key: str) -> str:
        values = [float(r[key]) for r in runs]
        mean = f"{sum(values) / len(values):.0%}"
        return mean if len(values) == 1 else f"{mean} ({min(values):.0%}-{max(values):.0%})"

    print("\n| mean purity (top %d)%s | %s |" % (args.k, f", seeds {args.seeds}: mean (range)" if len(seeds) > 1 else "",
                                              " | ".join(label(s) for s in results)))
    print("|---|" + "---|" * len(results))
    for key in keys:
        print(f"| {key} | " + " | ".join(cell(runs, key) for runs in results.values()) + " |")


if __name__ == "__main__":
    main()
