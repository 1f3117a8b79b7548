"""GAN Dissection and the paint brush on the tiny 32x32 generator: planted units, exact cells, clear errors."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from interp import diskcache
from interp.edit import Latent, Recipe, UnitEdit, render
from interp.methods.dissect import (Dissection, LABEL_IOU, choose_layer, concept_units, dissect, dissect_layers,
                                    paint, unit_layers, unit_levels, units_for_region)

PLANTED_UNIT = 2
SQUARE = (slice(8, 16), slice(16, 24))          # rows 8-15, columns 16-23 of the 32x32 image: 1/16 of it


def square_mask(size: int = 32) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[SQUARE] = 1
    return m


class SquareSegmenter:
    """A fake segmenter: every image has a "square" part at SQUARE, "background" elsewhere."""

    parts = ("background", "square")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        m = square_mask(images.shape[-1]).to(images)
        logits = torch.stack([1 - m, m]) * 10                                    # [2, H, W]
        return logits.expand(images.shape[0], -1, -1, -1)


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def planted(tiny_generator):
    """A copy of the tiny generator whose unit PLANTED_UNIT of b32.conv1 and b16.conv1 copies the square."""
    G = copy.deepcopy(tiny_generator)

    def plant(module, inputs, output):
        output = output.clone()
        m = square_mask(32)[None] if output.shape[-1] == 32 else square_mask(32)[None, None]
        if output.shape[-1] != 32:                                                # 16x16: the square's cells
            m = torch.nn.functional.adaptive_avg_pool2d(m, output.shape[-2:])[0]
        output[:, PLANTED_UNIT] = torch.where(m.to(output) > 0.5, 1.0, -1.0)
        return output

    for name in ("b32.conv1", "b16.conv1"):
        G.synthesis.layer(name).register_forward_hook(plant)
    return G


def _fake_dissection(G, layer: str, parts=("background", "square"), units: int | None = None) -> Dissection:
    """Made-up statistics: units 0 and 1 are clear "square" units (IoU 0.4 and 0.2), the rest are not."""
    units = units or G.synthesis.layer(layer).weight.shape[0]
    g = torch.Generator().manual_seed(len(layer))
    iou = torch.rand(units, len(parts), generator=g) * 0.04
    iou[0, 1], iou[1, 1] = 0.4, 0.2
    return Dissection(layer, G.synthesis.layer(layer).resolution, tuple(parts), diskcache.model_hash(G), 8, 0, 0.99,
                      1.0, torch.ones(units), -torch.ones(units) * 0.3, iou, torch.rand(units, len(parts), generator=g),
                      torch.zeros(units, len(parts)), torch.tensor([0.9, 0.1]))


# ----------------------------------------------------------------------------------------------------
# dissect


def test_a_planted_unit_gets_its_label_with_iou_near_one(planted, cache_dir):
    # The square covers 1/16 of the image: a quantile just below 15/16 makes exactly the square "on".
    seen = []
    d = dissect(planted, SquareSegmenter(), "b32.conv1", n=12, seed=0, quantile=1 - 1 / 16 - 1e-3,
                batch_size=4, progress=lambda f, text: seen.append((f, text)))
    assert d.labels[PLANTED_UNIT] == "square"
    assert float(d.iou[PLANTED_UNIT, 1]) > 0.99
    assert d.top_units("square", 1) == (PLANTED_UNIT,)
    assert d.table()[0][:2] == (PLANTED_UNIT, "square")
    assert d.units_per_concept()["square"] >= 1 and "square" in d.concepts()
    assert 0 < d.share_labelled() <= 1
    assert torch.allclose(d.part_area, torch.tensor([15 / 16, 1 / 16]))
    assert float(d.mean_in[PLANTED_UNIT, 1]) == pytest.approx(1.0)
    assert float(d.mean_out[PLANTED_UNIT, 1]) == pytest.approx(-1.0)
    assert [f for f, _ in seen] == [4 / 12, 8 / 12, 1.0] and "b32.conv1" in seen[-1][1]
    # Second call: from the disk cache, no progress, same numbers.
    seen.clear()
    again = dissect(planted, SquareSegmenter(), "b32.conv1", n=12, seed=0, quantile=1 - 1 / 16 - 1e-3, batch_size=4,
                    progress=lambda f, text: seen.append(f))
    assert seen == [] and torch.equal(again.iou, d.iou) and torch.equal(again.low, d.low)
    assert any(cache_dir.rglob("*.safetensors"))


def test_a_planted_unit_below_image_resolution_is_upsampled_and_labelled(planted):
    d = dissect(planted, SquareSegmenter(), "b16.conv1", n=8, seed=1, quantile=1 - 1 / 16 - 1e-3, batch_size=8,
                cache=False)
    assert d.labels[PLANTED_UNIT] == "square"
    assert float(d.iou[PLANTED_UNIT, 1]) > 0.5                                # bilinear upsampling widens the edge
    assert d.resolution == 16 and d.num_units == planted.synthesis.layer("b16.conv1").weight.shape[0]


def test_dissect_layers_is_one_pass_with_the_same_cache_entries(planted, cache_dir):
    layers = ["b16.conv1", "b32.conv1"]
    many = dissect_layers(planted, SquareSegmenter(), layers, n=8, seed=2, quantile=0.9, batch_size=8)
    assert list(many) == layers
    calls = []
    one = dissect(planted, SquareSegmenter(), "b32.conv1", n=8, seed=2, quantile=0.9, batch_size=8,
                  progress=lambda f, t: calls.append(f))
    assert calls == [] and torch.equal(one.iou, many["b32.conv1"].iou)
    fresh = dissect(planted, SquareSegmenter(), "b32.conv1", n=8, seed=2, quantile=0.9, batch_size=8, cache=False)
    assert torch.allclose(fresh.iou, one.iou) and torch.allclose(fresh.thresholds, one.thresholds)
    assert (fresh.low <= fresh.thresholds).all()


def test_dissect_errors_name_the_allowed_values(tiny_generator):
    seg = SquareSegmenter()
    with pytest.raises(ValueError, match=r"unknown layer 'b16.torgb'; allowed: b4.conv1, b8.conv0"):
        dissect(tiny_generator, seg, "b16.torgb", n=4, cache=False)
    with pytest.raises(ValueError, match=r"quantile must be within \(0.5, 1\)"):
        dissect(tiny_generator, seg, "b8.conv0", n=4, quantile=99, cache=False)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        dissect(tiny_generator, seg, "b8.conv0", n=0, cache=False)
    with pytest.raises(ValueError, match="does not name its parts"):
        dissect(tiny_generator, lambda x: x, "b8.conv0", n=4, cache=False)
    layers = unit_layers(tiny_generator)
    assert layers[0] == "b4.conv1" and not any(name.endswith("torgb") for name in layers)


# ----------------------------------------------------------------------------------------------------
# paint


@pytest.mark.parametrize("layer", ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1", "b32.conv0",
                                   "b32.conv1"])
def test_paint_maps_a_square_brush_to_the_right_cells(tiny_generator, layer):
    G = tiny_generator
    d = _fake_dissection(G, layer)
    latent = Latent.from_seed(G, "tiny32", 0)
    edit = paint(G, latent, square_mask(), "square", "remove", dissection=d)
    res = d.resolution
    cells = edit.mask_at(res, res)[0, 0]                                       # [res, res]
    scale = 32 // res
    expected = torch.zeros(res, res)
    expected[8 // scale:16 // scale, 16 // scale:24 // scale] = 1             # the square is on the 8-px grid
    assert torch.equal(cells, expected)
    # The edit changes exactly those cells of exactly those units.
    feats = torch.randn(2, d.num_units, res, res)
    changed = (edit.apply(feats) != feats)                                      # [2, C, res, res]
    assert changed.any(dim=(0, 2, 3)).nonzero().flatten().tolist() == sorted(edit.units)
    assert torch.equal(changed.any(dim=(0, 1)), expected.bool())
    # A brush covering 7/8 of the rows of the square covers its cells by 7/8 at 4x4 (exact area).
    if res == 4:
        m = square_mask()
        m[8] = 0
        assert float(paint(G, latent, m, "square", "remove", dissection=d).mask_at(4, 4)[0, 0, 1, 2]) == 0.875


def test_paint_remove_and_add_levels_and_strength(tiny_generator):
    G = tiny_generator
    d = _fake_dissection(G, "b8.conv0")                                        # 16 units
    latent = Latent.from_seed(G, "tiny32", 0)
    off = paint(G, latent, square_mask(), "square", "remove", dissection=d)
    assert off.mode == "remove" and off.layer == "b8.conv0" and off.method == "dissection" and off.name == "square"
    assert off.units[:2] == (0, 1) and len(off.units) == 4                   # two clear units, at least 4 switched
    assert torch.equal(off.value, d.low[list(off.units)])
    on = paint(G, latent, square_mask(), "square", "add", dissection=d)
    assert on.units == tuple(range(d.num_units)) and torch.equal(on.value, d.mean_in[:, 1])
    half = paint(G, latent, square_mask(), "square", "add", strength=0.5, dissection=d)
    assert torch.equal(half.mask, square_mask() * 0.5) and torch.equal(half.value, on.value)
    double = paint(G, latent, square_mask(), "square", "add", strength=2.0, dissection=d)
    assert torch.allclose(double.value, d.mean_out[:, 1] + 2 * (d.mean_in[:, 1] - d.mean_out[:, 1]))
    assert paint(G, latent, square_mask(), "square", "remove", dissection=d, k=7).units == d.top_units("square", 7)
    # uint8 alpha and bool brushes, and a larger square brush resized to the image
    alpha = (square_mask() * 255).to(torch.uint8)
    assert torch.equal(paint(G, latent, alpha, "square", "remove", dissection=d).mask, square_mask())
    assert torch.equal(paint(G, latent, square_mask() > 0, "square", "remove", dissection=d).mask, square_mask())
    big = square_mask().repeat_interleave(4, 0).repeat_interleave(4, 1)       # [128, 128]
    assert torch.equal(paint(G, latent, big, "square", "remove", dissection=d).mask, square_mask())


def test_auto_layer_choice(tiny_generator):
    G = tiny_generator
    ds = {name: _fake_dissection(G, name) for name in ("b8.conv1", "b16.conv0", "b16.conv1")}
    ds["b16.conv1"].iou[0, 1] = 0.6                                             # best clear units: remove here
    assert choose_layer(ds, "square", "remove") == "b16.conv1"
    assert choose_layer(ds, "square", "add") == "b8.conv1"                      # coarsest layer with a clear unit
    latent = Latent.from_seed(G, "tiny32", 0)
    assert paint(G, latent, square_mask(), "square", "remove", dissection=list(ds.values())).layer == "b16.conv1"
    assert paint(G, latent, square_mask(), "square", "add", dissection=ds, layer="b16.conv0").layer == "b16.conv0"
    d = _fake_dissection(G, "b8.conv1", units=40)
    assert concept_units(d, "square")[:2] == (0, 1) and len(concept_units(d, "square")) == 4   # 2 clear -> 4
    d.iou[:7, 1] = LABEL_IOU + 0.01                                             # 7 clear units -> those 7
    assert sorted(concept_units(d, "square")) == list(range(7))
    d.iou[:, 1] = LABEL_IOU + 0.01                                              # every unit clear -> a quarter
    assert len(concept_units(d, "square")) == 10


def test_empty_brush_and_other_mistakes_are_clear_errors(tiny_generator):
    G = tiny_generator
    d = _fake_dissection(G, "b16.conv0")
    latent = Latent.from_seed(G, "tiny32", 0)
    for empty in (torch.zeros(32, 32), torch.zeros(32, 32, dtype=torch.uint8), torch.zeros(32, 32, dtype=torch.bool)):
        with pytest.raises(ValueError, match="the brush mask is empty"):
            paint(G, latent, empty, "square", "remove", dissection=d)
        with pytest.raises(ValueError, match="the brush mask is empty"):
            units_for_region(G, latent, empty, "b16.conv0", 2, levels=d)
    with pytest.raises(ValueError, match="unknown action 'erase'; allowed: remove, add"):
        paint(G, latent, square_mask(), "square", "erase", dissection=d)
    with pytest.raises(ValueError, match=r"unknown concept 'hat'; allowed: background, square \(with clearly labelled units: square\)"):
        paint(G, latent, square_mask(), "hat", "remove", dissection=d)
    with pytest.raises(ValueError, match="paint needs a dissection"):
        paint(G, latent, square_mask(), "square", "remove")
    with pytest.raises(ValueError, match="strength must be within"):
        paint(G, latent, square_mask(), "square", "remove", strength=0, dissection=d)
    with pytest.raises(ValueError, match="has no dissection here; allowed: b16.conv0"):
        paint(G, latent, square_mask(), "square", "remove", dissection=d, layer="b8.conv0")
    with pytest.raises(ValueError, match=r"one channel \[H, W\]"):
        paint(G, latent, torch.ones(3, 32, 32), "square", "remove", dissection=d)
    with pytest.raises(ValueError, match="within"):
        paint(G, latent, square_mask() * 2, "square", "remove", dissection=d)
    other = dataclasses.replace(d, model_hash="0" * 16)
    with pytest.raises(ValueError, match="made for other weights"):
        paint(G, latent, square_mask(), "square", "remove", dissection=other)


def test_a_brush_edit_leaves_far_pixels_unchanged_and_survives_a_recipe(tiny_generator, tmp_path):
    G = tiny_generator
    d = _fake_dissection(G, "b16.conv1")
    latent = Latent.from_seed(G, "tiny32", 5)
    corner = torch.zeros(32, 32)
    corner[:4, :4] = 1
    edit = paint(G, latent, corner, "square", "add", dissection=d)
    with torch.no_grad():
        before, after = render(G, latent), render(G, latent, [edit])
    diff = (after - before).abs().amax(dim=1)[0]                                # [32, 32]
    assert diff[:4, :4].max() > 1e-3                                           # the brush changes its region
    assert diff[16:, :].max() < 1e-5 and diff[:, 16:].max() < 1e-5            # far from it: unchanged
    path = Recipe(latent, (edit,)).save(tmp_path / "paint.safetensors")
    back = Recipe.load(path, expected_hash=diskcache.model_hash(G))
    assert isinstance(back.edits[0], UnitEdit)
    with torch.no_grad():
        assert torch.equal(back.render(G), after)


def test_units_for_region_finds_the_planted_unit(planted, cache_dir):
    d = dissect(planted, SquareSegmenter(), "b32.conv1", n=4, seed=0, quantile=1 - 1 / 16 - 1e-3, batch_size=4)
    latent = Latent.from_seed(planted, "tiny32", 3)
    picked = units_for_region(planted, latent, square_mask(), "b32.conv1", k=2, levels=d)
    assert picked.units[0] == PLANTED_UNIT and float(picked.scores[0]) > 0.99
    assert float(picked.inside[0]) == pytest.approx(1.0)
    off = picked.edit("remove")
    assert off.units == picked.units and off.mode == "remove" and torch.equal(off.value, picked.low)
    louder = picked.edit("amplify", strength=0.5)
    assert louder.mode == "scale" and torch.allclose(louder.value, torch.tensor([1.5]))
    with pytest.raises(ValueError, match="unknown action 'add'; allowed: remove, amplify"):
        picked.edit("add")
    # Without a segmenter: thresholds from samples (unit_levels, cached on disk; the default with n=256).
    levels = unit_levels(planted, "b32.conv1", n=8, quantile=1 - 1 / 16 - 1e-3)
    assert torch.equal(levels.thresholds[PLANTED_UNIT], torch.tensor(-1.0)) and (levels.low <= levels.thresholds).all()
    again = units_for_region(planted, latent, square_mask(), "b32.conv1", k=3, levels=levels)
    assert again.units[0] == PLANTED_UNIT and len(again.units) == 3
