"""The generator's public contract on tiny random-init models (golden parity lives in test_loaders.py)."""
import json

import pytest
import torch

from interp.models.stylegan2 import (Generator, GeneratorConfig, SynthesisCache, layer_flops, setup_filter,
                                     upfirdn2d, upsample2d)

TINY = GeneratorConfig(z_dim=16, w_dim=24, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32,
                       conv_clamp=256)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    g = Generator(TINY).eval()
    with torch.no_grad():                       # non-zero noise and w_avg so that both are exercised
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
        g.mapping.w_avg.normal_()
    return g


def test_shapes_and_layer_names(G):
    z = torch.randn(3, 16)
    ws = G.mapping(z)
    assert (G.z_dim, G.w_dim, G.num_ws, G.img_resolution) == (16, 24, 8, 32)
    assert ws.shape == (3, 8, 24)
    img = G.synthesis(ws)
    assert img.shape == (3, 3, 32, 32) and torch.isfinite(img).all()
    styles = G.styles(ws)
    assert list(styles) == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1",
                            "b16.torgb", "b32.conv0", "b32.conv1", "b32.torgb"]
    assert styles["b8.conv0"].shape == (3, 32)                      # in_channels of b8.conv0 = channels at 4
    assert styles["b32.conv1"].shape == (3, 8)                      # 256 // 32
    assert G.ws_index["b4.torgb"] == 1 and G.ws_index["b8.conv0"] == 1 and G.ws_index["b32.torgb"] == 7


def test_state_dict_uses_nvidia_names(G):
    keys = set(G.state_dict())
    for k in ["mapping.fc0.weight", "mapping.w_avg", "synthesis.b4.const", "synthesis.b4.conv1.affine.weight",
              "synthesis.b8.conv0.noise_const", "synthesis.b8.conv0.noise_strength", "synthesis.b32.torgb.bias",
              "synthesis.b16.resample_filter"]:
        assert k in keys
    assert G.state_dict()["synthesis.b4.const"].shape == (32, 4, 4)


def test_truncation_moves_toward_w_avg(G):
    z = torch.randn(4, 16)
    ws1 = G.mapping(z)
    ws0 = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
    ws_half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(ws_half, G.mapping.w_avg + 0.5 * (ws1 - G.mapping.w_avg), atol=1e-6)
    ws_cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=3)
    assert torch.allclose(ws_cut[:, :3], ws0[:, :3]) and torch.equal(ws_cut[:, 3:], ws1[:, 3:])


def test_noise_modes(G):
    ws = G.mapping(torch.randn(2, 16))
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(const_a, const_b)
    assert not torch.allclose(const_a, G.synthesis(ws, noise_mode="none"))
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random"))
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        G.synthesis(ws, noise_mode="fixed")


def test_synthesis_from_styles_equals_synthesis(G):
    ws = G.mapping(torch.randn(2, 16))
    assert torch.equal(G.synthesis_from_styles(G.styles(ws)), G.synthesis(ws))
    styles = G.styles(ws)
    styles["b16.conv1"] = styles["b16.conv1"] + 1.0
    assert not torch.allclose(G.synthesis_from_styles(styles), G.synthesis(ws))


@pytest.mark.parametrize("k, reused, features_reused", [(1, 0, 1), (2, 1, 0), (3, 1, 1), (4, 2, 0), (7, 3, 1)])
def test_incremental_synthesis_equals_full_pass(G, k, reused, features_reused):
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 16))
        cache = SynthesisCache()
        G.synthesis(ws, cache=cache)
        assert cache.hits == 0
        edited = ws.clone()
        edited[:, k:] += 0.7 * torch.randn(24)
        incremental = G.synthesis(edited, cache=cache)
        assert cache.hits == reused                 # blocks whose style inputs all come from ws[:, :k]
        assert cache.feature_hits == features_reused    # ws[:, k] feeds the ToRGB of the next block only
        assert torch.allclose(incremental, G.synthesis(edited), atol=1e-6)
        # Going back to the original still gives the original image.
        assert torch.allclose(G.synthesis(ws, cache=cache), G.synthesis(ws), atol=1e-6)


def test_cache_invalidated_by_batch_size_and_random_noise(G):
    with torch.no_grad():
        cache = SynthesisCache()
        ws = G.mapping(torch.randn(2, 16))
        G.synthesis(ws, cache=cache)
        ws3 = G.mapping(torch.randn(3, 16))
        assert torch.allclose(G.synthesis(ws3, cache=cache), G.synthesis(ws3), atol=1e-6)
        hits = cache.hits
        G.synthesis(ws3, noise_mode="random", cache=cache)
        assert cache.hits == hits and not cache.entries


def test_cache_is_not_shared_between_models(G):
    with torch.no_grad():
        other = Generator(TINY).eval()
        other.load_state_dict(G.state_dict())
        other.synthesis.b32.conv1.bias.add_(1.0)
        ws = G.mapping(torch.randn(1, 16))
        cache = SynthesisCache()
        G.synthesis(ws, cache=cache)
        assert torch.allclose(other.synthesis(ws, cache=cache), other.synthesis(ws), atol=1e-6)


def test_hooked_blocks_are_not_cached(G):
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 16))
        cache = SynthesisCache()
        handle = G.synthesis.b16.conv1.register_forward_hook(lambda m, i, o: o * 0)
        try:
            hooked = G.synthesis(ws, cache=cache)
        finally:
            handle.remove()
        assert len(cache.entries) == 2                        # b4 and b8 only: the hooked block and later are not
        clean = G.synthesis(ws, cache=cache)
        assert torch.allclose(clean, G.synthesis(ws), atol=1e-6)
        assert not torch.allclose(clean, hooked)


def test_hook_added_after_caching_is_applied(G):
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 16))
        cache = SynthesisCache()
        G.synthesis(ws, cache=cache)
        handle = G.synthesis.b8.conv1.register_forward_hook(lambda m, i, o: o * 0)
        try:
            with_cache = G.synthesis(ws, cache=cache)
            without = G.synthesis(ws)
        finally:
            handle.remove()
        assert torch.allclose(with_cache, without, atol=1e-6)
        assert not torch.allclose(with_cache, G.synthesis(ws))


def test_config_round_trip_and_validation():
    cfg = GeneratorConfig(img_resolution=64, channels={4: 8, 8: 8, 16: 8, 32: 4, 64: 4}, conv_clamp=None)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert GeneratorConfig.from_dict(d) == cfg
    assert Generator(cfg).synthesis.b64.conv1.weight.shape == (4, 4, 3, 3)
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(img_resolution=48)
    with pytest.raises(ValueError, match="unknown generator config keys"):
        GeneratorConfig.from_dict({"z_dim": 8, "resolution": 64})
    with pytest.raises(ValueError, match="allowed: 'skip'"):
        GeneratorConfig(architecture="resnet")
    with pytest.raises(ValueError, match="missing"):
        GeneratorConfig(img_resolution=16, channels={4: 8, 8: 8})


def test_bad_latent_shapes(G):
    with pytest.raises(ValueError, match=r"z must have shape \[N, 16\]"):
        G.mapping(torch.randn(2, 17))
    with pytest.raises(ValueError, match=r"ws must have shape \[N, 8, 24\]"):
        G.synthesis(torch.randn(2, 7, 24))
    with pytest.raises(KeyError, match="unknown style layer"):
        G.synthesis.layer("b8.conv2")


def test_content_hash_tracks_weights():
    torch.manual_seed(1)
    a = Generator(TINY)
    b = Generator(TINY)
    b.load_state_dict(a.state_dict())
    assert a.content_hash() == b.content_hash()
    with torch.no_grad():
        b.synthesis.b8.conv1.bias[0] += 1
    assert a.content_hash() != b.content_hash()


def test_sample_z_is_seeded(G):
    assert torch.equal(G.sample_z(3, seed=5), G.sample_z(3, seed=5))
    assert not torch.equal(G.sample_z(3, seed=5), G.sample_z(3, seed=6))


# ----------------------------------------------------------------------------------------------------
# The fast paths compute what the reference formulation computes


def test_batch_of_one_equals_batch(G):
    """Batch 1 modulates the weights (fused), a batch modulates the input (shared conv): same images."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, 16))
        batch = G.synthesis(ws)
        for i in range(3):
            assert torch.allclose(G.synthesis(ws[i:i + 1]), batch[i:i + 1], atol=1e-5)


def test_synthesis_returns_contiguous_nchw(G):
    with torch.no_grad():
        for n in (1, 2):
            img = G.synthesis(G.mapping(torch.randn(n, 16)))
            assert img.is_contiguous() and img.shape == (n, 3, 32, 32)


def test_autograd_path_equals_inference_path(G):
    """With gradients the layers avoid in-place updates; the image is the same and backward runs."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 16))
        expected = G.synthesis(ws)
    for n in (1, 2):
        w = ws[:n].clone().requires_grad_(True)
        img = G.synthesis(w)
        assert torch.allclose(img, expected[:n], atol=1e-5)
        img.square().mean().backward()
        assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_training_gradients_reach_every_parameter():
    torch.manual_seed(3)
    g = Generator(TINY).train()
    with torch.no_grad():
        for name, p in g.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.3)
    g(torch.randn(2, 16), noise_mode="random").mean().backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None and not n.endswith("w_avg")]
    assert not missing


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 5, 3]])
def test_upsample2d_equals_upfirdn2d(taps):
    torch.manual_seed(0)
    f = setup_filter(taps)
    x = torch.randn(2, 3, 5, 7)
    expected = upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4)
    assert torch.allclose(upsample2d(x, f), expected, atol=1e-6)
    assert torch.allclose(upsample2d(x.contiguous(memory_format=torch.channels_last), f), expected, atol=1e-6)


def test_weight_changes_are_seen_after_a_call(G):
    """The per-layer memo of the weight energy follows in-place weight updates and load_state_dict."""
    with torch.no_grad():
        other = Generator(TINY).eval()
        other.load_state_dict(G.state_dict())
        ws = G.mapping(torch.randn(1, 16))
        assert torch.equal(other.synthesis(ws), G.synthesis(ws))
        other.synthesis.b16.conv1.weight.mul_(3.0)
        other.synthesis.b8.conv0.weight[0].zero_()
        fresh = Generator(TINY).eval()
        fresh.load_state_dict(other.state_dict())
        assert torch.allclose(other.synthesis(ws), fresh.synthesis(ws), atol=1e-6)
        other.load_state_dict(G.state_dict())
        assert torch.allclose(other.synthesis(ws), G.synthesis(ws), atol=1e-6)


def test_channels_last_and_bfloat16_copies(G):
    """A channels-last parameter copy (as interfacegan's fast renderer makes) computes the same image; a
    bfloat16 copy is close."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 16))
        expected = G.synthesis(ws)
        cl = Generator(TINY).eval()
        cl.load_state_dict(G.state_dict())
        cl = cl.to(memory_format=torch.channels_last)
        assert torch.allclose(cl.synthesis(ws), expected, atol=1e-5)
        assert torch.allclose(cl.synthesis(ws[:1]), expected[:1], atol=1e-5)
        bf = cl.to(torch.bfloat16)
        styles = {k: v.to(torch.bfloat16) for k, v in G.styles(ws).items()}
        img = bf.synthesis_from_styles(styles).float()
        assert (img - expected).abs().max() < 0.1 * expected.abs().max()


def test_layer_flops_follow_the_config():
    cfg = GeneratorConfig(z_dim=8, w_dim=8, img_resolution=16, mapping_layers=1, channels={4: 8, 8: 4, 16: 2})
    flops = layer_flops(cfg)
    assert list(flops) == Generator(cfg).style_layers                         # execution order
    # b16.conv1: 2 * 9 * 2 * 2 * 16^2 conv + 4 * 2 * 2 * 9 weight (de)modulation + 3 * 2 * 16^2 bias/noise/lrelu
    assert flops["b16.conv1"] == 2 * 9 * 2 * 2 * 256 + 4 * 2 * 2 * 9 + 3 * 2 * 256
    # b16.conv0: transposed conv on the 8x8 grid + 4x4 FIR on 16x16 + modulation + epilogue
    assert flops["b16.conv0"] == 2 * 9 * 4 * 2 * 64 + 2 * 16 * 2 * 256 + 4 * 2 * 4 * 9 + 3 * 2 * 256
    # b4.conv1: 8x8x9 weights > 8x4x4 inputs + 8x4x4 outputs: the activations are modulated
    assert flops["b4.conv1"] == 2 * 9 * 8 * 8 * 16 + 2 * 8 * 8 * 9 + 2 * (8 * 16 + 8 * 16) + 3 * 8 * 16
    # b16.torgb: 1x1 conv + bias, skip up-sampling of the 8x8 image, modulation
    assert flops["b16.torgb"] == (2 * 2 + 1) * 3 * 256 + 2 * 16 * 3 * 64 + 3 * 256 + 2 * 2 * 3
    assert flops["b4.torgb"] == (2 * 8 + 1) * 3 * 16 + 2 * 8 * 3


def test_cache_reuses_styles_of_unchanged_rows_but_not_hooked_ones(G):
    """A late edit computes the affine only of the changed rows; a hook on an affine still applies."""
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 16))
        cache = SynthesisCache()
        calls = []
        for name in G.style_layers:
            affine = G.synthesis.layer(name).affine
            affine.forward = (lambda f, n: lambda x: (calls.append(n), f(x))[1])(affine.forward, name)
        try:
            G.synthesis(ws, cache=cache)
            G.synthesis(ws, cache=cache)                        # the second call stores the styles
            calls.clear()
            edited = ws.clone()
            edited[:, 6:] += 0.5
            incremental = G.synthesis(edited, cache=cache)
            assert sorted(calls) == sorted(n for n, i in G.ws_index.items() if i >= 6)
            assert torch.allclose(incremental, G.synthesis(edited), atol=1e-6)
        finally:
            for name in G.style_layers:
                del G.synthesis.layer(name).affine.forward
        handle = G.synthesis.b8.conv0.affine.register_forward_hook(lambda m, i, o: o + 1.0)
        try:
            hooked = G.synthesis(edited, cache=cache)
            assert torch.allclose(hooked, G.synthesis(edited), atol=1e-6)
        finally:
            handle.remove()
        assert not torch.allclose(hooked, G.synthesis(edited))
        assert torch.allclose(G.synthesis(edited, cache=cache), G.synthesis(edited), atol=1e-6)
