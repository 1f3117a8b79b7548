"""SeFa: closed-form factorization of latent semantics (Shen & Zhou, CVPR 2021).

Every style layer maps W to its style with an affine map ``s = A w + b``. A unit move ``n`` in W
changes the styles by ``A n``, so the directions that change the styles most are the top
eigenvectors of ``A^T A``, with ``A`` the affine weights of the chosen layers stacked
row-wise. No sampling, no training: milliseconds even for a 1024x1024 generator.

    dirs, values = sefa.directions(G, "coarse", k=8)      # [8, w_dim] orthonormal, [8] descending

As in the paper's official code, each output channel's weight row is normalised to unit length
before the factorization (``normalize=True``), so wide layers do not dominate by scale alone.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

from interp.edit import resolve_layers, style_layers_for_rows
from interp.models.stylegan2 import Generator

__all__ = ["affine_weights", "directions", "factorize", "total_value"]


def affine_weights(G: Generator, layers: str | Iterable[int] | Iterable[str] | None = "all") -> Tensor:
    """The stacked affine weights [sum C, w_dim] of the style layers fed by the chosen ws rows."""
    rows = resolve_layers(G, layers)
    mats = []
    for name in style_layers_for_rows(G, rows):
        fc = G.synthesis.layer(name).affine
        mats.append(fc.weight.detach().to(torch.float64) * fc.weight_gain)   # [C, w_dim]
    return torch.cat(mats, dim=0)                                          # [sum C, w_dim]


def factorize(A: Tensor, k: int, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """Top-k eigenvectors [k, D] (rows, unit length) and eigenvalues [k] of ``A^T A`` for A [M, D].

    Signs are fixed so that each direction's largest-magnitude coordinate is positive.
    """
    if A.ndim != 2:
        raise ValueError(f"A must be a matrix [M, D], got shape {list(A.shape)}")
    D = A.shape[1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= D:
        raise ValueError(f"k must be an integer between 1 and the latent dimension {D}, got {k!r}")
    A = A.to(torch.float64)
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(A.T @ A)                          # ascending; columns
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k].T         # [k], [k, D]
    idx = vectors.abs().argmax(dim=1)
    signs = vectors.gather(1, idx[:, None]).sign()
    signs[signs == 0] = 1
    return (vectors * signs).float(), values.clamp_min(0).float()


def directions(G: Generator, layers: str | Iterable[int] | Iterable[str] | None = "all", k: int = 10,
               normalize: bool = True) -> tuple[Tensor, Tensor]:
    """SeFa directions [K, w_dim] (orthonormal rows) and their eigenvalues [K], largest first.

    layers: a preset (``all``, ``coarse``, ``middle``, ``fine``), ws rows, or style layer names;
    the affine weights of every style layer fed by those rows are factorized together.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= G.w_dim:
        raise ValueError(f"k must be an integer between 1 and w_dim={G.w_dim}, got {k!r}")
    return factorize(affine_weights(G, layers), k, normalize=normalize)


def total_value(G: Generator, layers: str | Iterable[int] | Iterable[str] | None = "all",
                normalize: bool = True) -> float:
    """Sum of all eigenvalues (the trace of A^T A): divide ``values`` by it for each direction's share."""
    A = affine_weights(G, layers)
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float(A.square().sum())
