"""The Paint tab answers gradio_client with an image mask: preview, apply, dissect, units; clear errors."""
from __future__ import annotations


import numpy as np
import pytest
from conftest import app_env, pixels, serve_demo
from PIL import Image

BRUSH = (slice(4, 12), slice(18, 28))          # rows 4-11, columns 18-27 of the tiny 32x32 image


@pytest.fixture(scope="module")
def paint_app(tmp_path_factory, tiny_checkpoint):
    import app
    from interp.zoo import Zoo

    tmp = tmp_path_factory.mktemp("paint")
    mp = app_env(tmp)
    zoo = Zoo.from_file()                           # the built-in faces64 (when its weights exist) ...
    zoo.add_user_models(str(tiny_checkpoint))       # ... and the tiny model (preselected: the user's own)
    try:
        with serve_demo(app.build_demo(zoo, "cpu")) as url:
            yield url, tmp
    finally:
        mp.undo()


def _client(url, tmp):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp / "downloads"))


def _mask_file(tmp, name: str, mask: np.ndarray, size: int = 256, mode: str = "L") -> str:
    """A mask image (white = painted) enlarged to ``size`` px, as the editor's canvas would be."""
    img = Image.fromarray(mask.astype(np.uint8) * 255, "L").resize((size, size), Image.NEAREST)
    path = tmp / name
    img.convert(mode).save(path)
    return str(path)


def _square(size: int = 32) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[BRUSH] = True
    return m


def _shrink(path, size: int) -> np.ndarray:
    """An enlarged preview image back at the model's resolution (nearest: the enlargement is exact)."""
    img = pixels(path)
    step = img.shape[0] // size
    return img[::step, ::step].astype(int)


def test_endpoints_are_named_and_typed(paint_app):
    from gradio_client import Client

    url, _ = paint_app
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("preview", "apply", "dissect", "unit_table", "unit_maps"):
        assert f"/paint_{name}" in api
    params = {p["parameter_name"]: p["type"].get("type") for p in api["/paint_preview"]["parameters"]}
    assert list(params) == ["model_id", "mask", "concept", "action", "strength", "layer", "units", "samples"]
    assert params["units"] == "integer" and params["samples"] == "integer" and params["strength"] == "number"
    assert [p["parameter_name"] for p in api["/paint_apply"]["parameters"]] == list(params)
    assert not [n for n in api if n.startswith("/paint") and n not in
                {f"/paint_{x}" for x in ("preview", "apply", "dissect", "unit_table", "unit_maps")}]
    for name in [n for n in api if n.startswith("/paint")]:
        assert not [p for p in api[name]["parameters"] if p["parameter_name"].startswith("param_")], name


def test_what_i_painted_preview_and_apply(paint_app):
    from gradio_client import handle_file

    from interp.edit import Recipe

    url, tmp = paint_app
    client = _client(url, tmp)
    _, current, _ = client.predict("tiny32", 4, 0.7, 1, api_name="/generate")
    original = pixels(current).astype(int)
    mask = handle_file(_mask_file(tmp, "square.png", _square()))
    (before, after), note = client.predict("tiny32", mask, "what I painted", "remove", 1.0, "auto", 0, 500,
                                           api_name="/paint_preview")
    assert "the 2 units of `b16.conv1`" in note and "painted 8%" in note
    before, after = _shrink(before, 32), _shrink(after, 32)
    assert np.abs(before - original).max() <= 1                         # "before" is the current image
    diff = np.abs(after - before).max(axis=2)                           # [32, 32]
    near = np.zeros((32, 32), bool)
    near[max(BRUSH[0].start - 8, 0):BRUSH[0].stop + 8, max(BRUSH[1].start - 8, 0):BRUSH[1].stop + 8] = True
    assert diff[BRUSH].mean() > 5                                       # the painted region changes ...
    assert diff[~near].mean() < 0.1 * diff[BRUSH].mean()               # ... pixels far from it barely do
    assert diff[~near].max() <= 16

    # apply: the brush edit joins the stack; the current image is the preview's "after"
    image, summary, compare, applied = client.predict("tiny32", mask, "what I painted", "remove", 1.0, "auto", 0,
                                                      500, api_name="/paint_apply")
    assert "1. Dissection brush 'what I painted': remove 2 unit(s) of b16.conv1 in a painted region (8%" in summary
    assert compare is None and applied.startswith("Applied")
    assert np.abs(pixels(image).astype(int) - after).max() <= 1
    recipe = Recipe.load(client.predict(api_name="/recipe_save"))
    assert recipe.edits[0].layer == "b16.conv1" and len(recipe.edits[0].units) == 2
    # "add" amplifies what is there, on a chosen layer and number of units; it stacks on the first edit
    (_, amplified), note = client.predict("tiny32", mask, "what I painted", "add", 0.5, "b8.conv1", 6, 500,
                                          api_name="/paint_preview")
    assert "6 units of `b8.conv1`" in note and "amplified x1.5" in note
    _, summary, *_ = client.predict("tiny32", mask, "what I painted", "add", 0.5, "b8.conv1", 6, 500,
                                    api_name="/paint_apply")
    assert "2. Dissection brush 'what I painted': scale x1.50 6 unit(s) of b8.conv1" in summary


def test_clear_errors(paint_app, tmp_path):
    from gradio_client import handle_file

    url, tmp = paint_app
    client = _client(url, tmp)
    square = handle_file(_mask_file(tmp_path, "square.png", _square()))
    with pytest.raises(Exception, match="no current image yet"):
        client.predict("tiny32", square, "what I painted", "remove", 1.0, "auto", 0, 500, api_name="/paint_preview")
    client.predict("tiny32", 1, 0.7, 1, api_name="/generate")
    empty = handle_file(_mask_file(tmp_path, "empty.png", np.zeros((32, 32), bool)))
    with pytest.raises(Exception, match="paint the region first"):
        client.predict("tiny32", empty, "what I painted", "remove", 1.0, "auto", 0, 500, api_name="/paint_preview")
    photo = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(photo)
    with pytest.raises(Exception, match="must be black and white"):
        client.predict("tiny32", handle_file(str(photo)), "what I painted", "remove", 1.0, "auto", 0, 500,
                       api_name="/paint_preview")
    wide = tmp_path / "wide.png"
    Image.new("L", (64, 32), 255).save(wide)
    with pytest.raises(Exception, match="must be square like the image"):
        client.predict("tiny32", handle_file(str(wide)), "what I painted", "remove", 1.0, "auto", 0, 500,
                       api_name="/paint_preview")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(Exception, match="not an image that can be read"):
        client.predict("tiny32", handle_file(str(text)), "what I painted", "remove", 1.0, "auto", 0, 500,
                       api_name="/paint_preview")
    with pytest.raises(Exception, match=r"Concept must be one of: 'what I painted' \(model 'tiny32' has no part"):
        client.predict("tiny32", square, "glasses", "remove", 1.0, "auto", 0, 500, api_name="/paint_preview")
    with pytest.raises(Exception, match="Layer must be 'auto' or one of b4.conv1, b8.conv0"):
        client.predict("tiny32", square, "what I painted", "remove", 1.0, "b16.torgb", 0, 500,
                       api_name="/paint_preview")
    with pytest.raises(Exception, match=r"Units must be at most 8 \(the units of b16.conv1\), got 9"):
        client.predict("tiny32", square, "what I painted", "remove", 1.0, "b16.conv1", 9, 500,
                       api_name="/paint_preview")
    with pytest.raises(Exception, match=r"Action must be one of remove, add|not in the list of choices: \['remove'"):
        client.predict("tiny32", square, "what I painted", "erase", 1.0, "auto", 0, 500, api_name="/paint_preview")
    with pytest.raises(Exception, match="no part segmenter"):
        client.predict("tiny32", 200, "what I painted", api_name="/paint_dissect")
    # a transparent layer (the editor's strokes) is a mask too: the opaque pixels are painted
    layer = np.zeros((256, 256, 4), np.uint8)
    layer[40:90, 150:220] = (255, 0, 255, 140)
    strokes = tmp_path / "strokes.png"
    Image.fromarray(layer, "RGBA").save(strokes)
    _, note = client.predict("tiny32", handle_file(str(strokes)), "what I painted", "remove", 1.0, "auto", 0, 500,
                             api_name="/paint_preview")
    assert "units of `b16.conv1`" in note


# ----------------------------------------------------------------------------------------------------
# The built-in model: dissection labels, the concept brush


@pytest.fixture(scope="module")
def faces64_ready():
    from interp.builtin import load_segmenter
    from interp.zoo import Zoo

    zoo = Zoo.from_file()
    status = zoo.availability(zoo.get_entry("faces64"))
    if not status.available or status.needs_download:
        pytest.skip(f"the built-in faces64 weights are missing ({status.reason})")
    try:
        return load_segmenter()
    except FileNotFoundError as exc:
        pytest.skip(f"the built-in segmenter is missing ({exc})")


def _face_with_glasses(S):
    """The first seed (psi 0.7) whose face wears glasses, and the glasses region (dilated 2 px)."""
    import torch

    from interp.builtin import PARTS
    from interp.edit import Latent, render
    from interp.zoo import load_generator

    G = load_generator("faces64")
    glasses = PARTS.index("glasses")
    for seed in range(40):
        labels = S.segment(render(G, Latent.from_seed(G, "faces64", seed, 0.7)))[0]
        region = labels == glasses
        if int(region.sum()) >= 60:
            grown = torch.nn.functional.max_pool2d(region[None, None].float(), 5, 1, 2)[0, 0] > 0
            return seed, int(region.sum()), grown.numpy()
    raise AssertionError("no face with glasses among the first 40 seeds")


def test_faces64_dissection_and_concept_brush(paint_app, faces64_ready, tmp_path):
    from gradio_client import handle_file

    from interp.builtin import PARTS
    from interp.imaging import pil_to_tensor
    from interp.methods.dissect import choose_layer, dissect_layers
    from interp.zoo import load_generator

    url, tmp = paint_app
    S = faces64_ready
    seed, glasses_px, region = _face_with_glasses(S)
    client = _client(url, tmp)
    client.predict("faces64", seed, 0.7, 1, api_name="/generate")
    status, plot, layer, table, concepts = client.predict("faces64", 48, "glasses", api_name="/paint_dissect")
    assert "**Dissected** 9 layers on 48 samples" in status
    assert {row[0] for row in plot["data"]} >= {"b8.conv0", "b16.conv1"}     # one bar per layer
    assert len(layer["choices"]) == 9
    ds = dissect_layers(load_generator("faces64"), S, None, 48, seed=0)       # the app's entry, from the disk cache
    assert layer["value"] == choose_layer(ds, "glasses", "remove") != "auto"  # glasses: the auto "remove" layer
    assert table["headers"] == ["Unit", "Label", "IoU"] and table["data"][0][1] == "glasses"
    assert ["glasses (", "glasses"] == [concepts["choices"][1][0][:9], concepts["choices"][1][1]]
    rows = client.predict("faces64", "b16.conv0", 48, api_name="/paint_unit_table")
    unit = rows["data"][0][0]
    sheet = Image.open(client.predict("faces64", "b16.conv0", unit, 48, api_name="/paint_unit_maps"))
    assert sheet.width > 4 * 96 and sheet.height > 3 * 96

    mask = handle_file(_mask_file(tmp_path, "glasses.png", region))
    (before, after), note = client.predict("faces64", mask, "glasses", "remove", 1.0, "auto", 0, 48,
                                           api_name="/paint_preview")
    assert "**remove glasses**" in note and "auto" in note
    after_img = pil_to_tensor(Image.fromarray(_shrink(after, 64).astype(np.uint8)))
    left = int((S.segment(after_img)[0] == PARTS.index("glasses")).sum())
    assert left < 0.5 * glasses_px, (left, glasses_px)                 # most glasses pixels are gone
    with pytest.raises(Exception, match=r"Concept must be one of: 'what I painted', 'background'.*'glasses'"):
        client.predict("faces64", mask, "hat", "remove", 1.0, "auto", 0, 48, api_name="/paint_preview")
    _, summary, *_ = client.predict("faces64", mask, "glasses", "remove", 1.0, "auto", 0, 48,
                                    api_name="/paint_apply")
    assert "1. Dissection brush 'glasses': remove" in summary
