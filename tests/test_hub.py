"""interp.hub: settings, the cached probe, downloads with clear reasons; the picker when the Hub is unreachable;
damaged and truncated files in the cache (a clear error, the app keeps serving the other models)."""
from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest

from interp import hub

HUB_DEADLINE_S = 3.0  # an unreachable Hub must fail within 3 seconds
REPO, FILE = "hysts/StyleGAN2", "models/stylegan2-ffhq-256x256.pkl"


# ------------------------------------------------------------------ settings


def test_settings_are_read_at_call_time(monkeypatch, tmp_path):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "INTERP_HUB_TIMEOUT", "HF_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    assert not hub.is_offline()
    assert hub.endpoint() == "https://huggingface.co" and hub.timeout() == hub.DEFAULT_TIMEOUT
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080/")
    monkeypatch.setenv("INTERP_HUB_TIMEOUT", "0.5")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert hub.is_offline() and hub.endpoint() == "http://mirror.local:8080" and hub.timeout() == 0.5
    assert hub.cache_dir() == tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub.cache_dir() == tmp_path / "c"
    for bad, match in (("soon", "must be a number of seconds"), ("0", "must be a positive number")):
        monkeypatch.setenv("INTERP_HUB_TIMEOUT", bad)
        with pytest.raises(ValueError, match=match):
            hub.timeout()


def test_addresses_and_how_to_fix_texts(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert hub.file_url(REPO, FILE) == f"https://huggingface.co/{REPO}/resolve/main/{FILE}"
    assert hub.file_url("a/b", "x.pkl", "refs/pr/1", "dataset", at="http://h/") == \
        "http://h/datasets/a/b/resolve/refs%2Fpr%2F1/x.pkl"
    assert hub.download_command(REPO, FILE) == f"hf download {REPO} {FILE}"
    assert hub.download_command("a/b", "x.pkl", "v1", "dataset") == \
        "hf download a/b x.pkl --revision v1 --repo-type dataset"
    how = hub.how_to_provide(REPO, FILE)
    assert hub.file_url(REPO, FILE) in how and "--models /path/to/stylegan2-ffhq-256x256.pkl" in how
    with pytest.raises(ValueError, match=r"repo_type 'modle' is not one of \['model', 'dataset', 'space'\]"):
        hub.file_url(REPO, FILE, repo_type="modle")


# ------------------------------------------------------------- reachability


def test_reachable_offline_never_probes(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: pytest.fail("probed the network in offline mode"))
    assert hub.reachable() == "HF_HUB_OFFLINE is set"


def test_reachable_probes_once_and_caches(hub_env, monkeypatch, free_port):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port}")  # nothing listens there
    calls = []
    real = hub.probe_endpoint
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: calls.append(a) or real(*a))
    t0 = time.perf_counter()
    why = hub.reachable()
    assert time.perf_counter() - t0 < HUB_DEADLINE_S
    assert why is not None and f"127.0.0.1:{free_port}" in why
    assert hub.reachable() == why and len(calls) == 1  # the answer is reused
    hub.reset_probe_cache()
    hub.reachable()
    assert len(calls) == 2
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: None)  # a Hub that answers
    hub.reset_probe_cache()
    assert hub.reachable() is None


# ------------------------------------------------------------------ files


def test_cached_file_and_offline_download(hub_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.cached_file(REPO, FILE) is None
    with pytest.raises(hub.HubUnavailable) as err:
        hub.download(REPO, FILE, label="FFHQ 256")
    exc = err.value
    assert str(exc).startswith("FFHQ 256 is unavailable: ") and "HF_HUB_OFFLINE" in exc.reason
    assert exc.how == hub.how_to_provide(REPO, FILE)
    path = hub_file(REPO, FILE)
    assert hub.cached_file(REPO, FILE) == path and hub.download(REPO, FILE) == path


def test_unreachable_download_fails_fast(hub_env, monkeypatch, free_port):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port}")
    t0 = time.perf_counter()
    with pytest.raises(hub.HubUnavailable, match="the Hugging Face Hub is unreachable") as err:
        hub.download(REPO, FILE)
    assert time.perf_counter() - t0 < HUB_DEADLINE_S
    assert err.value.what == f"{REPO}/{FILE}" and "hf download" in err.value.how


def _http_error(cls, status: int):
    response = httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))
    return cls("nope", response=response)


@pytest.mark.parametrize("error, reason", [
    (lambda e: _http_error(e.GatedRepoError, 401), "is gated: accept its terms"),
    (lambda e: _http_error(e.RepositoryNotFoundError, 404), "does not exist on the Hub or is private"),
    (lambda e: _http_error(e.RevisionNotFoundError, 404), "the revision 'main' does not exist"),
    (lambda e: e.LocalEntryNotFoundError("connection reset"), "the download failed (connection reset)"),
    (lambda e: _http_error(e.RemoteEntryNotFoundError, 404), f"has no file '{FILE}' at revision 'main'"),
    (lambda e: OSError(28, "No space left on device"), "the download failed (OSError"),
])
def test_download_errors_become_reasons(hub_env, monkeypatch, error, reason):
    import huggingface_hub
    from huggingface_hub import errors

    def failing_download(*args, **kwargs):
        raise error(errors)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "reachable", lambda: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", failing_download)
    with pytest.raises(hub.HubUnavailable) as err:
        hub.download(REPO, FILE)
    assert reason in err.value.reason and "--models" in err.value.how


# ------------------------------------------------- the picker, Hub unreachable


def _assert_no_hub_model_offered(picked, zoo, what: str) -> None:
    hub_ids = {e.id for e in zoo.list_models() if e.is_hub}
    assert not any("downloads on first use" in label for label, _ in picked.choices)
    assert not hub_ids & {i for _, i in picked.choices}
    listed = {entry.id: reason for entry, reason in picked.unavailable}
    assert hub_ids <= set(listed)
    for model_id in hub_ids:
        assert "the Hugging Face Hub is unreachable" in listed[model_id] and what in listed[model_id]
        assert "hf download" in listed[model_id]
    note = picked.note_markdown()
    assert "Hugging Face Hub is unreachable" in note and "--models /path/to/file.pkl" in note
    assert picked.default == "faces64"  # the built-in model stays usable


def test_picker_with_an_unreachable_hub(hub_env, monkeypatch, free_port):
    from demos.common import model_choices
    from interp.zoo import Zoo

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port}")
    calls = []
    real = hub.probe_endpoint
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: calls.append(a) or real(*a))
    zoo = Zoo.from_file()
    t0 = time.perf_counter()
    picked = model_choices(zoo)
    assert time.perf_counter() - t0 < HUB_DEADLINE_S
    assert len(calls) == 1  # one probe for all the Hub models
    _assert_no_hub_model_offered(picked, zoo, f"127.0.0.1:{free_port}")


def test_picker_offline(hub_env, monkeypatch):
    from demos.common import model_choices
    from interp.zoo import Zoo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: pytest.fail("probed the network in offline mode"))
    zoo = Zoo.from_file()
    _assert_no_hub_model_offered(model_choices(zoo), zoo, "HF_HUB_OFFLINE is set")


def test_picker_offers_hub_models_when_the_hub_answers(hub_env, monkeypatch):
    from demos.common import model_choices
    from interp.zoo import Zoo

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: None)
    zoo = Zoo.from_file()
    picked = model_choices(zoo)
    offered = dict((i, label) for label, i in picked.choices)
    assert all(offered[e.id].endswith(" - downloads on first use") for e in zoo.list_models() if e.is_hub)


# ------------------------------------------------- damaged files in the cache

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_blob(cache, repo: str, filename: str, content: bytes, published: bytes | None = None,
             git: bool = False):
    """A file as huggingface_hub stores it: snapshots/<commit>/<filename> -> ../../blobs/<etag>.

    The etag is the SHA-256 of the ``published`` content (Git LFS files), or its Git blob id with ``git``;
    the blob holds ``content`` (a damaged copy when it differs).
    """
    import hashlib

    published = content if published is None else published
    etag = (hashlib.sha1(b"blob %d\0" % len(published) + published) if git else hashlib.sha256(published)).hexdigest()
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    (root / "blobs").mkdir(exist_ok=True)
    (root / "blobs" / etag).write_bytes(content)
    link = root / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(Path("../" * (filename.count("/") + 2)) / "blobs" / etag)
    return link


def test_cached_files_are_checked_against_the_published_hash(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    payload = bytes(range(256)) * 64
    good = put_blob(hub_env, REPO, FILE, payload)
    assert hub.expected_digest(good)[0] == "sha256"
    assert hub.download(REPO, FILE) == good
    put_blob(hub_env, REPO, FILE, payload[:5000], published=payload)          # a truncated download
    with pytest.raises(hub.DamagedFile) as err:
        hub.download(REPO, FILE, label="FFHQ 256")
    exc = err.value
    assert isinstance(exc, hub.HubUnavailable) and exc.algorithm == "sha256"
    assert str(exc).startswith("FFHQ 256 is unavailable: the copy of models/stylegan2-ffhq-256x256.pkl in the "
                               "local Hugging Face cache is damaged")
    assert exc.actual[:12] in exc.reason and exc.expected[:12] in exc.reason
    assert f"`hf cache rm hf://models/{REPO}/{FILE} --yes`" in exc.how and "--models" in exc.how
    assert str(hub_env) not in str(exc)                                       # no server path
    # a small file kept in Git (its etag is the Git blob id), intact and then corrupted
    put_blob(hub_env, REPO, "config.json", b'{"a": 1}', git=True)
    assert hub.expected_digest(hub.download(REPO, "config.json"))[0] == "git-sha1"
    put_blob(hub_env, REPO, "config.json", b'{"a": 2}', published=b'{"a": 1}', git=True)
    with pytest.raises(hub.DamagedFile, match="Git blob id"):
        hub.download(REPO, "config.json")


def test_a_pinned_hash_is_checked_and_a_plain_file_is_not(hub_file, monkeypatch):
    import hashlib

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = hub_file(REPO, FILE, b"weights")                      # a plain file: the cache records no hash
    assert hub.expected_digest(path) is None and hub.download(REPO, FILE) == path
    assert hub.download(REPO, FILE, sha256=hashlib.sha256(b"weights").hexdigest()) == path
    with pytest.raises(hub.DamagedFile, match="the registry's one with 0000000000"):
        hub.download(REPO, FILE, sha256="0" * 64)


def test_a_fresh_download_is_checked(hub_env, monkeypatch):
    import huggingface_hub

    payload = b"\x80\x02" + bytes(4000)
    damaged = put_blob(hub_env, REPO, FILE, payload[:100], published=payload)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "reachable", lambda: None)
    monkeypatch.setattr(hub, "cached_file", lambda *a: None)                 # as if nothing were cached yet
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: str(damaged))
    with pytest.raises(hub.DamagedFile, match="is damaged"):
        hub.download(REPO, FILE)


def _nvidia_pickle(seed: int) -> bytes:
    """A tiny random StyleGAN2 as an NVIDIA network pickle (each seed another file, another blob)."""
    import io

    import torch
    from conftest import TINY_CONFIG

    from interp.models.stylegan2 import Generator, GeneratorConfig
    from interp.models.unpickle import dump_nvidia_layout, generator_to_nvidia_layout

    torch.manual_seed(seed)
    buf = io.BytesIO()
    dump_nvidia_layout(dict(G_ema=generator_to_nvidia_layout(Generator(GeneratorConfig(**TINY_CONFIG)))), buf)
    return buf.getvalue()


def test_damaged_and_truncated_checkpoints_in_the_app(hub_env, hub_file, monkeypatch, tmp_path):
    """A damaged copy (hash mismatch) and a truncated one (no hash known): a clear sentence, no traceback, no
    server path; the app keeps serving the other models, and an intact copy loads."""
    from conftest import serve_demo
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    import app
    from demos.common import model_choices
    from interp.zoo import Zoo

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "interp-cache"))
    pkl, other = _nvidia_pickle(0), _nvidia_pickle(1)
    put_blob(hub_env, "DragGan/DragGan-Models", "stylegan2-ffhq-512x512.pkl", pkl[: len(pkl) // 2], published=pkl)
    hub_file("DragGan/DragGan-Models", "stylegan2-lhq-256x256.pkl", pkl[: len(pkl) // 2])
    put_blob(hub_env, "DragGan/DragGan-Models", "stylegan2-afhqcat-512x512.pkl", other)
    zoo = Zoo.from_file()
    offered = {i for _, i in model_choices(zoo).choices}
    assert {"faces64", "ffhq512", "lhq256", "afhqcat512"} <= offered          # cached: offered, checked on use
    with serve_demo(app.build_demo(zoo, "cpu")) as url:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        for model_id, says in (("ffhq512", "stylegan2-ffhq-512x512.pkl in the local Hugging Face cache is damaged"),
                               ("lhq256", "the pickle is truncated or corrupted")):
            with pytest.raises(AppError) as err:
                client.predict(model_id, 1, 0.7, 1, api_name="/generate")
            message = str(err.value)
            assert says in message and model_id in message
            assert "Traceback" not in message and str(hub_env) not in message and str(tmp_path) not in message
            assert not any(part.startswith("/") and part.count("/") > 1 and not part.startswith("/path/to/")
                           for part in message.replace("`", " ").split()), message
        assert "seed 1" in client.predict("faces64", 1, 0.7, 1, api_name="/generate")[2]
        assert "seed 2" in client.predict("afhqcat512", 2, 0.7, 1, api_name="/generate")[2]
        with pytest.raises(AppError, match="is damaged"):                     # still refused, still serving
            client.predict("ffhq512", 1, 0.7, 1, api_name="/generate")


# ------------------------------------------------------------- CLIP for Hub models


def test_clip_availability_is_known_without_loading_one(hub_env, hub_file, monkeypatch, free_port):
    from interp.methods import naming

    monkeypatch.setattr(naming, "_HUB_CLIPS", {})
    assert naming.clip_unavailable("faces64") is None                   # the tiny CLIP ships with the repository
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    why = naming.clip_unavailable("ffhq256-nv")
    assert "not in the Hugging Face cache" in why and "HF_HUB_OFFLINE" in why
    cached = hub_file("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_pytorch_model.bin")
    assert naming.clip_unavailable("ffhq256-nv") is None                 # offline, but cached
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port}")  # online, nothing answers
    probe = hub.probe_endpoint
    monkeypatch.setattr(hub, "probe_endpoint", lambda *a: pytest.fail("probed the Hub for a cached file"))
    assert naming.clip_unavailable("ffhq256-nv") is None
    cached.unlink()
    monkeypatch.setattr(hub, "probe_endpoint", probe)
    why = naming.clip_unavailable("ffhq256-nv")
    assert "unreachable" in why and f"127.0.0.1:{free_port}" in why
