"""interp.zoo: registry data, user models, offline behaviour (fast, clear failures), the generator cache."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import interp.zoo as zoo_mod
from interp.zoo import (
    FORMATS,
    HubSource,
    LocalSource,
    ModelEntry,
    ModelUnavailable,
    UnknownModelError,
    Zoo,
    parse_hf_url,
    parse_model_spec,
)

HUB_DEADLINE_S = 3.0  # the issue: an unreachable Hub must fail within 3 seconds


# ------------------------------------------------------------------ registry


def test_registry_file_is_consistent():
    zoo = Zoo.from_file()
    entries = zoo.list_models()
    assert zoo.default_id == "faces64"
    builtin = zoo.get_entry("faces64")
    assert builtin.source == LocalSource("assets/builtin/faces64.safetensors")
    assert builtin.format == "safetensors" and builtin.resolution == 64
    assert len({e.id for e in entries}) == len(entries)
    for e in entries:
        assert e.format in FORMATS and e.name and e.description
        assert 0 < e.defaults.truncation_psi <= 1
        if e.is_hub:
            assert e.source.revision == "main" and "/" in e.source.repo
            assert zoo_mod.format_from_filename(e.source.filename) == e.format
    hub = {(e.source.repo, e.source.filename) for e in entries if e.is_hub}
    for expected in [
        ("DragGan/DragGan-Models", "stylegan2-ffhq-512x512.pkl"),
        ("DragGan/DragGan-Models", "stylegan2-afhqcat-512x512.pkl"),
        ("DragGan/DragGan-Models", "stylegan2-lhq-256x256.pkl"),
        ("hysts/StyleGAN2", "models/stylegan2-ffhq-256x256.pkl"),
        ("hysts/StyleGAN2", "models/stylegan2-ffhq-1024x1024.pkl"),
        ("aaronb/StyleGAN2", "stylegan2-ffhq-config-f.pt"),
    ]:
        assert expected in hub
    # the JSON round-trips through the dataclass
    raw = json.loads(zoo_mod.REGISTRY_PATH.read_text())["models"]
    assert [ModelEntry.from_dict(d).to_dict() for d in raw] == raw


def test_bad_registry_entries_are_named():
    with pytest.raises(ValueError, match="format 'onnx' is not one of"):
        ModelEntry.from_dict({"id": "x", "source": {"path": "a.onnx"}, "format": "onnx"})
    with pytest.raises(ValueError, match="source must be"):
        ModelEntry.from_dict({"id": "x", "source": {"url": "http://x"}, "format": "nvidia-pkl"})
    with pytest.raises(ValueError, match="unknown key"):
        ModelEntry.from_dict({"id": "x", "source": {"path": "a.pkl"}, "format": "nvidia-pkl", "psi": 1})
    with pytest.raises(ValueError, match="duplicate model id"):
        e = ModelEntry("x", "x", LocalSource("a.pkl"), "nvidia-pkl")
        Zoo([e, e])


def test_missing_builtin_is_unavailable_with_reason(tmp_path):
    zoo = Zoo.from_file(root=tmp_path)  # an empty checkout: assets/builtin/faces64.safetensors is missing
    status = zoo.availability("faces64")
    assert not status.available
    assert "faces64.safetensors" in status.reason and "does not exist" in status.reason
    with pytest.raises(ModelUnavailable) as err:
        zoo.resolve("faces64")
    msg = str(err.value)
    assert "'faces64'" in msg and "does not exist" in msg and "--models" in msg
    assert "interp.builtin.train_gan" in msg                       # the entry's how_to_make
    # once the file exists the same entry is available
    target = tmp_path / "assets" / "builtin" / "faces64.safetensors"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x")
    assert zoo.availability("faces64").available and zoo.resolve("faces64") == target


def test_unknown_id_lists_known_ids():
    zoo = Zoo.from_file()
    with pytest.raises(UnknownModelError) as err:
        zoo.get_entry("ffhq-typo")
    msg = str(err.value)
    assert "'ffhq-typo'" in msg and "faces64" in msg and "ffhq512" in msg
    with pytest.raises(UnknownModelError, match="known ids"):
        zoo.load_generator("ffhq-typo")
    with pytest.raises(UnknownModelError):
        zoo_mod.get_entry("nope")  # module-level API, backed by the default zoo


# ------------------------------------------------------------ hub, offline


def _assert_clear_hub_message(msg: str, model_id: str, filename: str) -> None:
    assert f"'{model_id}'" in msg                      # which model
    assert "is unavailable:" in msg                    # why follows
    assert filename in msg and "--models" in msg       # how to provide the file by hand


def test_offline_mode_fails_fast_with_clear_message(hub_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo = Zoo.from_file()
    assert not zoo.availability("ffhq512").available
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        zoo.load_generator("ffhq512")
    elapsed = time.perf_counter() - t0
    assert elapsed < HUB_DEADLINE_S, f"offline failure took {elapsed:.2f} s"
    msg = str(err.value)
    _assert_clear_hub_message(msg, "ffhq512", "stylegan2-ffhq-512x512.pkl")
    assert "HF_HUB_OFFLINE" in msg and "cache" in msg


def test_unreachable_hub_fails_fast_with_clear_message(hub_env, monkeypatch, free_port):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port}")  # nothing listens there
    zoo = Zoo.from_file()
    assert zoo.availability("lhq256").needs_download
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailable) as err:
        zoo.load_generator("lhq256")
    elapsed = time.perf_counter() - t0
    assert elapsed < HUB_DEADLINE_S, f"unreachable-Hub failure took {elapsed:.2f} s"
    msg = str(err.value)
    _assert_clear_hub_message(msg, "lhq256", "stylegan2-lhq-256x256.pkl")
    assert "unreachable" in msg and f"127.0.0.1:{free_port}" in msg


def test_silent_hub_times_out_within_deadline(hub_env, monkeypatch):
    """An endpoint that accepts connections but never answers (a hanging proxy / firewall)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # never accept()ed: the TCP handshake completes, no HTTP answer ever comes
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        t0 = time.perf_counter()
        with pytest.raises(ModelUnavailable, match="unreachable") as err:
            Zoo.from_file().resolve("hf://hysts/StyleGAN2/models/stylegan2-ffhq-256x256.pkl")
        elapsed = time.perf_counter() - t0
    assert elapsed < HUB_DEADLINE_S, f"silent-Hub failure took {elapsed:.2f} s"
    assert "stylegan2-ffhq-256x256.pkl" in str(err.value)


def test_offline_mode_uses_the_local_cache(hub_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = hub_file("DragGan/DragGan-Models", "stylegan2-lhq-256x256.pkl")
    zoo = Zoo.from_file()
    status = zoo.availability("lhq256")
    assert status.available and status.path == cached
    assert zoo.resolve("lhq256") == cached
    assert not zoo.availability("ffhq512").available  # not cached: still unavailable


# ------------------------------------------------------------- user models


def test_user_model_spec_parsing(tmp_path):
    spec = f"{tmp_path}/My Faces.pkl; hf://DragGan/DragGan-Models/stylegan2-lhq-256x256.pkl@v1.0 ,, " \
           f"hf://datasets/someone/gans/sub/dir/net.safetensors,{tmp_path}/rosi.pt"
    entries = parse_model_spec(spec)
    assert [e.id for e in entries] == ["my-faces", "stylegan2-lhq-256x256", "net", "rosi"]
    assert [e.format for e in entries] == ["nvidia-pkl", "nvidia-pkl", "safetensors", "rosinality-pt"]
    assert all(e.user for e in entries)
    assert entries[0].source == LocalSource(str(tmp_path / "My Faces.pkl"))
    assert entries[1].source == HubSource("DragGan/DragGan-Models", "stylegan2-lhq-256x256.pkl", "v1.0")
    assert entries[2].source == HubSource("someone/gans", "sub/dir/net.safetensors", "main", "dataset")

    assert parse_hf_url("hf://owner/repo/models/a.pkl@refs/pr/1") == HubSource("owner/repo", "models/a.pkl", "refs/pr/1")
    assert parse_hf_url("hf://owner/repo@refs%2Fpr%2F1/a.pkl") == HubSource("owner/repo", "a.pkl", "refs/pr/1")
    assert parse_hf_url("hf://owner/repo/models/a.pkl") == HubSource("owner/repo", "models/a.pkl", "main")
    assert parse_hf_url("hf://owner/repo@abc123/a.pkl").revision == "abc123"
    assert parse_hf_url("hf://owner/repo/a.pkl").url == "hf://owner/repo/a.pkl@main"

    for bad, match in [
        ("hf://owner/a.pkl", "names no file inside a repository"),
        ("hf://owner/repo/a.pkl@", "empty revision"),
        ("https://example.com/a.pkl", "only local paths and hf://"),
        ("/data/model.onnx", r"extension must be one of \.pkl"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_model_spec(bad)
    assert parse_model_spec(None) == [] and parse_model_spec(" ; , ") == []


def test_add_user_models_ids_and_availability(tmp_path):
    present = tmp_path / "faces64.pkl"
    present.write_bytes(b"x")
    zoo = Zoo.from_file()
    added = zoo.add_user_models([f"{present};{tmp_path}/missing.pt", "hf://a/b/faces64.pkl"])
    # a clash with a registry id gets a suffix; the same source twice is one entry
    assert [e.id for e in added] == ["faces64-2", "missing", "faces64-3"]
    assert zoo.add_user_models(str(present)) == [added[0]]
    assert zoo.availability("faces64-2").available
    missing = zoo.availability("missing")
    assert not missing.available and "missing.pt" in missing.reason
    with pytest.raises(ModelUnavailable, match="--models"):
        zoo.resolve("missing")


def test_interp_models_env_feeds_the_default_zoo(tmp_path, monkeypatch):
    ckpt = tmp_path / "env-model.pkl"
    ckpt.write_bytes(b"x")
    monkeypatch.setenv("INTERP_MODELS", str(ckpt))
    monkeypatch.setattr(zoo_mod, "_default_zoo", None)
    ids = [e.id for e in zoo_mod.list_models()]
    assert "env-model" in ids and "faces64" in ids
    assert zoo_mod.resolve("env-model") == ckpt


# ------------------------------------------------------------------ loading


class _Counter:
    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path, device: str) -> nn.Module:
        self.calls.append(path)
        return nn.Linear(2, 2)


def test_generator_cache_is_a_small_lru(tmp_path):
    files = []
    for name in ("a.pkl", "b.pkl"):
        (tmp_path / name).write_bytes(b"x")
        files.append(tmp_path / name)
    loader = _Counter()
    zoo = Zoo(loader=loader, cache_size=1)
    zoo.add_user_models([str(f) for f in files])
    g1 = zoo.load_generator("a")
    assert zoo.load_generator("a") is g1 and zoo.load_generator(files[0]) is g1  # id and path share the entry
    assert not g1.training and not any(p.requires_grad for p in g1.parameters())
    zoo.load_generator("b")
    assert zoo.load_generator("a") is not g1  # evicted by b (cache_size=1), loaded again
    assert len(loader.calls) == 3
    with pytest.raises(ValueError, match="device 'tpu' is not valid"):
        zoo.load_generator("a", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            zoo.load_generator("a", device="cuda")


def test_load_generator_from_a_real_checkpoint(tiny_checkpoint, tiny_generator):
    zoo = Zoo()
    G = zoo.load_generator(str(tiny_checkpoint))  # an ad-hoc local path, not registered
    assert G.img_resolution == tiny_generator.img_resolution
    assert G.content_hash() == tiny_generator.content_hash()
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, truncation_psi=0.7))  # [2, 3, 32, 32]
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    assert zoo.load_generator(tiny_checkpoint) is G


def test_registry_sha256_pins_the_file(tiny_checkpoint, tmp_path):
    import hashlib
    from dataclasses import replace

    digest = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    entry = ModelEntry.from_dict({"id": "tiny", "source": {"path": str(tiny_checkpoint)}, "format": "safetensors",
                                  "sha256": digest})
    assert entry.sha256 == digest and entry.to_dict()["sha256"] == digest
    assert "sha256" not in replace(entry, sha256=None).to_dict()
    zoo = Zoo([entry, replace(entry, id="pinned-elsewhere", sha256="0" * 64)])
    assert zoo.load_generator("tiny").img_resolution == 32
    with pytest.raises(ModelUnavailable) as err:
        zoo.load_generator("pinned-elsewhere")
    message = str(err.value)
    assert "'pinned-elsewhere'" in message and "is not the one the registry names" in message
    assert f"starts with {digest[:12]}, the registry's with 000000000000" in message
    for bad in ("abc", "0" * 63, "g" * 64, digest.upper(), 12):
        with pytest.raises(ValueError, match="sha256 must be 64 lowercase hex digits"):
            ModelEntry.from_dict({"id": "x", "source": {"path": "x.pkl"}, "format": "nvidia-pkl", "sha256": bad})


# ------------------------------------------------------------------ preload


def test_readme_preload_from_hub_matches_the_registry():
    """A Space bakes the README's `preload_from_hub` files into its image: they are the registry's preload entries."""
    import yaml

    text = (zoo_mod.REPO_ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README.md must start with the Space's YAML front matter"
    front = yaml.safe_load(text.split("---\n", 2)[1])
    listed = set()
    for line in front["preload_from_hub"]:  # "owner/repo file1,file2 [revision]"
        repo, files, *revision = line.split()
        listed |= {(repo, f, revision[0] if revision else "main") for f in files.split(",")}
    zoo = Zoo.from_file()
    assert 2 <= len(zoo.preload_ids) <= 3
    preload = [zoo.get_entry(i) for i in zoo.preload_ids]
    assert all(e.is_hub and e.source.repo_type == "model" and e.resolution <= 256 for e in preload)
    assert listed == {(e.source.repo, e.source.filename, e.source.revision) for e in preload}


def test_preload_entry_field_is_checked():
    base = {"id": "x", "source": {"repo": "a/b", "filename": "x.pkl"}, "format": "nvidia-pkl"}
    assert ModelEntry.from_dict({**base, "preload": True}).preload
    assert not ModelEntry.from_dict(base).preload and "preload" not in ModelEntry.from_dict(base).to_dict()
    with pytest.raises(ValueError, match="preload must be true or false"):
        ModelEntry.from_dict({**base, "preload": "yes"})


def test_preload_offline_ends_at_once_with_reasons(hub_file, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = hub_file("DragGan/DragGan-Models", "stylegan2-lhq-256x256.pkl")
    zoo = Zoo.from_file()
    assert zoo.preload_status() == {}
    with pytest.raises(UnknownModelError):
        zoo.start_preload(["lhq256", "no-such-model"])  # checked before any thread starts
    assert zoo.preload_status() == {}

    thread = zoo.start_preload(["lhq256", "ffhq512"])
    assert thread is not None and thread.daemon
    thread.join(HUB_DEADLINE_S)
    assert not thread.is_alive()
    status = zoo.preload_status()
    assert list(status) == ["lhq256", "ffhq512"]
    assert status["lhq256"] == "ready" and zoo.resolve("lhq256") == cached
    assert status["ffhq512"].startswith("failed: ") and "HF_HUB_OFFLINE" in status["ffhq512"]

    assert zoo.start_preload(["lhq256"]) is None  # ready: nothing to do
    hub_file("DragGan/DragGan-Models", "stylegan2-ffhq-512x512.pkl")
    zoo.start_preload(["ffhq512"]).join(HUB_DEADLINE_S)  # failed ones are tried again
    assert zoo.preload_status()["ffhq512"] == "ready"


def test_preload_with_a_silent_hub_never_hangs(hub_env, monkeypatch):
    """The default preload (the registry's preload entries) against a Hub that never answers."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        zoo = Zoo.from_file()
        t0 = time.perf_counter()
        thread = zoo.start_preload()
        assert time.perf_counter() - t0 < 0.5  # returns at once
        thread.join(HUB_DEADLINE_S + 1)
        elapsed = time.perf_counter() - t0
    assert not thread.is_alive(), "the preload thread still runs"
    assert elapsed < HUB_DEADLINE_S, f"preload of {zoo.preload_ids} took {elapsed:.2f} s"  # one probe for all
    status = zoo.preload_status()
    assert list(status) == zoo.preload_ids
    assert all(s.startswith("failed: the Hugging Face Hub is unreachable") for s in status.values()), status


def test_preload_thread_reports_unexpected_errors(monkeypatch):
    zoo = Zoo.from_file()

    def broken(source):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(zoo, "resolve", broken)
    zoo.start_preload(["ffhq256-nv"]).join(HUB_DEADLINE_S)
    assert zoo.preload_status() == {"ffhq256-nv": "failed: RuntimeError: disk on fire"}
