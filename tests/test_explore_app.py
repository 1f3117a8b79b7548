"""The Explore tab answers gradio_client calls on the shared current image: find, slide, apply, grid, export / import."""
from __future__ import annotations


import numpy as np
import pytest
from conftest import app_env, pixels, serve_demo
import torch
from PIL import Image


@pytest.fixture(scope="module")
def explore_app(tmp_path_factory, tiny_checkpoint):
    import app
    from interp.zoo import Zoo

    tmp = tmp_path_factory.mktemp("explore")
    mp = app_env(tmp)
    zoo = Zoo.from_file(root=tmp)                   # no built-in weights there: only the tiny model is usable
    zoo.add_user_models(str(tiny_checkpoint))
    try:
        with serve_demo(app.build_demo(zoo, "cpu")) as url:
            yield url, tmp
    finally:
        mp.undo()


def _client(url, tmp):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp / "downloads"))


ZEROS = [0.0] * 10
VOCAB = "a smiling face | a frowning face"


def _to_array(img: torch.Tensor) -> np.ndarray:
    return ((img[0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def test_endpoints_are_named(explore_app):
    from gradio_client import Client

    url, tmp = explore_app
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("find_directions", "render", "apply", "grid", "effects", "export_directions", "import_directions"):
        assert f"/explore_{name}" in api
    for internal in ("/explore_echo", "/explore_render_on_open", "/explore_reset", "/generate_on_load"):
        assert internal not in api
    for name, info in api.items():
        params = [p["parameter_name"] for p in info["parameters"]]
        assert not [p for p in params if p.startswith("param_")], (name, params)
        assert not name.startswith("/lambda"), name
    render = [p["parameter_name"] for p in api["/explore_render"]["parameters"]]
    assert render == ["model_id"] + [f"strength_{i}" for i in range(10)]
    types = {p["parameter_name"]: p["type"]["type"] for p in api["/generate"]["parameters"]}
    assert types == {"model_id": "string", "seed": "integer", "truncation_psi": "number", "num_samples": "integer"}


def test_explore_starts_from_the_generated_image(explore_app, tiny_generator):
    from gradio_client.exceptions import AppError

    url, tmp = explore_app
    client = _client(url, tmp)                      # one client = one session: its gr.State persists
    with pytest.raises(AppError, match="no current image yet"):
        client.predict("tiny32", *ZEROS, api_name="/explore_render")
    grid, current, summary = client.predict("tiny32", 5, 0.6, 1, api_name="/generate")
    assert "seed 5, psi 0.60" in summary and "No edits yet" in summary
    explored = pixels(client.predict("tiny32", *ZEROS, api_name="/explore_render"))
    assert np.array_equal(explored, pixels(current)) and np.array_equal(explored, pixels(grid))
    with torch.no_grad():
        ref = _to_array(tiny_generator.synthesis(tiny_generator.mapping(tiny_generator.sample_z(1, 5), 0.6)))
    assert np.abs(ref.astype(int) - explored.astype(int)).max() <= 1
    # another sample of a grid becomes the current image
    client.predict("tiny32", 7, 0.6, 4, api_name="/generate")
    current, summary = client.predict("tiny32", 7, 0.6, 4, 3, api_name="/use_sample")
    assert "sample 3 of 4" in summary
    with torch.no_grad():
        ref = _to_array(tiny_generator.synthesis(tiny_generator.mapping(tiny_generator.sample_z(4, 7)[2:3], 0.6)))
    assert np.abs(ref.astype(int) - pixels(current).astype(int)).max() <= 1


def test_sliders_apply_recipe_and_import(explore_app, tiny_generator, tmp_path):
    from gradio_client import handle_file

    from interp.edit import Recipe

    url, tmp = explore_app
    client = _client(url, tmp)
    _, current, _ = client.predict("tiny32", 3, 0.7, 1, api_name="/generate")
    original = pixels(current)
    status, *updates = client.predict("tiny32", "SeFa", "coarse", 0, 0, 4, VOCAB, False,
                                      api_name="/explore_find_directions")
    labels = updates[:10]
    assert "4 directions" in status and "index names" in status
    assert [lab["visible"] for lab in labels] == [True] * 4 + [False] * 6
    assert labels[0]["label"] == "Direction #0" and "of the eigenvalue" in labels[0]["info"]

    moved = pixels(client.predict("tiny32", 3.0, *ZEROS[1:], api_name="/explore_render"))
    assert np.abs(moved.astype(int) - original.astype(int)).max() > 0
    back = pixels(client.predict("tiny32", *ZEROS, api_name="/explore_render"))
    assert np.array_equal(back, original)                 # strength 0 -> the original image exactly

    # apply: the edit joins the current image's stack, the sliders go back to 0 and show the new image
    current, summary, *rest = client.predict("tiny32", 3.0, 0, -1.5, *ZEROS[3:], api_name="/explore_apply")
    assert rest[:10] == ZEROS
    assert "1. SeFa" in summary and "+3.00 std" in summary and "2. SeFa" in summary and "-1.50 std" in summary
    stacked = pixels(client.predict("tiny32", *ZEROS, api_name="/explore_render"))
    assert np.array_equal(stacked, pixels(current))
    # the saved recipe re-creates the image, in-process and in a fresh session
    path = client.predict(api_name="/recipe_save")
    recipe = Recipe.load(path)
    assert [e.strength for e in recipe.edits] == [3.0, -1.5] and recipe.latent.origin["seed"] == 3
    assert np.abs(_to_array(recipe.render(tiny_generator)).astype(int) - stacked.astype(int)).max() <= 1
    other = _client(url, tmp)
    reopened, summary2 = other.predict("tiny32", handle_file(path), api_name="/recipe_open")
    assert np.array_equal(pixels(reopened), stacked) and summary2 == summary
    undone, summary3 = client.predict("tiny32", api_name="/recipe_undo")
    assert "2. SeFa" not in summary3 and "1. SeFa" in summary3
    cleared, summary4 = client.predict("tiny32", api_name="/recipe_clear")
    assert np.array_equal(pixels(cleared), original) and "No edits yet" in summary4

    # export the directions, import them in another session: the same slider gives the same image
    exported = client.predict(api_name="/explore_export_directions")
    status2, *_ = other.predict("tiny32", handle_file(exported), api_name="/explore_import_directions")
    assert "Imported" in status2
    other.predict("tiny32", 3, 0.7, 1, api_name="/generate")
    again = pixels(other.predict("tiny32", 3.0, *ZEROS[1:], api_name="/explore_render"))
    assert np.array_equal(again, moved)

    # the grid: the current image in the first row, strength 0 in the middle column, labelled columns
    grid = Image.open(client.predict("tiny32", 0, 2.0, 3, 1, api_name="/explore_grid"))
    assert grid.width > 3 * 128 and grid.height > 2 * 128

    # no CLIP for a user model offline: index names, and the status says why
    status, *_ = client.predict("tiny32", "GANSpace", "all", 0, 0, 2, VOCAB, True, api_name="/explore_find_directions")
    assert "No CLIP is available" in status and "ViT-B-32" in status
    effects = client.predict("tiny32", api_name="/explore_effects")
    assert "built-in" in effects[1]


def test_tabs_that_need_clip_say_so_before_a_run_fails(tmp_path, tiny_checkpoint):
    """A user model offline has no CLIP: the Text tab and the Attributes tab's CLIP judge show why on the page."""
    import app
    from demos.common import clip_notice
    from interp.zoo import Zoo

    mp = app_env(tmp_path)
    try:
        zoo = Zoo.from_file(root=tmp_path)
        zoo.add_user_models(str(tiny_checkpoint))
        demo = app.build_demo(zoo, "cpu")
        shown = {b.elem_id: b for b in demo.blocks.values() if b.elem_id in ("text-clip-notice",
                                                                              "attributes-clip-notice")}
        assert len(shown) == 2
        for block in shown.values():
            assert block.visible and "No CLIP for this model here" in block.value and "HF_HUB_OFFLINE" in block.value
        assert clip_notice("faces64", "Text editing") == ""               # the built-in tiny CLIP is there
    finally:
        mp.undo()


def test_a_new_find_clears_stale_results(explore_app):
    url, tmp = explore_app
    client = _client(url, tmp)
    client.predict("tiny32", 2, 0.7, 1, api_name="/generate")
    client.predict("tiny32", "SeFa", "all", 0, 0, 2, VOCAB, False, api_name="/explore_find_directions")
    assert client.predict("tiny32", 0, 2.0, 3, 0, api_name="/explore_grid")
    out = client.predict("tiny32", "GANSpace", "all", 0, 0, 3, VOCAB, False, api_name="/explore_find_directions")
    grid, effects_text, effects_image = out[-3:]
    assert grid is None and effects_text == "" and effects_image is None


def test_bad_inputs_give_clear_errors(explore_app, tmp_path):
    from gradio_client import handle_file

    url, tmp = explore_app
    client = _client(url, tmp)
    client.predict("tiny32", 1, 0.7, 1, api_name="/generate")
    with pytest.raises(Exception, match="custom layer range 5-2 is invalid"):
        client.predict("tiny32", "SeFa", "custom", 5, 2, 4, "", False, api_name="/explore_find_directions")
    with pytest.raises(Exception, match="Layer range|not in the list of choices|unknown layer range"):
        client.predict("tiny32", "SeFa", "sideways", 0, 0, 4, "", False, api_name="/explore_find_directions")
    with pytest.raises(Exception, match="no directions yet"):
        client.predict("tiny32", 0, 2.0, 3, 2, api_name="/explore_grid")
    with pytest.raises(Exception, match="All sliders are at 0|no directions yet"):
        client.predict("tiny32", *ZEROS, api_name="/explore_apply")

    client.predict("tiny32", "GANSpace", "all", 0, 0, 3, "", False, api_name="/explore_find_directions")
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(foreign), metadata={"format": "something-else"})
    with pytest.raises(Exception, match="not a direction file"):
        client.predict("tiny32", handle_file(str(foreign)), api_name="/explore_import_directions")
    with pytest.raises(Exception, match="not a recipe"):
        client.predict("tiny32", handle_file(str(foreign)), api_name="/recipe_open")
    good = client.predict(api_name="/explore_export_directions")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(open(good, "rb").read()[:-40])
    with pytest.raises(Exception, match="truncated or corrupted"):
        client.predict("tiny32", handle_file(str(broken)), api_name="/explore_import_directions")
    with pytest.raises(Exception, match="no edit to undo"):
        client.predict("tiny32", api_name="/recipe_undo")


def test_effect_heatmap_and_table(tiny_generator, tmp_path, monkeypatch):
    """The ground-truth panel: a heatmap image and a table with purity and CLIP agreement."""
    from interp import explore
    from interp.edit import layer_rows

    try:
        from interp.builtin import load_predictor

        load_predictor()
    except FileNotFoundError as exc:
        pytest.skip(f"the built-in attribute predictor is not trained yet ({exc})")
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(explore, "EFFECT_SAMPLES", 2)
    ds = explore.compute_directions(tiny_generator, "faces64", "sefa", layer_rows(tiny_generator, "all"), 2, "all")
    named = [{"index": i, "phrase": "a smiling face", "entry": "a smiling face | a frowning face", "sign": 1,
              "score": 0.1, "confidence": 0.5} for i in range(2)]
    ds = ds.with_names(["+ a smiling face"] * 2, naming=named)
    image, table = explore.effects_report(tiny_generator, ds, 0.7, "cpu")
    assert image.size[0] > 200 and image.size[1] > 100
    assert "Mean purity" in table and "CLIP name names the dominant true factor" in table
    assert table.count("\n| ") == 3                                       # header + 2 directions
