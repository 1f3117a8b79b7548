"""Ground truth for directions on the built-in model: what does each direction really change?

The attribute predictor reads every generative factor of the built-in faces from an image. Moving
samples ``strength`` standard deviations both ways along a direction and reading the factors gives
the **effect matrix** [K directions, F factors]: the mean change of each factor per standard
deviation, in units of the factor's range (continuous: (high - low); binary: probability;
categorical: total-variation distance of the mean class probabilities, unsigned). Then per
direction:

- the **dominant factor** (largest absolute response) and
- its **purity**: |dominant response| / sum of |responses| (1: the direction moves one factor only).

:func:`compare_spaces` runs the same method (GANSpace PCA) in Z, W and S and summarises the purity,
answering "which latent space is most disentangled?". :func:`clip_agreement` measures how often
the CLIP name of a direction names its dominant true factor (and the right sign).

    eff = effect_matrix(G, load_predictor(), ds, strength=1.0)
    eff.dominant, eff.purity                    # ['yaw', 'light', ...], tensor([0.81, 0.64, ...])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from interp.directions import DirectionSet
from interp.edit import DirectionEdit, layer_rows, sample_latents, synthesize
from interp.models.stylegan2 import Generator

__all__ = [
    "EffectMatrix",
    "FactorAxisGenerator",
    "SpaceSummary",
    "clip_agreement",
    "compare_spaces",
    "effect_matrix",
    "factor_columns",
    "plot_effects",
]


MIN_RESPONSE = 0.05   # a direction moving no factor by 5% of its range per std "changes nothing measurable"


def _factors():
    from interp.builtin.faces import FACTORS

    return FACTORS


def factor_columns(predictions: Mapping[str, Tensor]) -> Tensor:
    """Predictor outputs -> comparable columns [N, F + extra]: every value in units of its range.

    Continuous factors are divided by their range, binary ones are probabilities, categorical
    ones contribute one probability column per class (in FACTORS order).
    """
    cols = []
    for f in _factors():
        v = predictions[f.name]
        if f.kind == "continuous":
            cols.append((v / (f.high - f.low))[:, None])
        elif f.kind == "binary":
            cols.append(v[:, None])
        else:
            cols.append(v)                                                 # [N, K classes]
    return torch.cat(cols, dim=1)


def _reduce(delta_cols: Tensor) -> Tensor:
    """Mean column changes [C] -> one response per factor [F] (categorical: total variation, unsigned)."""
    out, i = [], 0
    for f in _factors():
        if f.kind == "categorical":
            k = len(f.categories)
            out.append(0.5 * delta_cols[i:i + k].abs().sum())
            i += k
        else:
            out.append(delta_cols[i])
            i += 1
    return torch.stack(out)


@dataclass(frozen=True)
class EffectMatrix:
    matrix: Tensor                 # [K, F] factor change per standard deviation (fraction of the range)
    factors: tuple[str, ...]       # F factor names
    labels: tuple[str, ...]        # K direction labels

    @property
    def magnitude(self) -> Tensor:
        """Total absolute response per direction [K]."""
        return self.matrix.abs().sum(1)

    @property
    def dominant_index(self) -> Tensor:
        return self.matrix.abs().argmax(1)

    @property
    def dominant(self) -> list[str]:
        return [self.factors[i] for i in self.dominant_index.tolist()]

    @property
    def purity(self) -> Tensor:
        """|dominant response| / total absolute response, per direction [K] (in [1/F, 1])."""
        a = self.matrix.abs()
        return a.max(1).values / a.sum(1).clamp_min(1e-12)

    def rows(self) -> list[dict[str, Any]]:
        """One summary dict per direction: label, dominant factor, its signed response, purity, magnitude."""
        idx = self.dominant_index
        return [{"direction": self.labels[k], "dominant": self.factors[int(idx[k])],
                 "response": float(self.matrix[k, idx[k]]), "purity": float(self.purity[k]),
                 "magnitude": float(self.magnitude[k])} for k in range(self.matrix.shape[0])]


@torch.no_grad()
def _predict_columns(predictor, images: Tensor) -> Tensor:
    return factor_columns(predictor(images)).float()


def effect_matrix(G: Generator, predictor: torch.nn.Module, directions: DirectionSet | Sequence[DirectionEdit],
                  strength: float = 1.0, n_samples: int = 32, seed: int = 0, truncation_psi: float = 0.7,
                  batch_size: int = 32, labels: Sequence[str] | None = None) -> EffectMatrix:
    """Effect matrix of directions (a DirectionSet moved ``strength`` stds, or Edits as given).

    Each sample is moved +edit and -edit; the response is the mean change divided by 2 * strength,
    so it reads "change of the factor (fraction of its range) per standard deviation".
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if isinstance(directions, DirectionSet):
        if not strength > 0:
            raise ValueError(f"strength must be positive (standard deviations), got {strength!r}")
        edits = [DirectionEdit(directions.directions[i], directions.space, directions.layers, strength,
                      float(directions.stds[i]), directions.names[i]) for i in range(directions.k)]
        labels = labels or directions.names
    else:
        edits = list(directions)
        if not edits or any(e.strength == 0 for e in edits):
            raise ValueError("give at least one edit, each with a non-zero strength (the step)")
        labels = labels or [e.name or f"#{i}" for i, e in enumerate(edits)]
    if len(labels) != len(edits):
        raise ValueError(f"got {len(labels)} labels for {len(edits)} directions")
    z = G.sample_z(n_samples, seed)                                        # [n, z_dim]
    rows = []
    for e in edits:
        total = None
        for zc in z.split(batch_size):
            with torch.no_grad():
                plus = _predict_columns(predictor, synthesize(G, zc, [e], truncation_psi))
                minus = _predict_columns(predictor, synthesize(G, zc, [e.with_strength(-e.strength)], truncation_psi))
            part = (plus - minus).sum(0)
            total = part if total is None else total + part
        rows.append(_reduce(total / n_samples / (2 * e.strength)))
    names = tuple(f.name for f in _factors())
    return EffectMatrix(torch.stack(rows).cpu(), names, tuple(labels))


class FactorAxisGenerator(torch.nn.Module):
    """A stand-in generator whose W axes *are* the renderer's continuous factors: ground truth by construction.

    ``w[i]`` sets factor ``axes[i]`` through a sigmoid onto its range; binary and categorical factors
    are fixed (no glasses, brown hair). ``synthesis`` renders with ``interp.builtin.render_torch``.
    It has the interface the methods use (``sample_z``, ``mapping``, ``synthesis``, dims), so it
    calibrates the judges: CLIP naming or the effect matrix should recover each axis.
    """

    def __init__(self, size: int = 64, z_scale: float = 0.6) -> None:
        super().__init__()
        self.axes = tuple(f.name for f in _factors() if f.kind == "continuous")
        self.z_dim = self.w_dim = len(self.axes)
        self.num_ws, self.img_resolution, self.size, self.z_scale = 1, size, size, z_scale
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def sample_z(self, n: int, seed: int) -> Tensor:
        return self.z_scale * torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed))

    def mapping(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> Tensor:
        return self.w_avg.lerp(z, truncation_psi)[:, None, :]             # [N, 1, w_dim]

    def synthesis(self, ws: Tensor, noise_mode: str = "const", cache: Any = None) -> Tensor:
        from interp.builtin.faces import render_torch

        w = ws[:, 0].detach().cpu()
        n = w.shape[0]
        f: dict[str, Any] = {"glasses": torch.zeros(n, dtype=torch.long).numpy(),
                             "hair_color": torch.ones(n, dtype=torch.long).numpy()}
        for i, fac in enumerate(f_ for f_ in _factors() if f_.kind == "continuous"):
            f[fac.name] = (fac.low + (fac.high - fac.low) * torch.sigmoid(w[:, i])).numpy()
        return render_torch(f, size=self.size)[0].to(ws.device)          # [N, 3, H, W] in [-1, 1]


# ----------------------------------------------------------------------------------------------------
# Z vs W vs S


@dataclass(frozen=True)
class SpaceSummary:
    space: str                     # 'z', 'w', 's' (GANSpace PCA there) or 'sefa-w'
    mean_purity: float             # mean purity of the top-k directions
    distinct_factors: int          # how many different dominant factors the top-k directions cover
    effects: EffectMatrix

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "mean_purity": self.mean_purity, "distinct_factors": self.distinct_factors,
                "dominant": self.effects.dominant, "purity": [round(float(p), 4) for p in self.effects.purity]}


def compare_spaces(G: Generator, predictor: torch.nn.Module, k: int = 8, n_pca: int = 5000, n_samples: int = 32,
                   strength: float = 1.0, seed: int = 0, truncation_psi: float = 0.7, include_sefa: bool = True,
                   model_id: str = "", cache: bool = True) -> list[SpaceSummary]:
    """GANSpace PCA in Z, W and S (every layer), plus SeFa in W: mean purity and coverage of the top-k."""
    from interp.diskcache import model_hash
    from interp.methods import ganspace, sefa
    from interp.edit import projection_stds

    rows = layer_rows(G, "all")
    mh = model_hash(G)
    sets = []
    for space in ("z", "w", "s"):
        c = ganspace.fit(G, n_pca, k, seed, space=space, layers="all", cache=cache)
        sets.append((space, DirectionSet.create(c.directions, c.values, c.stds, space=space, layers=rows,
                                                method="ganspace", model_id=model_id, model_hash=mh)))
    if include_sefa:
        dirs, values = sefa.directions(G, "all", k)
        stds = projection_stds(sample_latents(G, "w", min(n_pca, 4000), seed), dirs)
        sets.append(("sefa-w", DirectionSet.create(dirs, values, stds, space="w", layers=rows, method="sefa",
                                                   model_id=model_id, model_hash=mh)))
    out = []
    for space, ds in sets:
        eff = effect_matrix(G, predictor, ds, strength, n_samples, seed, truncation_psi)
        out.append(SpaceSummary(space, float(eff.purity.mean()), len(set(eff.dominant)), eff))
    return out


# ----------------------------------------------------------------------------------------------------
# CLIP names vs truth


def clip_agreement(names: Sequence[Any], effects: EffectMatrix, phrase_factors: Mapping[str, str] | None = None,
                   min_response: float = MIN_RESPONSE) -> dict[str, Any]:
    """How often a direction's CLIP name describes its dominant true factor (and with the right sign).

    names: DirectionName objects (``phrase``, ``sign``), one per row of ``effects``. A name whose
    phrase maps to no factor counts as a disagreement. The sign agrees when the phrase's factor
    rises on the side the name says (categorical factors: the factor alone decides).
    Also reported: ``top2_agreement`` (the name is the dominant or the runner-up factor) and
    ``measurable_agreement`` over the directions whose dominant response is at least
    ``min_response`` per standard deviation (below it the "dominant" factor is measurement noise).
    """
    if phrase_factors is None:
        from interp.methods.naming import BUILTIN_PHRASE_FACTORS as phrase_factors
    if len(names) != effects.matrix.shape[0]:
        raise ValueError(f"got {len(names)} names for {effects.matrix.shape[0]} directions")
    kinds = {f.name: f.kind for f in _factors()}
    per = []
    for k, name in enumerate(names):
        order = effects.matrix[k].abs().argsort(descending=True).tolist()
        true, runner_up = effects.factors[order[0]], effects.factors[order[1]] if len(order) > 1 else None
        named = phrase_factors.get(name.phrase)
        response = float(effects.matrix[k, order[0]])
        same = named == true
        per.append({"direction": effects.labels[k], "name": name.phrase, "sign": name.sign, "named_factor": named,
                    "true_factor": true, "runner_up": runner_up, "response": response,
                    "measurable": abs(response) >= min_response, "agrees": same, "top2": same or named == runner_up,
                    "sign_agrees": same and (kinds[true] == "categorical" or (response > 0) == (name.sign > 0))})

    def share(rows: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in rows) / len(rows) if rows else 0.0

    measurable = [r for r in per if r["measurable"]]
    return {"n": len(per), "factor_agreement": share(per, "agrees"), "sign_agreement": share(per, "sign_agrees"),
            "top2_agreement": share(per, "top2"), "n_measurable": len(measurable),
            "measurable_agreement": share(measurable, "agrees"), "min_response": min_response,
            "per_direction": per}


# ----------------------------------------------------------------------------------------------------
# Figure


def plot_effects(effects: EffectMatrix, title: str = "Ground-truth effect per standard deviation"):
    """A matplotlib Figure: heatmap directions x factors (red up, blue down), purity on the right."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    m = effects.matrix.numpy()
    k, f = m.shape
    fig = Figure(figsize=(1.0 + 0.62 * f + 1.6, 0.9 + 0.42 * k), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    vmax = max(float(abs(m).max()), 1e-6)
    im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(f), effects.factors, rotation=45, ha="right", fontsize=8)
    purity = effects.purity.tolist()
    ax.set_yticks(range(k), [f"{lab}  ({p:.0%})" for lab, p in zip(effects.labels, purity)], fontsize=8)
    dom = effects.dominant_index.tolist()
    for i in range(k):
        ax.add_patch(plt.Rectangle((dom[i] - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, ec="black"))
    ax.set_title(title + "  (label: purity; box: dominant factor)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02).ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
