"""SeFa: orthonormal eigenvectors of the stacked affine weights; a planted decomposition is recovered."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from interp.methods import sefa
from interp.edit import layer_rows, style_layers_for_rows


def _match_up_to_sign(found: torch.Tensor, planted: torch.Tensor) -> float:
    """Largest deviation between rows of found and planted after flipping signs to agree."""
    signs = torch.sign((found * planted).sum(1, keepdim=True))
    return float((found * signs - planted).abs().max())


def test_directions_are_orthonormal_descending_eigenvectors(tiny_generator):
    G = tiny_generator
    dirs, values = sefa.directions(G, "all", k=G.w_dim)
    assert dirs.shape == (G.w_dim, G.w_dim) and values.shape == (G.w_dim,)
    assert torch.allclose(dirs @ dirs.T, torch.eye(G.w_dim), atol=1e-5)
    assert (values[:-1] >= values[1:]).all()
    # against an independent computation: SVD of the row-normalised stacked weights (numpy, float64)
    A = np.concatenate([(G.synthesis.layer(n).affine.weight * G.synthesis.layer(n).affine.weight_gain).detach().numpy()
                        for n in G.style_layers]).astype(np.float64)
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    _, s, vt = np.linalg.svd(A, full_matrices=False)
    assert np.allclose(values.numpy(), s**2, rtol=1e-4)
    assert _match_up_to_sign(dirs[:5], torch.from_numpy(vt[:5]).float()) < 1e-4
    # A^T A n = lambda n
    AtA = torch.from_numpy(A.T @ A).float()
    assert torch.allclose(dirs @ AtA, values[:, None] * dirs, atol=1e-3)
    assert sefa.total_value(G, "all") == pytest.approx(A.shape[0], rel=1e-6)  # unit rows: trace = row count


def test_planted_decomposition_is_recovered(tiny_generator):
    G = copy.deepcopy(tiny_generator)
    rows = layer_rows(G, "coarse")
    names = style_layers_for_rows(G, rows)
    sizes = [G.synthesis.layer(n).affine.weight.shape[0] for n in names]
    gen = torch.Generator().manual_seed(1)
    D = G.w_dim
    V, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))     # planted axes (columns)
    U, _ = torch.linalg.qr(torch.randn(sum(sizes), D, generator=gen, dtype=torch.float64))
    S = torch.linspace(5.0, 0.5, D, dtype=torch.float64)                              # distinct singular values
    A = U @ torch.diag(S) @ V.T                                                       # [sum C, D]
    with torch.no_grad():
        for name, block in zip(names, A.split(sizes)):
            fc = G.synthesis.layer(name).affine
            fc.weight.copy_((block / fc.weight_gain).float())
        # layers outside the range must not matter
        G.synthesis.layer(G.style_layers[-1]).affine.weight.mul_(100)
    dirs, values = sefa.directions(G, "coarse", k=4, normalize=False)
    assert torch.allclose(values.double(), S[:4] ** 2, rtol=1e-4)
    assert _match_up_to_sign(dirs, V.T[:4].float()) < 1e-4
    # the same rows given as style layer names or as row numbers give the same answer
    dirs2, _ = sefa.directions(G, names, k=4, normalize=False)
    dirs3, _ = sefa.directions(G, list(rows), k=4, normalize=False)
    assert torch.allclose(dirs, dirs2) and torch.allclose(dirs, dirs3)


def test_sign_convention_is_deterministic(tiny_generator):
    dirs, _ = sefa.directions(tiny_generator, "middle", k=3)
    idx = dirs.abs().argmax(1)
    assert (dirs.gather(1, idx[:, None]) > 0).all()
    again, _ = sefa.directions(tiny_generator, "middle", k=3)
    assert torch.equal(dirs, again)


def test_bad_inputs(tiny_generator):
    G = tiny_generator
    with pytest.raises(ValueError, match=f"k must be an integer between 1 and w_dim={G.w_dim}"):
        sefa.directions(G, "all", k=G.w_dim + 1)
    with pytest.raises(ValueError, match="k must be"):
        sefa.directions(G, "all", k=0)
    with pytest.raises(ValueError, match="unknown layer range 'top'; allowed: all, coarse, middle, fine, custom"):
        sefa.directions(G, "top", k=2)
    with pytest.raises(ValueError, match="unknown style layer"):
        sefa.directions(G, ["b4.conv9"], k=2)
    with pytest.raises(ValueError, match="out of range"):
        sefa.directions(G, [0, G.num_ws], k=2)
