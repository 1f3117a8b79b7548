"""Shared fixtures: offline environment, free local ports, a tiny random generator checkpoint."""
from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

# The suite never talks to the network or to Gradio's analytics.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Golden files of the official implementations (checkpoints and expected outputs), beside the checkout.
GOLDEN_DIR = Path(os.environ.get("INTERP_GOLDEN_DIR") or REPO_ROOT.parent / "shared" / "golden")

# A tiny StyleGAN2: 32x32, a few channels; builds and runs in milliseconds.
TINY_CONFIG = dict(z_dim=16, w_dim=16, img_resolution=32, mapping_layers=2, channel_base=128, channel_max=16)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def free_port() -> int:
    """A local TCP port that nothing listens on (at the time of the call)."""
    return _free_port()


@pytest.fixture()
def hub_env(tmp_path, monkeypatch):
    """An empty Hugging Face cache in tmp, and fresh Hub probes; returns the cache directory."""
    from interp import hub

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("INTERP_HUB_TIMEOUT", raising=False)
    hub.reset_probe_cache()
    yield cache
    hub.reset_probe_cache()


@pytest.fixture()
def hub_file(hub_env):
    """``put(repo, filename, payload=b"weights") -> Path``: a file in ``hub_env``'s cache, as a download leaves it.

    The on-disk layout of huggingface_hub: models--owner--repo/refs/main -> snapshots/<commit>/<filename>.
    """
    commit = "0123456789abcdef0123456789abcdef01234567"

    def put(repo: str, filename: str, payload: bytes = b"weights") -> Path:
        root = hub_env / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(commit)
        path = root / "snapshots" / commit / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        return path

    return put


@pytest.fixture(scope="session")
def golden() -> Path:
    """The golden folder (../shared/golden beside the checkout, or $INTERP_GOLDEN_DIR).

    Only the tests that read its files use this fixture: when the folder is missing they are skipped,
    or they fail when INTERP_REQUIRE_GOLDEN=1 (set by .ci/run, so that CI never passes without them).
    """
    if not GOLDEN_DIR.is_dir():
        why = (f"golden checkpoints not found at {GOLDEN_DIR} (../shared/golden beside the checkout, "
               "or set INTERP_GOLDEN_DIR)")
        if os.environ.get("INTERP_REQUIRE_GOLDEN", "").strip() not in ("", "0"):
            pytest.fail(f"{why}; INTERP_REQUIRE_GOLDEN is set, so this is a failure", pytrace=False)
        pytest.skip(why)
    return GOLDEN_DIR


@pytest.fixture(scope="session")
def tiny_generator():
    """A random-init tiny Generator (seeded, eval mode)."""
    import torch

    from interp.models.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    return Generator(GeneratorConfig(**TINY_CONFIG)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_generator) -> Path:
    """``tiny_generator`` saved in our safetensors format; a file the zoo and the app can load."""
    from interp.models.loaders import save_generator

    path = tmp_path_factory.mktemp("ckpt") / "tiny32.safetensors"
    save_generator(tiny_generator, path)
    return path


@contextlib.contextmanager
def serve_demo(demo, **launch_kwargs):
    """Queue and launch a gr.Blocks on a free local port (as app.py does); yields its URL, closes it after."""
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(),
                            quiet=True, show_error=True, **launch_kwargs)
    try:
        yield url
    finally:
        demo.close()


def app_env(tmp: Path) -> pytest.MonkeyPatch:
    """A MonkeyPatch (undo it when done) pointing the app's disk cache and the HF cache into ``tmp``, offline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INTERP_CACHE_DIR", str(tmp / "cache"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_HUB_CACHE", str(tmp / "hf-cache"))
    return mp


def pixels(path) -> np.ndarray:
    """An image file as an RGB uint8 array [H, W, 3]."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).copy()
