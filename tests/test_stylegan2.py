"""The generator's public contract on tiny random-init models (golden parity lives in test_loaders.py)."""
import json

import pytest
import torch

from interp.models.stylegan2 import Generator, GeneratorConfig, SynthesisCache

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
