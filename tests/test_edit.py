"""Edits as data: layer ranges, strength 0 = the original exactly, W vs S equivalence, recipes, direction files."""
from __future__ import annotations

import copy

import pytest
import torch

from interp import diskcache
from interp.directions import DirectionFileError, DirectionSet, load_directions, save_directions
from interp.methods import sefa
from interp.edit import (DirectionEdit, Latent, Recipe, RecipeError, RenderSession, UnitEdit, apply_ws, layer_rows,
                         projection_stds, render, sample_latents, style_layers_for_rows, synthesize, synthesize_ws)
from interp.models.stylegan2 import SynthesisCache


def test_layer_presets():
    assert layer_rows(18, "all") == tuple(range(18))
    assert layer_rows(18, "coarse") == (0, 1, 2, 3)
    assert layer_rows(18, "middle") == (4, 5, 6, 7)
    assert layer_rows(18, "fine") == tuple(range(8, 18))
    assert layer_rows(10, "fine") == (8, 9)                       # 64x64: the 64x64 block
    assert layer_rows(8, "coarse") + layer_rows(8, "middle") + layer_rows(8, "fine") == tuple(range(8))
    assert layer_rows(10, "custom", 2, 5) == (2, 3, 4, 5)
    with pytest.raises(ValueError, match="unknown layer range 'top'; allowed: all, coarse, middle, fine, custom"):
        layer_rows(10, "top")
    with pytest.raises(ValueError, match=r"custom layer range 3-10 is invalid: need 0 <= start <= end <= 9"):
        layer_rows(10, "custom", 3, 10)
    with pytest.raises(ValueError, match="needs start and end"):
        layer_rows(10, "custom")
    with pytest.raises(ValueError, match="only used with layer range 'custom'"):
        layer_rows(10, "fine", 1, 2)


@pytest.mark.parametrize("space", ["z", "w", "s"])
def test_strength_zero_is_the_original_exactly(tiny_generator, space):
    G = tiny_generator
    rows = tuple(range(G.num_ws)) if space == "z" else layer_rows(G, "middle")
    dim = {"z": G.z_dim, "w": G.w_dim,
           "s": sum(G.synthesis.layer(n).affine.weight.shape[0] for n in style_layers_for_rows(G, rows))}[space]
    e = DirectionEdit(torch.randn(dim), space, rows, 0.0, std=2.0)
    z = G.sample_z(2, 11)
    with torch.no_grad():
        original = G.synthesis(G.mapping(z, truncation_psi=0.7))
        edited = synthesize(G, z, [e], truncation_psi=0.7)
        moved = synthesize(G, z, [e.with_strength(1.0)], truncation_psi=0.7)
    assert torch.equal(edited, original)
    assert not torch.allclose(moved, original)


def test_w_edit_moves_only_its_rows_and_equals_the_s_edit(tiny_generator):
    G = tiny_generator
    rows = layer_rows(G, "fine")
    d = torch.randn(G.w_dim)
    e = DirectionEdit(d, "w", rows, 1.5, std=0.7)
    with torch.no_grad():
        ws = G.mapping(G.sample_z(3, 0))
        out = apply_ws(ws, [e])
        changed = (out - ws).abs().sum(dim=(0, 2)) > 0
        assert changed.nonzero().flatten().tolist() == list(rows)
        assert torch.allclose(out[:, rows[0]] - ws[:, rows[0]], e.delta.expand(3, -1), atol=1e-6)
        # the same move expressed in StyleSpace: the affine maps of the fed layers applied to the W offset
        names = style_layers_for_rows(G, rows)
        s_dir = torch.cat([G.synthesis.layer(n).affine.weight * G.synthesis.layer(n).affine.weight_gain @ e.delta
                           for n in names])
        s_edit = DirectionEdit(s_dir, "s", rows, 1.5, std=float(s_dir.norm()) / 1.5)
        img_w = synthesize_ws(G, ws, [e])
        img_s = synthesize_ws(G, ws, [s_edit])
    assert torch.allclose(img_w, img_s, atol=1e-4)


def test_incremental_cache_gives_the_full_pass(tiny_generator):
    G = tiny_generator
    z = G.sample_z(1, 4)
    cache = SynthesisCache()
    d = torch.randn(G.w_dim)
    with torch.no_grad():
        synthesize(G, z, [], cache=cache)
        for s in (0.5, -1.0, 2.0):
            e = DirectionEdit(d, "w", layer_rows(G, "fine"), s)
            assert torch.equal(synthesize(G, z, [e], cache=cache), synthesize(G, z, [e]))
    assert cache.hits > 0


def test_z_edits_must_use_every_row(tiny_generator):
    G = tiny_generator
    with pytest.raises(ValueError, match="z-space edit moves every ws row"):
        synthesize(G, G.sample_z(1, 0), [DirectionEdit(torch.ones(G.z_dim), "z", (0, 1), 1.0)])
    with pytest.raises(ValueError, match="unknown latent space 'q'; allowed: z, w, s"):
        DirectionEdit(torch.ones(3), "q", (0,), 1.0)
    with pytest.raises(ValueError, match="non-zero"):
        DirectionEdit(torch.zeros(3), "w", (0,), 1.0)


def test_projection_stds_and_samples(tiny_generator):
    G = tiny_generator
    w = sample_latents(G, "w", 500, seed=0)
    dirs, _ = sefa.directions(G, "all", 3)
    stds = projection_stds(w, dirs)
    assert torch.allclose(stds, ((w - w.mean(0)) @ dirs.T).std(0), rtol=1e-4)
    assert sample_latents(G, "s", 10, seed=0, rows=layer_rows(G, "coarse")).shape[0] == 10


def _direction_set(G, k=3):
    rows = layer_rows(G, "coarse")
    dirs, values = sefa.directions(G, rows, k)
    stds = projection_stds(sample_latents(G, "w", 300, seed=0), dirs)
    return DirectionSet.create(dirs, values, stds, space="w", layers=rows, method="sefa", model_id="tiny32",
                               model_hash=diskcache.model_hash(G), params={"normalize": True})


def _stack(G):
    """A W edit, an S edit and a unit edit (masked, at a middle layer) on a seed latent."""
    rows = layer_rows(G, "middle")
    s_dim = sum(G.synthesis.layer(n).affine.weight.shape[0] for n in style_layers_for_rows(G, rows))
    gen = torch.Generator().manual_seed(1)
    mask = torch.zeros(G.img_resolution, G.img_resolution)
    mask[4:20, 8:24] = 1.0
    return [DirectionEdit(torch.randn(G.w_dim, generator=gen), "w", layer_rows(G, "coarse"), 1.5, 0.8, "tilt", "sefa"),
            DirectionEdit(torch.randn(s_dim, generator=gen), "s", rows, -2.0, 0.5, "", "styleclip"),
            UnitEdit("b16.conv0", (0, 3, 5), mask, "add", [1.0, 2.0, 3.0], "glasses")]


def test_render_without_edits_is_synthesis_exactly(tiny_generator):
    G = tiny_generator
    latent = Latent.from_seed(G, "tiny32", 7, 0.7)
    with torch.no_grad():
        assert torch.equal(render(G, latent, []), G.synthesis(latent.ws[None]))
        assert torch.equal(latent.ws, G.mapping(G.sample_z(1, 7), truncation_psi=0.7)[0])
    third = Latent.from_seed(G, "tiny32", 7, 0.7, index=2, n=4)
    with torch.no_grad():
        assert torch.equal(third.ws, G.mapping(G.sample_z(4, 7), truncation_psi=0.7)[2])


def test_stacked_edits_survive_a_recipe_round_trip(tiny_generator, tmp_path):
    G = tiny_generator
    latent = Latent.from_seed(G, "tiny32", 3, 0.7)
    edits = _stack(G)
    recipe = Recipe(latent).push(*edits)
    with torch.no_grad():
        image = recipe.render(G)
        assert not torch.equal(image, Recipe(latent).push(*edits[:2]).render(G))   # the unit edit does something
        path = recipe.save(tmp_path / "r.safetensors")
        back = Recipe.load(path, expected_hash=diskcache.model_hash(G))
        assert torch.equal(back.render(G), image)
    assert back.summary() == recipe.summary()
    lines = recipe.summary().splitlines()
    assert lines[0].startswith("Image: seed 3, psi 0.70 from model tiny32")
    assert lines[1] == "1. SeFa 'tilt': +1.50 std in w, rows 0-2"
    assert lines[2].startswith("2. StyleCLIP: -2.00 std in s, rows")
    assert lines[3].startswith("3. Dissection brush 'glasses': add 3 unit(s) of b16.conv0 in a painted region (25%")
    assert [type(e).__name__ for e in recipe.undo().edits] == ["DirectionEdit", "DirectionEdit"]
    assert recipe.cleared().edits == ()


def test_a_recipe_whose_edits_share_one_direction_matrix_saves(tiny_generator, tmp_path):
    """Rows of one method's direction matrix, and the same direction twice (found by bench/bench_sessions.py)."""
    G = tiny_generator
    directions = torch.randn(3, G.w_dim)
    rows = tuple(range(G.num_ws))
    edits = [DirectionEdit(directions[i], "w", rows, s, 1.0, f"#{i}", "sefa") for i, s in ((0, 1.0), (2, -1.0), (0, 2.0))]
    recipe = Recipe(Latent.from_seed(G, "tiny32", 3, 0.7, index=1, n=2)).push(*edits)
    back = Recipe.load(recipe.save(tmp_path / "shared.safetensors"), expected_hash=diskcache.model_hash(G))
    assert back.summary() == recipe.summary()
    assert all(torch.equal(a.direction, b.direction) for a, b in zip(back.edits, recipe.edits))


def test_recipes_of_other_models_and_damaged_files_are_refused(tiny_generator, tmp_path):
    G = tiny_generator
    recipe = Recipe(Latent.from_seed(G, "tiny32", 3, 0.7), tuple(_stack(G)[:1]))
    path = recipe.save(tmp_path / "r.safetensors")
    with pytest.raises(RecipeError, match="made with model 'tiny32'"):
        Recipe.load(path, expected_hash="0" * 16)
    other = copy.deepcopy(G)
    with torch.no_grad():
        other.synthesis.b4.conv1.bias += 1
    with pytest.raises(RecipeError, match="made with model 'tiny32'"):
        recipe.render(other)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(RecipeError, match="truncated or corrupted"):
        Recipe.load(broken)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "interp.directions/1"})
    with pytest.raises(RecipeError, match="not a recipe"):
        Recipe.load(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="finite"):
        Latent("tiny32", "x", torch.full((G.num_ws, G.w_dim), float("nan")))


def test_unit_edits_apply_inside_the_mask_and_reuse_the_cache(tiny_generator):
    G = tiny_generator
    latent = Latent.from_seed(G, "tiny32", 5, 1.0)
    mask = torch.zeros(32, 32)
    mask[0:4, 4:8] = 1.0                                      # exactly cell (0, 1) of an 8x8 feature map
    e = UnitEdit("b8.conv1", (1, 2), mask, "remove")
    assert torch.equal(e.mask_at(8, 8)[0, 0].nonzero(), torch.tensor([[0, 1]]))
    assert e.mask_at(4, 4)[0, 0, 0, 0] == 0.25 and e.mask_at(4, 4).sum() == 0.25
    assert e.mask_at(16, 16)[0, 0, 0:2, 2:4].eq(1).all() and e.mask_at(16, 16).sum() == 4
    features = torch.randn(1, 4, 8, 8)
    out = e.apply(features)
    assert (out[0, 1:3, 0, 1] == 0).all() and torch.equal(out[0, :, 1:], features[0, :, 1:])
    assert torch.equal(out[0, 0], features[0, 0]) and torch.equal(out[0, 3], features[0, 3])
    session = RenderSession()
    with torch.no_grad():
        full = render(G, latent, [e])
        session.render(G, latent, [])
        hits = session.cache.hits
        assert torch.equal(session.render(G, latent, [e]), full)
        assert session.cache.hits > hits                        # the blocks below b8 were reused
    with pytest.raises(ValueError, match="the mask is empty"):
        UnitEdit("b8.conv1", (1,), torch.zeros(32, 32))
    with pytest.raises(ValueError, match="unknown unit edit mode 'paint'; allowed: remove, add, scale"):
        UnitEdit("b8.conv1", (1,), None, "paint")
    with pytest.raises(ValueError, match="unknown layer 'b64.conv0'"):
        render(G, latent, [UnitEdit("b64.conv0", (1,))])
    with pytest.raises(ValueError, match="unit 99 does not exist"):
        render(G, latent, [UnitEdit("b8.conv1", (99,))])
    assert not any(m._forward_hooks for m in G.modules())     # hooks are always removed


def test_render_caches_share_one_budget(tiny_generator, monkeypatch):
    import weakref

    from interp import edit

    monkeypatch.setattr(edit, "_SESSIONS", weakref.WeakSet())        # only this test's sessions
    G = tiny_generator
    latents = [Latent.from_seed(G, "tiny32", seed, 1.0) for seed in (1, 2, 3)]
    monkeypatch.setenv("INTERP_RENDER_CACHE_MB", "1024")
    sessions = [RenderSession() for _ in latents]
    with torch.no_grad():
        first = [s.render(G, lat) for s, lat in zip(sessions, latents)]
    size = sessions[0].cache_bytes()
    assert size > 0 and all(s.cache_bytes() == size for s in sessions)
    assert edit.enforce_cache_budget() == 3 * size                  # under the budget: nothing emptied

    # Room for two caches: the session that rendered least recently is emptied first.
    assert edit.enforce_cache_budget(2 * size) == 2 * size
    assert [s.cache_bytes() for s in sessions] == [0, size, size]
    with sessions[1].lock:                                          # a session that is rendering is skipped
        assert edit.enforce_cache_budget(size) == size
    assert [s.cache_bytes() for s in sessions] == [0, size, 0]
    with torch.no_grad():                                           # an emptied session renders the same image
        assert torch.equal(sessions[0].render(G, latents[0]), first[0])
    assert sessions[0].cache_bytes() == size

    monkeypatch.setenv("INTERP_RENDER_CACHE_MB", "0")              # no room: every render empties the others
    with torch.no_grad():
        sessions[2].render(G, latents[2])
    assert sum(s.cache_bytes() for s in sessions) == 0
    for bad in ("lots", "-5", "nan"):
        monkeypatch.setenv("INTERP_RENDER_CACHE_MB", bad)
        with pytest.raises(ValueError, match="INTERP_RENDER_CACHE_MB must be a number of megabytes >= 0"):
            edit.render_cache_budget()


def test_previews_in_bfloat16_are_close_to_float32(tiny_generator, monkeypatch):
    from interp import edit

    G = tiny_generator
    latent = Latent.from_seed(G, "tiny32", 7, 0.7)
    mask = torch.zeros(32, 32)
    mask[8:24, 8:24] = 1.0
    rows = layer_rows(G, "middle")
    s_dim = sum(edit.style_sizes(G)[i] for i, n in enumerate(G.style_layers) if n in style_layers_for_rows(G, rows))
    stacks = [[], [DirectionEdit(torch.randn(G.w_dim), "w", rows, 1.0, std=1.0)],
              [DirectionEdit(torch.randn(s_dim), "s", rows, 1.0, std=1.0), UnitEdit("b8.conv1", (0, 1), mask, "remove")]]
    with torch.no_grad():
        exact = [render(G, latent, edits) for edits in stacks]
        monkeypatch.setenv("INTERP_RENDER_PRECISION", "bfloat16")
        session = RenderSession()
        for edits, ref in zip(stacks, exact):
            img = session.render(G, latent, edits)
            assert img.dtype == torch.float32 and img.shape == ref.shape
            err = (img - ref).abs()
            scale = ref.abs().max()
            assert 0 < err.max() < 0.05 * scale and err.mean() < 0.01 * scale      # bfloat16: close, not equal
    assert next(G.parameters()).dtype == torch.float32                            # the model itself is untouched
    assert edit.render_copy(G, "bfloat16") is edit.render_copy(G, "bfloat16")     # one copy per model
    monkeypatch.setenv("INTERP_RENDER_PRECISION", "float32")
    with torch.no_grad():
        assert torch.equal(RenderSession().render(G, latent, stacks[1]), exact[1])
    monkeypatch.setenv("INTERP_RENDER_PRECISION", "half")
    with pytest.raises(ValueError, match="INTERP_RENDER_PRECISION must be one of auto, float32, bfloat16"):
        edit.preview_precision()


def test_z_edits_need_a_seed_latent(tiny_generator):
    G = tiny_generator
    e = DirectionEdit(torch.randn(G.z_dim), "z", tuple(range(G.num_ws)), 1.0)
    seed_latent = Latent.from_seed(G, "tiny32", 2, 0.7)
    with torch.no_grad():
        assert torch.equal(render(G, seed_latent, [e]), synthesize(G, G.sample_z(1, 2), [e], truncation_psi=0.7))
    inverted = Latent("tiny32", seed_latent.model_hash, seed_latent.ws, {"kind": "inversion", "space": "w+"})
    with pytest.raises(ValueError, match="z-space edits need a latent made from a seed"):
        render(G, inverted, [e])


def test_direction_files_roundtrip_and_refusals(tiny_generator, tiny_checkpoint, tmp_path):
    G = tiny_generator
    named = {"index": 0, "phrase": "a smiling face", "entry": "a smiling face", "sign": 1, "score": 0.1,
             "confidence": 0.5}
    ds = _direction_set(G).with_names(["+ a smiling face", "#1", "#2"], naming=[named])
    path = save_directions(ds, tmp_path / "d.safetensors")
    back = load_directions(path, expected_hash=diskcache.model_hash(G))
    for name in ("directions", "values", "stds", "shares"):
        assert torch.equal(getattr(back, name), getattr(ds, name))
    assert (back.space, back.layers, back.method, back.model_id, back.names, back.params) == \
           (ds.space, ds.layers, ds.method, ds.model_id, ds.names, ds.params)

    with pytest.raises(DirectionFileError, match="not a direction file"):
        load_directions(tiny_checkpoint)                                 # a generator checkpoint
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DirectionFileError, match="truncated or corrupted"):
        load_directions(broken)
    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(DirectionFileError, match="truncated or corrupted"):
        load_directions(text)
    with pytest.raises(DirectionFileError, match="does not exist"):
        load_directions(tmp_path / "missing.safetensors")
    other = copy.deepcopy(G)
    with torch.no_grad():
        other.synthesis.b4.conv1.affine.weight.add_(0.1)
    assert diskcache.model_hash(other) != diskcache.model_hash(G)
    with pytest.raises(DirectionFileError, match="holds directions for model 'tiny32'"):
        load_directions(path, expected_hash=diskcache.model_hash(other))


def test_diskcache_keys_and_hash_memo(tiny_generator, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    assert diskcache.make_key("abc", {"a": 1, "b": [1, 2]}) == diskcache.make_key("abc", {"b": [1, 2], "a": 1})
    assert diskcache.make_key("abc", {"a": 1}) != diskcache.make_key("abd", {"a": 1})
    key = diskcache.make_key("abc", {"a": 1})
    calls = []
    out = diskcache.cached("test", key, lambda: calls.append(1) or {"x": torch.arange(3)})
    again = diskcache.cached("test", key, lambda: calls.append(1) or {"x": torch.arange(3)})
    assert calls == [1] and torch.equal(out["x"], again["x"])
    assert (tmp_path / "test" / f"{key}.safetensors").is_file()
    G = copy.deepcopy(tiny_generator)
    h = diskcache.model_hash(G)
    assert diskcache.model_hash(G) == h == G.content_hash()
    with torch.no_grad():
        G.mapping.fc0.weight.mul_(2)                                     # in-place change: a new hash
    assert diskcache.model_hash(G) == G.content_hash() != h
    with pytest.raises(ValueError, match="cache namespace"):
        diskcache.load("../evil", key)
