"""The Explore tab's compute: unsupervised directions (SeFa, GANSpace) named by CLIP, grids, effects.

    ds, note = find_directions(G, "faces64", "sefa", layer_rows(G, "all"), k=6, preset="all",
                               vocabulary=default_vocabulary("faces64"), use_clip=True, psi=0.7)
    sheet = strength_grid(G, recipe, ds.edits([1.0])[0], max_strength=3, n_strengths=5, n_samples=2)
    image, markdown = effects_report(G, ds, psi=0.7)          # built-in model only

Pure functions over the generator and data; no Gradio. ``bench/bench_explore.py`` and the tab use them.
"""
from __future__ import annotations

import io
import torch
from PIL import Image

from interp import diskcache
from interp.directions import DirectionSet
from interp.edit import DirectionEdit, Latent, Recipe, projection_stds, render, rows_text, sample_latents
from interp.imaging import labelled_grid
from interp.methods import effects as effects_mod
from interp.methods import ganspace, naming, sefa
from interp.models.stylegan2 import Generator

__all__ = ["METHODS", "compute_directions", "effects_report", "find_directions", "strength_grid"]

METHODS = {"SeFa": "sefa", "GANSpace": "ganspace"}   # UI label -> method id
GANSPACE_SAMPLES = 10_000        # latents per PCA (cached on disk per model and parameters)
STD_SAMPLES = 2_000              # latents used to measure a SeFa direction's standard deviation
NAMING_SAMPLES = 8               # samples per direction for CLIP naming (both signs)
EFFECT_SAMPLES = 16              # samples per direction for the ground-truth effect matrix


def compute_directions(G: Generator, model_id: str, method: str, rows: tuple[int, ...], k: int,
                       preset: str) -> DirectionSet:
    """SeFa or GANSpace directions with standard deviations and shares, as a DirectionSet."""
    mh = diskcache.model_hash(G)
    if method == "sefa":
        dirs, values = sefa.directions(G, rows, k)
        stds = projection_stds(sample_latents(G, "w", STD_SAMPLES, seed=0), dirs)
        shares = values / sefa.total_value(G, rows)
        params = {"normalize": True, "std_samples": STD_SAMPLES}
    elif method == "ganspace":
        comps = ganspace.fit(G, GANSPACE_SAMPLES, k, seed=0, space="w", layers=rows)
        dirs, values, stds, shares = comps.directions, comps.values, comps.stds, comps.variance_ratio
        params = {"n_samples": GANSPACE_SAMPLES, "seed": 0, "pca_space": "w"}
    else:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS.values())}")
    params["preset"] = preset
    return DirectionSet.create(dirs, values, stds, space="w", layers=rows, method=method, model_id=model_id,
                               model_hash=mh, shares=shares, params=params)


def find_directions(G: Generator, model_id: str, method: str, rows: tuple[int, ...], k: int, preset: str,
                    vocabulary: str, use_clip: bool, psi: float, device: str = "cpu") -> tuple[DirectionSet, str]:
    """Directions plus CLIP names when asked and possible; the note says how they were named."""
    ds = compute_directions(G, model_id, method, rows, k, preset)
    if not use_clip:
        return ds, "CLIP naming is off: the directions keep their index names."
    clip, why = naming.load_paired_clip(model_id, device)
    if clip is None:
        return ds, f"No CLIP is available, so the directions keep their index names: {why}."
    names = naming.name_directions(G, ds, clip, vocabulary, n_samples=NAMING_SAMPLES, truncation_psi=psi)
    labels = [n.signed(text) for n, text in zip(names, naming.distinct_phrases(names))]
    ds = ds.with_names(labels, naming=[n.to_dict() for n in names], clip=why)
    return ds, f"Named with {why} (both signs, {NAMING_SAMPLES} samples per direction)."


@torch.no_grad()
def strength_grid(G: Generator, recipe: Recipe, edit: DirectionEdit, max_strength: float, n_strengths: int,
                  n_samples: int, psi: float = 0.7, cell: int = 128) -> Image.Image:
    """One direction at evenly spaced strengths (columns) on the current image and ``n_samples`` seeds (rows).

    Row 0 is the current image with its edit stack; rows 1.. are seeds 1..n_samples at truncation ``psi``.
    """
    strengths = torch.linspace(-max_strength, max_strength, n_strengths).tolist()
    bases = [recipe] + [Recipe(Latent.from_seed(G, recipe.model_id, s, psi)) for s in range(1, n_samples + 1)]
    imgs = [render(G, b.latent, b.edits + ((edit.with_strength(t),) if t != 0 else ())).cpu()
            for b in bases for t in strengths]                             # rows x cols of [1, 3, H, W]
    col_labels = [f"{t:+.1f} std" if t else "0" for t in strengths]
    row_labels = ["current"] + [f"seed {s}" for s in range(1, n_samples + 1)]
    return labelled_grid(torch.cat(imgs), cols=n_strengths, col_labels=col_labels, row_labels=row_labels, cell=cell)


def effects_report(G: Generator, ds: DirectionSet, psi: float, device: str = "cpu") -> tuple[Image.Image, str]:
    """The ground-truth effect matrix (built-in model) as a heat-map and a Markdown table."""
    from interp.builtin import load_predictor

    predictor = load_predictor(device)
    eff = effects_mod.effect_matrix(G, predictor, ds, strength=1.0, n_samples=EFFECT_SAMPLES, truncation_psi=psi)
    fig = effects_mod.plot_effects(eff, f"{ds.method} on {ds.model_id}, layers {rows_text(ds.layers)}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")                                         # Agg, no GUI backend needed
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    lines = ["| direction | dominant factor | response / std | purity | CLIP name agrees |", "|---|---|---|---|---|"]
    names = naming.stored_names(ds)
    agreement = effects_mod.clip_agreement(names, eff) if len(names) == ds.k else None
    for i, row in enumerate(eff.rows()):
        agree = "" if agreement is None else ("yes" if agreement["per_direction"][i]["agrees"] else "no")
        lines.append(f"| {row['direction']} | {row['dominant']} | {row['response']:+.3f} | {row['purity']:.0%} | {agree} |")
    summary = f"Mean purity {float(eff.purity.mean()):.0%} over {ds.k} directions"
    if agreement is not None:
        summary += (f"; the CLIP name names the dominant true factor for {agreement['factor_agreement']:.0%} of "
                    f"them ({agreement['sign_agreement']:.0%} with the right sign, "
                    f"{agreement['top2_agreement']:.0%} the dominant or runner-up factor); "
                    f"{agreement['n_measurable']} of {ds.k} move a factor by at least "
                    f"{agreement['min_response']:.0%} of its range per std, and the name agrees for "
                    f"{agreement['measurable_agreement']:.0%} of those")
    return image, summary + ".\n\n" + "\n".join(lines)
