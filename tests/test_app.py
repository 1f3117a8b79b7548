"""The app shell: starts without any model, and answers gradio_client calls of the Generate endpoint."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 120


def test_builds_without_any_model(tmp_path, monkeypatch):
    """A fresh offline machine: no built-in file, nothing cached -> the UI says what is missing."""
    import app
    from demos.common import model_choices
    from interp.zoo import Zoo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    zoo = Zoo.from_file(root=tmp_path)
    picked = model_choices(zoo)
    assert picked.choices == [] and picked.default is None
    note = picked.note_markdown()
    assert "No model is available" in note and "--models" in note
    assert "**faces64**" in note and "faces64.safetensors does not exist" in note
    demo = app.build_demo(zoo, "cpu")
    api_names = {fn.api_name for fn in demo.fns.values()}
    assert "generate" in api_names


def test_common_helpers_roundtrip_and_grid():
    from interp.imaging import grid_image, pil_to_tensor, tensor_to_pil

    x = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)  # [1, 3, H, W]
    back = pil_to_tensor(tensor_to_pil(x))
    assert back.shape == (1, 3, 8, 8) and (back - x).abs().max() <= 1 / 127.5 + 1e-6
    assert grid_image(x.repeat(5, 1, 1, 1)).size == (3 * 8, 2 * 8)  # 5 images -> 3 columns, 2 rows
    assert pil_to_tensor(tensor_to_pil(x), resolution=16).shape == (1, 3, 16, 16)


def test_check_helpers_reject_bad_input():
    import gradio as gr

    from demos.common import check_float, check_int

    assert check_int(3.0, "Seed", 0, 10) == 3
    for bad in (None, 2.5, -1, 11, "x", float("nan")):
        with pytest.raises(gr.Error, match="Seed must be a whole number between 0 and 10"):
            check_int(bad, "Seed", 0, 10)
    with pytest.raises(gr.Error, match="between 0 and 1.5"):
        check_float(2, "Truncation psi", 0.0, 1.5)


def _wait_until_up(proc: subprocess.Popen, url: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"app.py did not answer on {url} within {STARTUP_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def running_app(tmp_path, tiny_checkpoint, free_port):
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"this is not a pickle")
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               HF_HUB_CACHE=str(tmp_path / "hf-cache"), GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    env.pop("INTERP_MODELS", None)
    log = tmp_path / "app.log"
    cmd = [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(free_port), "--device", "cpu",
           "--models", f"{tiny_checkpoint};{broken}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{free_port}/"
    try:
        _wait_until_up(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_generate_endpoint_with_gradio_client(running_app, tmp_path, tiny_generator):
    from gradio_client import Client

    client = Client(running_app, verbose=False, download_files=str(tmp_path / "downloads"))
    res = tiny_generator.img_resolution

    path, current, summary = client.predict("tiny32", 7, 0.7, 1, api_name="/generate")
    with Image.open(path) as img:
        assert img.size == (res, res) and img.mode == "RGB"
        single = torch.from_numpy(np.asarray(img).copy())
    assert np.array_equal(np.asarray(Image.open(current)), single.numpy())    # it became the current image
    assert summary.startswith("Image: seed 7, psi 0.70 from model tiny32")

    path, current, _ = client.predict("tiny32", 7, 0.7, 4, api_name="/generate")  # 4 samples -> a 2x2 grid
    with Image.open(path) as img:
        assert img.size == (2 * res, 2 * res)
        grid = torch.from_numpy(np.asarray(img).copy())
    assert torch.equal(grid[:res, :res], single)  # sample 0 of the grid is the single sample of that seed

    # the same numbers computed in-process: the endpoint runs the model it claims to run
    with torch.no_grad():
        ws = tiny_generator.mapping(tiny_generator.sample_z(1, 7), truncation_psi=0.7)
        ref = tiny_generator.synthesis(ws, noise_mode="const")[0]                  # [3, H, W]
    ref = ((ref + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)  # [H, W, 3]
    assert (ref.int() - single.int()).abs().max() <= 1

    with pytest.raises(Exception) as err:  # a file that is not a checkpoint: found at start-up, not offered
        client.predict("broken", 7, 0.7, 1, api_name="/generate")
    assert "broken is not in the list of choices" in str(err.value)
    log = (tmp_path / "app.log").read_text()                # why, in the server's log: one line, no traceback
    assert "model 'broken' is not offered: it cannot be loaded: 'broken.pkl'" in log and "Traceback" not in log
    with pytest.raises(Exception) as err:  # out of range: refused by Gradio before any work is done
        client.predict("tiny32", 7, 0.7, 17, api_name="/generate")
    assert "greater than maximum value 16" in str(err.value)


def test_get_generator_refuses_paths_and_urls(tiny_checkpoint):
    """Only registry and --models ids: nothing a visitor sends makes the server open a path or a Hub URL."""
    import gradio as gr

    from demos.common import get_generator
    from interp.zoo import Zoo

    calls = []
    zoo = Zoo.from_file(loader=lambda path, device: calls.append(path))
    zoo.add_user_models(str(tiny_checkpoint))
    ctx = SimpleNamespace(zoo=zoo, device="cpu")  # what get_generator reads of the AppContext
    for bad in ("/etc/passwd", "hf://x/y/z.pkl", "../assets/builtin/faces64.safetensors",
                "assets/builtin/faces64.safetensors", str(tiny_checkpoint), "hf://hysts/StyleGAN2/models/a.pkl"):
        with pytest.raises(gr.Error, match="unknown model id"):
            get_generator(ctx, bad)
    assert calls == []


def test_a_model_that_fails_after_start_up_is_a_clear_error(tiny_checkpoint, tmp_path, caplog):
    """A file that breaks after the start-up check (replaced on disk): the visitor gets the reason, the log one line."""
    import gradio as gr

    from demos.common import get_generator
    from interp.zoo import Zoo

    path = tmp_path / "mine.safetensors"
    path.write_bytes(tiny_checkpoint.read_bytes())
    zoo = Zoo.from_file(root=tmp_path)
    zoo.add_user_models(str(path))
    assert zoo.check_user_models("cpu") == {}
    path.write_bytes(b"not a checkpoint any more")
    with caplog.at_level("WARNING", logger="interp.app"), pytest.raises(gr.Error) as err:
        get_generator(SimpleNamespace(zoo=zoo, device="cpu"), "mine")
    assert "Model 'mine' could not be loaded" in err.value.message and "mine.safetensors" in err.value.message
    assert "user error: Model 'mine' could not be loaded" in caplog.text and "Traceback" not in caplog.text


def test_preload_note_and_flag(monkeypatch, tmp_path):
    import app
    from demos.common import preload_markdown, preload_pending
    from interp.zoo import Zoo

    assert app.parse_args([]).no_preload is False and app.parse_args(["--no-preload"]).no_preload is True
    zoo = Zoo.from_file()
    assert preload_markdown(zoo) == "" and not preload_pending(zoo)
    zoo._preload.update({"lhq256": "ready", "ffhq256-nv": "downloading"})  # as the preload thread leaves them
    text = preload_markdown(zoo)
    assert "Landscapes (LHQ) 256 (DragGAN mirror) (`lhq256`): ready" in text
    assert "(`ffhq256-nv`): downloading" in text and preload_pending(zoo)
    zoo._preload["ffhq256-nv"] = "failed: the Hugging Face Hub is unreachable (HF_HUB_OFFLINE is set)."
    assert "failed: the Hugging Face Hub is unreachable" in preload_markdown(zoo) and not preload_pending(zoo)

    demo = app.build_demo(zoo, "cpu")  # the note's refresh (page load, timer) is plumbing, not a public endpoint
    refresh = [fn for fn in demo.fns.values() if any(t[1] in ("tick", "load") for t in fn.targets)
               and getattr(fn.fn, "__name__", "") == "show_preload"]
    assert sorted(t[1] for fn in refresh for t in fn.targets) == ["load", "tick"]
    assert all(fn.api_visibility == "private" for fn in refresh)


def test_device_flag_exits_with_the_allowed_values():
    import app

    assert app.resolve_device("cpu") == "cpu"
    with pytest.raises(SystemExit, match=r"--device: device 'tpu' is not valid; use one of auto, cpu, cuda"):
        app.resolve_device("tpu")


def test_a_user_model_that_cannot_load_is_listed_not_opened(golden, tmp_path, monkeypatch):
    """`--models` with a StyleGAN3 pickle (refused, with its reason) and a damaged file next to a good one: the
    start-up check lists both as unusable, and the page opens on the good one."""
    import app
    from demos.common import model_choices

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    damaged = tmp_path / "damaged.pkl"
    damaged.write_bytes((golden / "sg2ada-tiny64" / "network.pkl").read_bytes()[:5000])
    good = golden / "rosinality-tiny64" / "stylegan2.pt"
    zoo = app.build_zoo(f"{golden / 'sg3-t-tiny64' / 'network.pkl'},{damaged},{good}")
    assert model_choices(zoo).default == "network"                # unchecked, the first user model would open
    refused = zoo.check_user_models("cpu")
    assert set(refused) == {"network", "damaged"}
    assert "StyleGAN3" in refused["network"]
    picked = model_choices(zoo)
    assert picked.default == "stylegan2" and "network" not in [i for _, i in picked.choices]
    reasons = {entry.id: why for entry, why in picked.unavailable}
    assert "StyleGAN3" in reasons["network"] and "cannot be loaded" in reasons["damaged"]
    assert "StyleGAN3" in picked.note_markdown()
