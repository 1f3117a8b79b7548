"""Inversion and restoration: known latents are recovered, degradations are consistent, uploads are checked,
S results survive as styles in a recipe, and the "Invert & restore" tab answers gradio_client."""
from __future__ import annotations

import copy

import numpy as np
import pytest
from conftest import app_env, pixels, serve_demo
import torch
from PIL import Image

from interp import metrics
from interp.edit import Latent, Recipe, render
from interp.methods import invert as inv
from interp.methods.invert import ImageError, invert, load_image, prepare_image, project_styles
from interp.methods.restore import baseline, degrade, hole_mask, restore


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a busy shared CPU, intra-op threads wait for each other far longer than they save."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def G(tiny_generator):
    """The tiny generator with a real w_avg (a random init has zeros), as training would leave it."""
    G = copy.deepcopy(tiny_generator)
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(G.sample_z(2000, 1))[:, 0].mean(0))
    return G.requires_grad_(False)


@pytest.fixture(scope="module")
def known(G):
    with torch.no_grad():
        ws = G.mapping(G.sample_z(1, 3), truncation_psi=0.6)              # [1, num_ws, w_dim], one w
        return ws, G.synthesis(ws)


def test_known_w_is_recovered(G, known):
    ws, x = known
    updates = []
    result = invert(G, x, "w", 150, 0.05, model_id="tiny", perceptual_weight=0, progress=updates.append)
    assert result.metrics["psnr"] > 40
    assert result.latent.origin == {"kind": "inversion", "method": "optimization", "space": "w", "steps": 150}
    assert [u.step for u in updates] == list(range(1, 151))
    assert updates[-1].result is result and updates[9].image is not None and updates[8].image is None
    assert len(result.losses) == 150 and result.losses[-1] < result.losses[0]
    short = [invert(G, x, "w", 5, 0.05, model_id="tiny", perceptual_weight=0) for _ in range(2)]
    assert torch.equal(short[0].latent.ws, short[1].latent.ws)            # deterministic


@pytest.mark.parametrize("space", ["w+", "s"])
def test_w_plus_and_s_converge_near_the_truth(G, known, space):
    ws, x = known
    true = ws if space == "w+" else inv.flat_styles(G, ws)
    start = true + 0.1 * torch.randn(true.shape, generator=torch.Generator().manual_seed(0))
    result = invert(G, x, space, 30, 0.03, model_id="tiny", perceptual_weight=0, start=start)
    assert result.metrics["psnr"] > 35
    with torch.no_grad():
        rendered = render(G, result.latent)
    assert metrics.psnr(rendered, result.image)[0] > 60                    # the Latent re-creates the result
    if space == "s":
        assert result.latent.styles is not None and "psnr_ws_only" in result.metrics


def test_s_latent_round_trips_a_recipe_and_projects_exactly_when_it_can(G, known, tmp_path):
    ws, _ = known
    styles = inv.flat_styles(G, ws)
    back = inv.flat_styles(G, project_styles(G, styles))                   # styles of a ws: matched exactly
    assert torch.allclose(back, styles, atol=1e-4)
    moved = styles + 0.3
    latent = Latent("tiny", "h", project_styles(G, moved)[0], {"kind": "inversion", "space": "s"}, styles=moved[0])
    loaded = Recipe.load(Recipe(latent).save(tmp_path / "s.safetensors"))
    assert torch.equal(loaded.latent.styles, latent.styles)
    with torch.no_grad():
        assert torch.equal(render(G, loaded.latent), G.synthesis_from_styles(inv.split_styles(G, moved)))
    with pytest.raises(ValueError, match="finite"):
        Latent("tiny", "h", ws[0], styles=torch.full_like(moved[0], float("nan")))


@pytest.mark.parametrize("task", ["colorize", "sr4", "sr8", "inpaint"])
def test_restoration_degradation_is_consistent(G, known, task):
    _, x = known
    hole = torch.zeros(32, 32)
    hole[8:16, 8:24] = 1
    mask = hole if task == "inpaint" else None
    observed = degrade(x, task, mask)
    assert observed.shape[-1] == {"sr4": 8, "sr8": 4}.get(task, 32)
    out = restore(G, observed, task, mask, steps=40, lr=0.05, model_id="tiny", perceptual_weight=0, truth=x)
    assert out.latent.origin["kind"] == "restoration" and out.latent.origin["task"] == task
    assert out.image.shape == (1, 3, 32, 32)
    # the restored image, degraded again, matches the observation (what the loss optimised)
    again = degrade(out.image, task, mask)
    region = None if mask is None else (1 - hole_mask(mask, 32))
    assert float(metrics.psnr(again, observed, mask=region)[0]) == pytest.approx(out.metrics["consistency_psnr"],
                                                                                  abs=0.05)
    assert out.metrics["consistency_psnr"] > 20
    assert "psnr" in out.metrics and ("psnr_mask" in out.metrics) == (task == "inpaint")
    assert baseline(observed, task, mask, 32).shape == (1, 3, 32, 32)


def test_restore_refuses_bad_masks_and_tasks(G, known):
    _, x = known
    with pytest.raises(ValueError, match="mask is empty: paint"):
        restore(G, x, "inpaint", torch.zeros(32, 32), steps=1)
    with pytest.raises(ValueError, match="covers the whole image"):
        hole_mask(torch.ones(32, 32), 32)
    with pytest.raises(ValueError, match="needs a mask"):
        restore(G, x, "inpaint", None, steps=1)
    with pytest.raises(ValueError, match="unknown restoration task 'deblur'; allowed: colorize, sr4, sr8, inpaint"):
        restore(G, x, "deblur")
    with pytest.raises(ValueError, match="unknown inversion space 'z'; allowed: w, w\\+, s"):
        invert(G, x, "z", 1)


@pytest.mark.parametrize("space", ["w+", "s"])
def test_shipped_encoders_reconstruct_renders(space):
    from interp.builtin.common import EVAL_SEED
    from interp.builtin.encoder import encoder_stem, load_encoder
    from interp.builtin.faces import images_to_tensor, render as render_faces, sample_factors
    from interp.zoo import default_zoo, load_generator

    if not encoder_stem(space).with_suffix(".safetensors").is_file() or \
            not default_zoo().availability("faces64").available:
        pytest.skip("the built-in faces64 or its encoders are not in assets/builtin")
    G = load_generator("faces64")
    x = images_to_tensor(render_faces(sample_factors(4, EVAL_SEED + 3), 64)[0])
    out = inv.encode(G, load_encoder(space), x, model_id="faces64", perceptual=None)
    assert min(r.metrics["psnr"] for r in out) > 20                       # the benchmark reports ~25-26 dB
    assert all(r.latent.origin["method"] == "encoder" and r.latent.origin["space"] == space for r in out)
    assert (out[0].latent.styles is not None) == (space == "s")


# ----------------------------------------------------------------------------------------------------
# Uploads


def test_uploads_are_converted(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (50, 30), 77).save(grey)
    x = prepare_image(load_image(grey), 32)
    assert x.shape == (1, 3, 32, 32) and torch.allclose(x, torch.full_like(x, 77 / 127.5 - 1))
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))                       # fully transparent: white
    assert np.asarray(load_image(rgba)).min() == 255
    one = prepare_image(Image.new("RGB", (1, 1), (10, 20, 30)), 32)
    assert one.shape == (1, 3, 32, 32)
    assert prepare_image(torch.zeros(3, 40, 64), 32).shape == (1, 3, 32, 32)
    assert prepare_image(np.zeros((5, 9), dtype=np.uint8), 32).shape == (1, 3, 32, 32)


def test_bad_uploads_get_clear_errors(tmp_path, monkeypatch):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="not an image that can be read"):
        load_image(text)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    big = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(big)
    monkeypatch.setattr(inv, "MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="at most 0 megapixels|megapixels are accepted"):
        load_image(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)                     # PIL's own bomb check
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(big)
    with pytest.raises(ImageError, match="NaN"):
        prepare_image(torch.full((1, 3, 8, 8), float("nan")), 32)
    with pytest.raises(ImageError, match=r"\[1, 3, H, W\]"):
        prepare_image(torch.zeros(2, 3, 8, 8), 32)


# ----------------------------------------------------------------------------------------------------
# The tab


@pytest.fixture(scope="module")
def invert_app(tmp_path_factory, tiny_checkpoint):
    import app
    from interp.zoo import Zoo

    tmp = tmp_path_factory.mktemp("invert")
    mp = app_env(tmp)
    zoo = Zoo.from_file(root=tmp)                   # no built-in weights there: only the tiny model is usable
    zoo.add_user_models(str(tiny_checkpoint))
    try:
        with serve_demo(app.build_demo(zoo, "cpu")) as url:
            yield url, tmp
    finally:
        mp.undo()


def test_tab_inverts_and_the_result_becomes_the_current_image(invert_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, tmp = invert_app
    client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = [p["parameter_name"] for p in api["/invert"]["parameters"]]
    assert params == ["model_id", "image", "method", "steps", "task", "degrade_first", "mask"]
    assert "/invert_use" in api and not [n for n in api if "brush" in n or "mask" in n]

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(photo)
    with pytest.raises(AppError, match="no result yet"):
        client.predict("tiny32", api_name="/invert_use")
    live, (before, after), status, table = client.predict(
        "tiny32", handle_file(str(photo)), "Optimization W+", 5, "Reconstruct", False, None, api_name="/invert")
    assert "PSNR" in status and "centre-cropped" in status and "ms-ssim" in status
    assert table["data"][0][:3] == ["Optimization W+", "Reconstruct", 5]
    current, summary = client.predict("tiny32", api_name="/invert_use")
    assert "an inversion (method optimization, space w+, steps 5)" in summary and "No edits yet" in summary
    assert np.array_equal(pixels(current), pixels(after)[::8, ::8])      # shown enlarged 8x (nearest)
    explored = client.predict("tiny32", *[0.0] * 10, api_name="/explore_render")   # another tab starts from it
    assert np.array_equal(pixels(explored), pixels(current))
    client.predict("tiny32", handle_file(str(photo)), "Optimization S", 3, "Super-resolve x4", True, None,
                   api_name="/invert")
    _, (_, after), _, table = client.predict("tiny32", handle_file(str(photo)), "Optimization W", 3, "Colorize",
                                             True, None, api_name="/invert")
    assert [row[1] for row in table["data"]] == ["Reconstruct", "Super-resolve x4", "Colorize"]
    assert table["data"][2][-1] == "the original"

    current, summary = client.predict("tiny32", api_name="/invert_use")
    assert "a restoration" in summary and "task colorize" in summary
    assert np.array_equal(pixels(current), pixels(after)[::8, ::8])

    low = tmp_path / "low.png"                                             # 8x8 = the tiny model's 32 / 4
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(low)
    _, (before, _), status, _ = client.predict("tiny32", handle_file(str(low)), "Optimization W+", 3,
                                               "Super-resolve x4", False, None, api_name="/invert")
    assert "Degraded result vs the upload" in status and "centre-cropped" not in status
    with pytest.raises(AppError, match="Encoders are trained for the built-in model only"):
        client.predict("tiny32", handle_file(str(photo)), "Encoder S", 0, "Reconstruct", False, None,
                       api_name="/invert")
    with pytest.raises(AppError, match="needs a mask"):
        client.predict("tiny32", handle_file(str(photo)), "Optimization W+", 3, "Inpaint", False, None,
                       api_name="/invert")
    hole = tmp_path / "hole.png"
    Image.new("L", (32, 32), 0).save(hole)
    with pytest.raises(AppError, match="mask is empty"):
        client.predict("tiny32", handle_file(str(photo)), "Optimization W+", 3, "Inpaint", False,
                       handle_file(str(hole)), api_name="/invert")
    with pytest.raises(AppError, match="greater than maximum value 1000"):        # the slider checks first
        client.predict("tiny32", handle_file(str(photo)), "Optimization W+", 5000, "Reconstruct", False, None,
                       api_name="/invert")


def test_the_method_choices_follow_the_model():
    """Encoders and hybrids are offered only for a model with a trained encoder; picking another model turns
    a chosen encoder or hybrid into the optimization in the same space (and keeps an optimization)."""
    from demos.invert import ENCODER_MODELS, METHODS, Handlers

    hub = Handlers.methods_for("hf://someone/ffhq/network.pkl", "Encoder S")
    assert hub.choices == [(m, m) for m in ("Optimization W", "Optimization W+", "Optimization S")]
    assert hub.value == "Optimization S" and "built-in model only" in hub.info
    assert Handlers.methods_for("tiny32", "Hybrid W+").value == "Optimization W+"
    assert Handlers.methods_for("tiny32", "Optimization W").value == "Optimization W"
    builtin = Handlers.methods_for(ENCODER_MODELS[0], "Optimization S")
    assert [c[0] for c in builtin.choices] == list(METHODS) and builtin.value == "Optimization S"
