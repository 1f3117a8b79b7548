"""Shared tab helpers: no server paths in what visitors read, exported files cleaned up, number inputs guarded."""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import gradio as gr
import pytest

from demos import common
from demos.common import export_path, guard_number_inputs, public_text, user_error

REPO_ROOT = Path(__file__).resolve().parent.parent


def _server_dirs() -> list[str]:
    from interp import hub

    return [str(REPO_ROOT), str(Path.home()), tempfile.gettempdir(), str(hub.cache_dir())]


def assert_no_server_paths(text: str) -> None:
    for folder in _server_dirs():
        assert folder not in text, (folder, text)
    leftover = [p for p in re.findall(r"(?<![\w{}~.:/-])/[\w.-]+/[\w./-]*", text) if not p.startswith("/path/to/")]
    assert not leftover, (leftover, text)


def test_public_text_replaces_server_folders_and_keeps_the_rest(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "interp-cache"))
    home, tmp = Path.home(), Path(tempfile.gettempdir())
    cases = {
        f"the file {REPO_ROOT}/assets/builtin/faces64.safetensors does not exist.":
            "the file {app}/assets/builtin/faces64.safetensors does not exist.",
        f"cached at {tmp_path}/hub/models--a--b/snapshots/x/g.pkl, truncated":
            "cached at {hf-cache}/models--a--b/snapshots/x/g.pkl, truncated",
        f"entry '{tmp_path}/interp-cache/sefa/0123.safetensors'":
            "entry '{interp-cache}/sefa/0123.safetensors'",
        f"({home}/models/net.pkl)": "(~/models/net.pkl)",
        "source `/srv/data/gans/network-snapshot.pkl`": "source `network-snapshot.pkl`",
        "path=/opt/x/y.pt: refused": "path=y.pt: refused",
        r"C:\Users\me\net.pkl.": "net.pkl.",
        # left alone: examples in help texts, URLs, endpoint names, fractions, our own placeholders
        "add one with `--models /path/to/file.pkl`": "add one with `--models /path/to/file.pkl`",
        "hf://owner/repo/models/f.pkl and https://huggingface.co/a/b": "hf://owner/repo/models/f.pkl and "
                                                                        "https://huggingface.co/a/b",
        "api_name=/generate, 1/2 of the rows, +/- 3": "api_name=/generate, 1/2 of the rows, +/- 3",
        "{app}/assets/x.pkl": "{app}/assets/x.pkl",
    }
    if not str(REPO_ROOT).startswith(str(tmp)):             # a checkout under /tmp reads {tmp}/...: fine too
        for text, expected in cases.items():
            assert public_text(text) == expected
    for text in cases:
        # Markdown and Gradio's toasts render HTML: a placeholder like <tmp> would be an unknown tag, and the
        # message after it would vanish
        assert not re.search(r"<[A-Za-z]", public_text(text))
    assert public_text(f"{tmp}/gradio/abc/recipe.safetensors") == "{tmp}/gradio/abc/recipe.safetensors"
    assert public_text(f"{home}x/y/z.pkl") == "z.pkl"         # /home/me does not match /home/mex
    assert public_text(42) == "42"


def test_model_description_and_unavailable_note_show_no_server_paths(tmp_path, monkeypatch, tiny_checkpoint):
    import app
    from demos.common import model_choices
    from interp.zoo import Zoo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    zoo = Zoo.from_file(root=tmp_path)                 # the built-in file is missing there
    zoo.add_user_models(str(tiny_checkpoint))
    note = model_choices(zoo).note_markdown()
    assert "faces64.safetensors does not exist" in note and "hf download" in note
    assert_no_server_paths(note)
    about = app._describe(zoo, "tiny32")
    assert "tiny32.safetensors" in about
    assert_no_server_paths(about)
    real = app.build_zoo()                             # the shipped registry: the built-in file in the checkout
    about = app._describe(real, "faces64")
    assert "assets/builtin/faces64.safetensors" in about
    assert_no_server_paths(about)


def test_user_errors_show_no_server_paths(caplog):
    where = f"{tempfile.gettempdir()}/gradio/0123/broken.safetensors"
    with caplog.at_level("WARNING", logger="interp.app"):
        err = user_error(f"'{where}' is not a readable safetensors file")
    assert isinstance(err, gr.Error) and err.message == "'{tmp}/gradio/0123/broken.safetensors' is not a readable " \
                                                          "safetensors file"
    assert where in caplog.text                        # the server's log keeps the real path


def test_export_path_gives_fresh_folders_and_removes_old_exports():
    first, second = export_path("tiny32-recipe.safetensors"), export_path("tiny32-recipe.safetensors")
    assert first.name == second.name == "tiny32-recipe.safetensors"
    assert first.parent != second.parent                          # two visitors never share a file
    assert first.parent.parent == second.parent.parent == common.export_dir()
    first.write_text("a")
    second.write_text("b")
    old = time.time() - common.EXPORT_TTL_S - 60
    os.utime(first.parent, (old, old))
    third = export_path("directions.safetensors")
    assert not first.parent.exists() and second.read_text() == "b" and third.parent.is_dir()
    assert len(list(common.export_dir().iterdir())) >= 2
    export_path("x.safetensors", ttl_s=0)                          # ttl 0: everything older goes
    time.sleep(0.01)
    export_path("y.safetensors", ttl_s=0)
    assert not second.parent.exists()
    for bad in ("", "..", "../x.safetensors", "a/b.safetensors", "a\\b", "/etc/passwd"):
        with pytest.raises(ValueError, match="plain file name"):
            export_path(bad)


def test_number_inputs_refuse_text_nan_infinity_and_fractions():
    with gr.Blocks() as demo:
        seed = gr.Number(label="Seed", precision=0, minimum=0)
        psi = gr.Slider(0, 1.5, label="Truncation psi")
        free = gr.Number(label="Scale")
        out = gr.Number()
        gr.Button().click(lambda *a: 0, [seed, psi, free], out)
    guard_number_inputs(demo)
    fn = next(iter(demo.fns.values()))
    demo.validate_inputs(fn, [3, 0.7, 2.5])                        # fine
    demo.validate_inputs(fn, [3.0, 1, None])                       # 3.0 is whole; an empty Number box is None
    for args, message in [(["abc", 0.7, 1], "Seed must be a number, got 'abc'."),
                          ([float("nan"), 0.7, 1], "Seed must be a finite number, got nan."),
                          ([1.5, 0.7, 1], "Seed must be a whole number, got 1.5."),
                          ([1, float("inf"), 1], "Truncation psi must be a finite number, got inf."),
                          ([1, None, 1], "Truncation psi must be a number, got None."),
                          ([1, 0.7, True], "Scale must be a number, got True."),
                          ([1, 0.7, [1]], "Scale must be a number, got [1].")]:
        with pytest.raises(gr.Error) as info:
            demo.validate_inputs(fn, args)
        assert info.value.message == message


def test_cache_writes_are_whole_and_once(tmp_path, monkeypatch):
    """An image returned twice is written once, by a rename: a reader never gets a truncated file."""
    import threading

    import numpy as np
    from gradio import processing_utils
    from PIL import Image

    from demos.common import install_atomic_cache_writes

    for name in ("save_pil_to_cache", "save_bytes_to_cache"):           # restored after the test
        monkeypatch.setattr(processing_utils, name, getattr(processing_utils, name))
    install_atomic_cache_writes()
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
    whole = processing_utils.encode_pil_to_bytes(img, "png")
    path = Path(processing_utils.save_pil_to_cache(img, str(tmp_path), format="png"))
    assert path.read_bytes() == whole and path.parent.name == processing_utils.hash_bytes(whole)
    first = path.stat()

    sizes, done = [], threading.Event()

    def save_again() -> None:
        for _ in range(100):
            processing_utils.save_pil_to_cache(img, str(tmp_path), format="png")
        done.set()

    writer = threading.Thread(target=save_again)
    writer.start()
    while not done.is_set():
        sizes.append(len(path.read_bytes()))
    writer.join()
    assert set(sizes) <= {len(whole)}
    assert path.stat().st_ino == first.st_ino and path.read_bytes() == whole          # never rewritten, only touched
    path.write_bytes(whole[:100])                                          # a partial file (a crash) is replaced
    assert processing_utils.save_pil_to_cache(img, str(tmp_path), format="png") == str(path)
    assert path.read_bytes() == whole
    out = Path(processing_utils.save_bytes_to_cache(b"recipe", "r.safetensors", str(tmp_path)))
    assert out.read_bytes() == b"recipe" and out.name == "r.safetensors"
    assert not list(tmp_path.rglob("*.tmp"))
