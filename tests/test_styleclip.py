"""CLIP text editing (interp.methods.styleclip) and the Text tab, on the tiny generator.

Two CLIPs: a fake one that sees exactly one planted channel's effect (the relevance must rank it
first), and a randomly initialised small open_clip ViT (the code path of the Hub's ViT-B-32).
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from conftest import app_env, pixels, serve_demo
import torch
from PIL import Image

from interp.edit import Latent, Recipe, render
from interp.methods import styleclip
from interp.methods.naming import ClipScorer

SMALL = dict(n=4, dims=8, basis_samples=16, std_samples=64, batch_size=4)


@pytest.fixture(scope="module")
def vit_clip(tmp_path_factory):
    """A randomly initialised open_clip ViT (1 layer, 32 wide, 32x32 input), through open_clip's own API."""
    import open_clip

    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    path = tmp_path_factory.mktemp("clipcfg") / "test-tiny-vit.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("test-tiny-vit", pretrained=None)
    model.eval().requires_grad_(False)
    return ClipScorer(model, preprocess, open_clip.get_tokenizer("test-tiny-vit"), "random tiny ViT")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ----------------------------------------------------------------------------------------------------
# A fake CLIP that sees one planted channel


class _Visual(torch.nn.Module):
    image_size = 32


class PlantedClip(torch.nn.Module):
    """Image embedding: normalise([<x, pattern>, <x, r1>, <x, r2>, 1]) (r: fixed random patterns).

    Texts mentioning 'planted' embed as the first axis, every other text as the last (constant) one.
    """

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.visual = _Visual()
        others = torch.randn(2, *pattern.shape, generator=torch.Generator().manual_seed(1))
        bank = torch.cat([pattern[None], others])                          # [3, 3, H, W]
        self.register_buffer("bank", bank / bank.flatten(1).norm(dim=1)[:, None, None, None])
        self.scale = torch.nn.Parameter(torch.tensor(20.0), requires_grad=False)

    def encode_image(self, x):
        readings = torch.einsum("nchw,rchw->nr", x, self.bank) * self.scale   # [N, 3]
        return torch.cat([readings, torch.ones_like(readings[:, :1])], dim=1)

    def encode_text(self, tokens):
        return torch.nn.functional.one_hot(tokens[:, 0], 4).float()


def _tokenize(texts):
    return torch.tensor([[0 if "planted" in t else 3] for t in texts])


def _planted(G, layer: str, unit: int):
    """A copy of G whose channel ``layer:unit`` moves the image strongly along one pattern, and a CLIP reading it."""
    G = copy.deepcopy(G)
    with torch.no_grad():
        for name in G.style_layers:                                        # images within [-1, 1] (CLIP clamps)
            if name.endswith("torgb"):
                G.synthesis.layer(name).weight.mul_(0.1)
                G.synthesis.layer(name).bias.mul_(0.1)
        G.synthesis.layer(layer).weight[:, unit] = torch.tensor([2.0, -2.0, 2.0])[:, None, None]   # magenta
    with torch.no_grad():
        ws = G.mapping(G.sample_z(8, 0), truncation_psi=0.7)
        styles = G.styles(ws)
        base = G.synthesis_from_styles(styles)
        styles[layer] = styles[layer].clone()
        styles[layer][:, unit] += 1.0
        pattern = (G.synthesis_from_styles(styles) - base).mean(0)        # [3, H, W]
    return G, ClipScorer(PlantedClip(pattern).eval(), None, _tokenize, "planted")


def test_relevance_ranks_the_planted_channel_first(tiny_generator):
    layer, unit = "b32.torgb", 2
    G, clip = _planted(tiny_generator, layer, unit)
    rel = styleclip.channel_relevance(G, clip, **SMALL)
    assert rel.changes.shape == (rel.num_channels, 4) and rel.num_channels == sum(rel.sizes)
    d = styleclip.text_direction(clip, "the planted thing", "something else")
    for scoring in styleclip.SCORINGS:
        scores = styleclip.channel_scores(rel, d, scoring=scoring)
        impact = scores.abs() * rel.changes.norm(dim=1)                    # score x size of the effect
        assert rel.channel_name(int(impact.argmax())) == f"{layer}:{unit}"
    edit, n = styleclip.global_edit(rel, clip, "the planted thing", "something else", alpha=2.0, beta=0.5)
    assert n >= 1 and edit.space == "s" and edit.method == "styleclip" and edit.layers == tuple(range(G.num_ws))
    planted = rel.channel_name(int(rel.changes.norm(dim=1).argmax()))
    assert planted == f"{layer}:{unit}" and edit.direction[int(rel.changes.norm(dim=1).argmax())] > 0
    # the edit raises what the fake CLIP reads
    latent = Latent.from_seed(G, "tiny32", 3, 0.7)
    with torch.no_grad():
        before = clip.model.encode_image(render(G, latent, []))[0, 0]
        after = clip.model.encode_image(render(G, latent, [edit]))[0, 0]
    assert after > before


def test_relevance_is_cached(tiny_generator, vit_clip, cache_dir):
    rel = styleclip.channel_relevance(tiny_generator, vit_clip, **SMALL)
    assert any(cache_dir.rglob("*.safetensors"))
    again = styleclip.channel_relevance(tiny_generator, vit_clip, **SMALL)
    assert torch.equal(rel.changes, again.changes) and torch.equal(rel.s_samples, again.s_samples)
    progress = []
    styleclip.channel_relevance(tiny_generator, vit_clip, **{**SMALL, "n": 3}, progress=lambda f, t: progress.append(f))
    assert progress[-1] == 1.0 and len(progress) >= 3 and progress == sorted(progress)


# ----------------------------------------------------------------------------------------------------
# The Hub path: a randomly initialised open_clip ViT


def test_global_edit_with_an_open_clip_vit(tiny_generator, vit_clip):
    G = tiny_generator
    rel = styleclip.channel_relevance(G, vit_clip, **SMALL)
    assert rel.basis.shape == (8, 32)                                       # 32-d embedding reduced to 8 axes
    side = styleclip.side_directions(vit_clip, "a smiling face | a frowning face\na face with glasses", "a face")
    assert side.shape == (2, 32)
    latent = Latent.from_seed(G, "tiny32", 1, 0.7)
    edit, n = styleclip.global_edit(rel, vit_clip, "an old face", "a face", 3.0, 0.5, side=side)
    assert 1 <= n <= rel.num_channels and edit.strength == 3.0 and edit.std > 0
    assert not torch.equal(render(G, latent, [edit]), render(G, latent, []))
    # alpha 0: the original image exactly; a recipe keeps the edit
    still, _ = styleclip.global_edit(rel, vit_clip, "an old face", "a face", 0.0, 0.5, side=side)
    assert torch.equal(render(G, latent, [still]), render(G, latent, []))
    assert "StyleCLIP 'an old face'" in Recipe(latent).push(edit).summary()
    # beta: 0 keeps every channel, 1 none; more beta, fewer channels
    d = styleclip.text_direction(vit_clip, "an old face", "a face")
    scores = styleclip.channel_scores(rel, d, side)
    assert int(styleclip.kept_channels(scores, 0.0).sum()) == rel.num_channels
    assert int(styleclip.kept_channels(scores, 1.0).sum()) == 0
    counts = [styleclip.global_edit(rel, vit_clip, "an old face", "a face", 3.0, b, side=side)[1]
              for b in (0.1, 0.5, 0.9)]
    assert counts[0] >= counts[1] >= counts[2] >= 1
    with pytest.raises(ValueError, match="keeps no channel"):
        styleclip.global_edit(rel, vit_clip, "an old face", "a face", 3.0, 1.0, side=side)


class KeywordClip:
    """Text embeddings from keywords: 'a face' (axis 0) plus a shared 'hair' axis (1) and one axis per colour."""

    AXES = {"hair": 1, "black": 2, "blond": 3, "red": 4, "old": 5}

    def encode_text(self, texts):
        rows = []
        for t in texts:
            v = torch.zeros(8)
            v[0] = 1.0
            for word, axis in self.AXES.items():
                if word in t:
                    v[axis] = 2.0
            rows.append(v / v.norm())
        return torch.stack(rows)


def test_a_categorical_value_is_contrasted_with_the_other_values():
    from interp.methods.naming import parse_vocabulary

    vocabulary = "an old face | a young face\na face with black hair / a face with blond hair / a face with red hair"
    phrases = parse_vocabulary(vocabulary)
    assert [p.group is not None for p in phrases] == [False, True, True, True]
    assert len({p.group for p in phrases[1:]}) == 1
    with pytest.raises(ValueError, match="one value / another value"):
        parse_vocabulary("a / b | c")
    clip = KeywordClip()
    side = styleclip.side_directions(clip, vocabulary, "a face")
    assert side.group_of(2) == [1, 2, 3] and side.group_of(0) == []
    # generated images: 6 with black hair, 2 with red, 0 blond (the zero-shot reading of their embeddings)
    images = torch.zeros(8, 8)
    images[:, 0], images[:, 1] = 1.0, 1.0
    images[:6, 2], images[6:, 4] = 2.0, 2.0
    C = 20
    changes = torch.randn(C, 8, generator=torch.Generator().manual_seed(0))
    rel = styleclip.Relevance(changes, torch.eye(8), torch.ones(8), torch.ones(C),
                              torch.randn(64, C, generator=torch.Generator().manual_seed(1)), ("l",), (C,), (0,),
                              image_embeddings=torch.nn.functional.normalize(images, dim=1))
    embedding, text, group = styleclip.categorical_contrast(rel, clip, side, "blond hair", "a face")
    assert group == [1, 2, 3]
    assert text == "a face with black hair 75%, a face with red hair 25%"
    expected = 0.75 * side.values[1] + 0.25 * side.values[3]
    assert torch.allclose(embedding, expected)
    edit, _ = styleclip.global_edit(rel, clip, "blond hair", "a face", 3.0, 0.5, side=side)
    assert edit.name == "blond hair (vs a face with black hair 75%, a face with red hair 25%)"
    # no contrast: a target that is no categorical value, a neutral that already is another value,
    # the naive scoring, or a relevance without image embeddings
    assert styleclip.categorical_contrast(rel, clip, side, "an old face", "a face") is None
    assert styleclip.categorical_contrast(rel, clip, side, "blond hair", "a face with red hair") is None
    assert styleclip.global_edit(rel, clip, "blond hair", "a face", 3.0, 0.5, side=side,
                                 scoring="styleclip")[0].name == "blond hair"
    bare = styleclip.Relevance(*[getattr(rel, f) for f in ("changes", "basis", "variances", "channel_std", "s_samples",
                                                            "layers", "sizes", "rows")])
    assert styleclip.categorical_contrast(bare, clip, side, "blond hair", "a face") is None


def test_bad_inputs_give_clear_errors(tiny_generator, vit_clip):
    rel = styleclip.channel_relevance(tiny_generator, vit_clip, **SMALL)
    latent = Latent.from_seed(tiny_generator, "tiny32", 1, 0.7)
    with pytest.raises(ValueError, match="target text is empty"):
        styleclip.global_edit(rel, vit_clip, "  ", "a face", 3.0, 0.5)
    with pytest.raises(ValueError, match="neutral text equals the target"):
        styleclip.global_edit(rel, vit_clip, "a face", "A face", 3.0, 0.5)
    with pytest.raises(ValueError, match="alpha .* finite"):
        styleclip.global_edit(rel, vit_clip, "an old face", "a face", math.nan, 0.5)
    for beta in (-0.1, 1.5, math.nan):
        with pytest.raises(ValueError, match=r"beta .* \[0, 1\]"):
            styleclip.global_edit(rel, vit_clip, "an old face", "a face", 3.0, beta)
    with pytest.raises(ValueError, match="unknown scoring 'cosine'; allowed: conditional, styleclip"):
        styleclip.channel_scores(rel, torch.ones(32), scoring="cosine")
    with pytest.raises(ValueError, match="the mask is empty"):
        styleclip.optimize(tiny_generator, latent, vit_clip, "an old face", steps=2, mask=torch.zeros(32, 32))
    with pytest.raises(ValueError, match=r"mask must be \[H, W\] = \[32, 32\]"):
        styleclip.optimize(tiny_generator, latent, vit_clip, "an old face", steps=2, mask=torch.ones(8, 8))
    with pytest.raises(ValueError, match="text is empty"):
        styleclip.optimize(tiny_generator, latent, vit_clip, "", steps=2)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        styleclip.optimize(tiny_generator, latent, vit_clip, "an old face", steps=0)


# ----------------------------------------------------------------------------------------------------
# Optimization


def test_optimization_moves_towards_the_text_and_a_mask_keeps_the_rest(tiny_generator, vit_clip):
    G = tiny_generator
    latent = Latent.from_seed(G, "tiny32", 2, 0.7)
    kw = dict(steps=15, l2=0.0, identity=0.0, lr=0.1, views=2, patience=15)
    free = styleclip.optimize(G, latent, vit_clip, "an old face", neutral="a face", **kw)
    scores = free.origin["scores"]
    assert free.origin["kind"] == "optimization" and free.origin["steps"] == 15 and len(scores) == 16
    assert max(scores[1:]) > scores[0]                                      # the CLIP score went up
    again = styleclip.optimize(G, latent, vit_clip, "an old face", neutral="a face", **kw)
    assert torch.equal(free.ws, again.ws)                                   # deterministic
    mask = torch.zeros(32, 32)
    mask[:12, :12] = 1                                                      # top-left corner
    painted = styleclip.optimize(G, latent, vit_clip, "an old face", neutral="a face", mask=mask, preserve=200.0, **kw)
    with torch.no_grad():
        x0, x_free, x_paint = (render(G, lat, []) for lat in (latent, free, painted))
    far = (slice(None), slice(None), slice(20, None), slice(20, None))      # far from the brush
    inside = (slice(None), slice(None), slice(0, 12), slice(0, 12))
    change_far = float((x_paint - x0)[far].abs().mean())
    assert change_far < 0.25 * float((x_free - x0)[far].abs().mean())
    assert change_far < float((x_paint - x0)[inside].abs().mean())
    assert painted.origin["painted"] == pytest.approx(144 / 1024, abs=1e-3)


def test_a_stylespace_inversion_is_optimized_in_s(tiny_generator, vit_clip):
    from interp.edit import split_styles
    from interp.methods.invert import flat_styles, project_styles

    G = tiny_generator
    start = Latent.from_seed(G, "tiny32", 2, 0.7)
    styles = flat_styles(G, start.ws[None])[0] * 1.05               # off the W+ manifold: only S can express it
    latent = Latent(start.model_id, start.model_hash, project_styles(G, styles[None])[0],
                    {"kind": "inversion", "method": "optimization", "space": "s"}, styles=styles)
    rows = (G.num_ws - 2, G.num_ws - 1)                            # only the last rows' style layers move
    result = styleclip.optimize(G, latent, vit_clip, "an old face", neutral="a face", steps=12, l2=0.0,
                                identity=0.0, lr=0.1, views=2, patience=12, rows=rows)
    assert result.styles is not None and result.origin["space"] == "s"
    scores = result.origin["scores"]
    assert max(scores[1:]) > scores[0]                                      # the CLIP score went up
    before, after = split_styles(G, styles[None]), split_styles(G, result.styles[None])
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and moved <= {n for n in G.style_layers if G.ws_index[n] in rows}
    assert torch.allclose(result.ws, project_styles(G, result.styles[None])[0])
    with torch.no_grad():                                                   # the render is the optimized styles'
        shown = render(G, result, [])
        direct = G.synthesis_from_styles(split_styles(G, result.styles[None]))
    assert torch.equal(shown, direct)


# ----------------------------------------------------------------------------------------------------
# The tab through gradio_client


@pytest.fixture(scope="module")
def text_app(tmp_path_factory, tiny_checkpoint, vit_clip):
    import app
    import demos.text
    from interp.zoo import Zoo

    tmp = tmp_path_factory.mktemp("text")
    mp = app_env(tmp)
    # the Hub's ViT-B-32 cannot be downloaded here: the tab gets the random ViT instead (same code path)
    mp.setattr(demos.text.naming, "load_paired_clip", lambda model_id, device="cpu": (vit_clip, "random tiny ViT"))
    mp.setattr(styleclip, "channel_relevance",
               lambda G, clip, **kw: _small_relevance(G, clip, kw), raising=True)
    zoo = Zoo.from_file(root=tmp)
    zoo.add_user_models(str(tiny_checkpoint))
    try:
        with serve_demo(app.build_demo(zoo, "cpu")) as url:
            yield url, tmp
    finally:
        mp.undo()


_REAL_RELEVANCE = styleclip.channel_relevance


def _small_relevance(G, clip, kw):
    return _REAL_RELEVANCE(G, clip, **{**SMALL, **{k: v for k, v in kw.items() if k in ("model_id", "progress")}})


def test_text_tab_answers_gradio_client(text_app, tmp_path):
    from gradio_client import Client, handle_file

    url, tmp = text_app
    client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/text_prepare", "/text_global", "/text_optimize", "/text_apply"):
        assert name in api
    for name, info in api.items():                                          # no plumbing, named parameters
        assert not name.startswith("/lambda") and not name.startswith("/on_open"), name
        assert not [p for p in info["parameters"] if p["parameter_name"].startswith("param_")], name
    params = [p["parameter_name"] for p in api["/text_global"]["parameters"]]
    assert params == ["model_id", "target", "neutral", "alpha", "beta", "scoring"]
    _, current, _ = client.predict("tiny32", 4, 0.7, 1, api_name="/generate")
    status = client.predict("tiny32", api_name="/text_prepare")
    assert "Channel relevance ready" in status

    (before, after), channels, judges = client.predict("tiny32", "an old face", "a face", 3.0, 0.5, "conditional",
                                                        api_name="/text_global")
    assert np.array_equal(pixels(before), pixels(current)) and not np.array_equal(pixels(after), pixels(current))
    assert "channels** move" in channels and "built-in model" in judges
    current, summary, status = client.predict("tiny32", "Global direction", "an old face", "a face", 3.0, 0.5,
                                              "conditional", api_name="/text_apply")
    assert "1. StyleCLIP 'an old face': +3.00 std in s" in summary and np.array_equal(pixels(current), pixels(after))

    # optimization, then paint by word with a brush, then apply: the optimized code becomes the base
    (before, after), plot, judges, status = client.predict(
        "tiny32", "a smiling face", "a face", 5, 0.02, 0.1, False, None, api_name="/text_optimize")
    assert "CLIP score" in status and np.array_equal(pixels(before), pixels(current))
    bg = tmp_path / "bg.png"
    Image.fromarray(pixels(current)).resize((256, 256)).save(bg)
    layer = np.zeros((256, 256, 4), dtype=np.uint8)
    layer[:96, :96] = (255, 51, 102, 255)
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    brush = {"background": handle_file(str(bg)), "layers": [handle_file(str(tmp_path / "layer.png"))],
             "composite": handle_file(str(bg)), "id": None}
    (before, after), plot, judges, status = client.predict(
        "tiny32", "a smiling face", "a face", 5, 0.02, 0.1, True, brush, api_name="/text_optimize")
    assert "Optimized" in status
    current, summary, status = client.predict("tiny32", "Optimization", "a smiling face", "a face", 3.0, 0.5,
                                              "conditional", api_name="/text_apply")
    assert "Image: an optimization (text a smiling face" in summary and "1. StyleCLIP 'an old face'" in summary
    assert np.array_equal(pixels(current), pixels(after))


def test_text_tab_bad_inputs(text_app):
    from gradio_client import Client

    url, tmp = text_app
    client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
    with pytest.raises(Exception, match="no current image yet"):
        client.predict("tiny32", "an old face", "a face", 3.0, 0.5, "conditional", api_name="/text_global")
    client.predict("tiny32", 5, 0.7, 1, api_name="/generate")
    with pytest.raises(Exception, match="target text is empty"):
        client.predict("tiny32", "", "a face", 3.0, 0.5, "conditional", api_name="/text_global")
    with pytest.raises(Exception, match="neutral text equals the target"):
        client.predict("tiny32", "a face", "a face", 3.0, 0.5, "conditional", api_name="/text_global")
    with pytest.raises(Exception, match="Alpha .* between -10 and 10|greater than maximum value 10"):
        client.predict("tiny32", "an old face", "a face", 50.0, 0.5, "conditional", api_name="/text_global")
    with pytest.raises(Exception, match="Beta .* between 0 and 1|greater than maximum value 1"):
        client.predict("tiny32", "an old face", "a face", 3.0, 1.5, "conditional", api_name="/text_global")
    with pytest.raises(Exception, match="keeps no channel"):
        client.predict("tiny32", "an old face", "a face", 3.0, 1.0, "conditional", api_name="/text_global")
    with pytest.raises(Exception, match="brush is empty"):
        client.predict("tiny32", "a smiling face", "a face", 5, 0.02, 0.1, True, None, api_name="/text_optimize")
    with pytest.raises(Exception, match="no optimization result to apply"):
        client.predict("tiny32", "Optimization", "a smiling face", "a face", 3.0, 0.5, "conditional",
                       api_name="/text_apply")
