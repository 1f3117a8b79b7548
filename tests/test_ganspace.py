"""GANSpace: PCA recovers planted axes, a planted low-rank W, the disk cache and the feature variant."""
from __future__ import annotations

import copy

import pytest
import torch

from interp.methods import ganspace


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pca_recovers_planted_axes():
    gen = torch.Generator().manual_seed(0)
    D, r, n = 24, 3, 4000
    Q, _ = torch.linalg.qr(torch.randn(D, r, generator=gen))              # planted axes [D, r]
    sigma = torch.tensor([4.0, 2.0, 1.0])
    x = torch.randn(n, r, generator=gen) * sigma @ Q.T + 5.0              # [n, D], offset mean
    x += 1e-3 * torch.randn(n, D, generator=gen)
    axes, variances, ratio, mean = ganspace.pca(x, k=r)
    for i in range(r):
        assert abs(float(axes[i] @ Q[:, i])) > 0.999
    assert torch.allclose(variances, sigma**2, rtol=0.1)
    assert float(ratio.sum()) > 0.999
    assert torch.allclose(mean, torch.full((D,), 5.0), atol=0.2)
    with pytest.raises(ValueError, match="k must be an integer between 1 and"):
        ganspace.pca(x, k=D + 1)


def test_planted_low_rank_w_is_recovered(tiny_generator, cache_dir):
    G = copy.deepcopy(tiny_generator)
    gen = torch.Generator().manual_seed(2)
    r = 3
    Q, _ = torch.linalg.qr(torch.randn(G.w_dim, r, generator=gen))        # W varies only in span(Q)
    R = torch.randn(r, G.w_dim, generator=gen)
    R /= R.norm(dim=1, keepdim=True)
    last = getattr(G.mapping, f"fc{G.mapping.num_layers - 1}")
    with torch.no_grad():
        last.weight.copy_(Q @ torch.diag(torch.tensor([3.0, 2.0, 1.0])) @ R / last.weight_gain)
        last.bias.fill_(100.0 / last.bias_gain)                          # pre-activations > 0: the lrelu is linear
    comps = ganspace.fit(G, n_samples=2000, k=5, seed=0, space="w")
    in_span = (comps.directions[:r] @ Q).norm(dim=1)                     # length of the projection on span(Q)
    assert (in_span > 0.999).all()
    assert float(comps.variance_ratio[:r].sum()) > 0.999
    assert comps.values[r:].max() < 1e-4 * comps.values[0]
    assert torch.allclose(comps.stds, comps.values.sqrt().clamp_min(1e-8))
    assert torch.allclose(comps.directions @ comps.directions.T, torch.eye(5), atol=1e-5)


def test_disk_cache_hits_and_misses(tiny_generator, cache_dir, monkeypatch):
    G = tiny_generator
    first = ganspace.fit(G, n_samples=300, k=4, seed=1)
    files = list((cache_dir / "ganspace").glob("*.safetensors"))
    assert len(files) == 1

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    real = ganspace._compute
    monkeypatch.setattr(ganspace, "_compute", boom)
    second = ganspace.fit(G, n_samples=300, k=4, seed=1)
    assert torch.equal(first.directions, second.directions) and torch.equal(first.stds, second.stds)
    with pytest.raises(AssertionError, match="recomputed"):
        ganspace.fit(G, n_samples=300, k=4, seed=2)                       # another seed: another key
    with pytest.raises(AssertionError, match="recomputed"):
        ganspace.fit(G, n_samples=300, k=4, seed=1, cache=False)          # cache off: always computed
    monkeypatch.setattr(ganspace, "_compute", real)
    files[0].write_bytes(b"garbage")                                       # a damaged entry is a miss
    third = ganspace.fit(G, n_samples=300, k=4, seed=1)
    assert torch.equal(first.directions, third.directions)
    dirs, values = ganspace.directions(G, 300, 4, 1)
    assert torch.equal(dirs, first.directions) and torch.equal(values, first.values)


def test_style_and_feature_variants(tiny_generator, cache_dir):
    G = tiny_generator
    s = ganspace.fit(G, n_samples=400, k=3, seed=0, space="s", layers="fine")
    from interp.edit import latent_dim, layer_rows

    assert s.directions.shape == (3, latent_dim(G, "s", layer_rows(G, "fine"))) and s.space == "s"
    f = ganspace.fit(G, n_samples=300, k=3, seed=0, space="features", feature_layer="b8.conv1")
    assert f.space == "w" and f.directions.shape == (3, G.w_dim)
    assert torch.allclose(f.directions.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (f.stds > 0).all() and (f.values[:-1] >= f.values[1:]).all()
    # the regressed direction is the W move that best explains the top feature axis: moving W along it
    # shifts the layer's features mostly along that axis
    from interp.nethook import Trace

    feats_axes, *_ = ganspace.pca(ganspace._layer_features(G, "b8.conv1", 300, 0, 1.0)[1], 3)
    with torch.no_grad():
        ws = G.mapping(G.sample_z(64, 5))
        outs = []
        for step in (-1.0, 1.0):
            with Trace(G.synthesis, "b8.conv1", stop=True) as t:
                G.synthesis(ws + step * f.stds[0] * f.directions[0])
            outs.append(t.output.flatten(1))
    change = (outs[1] - outs[0]).mean(0)
    coords = (change @ feats_axes.T).abs()
    assert int(coords.argmax()) == 0


def test_bad_inputs(tiny_generator, cache_dir):
    G = tiny_generator
    with pytest.raises(ValueError, match="unknown GANSpace space 'x'; allowed: w, z, s, features"):
        ganspace.fit(G, 100, 3, space="x")
    with pytest.raises(ValueError, match="k must be an integer between 1 and 16"):
        ganspace.fit(G, 100, 17)
    with pytest.raises(ValueError, match="needs feature_layer"):
        ganspace.fit(G, 100, 3, space="features")
    with pytest.raises(ValueError, match="unknown feature layer"):
        ganspace.fit(G, 100, 3, space="features", feature_layer="b9.conv1")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        ganspace.fit(G, 1, 1)
