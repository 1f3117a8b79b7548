"""The Explore tab answers gradio_client calls: find directions, move sliders, export / import, edits as JSON."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def explore_app(tmp_path_factory, tiny_checkpoint):
    import app
    from interp.zoo import Zoo

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("explore")
    mp.setenv("INTERP_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HUB_CACHE", str(tmp / "hf-cache"))
    zoo = Zoo.from_file(root=tmp)                   # no built-in weights there: only the tiny model is usable
    zoo.add_user_models(str(tiny_checkpoint))
    demo = app.build_demo(zoo, "cpu")
    demo.queue(default_concurrency_limit=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
    try:
        yield url, tmp
    finally:
        demo.close()
        mp.undo()


def _client(url, tmp):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp / "downloads"))


def _pixels(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).copy()


def test_endpoints_are_named(explore_app):
    from gradio_client import Client

    url, tmp = explore_app
    names = set(Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"])
    for name in ("find_directions", "render", "echo", "reset", "grid", "effects", "export_directions",
                 "import_directions", "export_edit", "render_edit", "random_seed"):
        assert f"/explore_{name}" in names


def test_use_the_generate_tabs_sample(explore_app):
    from gradio_client.exceptions import AppError

    url, tmp = explore_app
    client = _client(url, tmp)                      # one client = one session: its gr.State persists
    with pytest.raises(AppError, match="Nothing has been generated yet"):
        client.predict("tiny32", api_name="/explore_use_generated")
    generated = _pixels(client.predict("tiny32", 5, 0.6, 1, api_name="/generate"))
    seed, psi = client.predict("tiny32", api_name="/explore_use_generated")
    assert (seed, psi) == (5, 0.6)
    explored = _pixels(client.predict("tiny32", seed, psi, *[0.0] * 10, api_name="/explore_render"))
    assert np.abs(explored.astype(int) - generated.astype(int)).max() <= 1
    opened = _pixels(client.predict("tiny32", seed, psi, *[0.0] * 10, api_name="/explore_render_on_open"))
    assert np.array_equal(opened, explored)          # opening the tab shows the sample before any direction


def test_sliders_export_import_and_edit_json(explore_app, tiny_generator):
    from gradio_client import handle_file

    from interp.edit import EditRecipe, render_recipe

    url, tmp = explore_app
    client = _client(url, tmp)
    vocab = "a smiling face | a frowning face"
    zeros = [0.0] * 10

    status, *labels = client.predict("tiny32", "SeFa", "coarse", 0, 0, 4, vocab, False, 0.7,
                                         api_name="/explore_find_directions")
    assert "4 directions" in status and "index names" in status
    assert [lab["visible"] for lab in labels] == [True] * 4 + [False] * 6
    assert labels[0]["label"].startswith("#0 · ") and "of eigenvalue" in labels[0]["label"]
    original = _pixels(client.predict("tiny32", 3, 0.7, *zeros, api_name="/explore_render"))
    assert original.shape == (32, 32, 3)
    # the same pixels as an unedited sample of that seed
    with torch.no_grad():
        ref = tiny_generator.synthesis(tiny_generator.mapping(tiny_generator.sample_z(1, 3), 0.7))[0]
    ref = ((ref + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(ref.astype(int) - original.astype(int)).max() <= 1

    moved = _pixels(client.predict("tiny32", 3, 0.7, 3.0, *zeros[1:], api_name="/explore_render"))
    assert np.abs(moved.astype(int) - original.astype(int)).max() > 0
    echoed = _pixels(client.predict("tiny32", 3, 0.7, 3.0, *zeros[1:], api_name="/explore_echo"))
    assert np.array_equal(echoed, moved)                  # echo returns the last image without computing
    back = _pixels(client.predict("tiny32", 3, 0.7, *zeros, api_name="/explore_render"))
    assert np.array_equal(back, original)                 # strength 0 -> the original image exactly

    # export the directions, re-import them into a fresh session: the same slider gives the same image
    path = client.predict(api_name="/explore_export_directions")
    other = _client(url, tmp)
    status2, *_ = other.predict("tiny32", handle_file(path), api_name="/explore_import_directions")
    assert "Imported" in status2
    again = _pixels(other.predict("tiny32", 3, 0.7, 3.0, *zeros[1:], api_name="/explore_render"))
    assert np.array_equal(again, moved)

    # the edit as JSON re-creates the image, through the API and in-process
    text = client.predict("tiny32", 3, 0.7, 3.0, 0, -1.5, *zeros[3:], api_name="/explore_export_edit")
    recipe = EditRecipe.from_json(text)
    assert recipe.seed == 3 and [e.strength for e in recipe.edits] == [3.0, -1.5]
    edited = _pixels(client.predict("tiny32", 3, 0.7, 3.0, 0, -1.5, *zeros[3:], api_name="/explore_render"))
    recreated = _pixels(client.predict("tiny32", text, api_name="/explore_render_edit"))
    assert np.array_equal(recreated, edited)
    with torch.no_grad():
        img = render_recipe(tiny_generator, recipe)[0]
    img = ((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(img.astype(int) - edited.astype(int)).max() <= 1

    grid = _pixels(client.predict("tiny32", 3, 0.7, 1, 2.0, 3, 2, api_name="/explore_grid"))
    assert grid.shape == (2 * 32, 3 * 32, 3)
    assert np.array_equal(grid[:32, 32:64], original)     # middle column: strength 0 of the first seed

    # no CLIP for a user model offline: index names, and the status says why
    status, *labels = client.predict("tiny32", "GANSpace", "all", 0, 0, 2, vocab, True, 0.7,
                                     api_name="/explore_find_directions")
    assert "No CLIP is available" in status and "ViT-B-32" in status
    assert labels[0]["label"].startswith("#0 · ") and "of variance" in labels[0]["label"]

    effects = client.predict("tiny32", 0.7, api_name="/explore_effects")
    assert "built-in" in effects[1]


def test_bad_inputs_give_clear_errors(explore_app, tmp_path):
    from gradio_client import handle_file

    url, tmp = explore_app
    client = _client(url, tmp)
    with pytest.raises(Exception, match="custom layer range 5-2 is invalid"):
        client.predict("tiny32", "SeFa", "custom", 5, 2, 4, "", False, 0.7, api_name="/explore_find_directions")
    with pytest.raises(Exception, match="Layer range|not in the list of choices|unknown layer range"):
        client.predict("tiny32", "SeFa", "sideways", 0, 0, 4, "", False, 0.7, api_name="/explore_find_directions")
    with pytest.raises(Exception, match="no directions yet"):
        client.predict("tiny32", 0, 0.7, 0, 2.0, 3, 2, api_name="/explore_grid")

    client.predict("tiny32", "GANSpace", "all", 0, 0, 3, "", False, 0.7, api_name="/explore_find_directions")
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(foreign), metadata={"format": "something-else"})
    with pytest.raises(Exception, match="not a direction file"):
        client.predict("tiny32", handle_file(str(foreign)), api_name="/explore_import_directions")
    good = client.predict(api_name="/explore_export_directions")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(open(good, "rb").read()[:-40])
    with pytest.raises(Exception, match="truncated or corrupted"):
        client.predict("tiny32", handle_file(str(broken)), api_name="/explore_import_directions")
    with pytest.raises(Exception, match="not a usable edit"):
        client.predict("tiny32", json.dumps({"seed": 1}), api_name="/explore_render_edit")


def test_effect_heatmap_and_table(tiny_generator, tmp_path, monkeypatch):
    """The ground-truth panel: a heatmap image and a table with purity and CLIP agreement."""
    from demos import explore
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
    image, table = explore._effects(tiny_generator, ds, 0.7, "cpu")
    assert image.size[0] > 200 and image.size[1] > 100
    assert "Mean purity" in table and "CLIP name names the dominant true factor" in table
    assert table.count("\n| ") == 3                                       # header + 2 directions
