"""interp.hub: settings, the cached probe, downloads with clear reasons; the picker when the Hub is unreachable."""
from __future__ import annotations

import time

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
