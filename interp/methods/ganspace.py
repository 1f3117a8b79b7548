"""GANSpace: principal components of sampled latents (Härkönen et al., NeurIPS 2020).

Sample ``n_samples`` latents, run PCA (scikit-learn), keep the top ``k`` axes. The spaces:

- ``w`` (default): PCA of W = mapping(z); the paper's StyleGAN recipe.
- ``z``: PCA of Z (isotropic by construction; a baseline for the Z/W/S comparison).
- ``s``: PCA of StyleSpace, the concatenated styles of the layers fed by ``layers``.
- ``features``: PCA of one synthesis layer's activations (flattened), each principal axis
  regressed back to W by least squares (the paper's recipe for BigGAN); directions are in W.

Results are cached on disk (``interp.diskcache``) per model content hash and parameters::

    dirs, variances = ganspace.directions(G, n_samples=10000, k=10, seed=0)
    comps = ganspace.fit(G, 10000, 10, 0, space="s", layers="fine")   # everything, incl. stds

The computation splits in two for ``python -m interp.precompute ganspace`` (many processes):
:func:`block_samples` samples any block of the ``n_samples`` latents (blocks starting at multiples of
``SAMPLE_BATCH`` / ``FEATURE_BATCH`` give the same numbers as one pass), :func:`from_samples` turns
all of them into the cache entry that :func:`fit` stores under :func:`cache_entry`'s key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import Tensor

from interp import diskcache
from interp.edit import latent_dim, projection_stds, resolve_layers, style_layers_for_rows
from interp.models.stylegan2 import Generator
from interp.nethook import Trace

__all__ = ["PCA_SPACES", "Components", "block_samples", "cache_entry", "directions", "fit", "from_samples", "pca"]

PCA_SPACES = ("w", "z", "s", "features")
CACHE_NAMESPACE = "ganspace"
CACHE_VERSION = 1
MAX_FEATURE_VALUES = 2 * 10**8   # n_samples x features floats held in memory for the feature variant (0.8 GB)
SAMPLE_BATCH = 4096              # latents per mapping call (z / w / s)
FEATURE_BATCH = 256              # latents per synthesis call ('features')


@dataclass(frozen=True)
class Components:
    """PCA result: directions live in ``space`` (``w`` for the feature variant)."""

    directions: Tensor       # [K, D] unit rows, sign: largest coordinate positive
    values: Tensor           # [K] variance along each axis (for 'features': of the feature PCA)
    variance_ratio: Tensor   # [K] share of the total variance
    stds: Tensor             # [K] std of the sampled latents projected on each direction (1 edit unit)
    mean: Tensor             # [D] mean latent
    space: str               # 'z', 'w' or 's' (where the directions live)
    rows: tuple[int, ...]    # ws rows (for 's': the layers whose styles were used)


def _fix_signs(vectors: Tensor) -> Tensor:
    idx = vectors.abs().argmax(dim=1)
    signs = vectors.gather(1, idx[:, None]).sign()
    signs[signs == 0] = 1
    return vectors * signs


def pca(samples: Tensor, k: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PCA of samples [N, D]: axes [k, D] (unit rows), variances [k], variance ratios [k], mean [D]."""
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    if samples.ndim != 2:
        raise ValueError(f"samples must be a matrix [N, D], got shape {list(samples.shape)}")
    n, d = samples.shape
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= min(n, d):
        raise ValueError(f"k must be an integer between 1 and min(n_samples, dimension) = {min(n, d)}, got {k!r}")
    x = samples.detach().cpu().numpy()
    # Exact SVD for small problems; randomized (seeded) when only a few axes of a wide matrix are wanted.
    solver = "full" if d <= 2048 or k > d // 4 else "randomized"
    # One BLAS thread: OpenBLAS threads next to torch's OpenMP pool oversubscribe the cores (50x slower here).
    with threadpool_limits(limits=1, user_api="blas"):
        model = PCA(n_components=k, svd_solver=solver, random_state=seed).fit(x)
    axes = _fix_signs(torch.from_numpy(np.ascontiguousarray(model.components_)).float())   # [k, D]
    return (axes, torch.from_numpy(model.explained_variance_).float(),
            torch.from_numpy(model.explained_variance_ratio_).float(), torch.from_numpy(model.mean_).float())


def _layer_features(G: Generator, feature_layer: str, n: int, seed: int, truncation_psi: float,
                    batch_size: int = FEATURE_BATCH) -> tuple[Tensor, Tensor]:
    """W latents [n, w_dim] and the flattened activations [n, C*H*W] of one synthesis layer."""
    return _features_of(G, feature_layer, G.sample_z(n, seed), truncation_psi, batch_size)


@torch.no_grad()
def _features_of(G: Generator, feature_layer: str, z: Tensor, truncation_psi: float,
                 batch_size: int = FEATURE_BATCH) -> tuple[Tensor, Tensor]:
    """W latents [n, w_dim] and the flattened activations [n, C*H*W] of one synthesis layer for z [n, z_dim]."""
    if feature_layer not in G.ws_index:
        raise ValueError(f"unknown feature layer {feature_layer!r}; allowed: {', '.join(G.style_layers)}")
    ws_all, feats = [], []
    for chunk in z.split(batch_size):
        ws = G.mapping(chunk, truncation_psi=truncation_psi)              # [B, num_ws, w_dim]
        with Trace(G.synthesis, feature_layer, stop=True, detach=True) as t:
            G.synthesis(ws, noise_mode="const")
        ws_all.append(ws[:, 0].cpu())
        feats.append(t.output.flatten(1).cpu())                          # [B, C*H*W]
    return torch.cat(ws_all), torch.cat(feats)


@torch.no_grad()
def _latents(G: Generator, space: str, z: Tensor, rows: tuple[int, ...], truncation_psi: float) -> Tensor:
    """z [n, z_dim] in ``space`` ('z', 'w', or 's': the styles of the rows' layers), as ``sample_latents``."""
    if space == "z":
        return z.cpu()
    names = style_layers_for_rows(G, rows)
    out = []
    for chunk in z.split(SAMPLE_BATCH):
        w = G.mapping(chunk, truncation_psi=truncation_psi)[:, 0]          # [B, w_dim]
        out.append(w.cpu() if space == "w" else
                   torch.cat([G.synthesis.layer(name).affine(w) for name in names], dim=1).cpu())
    return torch.cat(out)


def block_samples(G: Generator, n_samples: int, seed: int, space: str, rows: tuple[int, ...],
                  feature_layer: str | None, truncation_psi: float, start: int, stop: int) -> dict[str, Tensor]:
    """Samples ``start .. stop`` of the ``n_samples`` latents :func:`fit` analyses.

    ``{"samples": [stop - start, D]}`` in ``space``; for ``features`` the flattened layer
    activations, with their W latents under ``"w"``. Concatenated in order, the blocks are what
    :func:`from_samples` needs; blocks starting at multiples of ``SAMPLE_BATCH`` (``FEATURE_BATCH``
    for features) are computed in the same batches as one pass.
    """
    if not 0 <= start < stop <= n_samples:
        raise ValueError(f"need 0 <= start < stop <= n_samples = {n_samples}, got {start} .. {stop}")
    z = G.sample_z(n_samples, seed)[start:stop]                          # [B, z_dim]
    if space == "features":
        w, feats = _features_of(G, feature_layer, z, truncation_psi)
        return {"samples": feats, "w": w}
    return {"samples": _latents(G, space, z, rows, truncation_psi)}


def from_samples(samples: dict[str, Tensor], k: int, seed: int, space: str) -> dict[str, Tensor]:
    """The tensors :func:`fit` caches, from all the samples (:func:`block_samples` of the whole range)."""
    if space == "features":
        w, feats = samples["w"], samples["samples"]
        axes, values, ratio, _ = pca(feats, k, seed)
        coords = (feats - feats.mean(0)) @ axes.T                          # [N, k] feature PCA coordinates
        wc = (w - w.mean(0)).double()                                      # [N, w_dim]
        # Least squares: W - mean ~= coords @ U; U[i] is the W move that goes with one unit along axis i.
        U = torch.linalg.lstsq(coords.double(), wc).solution.float()       # [k, w_dim]
        dirs = _fix_signs(U / U.norm(dim=1, keepdim=True).clamp_min(1e-12))
        stds = projection_stds(w, dirs)
        mean = w.mean(0)
    else:
        dirs, values, ratio, mean = pca(samples["samples"], k, seed)
        stds = values.sqrt().clamp_min(1e-8)
    return {"directions": dirs, "values": values, "variance_ratio": ratio, "stds": stds, "mean": mean}


def _compute(G: Generator, n_samples: int, k: int, seed: int, space: str, rows: tuple[int, ...],
             feature_layer: str | None, truncation_psi: float) -> dict[str, Tensor]:
    samples = block_samples(G, n_samples, seed, space, rows, feature_layer, truncation_psi, 0, n_samples)
    return from_samples(samples, k, seed, space)


def cache_entry(G: Generator, n_samples: int = 10000, k: int = 10, seed: int = 0, space: str = "w",
                layers: str | Iterable[int] | Iterable[str] | None = "all", feature_layer: str | None = None,
                truncation_psi: float = 1.0) -> tuple[str, dict[str, str], tuple[int, ...]]:
    """(cache key, metadata, rows) of :func:`fit`'s entry for these arguments (checked as fit checks them)."""
    if space not in PCA_SPACES:
        raise ValueError(f"unknown GANSpace space {space!r}; allowed: {', '.join(PCA_SPACES)}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    rows = resolve_layers(G, layers)
    if space == "features":
        if feature_layer is None:
            raise ValueError(f"space 'features' needs feature_layer; allowed: {', '.join(G.style_layers)}")
        if feature_layer not in G.ws_index:
            raise ValueError(f"unknown feature layer {feature_layer!r}; allowed: {', '.join(G.style_layers)}")
        layer = G.synthesis.layer(feature_layer)
        res = int(feature_layer.split(".")[0][1:])                         # "b16.conv1" -> 16
        channels = layer.weight.shape[0]
        if n_samples * channels * res * res > MAX_FEATURE_VALUES:
            raise ValueError(f"{n_samples} samples of {feature_layer} ({channels}x{res}x{res} values each) need more "
                             f"than {MAX_FEATURE_VALUES * 4 / 1e9:.1f} GB; use fewer samples or an earlier layer")
        dim = G.w_dim
    else:
        if feature_layer is not None:
            raise ValueError("feature_layer is only used with space 'features'")
        dim = latent_dim(G, space, rows)
    upper = min(n_samples, dim) if space != "features" else min(n_samples, G.w_dim)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= upper:
        raise ValueError(f"k must be an integer between 1 and {upper} (min of n_samples and the dimension), got {k!r}")
    params = {"version": CACHE_VERSION, "n_samples": n_samples, "k": k, "seed": seed, "space": space,
              "rows": list(rows), "feature_layer": feature_layer, "truncation_psi": float(truncation_psi)}
    return diskcache.make_key(diskcache.model_hash(G), params), {"params": str(params)}, rows


def fit(G: Generator, n_samples: int = 10000, k: int = 10, seed: int = 0, space: str = "w",
        layers: str | Iterable[int] | Iterable[str] | None = "all", feature_layer: str | None = None,
        truncation_psi: float = 1.0, cache: bool = True) -> Components:
    """PCA directions with everything an edit needs; see the module docstring for the spaces.

    layers:        for ``s`` the rows whose style layers are concatenated; otherwise recorded as the
                   rows an edit with these directions should apply to.
    feature_layer: the style layer (``b16.conv1``, ...) whose output is analysed for ``features``.
    cache:         read / write the on-disk cache (``INTERP_CACHE_DIR`` or ``~/.cache/interp``).
    """
    key, metadata, rows = cache_entry(G, n_samples, k, seed, space, layers, feature_layer, truncation_psi)
    out = diskcache.cached(CACHE_NAMESPACE, key,
                           lambda: _compute(G, n_samples, k, seed, space, rows, feature_layer, truncation_psi),
                           metadata=metadata, enabled=cache)
    return Components(out["directions"], out["values"], out["variance_ratio"], out["stds"], out["mean"],
                      "w" if space == "features" else space, rows)


def directions(G: Generator, n_samples: int = 10000, k: int = 10, seed: int = 0, **kwargs) -> tuple[Tensor, Tensor]:
    """GANSpace directions [K, D] (orthonormal rows for z/w/s) and their variances [K], largest first.

    Keyword arguments are those of :func:`fit` (space, layers, feature_layer, truncation_psi, cache).
    """
    comps = fit(G, n_samples, k, seed, **kwargs)
    return comps.directions, comps.values
