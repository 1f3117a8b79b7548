"""The shipped built-in generator: loads by id, has the documented shapes, truncates toward w_avg
and draws faces that the built-in attribute predictor recognises."""
import pytest
import torch

import interp
from interp.builtin import load_predictor
from interp.builtin.faces import render_torch, sample_factors


@pytest.fixture(scope="module")
def G():
    return interp.load_generator("faces64")


def test_loads_by_id_with_the_documented_shapes(G):
    assert (G.z_dim, G.w_dim, G.img_resolution) == (128, 128, 64)
    assert G.content_hash() == interp.load_generator("faces64").content_hash()      # deterministic
    with torch.no_grad():
        ws = G.mapping(G.sample_z(3, seed=0))
        img = G.synthesis(ws, noise_mode="const")
    assert ws.shape == (3, G.num_ws, 128) and img.shape == (3, 3, 64, 64)
    assert torch.isfinite(img).all() and img.abs().max() < 2.0
    assert (img.abs() > 1.2).float().mean() < 0.01          # the renders' range [-1, 1], but for a few pixels


def test_truncation_moves_toward_w_avg(G):
    z = G.sample_z(8, seed=1)
    with torch.no_grad():
        w1, w5, w0 = (G.mapping(z, truncation_psi=psi) for psi in (1.0, 0.5, 0.0))
    w_avg = G.mapping.w_avg
    torch.testing.assert_close(w0, w_avg.expand_as(w0))
    torch.testing.assert_close(w5 - w_avg, (w1 - w_avg) * 0.5, rtol=1e-5, atol=1e-6)
    assert (w1 - w_avg).norm(dim=-1).mean() > 1.0          # the tracked mean is not where the samples are


def test_generated_images_are_faces_by_the_predictors_verdict(G):
    """On the judge's scale a sample looks like a render: predictions with real confidence, a spread of
    attributes, and the predictor's features close to those of renders rather than to noise."""
    predictor = load_predictor()
    n = 64
    with torch.no_grad():
        gen = G.synthesis(G.mapping(G.sample_z(n, seed=2), truncation_psi=1.0), noise_mode="const").clamp(-1, 1)
        real, _ = render_torch(sample_factors(n, seed=3))
        noise = torch.rand_like(real) * 2 - 1
        feats = {k: predictor.features(x).mean(0) for k, x in (("gen", gen), ("real", real), ("noise", noise))}
        probs = predictor(gen)
    assert (feats["gen"] - feats["real"]).norm() < 0.5 * (feats["noise"] - feats["real"]).norm()
    p = probs["glasses"]
    assert 0.1 < (p > 0.5).float().mean() < 0.9            # some wear glasses, some do not
    assert ((p < 0.2) | (p > 0.8)).float().mean() > 0.8    # and the predictor is sure about most
    hair = probs["hair_color"].argmax(-1)
    assert len(hair.unique()) >= 3                          # several hair colours
