"""Checkpoint loading: golden parity with the official code, safety of the pickle path, clear errors.

Golden vectors (../shared/golden beside the checkout, see its README; INTERP_GOLDEN_DIR points
elsewhere) were computed with NVlabs stylegan2-ada-pytorch and rosinality/stylegan2-pytorch on CPU in fp32.
The tests that read them take the ``golden`` fixture (conftest.py): skipped without the folder, failed
when INTERP_REQUIRE_GOLDEN=1 (CI); the other tests here build their files themselves and always run.
"""
from __future__ import annotations

import argparse
import builtins
import json
import os
import pathlib
import pickle
import runpy
import shutil
import subprocess
import sys
import types
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp import convert
from interp.models.loaders import (FORMAT_TAG, CheckpointError, detect_format, load_checkpoint, read_checkpoint,
                                   save_generator)
from interp.models.stylegan2 import Generator, GeneratorConfig
from interp.models.unpickle import (EasyDictOut, GlobalRef, PersistentObj, PersistentRecord, RestrictedUnpickler,
                                    dump_nvidia_layout, generator_to_nvidia_layout, restricted_load)

GOLDEN = Path(os.environ.get("INTERP_GOLDEN_DIR") or Path(__file__).resolve().parents[2] / "shared" / "golden")
NVIDIA_SG2 = ["sg2ada-tiny64", "sg2ada-tiny32-fp16", "sg3repo-sg2-tiny64"]
SG2_FILES = {name: GOLDEN / name / "network.pkl" for name in NVIDIA_SG2}
SG2_FILES["rosinality-tiny64"] = GOLDEN / "rosinality-tiny64" / "stylegan2.pt"
SG3 = ["sg3-t-tiny64", "sg3-r-tiny64"]
TINY = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=2, channel_base=256, channel_max=16,
                       conv_clamp=256.0)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def loaded(golden) -> dict[str, Generator]:
    return {name: load_checkpoint(path) for name, path in SG2_FILES.items()}


def writable(obj, module_src: str | None = None):
    """Turn the restricted unpickler's data back into objects `dump_nvidia_layout` writes in NVIDIA's layout."""
    if isinstance(obj, PersistentRecord):
        src = module_src if module_src is not None else "# module source omitted\n"
        return PersistentObj(obj.class_name, writable(obj.state, module_src), module_src=src,
                             version=obj.version or 6)
    if isinstance(obj, dict):
        out = EasyDictOut() if type(obj).__name__ == "EasyDict" else type(obj)()
        out.update({k: writable(v, module_src) for k, v in obj.items()})
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(writable(v, module_src) for v in obj)
    return obj


def golden_snapshot(name: str = "sg2ada-tiny64", module_src: str | None = None) -> dict:
    with open(GOLDEN / name / "network.pkl", "rb") as f:
        return writable(restricted_load(f), module_src)


def write_pickle(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        dump_nvidia_layout(obj, f)
    return path


# ----------------------------------------------------------------------------------------------------
# Golden parity


@pytest.mark.parametrize("name", list(SG2_FILES))
def test_golden_parity(name, loaded):
    G, e = loaded[name], load_file(GOLDEN / name / "expected.safetensors")
    with torch.no_grad():
        assert max_diff(G.mapping(e["z"]), e["ws_psi1"]) <= 1e-5
        assert max_diff(G.mapping(e["z"], truncation_psi=0.7), e["ws_psi07"]) <= 1e-5
        assert max_diff(G.synthesis(e["ws_psi07"], noise_mode="const"), e["img_const"]) <= 1e-4
        if name.startswith("rosinality"):
            return
        assert max_diff(G.synthesis(e["ws_psi07"], noise_mode="none"), e["img_none"]) <= 1e-4
        assert max_diff(G.synthesis(e["ws_mix"], noise_mode="const"), e["img_mix"]) <= 1e-4
        styles = G.styles(e["ws_psi07"])
    expected_styles = {k.removeprefix("style.synthesis."): v for k, v in e.items() if k.startswith("style.")}
    assert set(styles) == set(expected_styles)
    for layer, s in expected_styles.items():
        assert max_diff(styles[layer], s) <= 1e-4, layer


@pytest.mark.parametrize("name", NVIDIA_SG2)
def test_nvidia_config_from_init_kwargs(name, loaded):
    meta = json.loads((GOLDEN / name / "meta.json").read_text())
    kw = meta["init_kwargs"]
    syn = kw.get("synthesis_kwargs", kw)                      # nested (ada) or flat (stylegan3 repo) flavour
    cfg = loaded[name].config
    assert (cfg.z_dim, cfg.w_dim, cfg.img_resolution, cfg.img_channels) == (
        kw["z_dim"], kw["w_dim"], kw["img_resolution"], kw["img_channels"])
    assert cfg.mapping_layers == kw["mapping_kwargs"]["num_layers"]
    assert (cfg.channel_base, cfg.channel_max, cfg.conv_clamp) == (syn["channel_base"], syn["channel_max"],
                                                                   syn["conv_clamp"])
    assert cfg.channels is None                                # NVIDIA's channel rule reproduces the shapes
    assert loaded[name].num_ws == meta["num_ws"]
    assert loaded[name].style_layers == [s.removeprefix("synthesis.") for s in meta["styles"]]


def test_rosinality_config_inferred_from_shapes(loaded):
    meta = json.loads((GOLDEN / "rosinality-tiny64" / "meta.json").read_text())
    cfg = loaded["rosinality-tiny64"].config
    assert cfg.channels == {int(k): v for k, v in meta["channels"].items()}
    assert (cfg.img_resolution, cfg.z_dim, cfg.w_dim, cfg.mapping_layers, cfg.conv_clamp) == (
        meta["size"], meta["style_dim"], meta["style_dim"], meta["n_mlp"], None)


def test_loaded_generator_is_for_inference(loaded):
    G = loaded["sg2ada-tiny64"]
    assert not G.training
    assert not any(p.requires_grad for p in G.parameters())
    assert all(t.device.type == "cpu" and t.dtype == torch.float32 for t in G.state_dict().values())


# ----------------------------------------------------------------------------------------------------
# Recognised, refused formats


@pytest.mark.parametrize("name", SG3)
def test_stylegan3_refused(name, golden):
    with pytest.raises(CheckpointError, match="StyleGAN3 checkpoints are not supported yet"):
        load_checkpoint(GOLDEN / name / "network.pkl")


def test_tensorflow_pickle_refused(tmp_path):
    class TFNetwork:
        def __reduce__(self):
            return (GlobalRef("dnnlib.tflib.network", "Network"), (), {"name": "G", "variables": []})

    path = write_pickle(tmp_path / "stylegan2-car-config-f.pkl", (TFNetwork(), TFNetwork(), TFNetwork()))
    with pytest.raises(CheckpointError, match="TensorFlow-era StyleGAN"):
        load_checkpoint(path)


def test_conditional_and_non_skip_generators_refused(tmp_path):
    record = generator_to_nvidia_layout(Generator(TINY))
    record.state["c_dim"] = record.state["_init_kwargs"]["c_dim"] = 10
    with pytest.raises(CheckpointError, match="conditional generator"):
        load_checkpoint(write_pickle(tmp_path / "cond.pkl", {"G_ema": record}))

    record = generator_to_nvidia_layout(Generator(TINY))
    record.state["_modules"]["synthesis"].state["_modules"]["b8"].state["architecture"] = "resnet"
    with pytest.raises(CheckpointError, match="'resnet' architecture"):
        load_checkpoint(write_pickle(tmp_path / "resnet.pkl", {"G_ema": record}))


# ----------------------------------------------------------------------------------------------------
# NVIDIA layout details


def test_writer_uses_exactly_the_golden_globals(tmp_path, golden):
    def globals_of(path: Path) -> set[tuple[str, str]]:
        seen: set[tuple[str, str]] = set()

        class Spy(RestrictedUnpickler):
            def find_class(self, module, name):
                seen.add((module, name))
                return super().find_class(module, name)

        with open(path, "rb") as f:
            Spy(f).load()
        return seen

    G = Generator(TINY)
    ours = write_pickle(tmp_path / "ours.pkl", dict(training_set_kwargs=EasyDictOut(resolution=16),
                                                    G=generator_to_nvidia_layout(G), D=None,
                                                    G_ema=generator_to_nvidia_layout(G), augment_pipe=None))
    assert globals_of(ours) == globals_of(GOLDEN / "sg2ada-tiny64" / "network.pkl")
    G2 = load_checkpoint(ours)
    assert G2.config == G.config
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_older_and_newer_pickle_protocols(tmp_path, protocol):
    G = Generator(TINY)
    path = tmp_path / f"p{protocol}.pkl"
    with open(path, "wb") as f:
        dump_nvidia_layout({"G_ema": generator_to_nvidia_layout(G)}, f, protocol=protocol)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), load_checkpoint(path).state_dict().values()))


def test_g_ema_preferred_then_g(tmp_path, loaded):
    snap = golden_snapshot()
    snap["G"].state["_modules"]["synthesis"].state["_modules"]["b4"].state["_parameters"]["const"] *= 2
    G = load_checkpoint(write_pickle(tmp_path / "both.pkl", snap))
    assert torch.equal(G.synthesis.b4.const, loaded["sg2ada-tiny64"].synthesis.b4.const)

    snap["G_ema"] = None
    G = load_checkpoint(write_pickle(tmp_path / "g_only.pkl", snap))
    assert torch.equal(G.synthesis.b4.const, 2 * loaded["sg2ada-tiny64"].synthesis.b4.const)


def test_dispatch_is_on_content_not_extension(tmp_path, loaded):
    pkl_as_pt = tmp_path / "model.pt"
    shutil.copy(SG2_FILES["sg2ada-tiny64"], pkl_as_pt)
    pt_as_pkl = tmp_path / "model.pkl"
    shutil.copy(SG2_FILES["rosinality-tiny64"], pt_as_pkl)
    assert detect_format(pkl_as_pt) == "nvidia-pkl" and detect_format(pt_as_pkl) == "torch"
    assert load_checkpoint(pkl_as_pt).content_hash() == loaded["sg2ada-tiny64"].content_hash()
    assert load_checkpoint(pt_as_pkl).content_hash() == loaded["rosinality-tiny64"].content_hash()


# ----------------------------------------------------------------------------------------------------
# Safety: nothing in a checkpoint runs


def test_dnnlib_and_torch_utils_are_never_imported_or_called(monkeypatch, golden):
    calls = []
    fakes = {name: types.ModuleType(name) for name in ("dnnlib", "dnnlib.util", "torch_utils",
                                                         "torch_utils.persistence")}
    fakes["torch_utils.persistence"]._reconstruct_persistent_obj = lambda meta: calls.append(meta)
    fakes["dnnlib.util"].EasyDict = type("EasyDict", (dict,), {"__init__": lambda self, *a: calls.append(a)})
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    G = load_checkpoint(SG2_FILES["sg2ada-tiny64"])
    assert calls == [] and G.img_resolution == 64


def test_loading_leaves_no_nvidia_modules_behind(golden):
    before = {m for m in sys.modules if m.split(".")[0] in ("dnnlib", "torch_utils")}
    load_checkpoint(SG2_FILES["sg3repo-sg2-tiny64"])
    after = {m for m in sys.modules if m.split(".")[0] in ("dnnlib", "torch_utils")}
    assert after == before


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "subprocess.Popen", "nested"])
def test_malicious_pickle_refused_and_nothing_runs(tmp_path, kind, request):
    marker = tmp_path / "pwned"
    payloads = {
        "os.system": (os.system, (f"touch {marker}",)),
        "builtins.exec": (builtins.exec, (f"open({str(marker)!r}, 'w').write('x')",)),
        "subprocess.Popen": (subprocess.Popen, (["touch", str(marker)],)),
        "nested": (os.system, (f"touch {marker}",)),
    }

    class Evil:
        def __reduce__(self):
            return payloads[kind]

    path = tmp_path / "evil.pkl"
    if kind == "nested":      # hidden deep inside an otherwise valid NVIDIA snapshot
        request.getfixturevalue("golden")
        snap = golden_snapshot()
        snap["G_ema"].state["_modules"]["mapping"].state["extra"] = Evil()
        write_pickle(path, snap)
    else:
        path.write_bytes(pickle.dumps({"G_ema": Evil(), "G": None}))
    refused = {"os.system": "system", "builtins.exec": "builtins.exec", "subprocess.Popen": "subprocess.Popen",
               "nested": "system"}[kind]
    with pytest.raises(CheckpointError, match=rf"refers to the global \S*{refused}.*refusing"):
        load_checkpoint(path)
    assert not marker.exists()


def test_payload_of_the_malicious_pickle_is_live(tmp_path):
    """Control for the test above: the same kind of pickle does run code under plain pickle.loads."""
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (builtins.exec, (f"open({str(marker)!r}, 'w').write('x')",))

    pickle.loads(pickle.dumps({"G_ema": Evil()}))
    assert marker.exists()


def test_module_src_is_never_executed(tmp_path, loaded):
    """Decision: a pickle whose embedded source is hostile still loads (the source is data, ignored)."""
    marker = tmp_path / "module_src_ran"
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('module_src was executed')\n"
    control = tmp_path / "control"
    exec(payload.replace(str(marker), str(control)), {})           # the payload is live when executed
    assert control.exists()

    path = write_pickle(tmp_path / "hostile_src.pkl", golden_snapshot(module_src=payload))
    G = load_checkpoint(path)
    assert not marker.exists()
    assert G.content_hash() == loaded["sg2ada-tiny64"].content_hash()


def test_torch_file_with_malicious_global_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"g_ema": Evil(), "latent_avg": torch.zeros(4)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="system.*refusing"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------------
# rosinality training checkpoints


def rosinality_training_checkpoint(path: Path, args: argparse.Namespace, drop_latent_avg: bool = False) -> Path:
    ckpt = torch.load(SG2_FILES["rosinality-tiny64"], map_location="cpu", weights_only=True)
    params = [torch.nn.Parameter(torch.randn(8, 4)) for _ in range(2)]
    optim = torch.optim.Adam(params, lr=0.002, betas=(0.0, 0.99))
    sum(p.sum() for p in params).backward()
    optim.step()
    data = {"g": {k: v + 0.01 for k, v in ckpt["g_ema"].items()}, "d": {"convs.0.0.weight": torch.randn(8, 3, 1, 1)},
            "g_ema": ckpt["g_ema"], "g_optim": optim.state_dict(), "d_optim": optim.state_dict(), "args": args,
            "ada_aug_p": 0.0}
    if not drop_latent_avg:
        data["latent_avg"] = ckpt["latent_avg"]
    torch.save(data, path)
    return path


def train_args(**extra) -> argparse.Namespace:
    return argparse.Namespace(path="/data/ffhq-lmdb", arch="stylegan2", iter=800000, batch=16, size=64, r1=10.0,
                              mixing=0.9, ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0,
                              augment=False, n_mlp=4, latent=64, distributed=False, start_iter=0, **extra)


def test_rosinality_training_checkpoint_loads_safely(tmp_path, loaded):
    path = rosinality_training_checkpoint(tmp_path / "000100.pt", train_args())
    with pytest.raises(pickle.UnpicklingError):          # what plain weights-only loading says about `args`
        torch.load(path, weights_only=True)
    G = load_checkpoint(path)
    assert G.content_hash() == loaded["rosinality-tiny64"].content_hash()         # g_ema, not g
    assert argparse.Namespace not in torch.serialization.get_safe_globals()       # allowed for that call only


def test_rosinality_args_with_unknown_object_refused(tmp_path, golden):
    path = rosinality_training_checkpoint(tmp_path / "x.pt", train_args(out=pathlib.PurePosixPath("/ckpt")))
    with pytest.raises(CheckpointError, match="PurePosixPath"):
        load_checkpoint(path)


def test_rosinality_without_latent_avg_estimates_it(tmp_path, loaded):
    path = rosinality_training_checkpoint(tmp_path / "no_avg.pt", train_args(), drop_latent_avg=True)
    with pytest.warns(UserWarning, match="latent_avg"):
        G = load_checkpoint(path)
    with torch.no_grad():                                  # the mean of W, checked on other samples
        z = torch.randn([20000, G.z_dim], generator=torch.Generator().manual_seed(123))
        reference = G.mapping(z)[:, 0].mean(dim=0)
    assert G.mapping.w_avg.shape == reference.shape
    assert (G.mapping.w_avg - reference).norm() < 0.05 * reference.norm()


# ----------------------------------------------------------------------------------------------------
# Our format and conversion


def test_safetensors_round_trip(tmp_path, loaded):
    G = loaded["sg2ada-tiny32-fp16"]
    save_generator(G, tmp_path / "g.safetensors")
    G2 = load_checkpoint(tmp_path / "g.safetensors")
    assert G2.config == G.config and G2.content_hash() == G.content_hash()


def test_safetensors_without_our_metadata_refused(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="no interp metadata"):
        load_checkpoint(tmp_path / "plain.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="format 'pt'"):
        load_checkpoint(tmp_path / "other.safetensors")


def test_safetensors_with_bad_config_refused(tmp_path, loaded):
    save_generator(loaded["sg2ada-tiny64"], tmp_path / "g.safetensors")
    tensors = load_file(tmp_path / "g.safetensors")
    save_file(tensors, str(tmp_path / "bad.safetensors"),
              metadata={"format": FORMAT_TAG, "config": json.dumps({"z_dim": 64, "bogus": 1})})
    with pytest.raises(CheckpointError, match="bogus"):
        load_checkpoint(tmp_path / "bad.safetensors")
    cfg = loaded["sg2ada-tiny64"].config.to_dict() | {"img_resolution": 32}
    save_file(tensors, str(tmp_path / "mismatch.safetensors"), metadata={"format": FORMAT_TAG, "config": json.dumps(cfg)})
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "mismatch.safetensors")


@pytest.mark.parametrize("name", ["sg2ada-tiny64", "sg3repo-sg2-tiny64", "rosinality-tiny64"])
def test_convert_round_trip_same_images(tmp_path, name, loaded, capsys):
    dst = tmp_path / "out.safetensors"
    assert convert.main([str(SG2_FILES[name]), str(dst)]) == 0
    assert "wrote" in capsys.readouterr().out
    G, G2 = loaded[name], load_checkpoint(dst)
    e = load_file(GOLDEN / name / "expected.safetensors")
    with torch.no_grad():
        assert torch.equal(G2.synthesis(e["ws_psi07"]), G.synthesis(e["ws_psi07"]))
        assert torch.equal(G2.mapping(e["z"], truncation_psi=0.7), G.mapping(e["z"], truncation_psi=0.7))
    assert G2.content_hash() == G.content_hash()


def test_convert_cli_errors(tmp_path, capsys, golden):
    assert convert.main([str(GOLDEN / "sg3-t-tiny64" / "network.pkl"), str(tmp_path / "x.safetensors")]) == 2
    assert "StyleGAN3 checkpoints are not supported yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.main([str(SG2_FILES["sg2ada-tiny64"]), str(tmp_path / "x.pt")])
    assert ".safetensors" in capsys.readouterr().err
    (tmp_path / "exists.safetensors").write_bytes(b"")
    with pytest.raises(SystemExit):
        convert.main([str(SG2_FILES["sg2ada-tiny64"]), str(tmp_path / "exists.safetensors")])
    assert "--force" in capsys.readouterr().err


def test_convert_runs_as_a_module(tmp_path, monkeypatch, capsys, golden):
    dst = tmp_path / "g.safetensors"
    monkeypatch.setattr(sys, "argv", ["python -m interp.convert", str(SG2_FILES["sg2ada-tiny32-fp16"]), str(dst)])
    with pytest.raises(SystemExit) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # "found in sys.modules": the tests imported it
        runpy.run_module("interp.convert", run_name="__main__", alter_sys=False)
    assert info.value.code == 0, capsys.readouterr().err
    assert load_checkpoint(dst).img_resolution == 32


# ----------------------------------------------------------------------------------------------------
# Damaged and wrong files


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def flip(src: Path, dst: Path, start: int, stop: int) -> Path:
    data = bytearray(src.read_bytes())
    for i in range(start, min(stop, len(data))):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    return dst


def assert_clear_error(path: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "Traceback" not in msg and len(msg) < 600


@pytest.mark.parametrize("name", ["sg2ada-tiny64", "rosinality-tiny64"])
@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.001])
def test_truncated_checkpoints(tmp_path, name, fraction, golden):
    assert_clear_error(cut(SG2_FILES[name], tmp_path / SG2_FILES[name].name, fraction), "truncated|corrupted|damaged")


def test_truncated_safetensors(tmp_path, loaded):
    save_generator(loaded["sg2ada-tiny64"], tmp_path / "g.safetensors")
    assert_clear_error(cut(tmp_path / "g.safetensors", tmp_path / "cut.safetensors", 0.5), "truncated|corrupted")


def test_corrupted_bytes(tmp_path, loaded):
    assert_clear_error(flip(SG2_FILES["sg2ada-tiny64"], tmp_path / "a.pkl", 2, 400), "truncated|corrupted|damaged|refus")
    pt = SG2_FILES["rosinality-tiny64"]
    size = pt.stat().st_size
    assert_clear_error(flip(pt, tmp_path / "b.pt", size - 300, size), "truncated|corrupted|damaged")
    save_generator(loaded["sg2ada-tiny64"], tmp_path / "g.safetensors")
    assert_clear_error(flip(tmp_path / "g.safetensors", tmp_path / "c.safetensors", 9, 200), "truncated|corrupted")


def _pickle_layout(data: bytes) -> tuple[list[int], list[int]]:
    """Positions of the outer pickle's opcodes, and the end of every storage blob (``_load_from_bytes``
    arguments: a legacy ``torch.save`` whose raw tensor bytes come last)."""
    import pickletools

    head = {"SHORT_BINBYTES": 2, "BINBYTES": 5, "BINBYTES8": 9}
    ops, blob_ends = [], []
    for op, arg, pos in pickletools.genops(data):
        ops.append(pos)
        if op.name in head:
            blob_ends.append(pos + head[op.name] + len(arg))
    return ops, blob_ends


def test_random_corruption_is_refused_or_loads_what_the_file_says(tmp_path, golden):
    """Damaged bytes: a broken pickle structure is always refused with a clear CheckpointError; damaged
    tensor bytes load as exactly those values (never silently the original, a default, or another error)."""
    src = SG2_FILES["sg2ada-tiny32-fp16"]
    data = src.read_bytes()
    original = load_checkpoint(src)
    reference = original.state_dict()
    ops, blob_ends = _pickle_layout(data)
    assert len(ops) > 1000 and len(blob_ends) > 75                      # the layout parse found the pickle

    def outcome(damaged: bytearray, name: str):
        path = tmp_path / name
        path.write_bytes(bytes(damaged))
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:                                  # any other exception fails the test
            msg = str(exc)
            assert name in msg and "Traceback" not in msg and len(msg) < 600, msg
            return exc

    # 1. one opcode of the outer pickle changed: the structure is broken, the file must be refused
    gen = torch.Generator().manual_seed(0)
    for trial, i in enumerate(torch.randint(0, len(ops), (16,), generator=gen).tolist()):
        damaged = bytearray(data)
        damaged[ops[i]] ^= 0x5A
        assert isinstance(outcome(damaged, f"op{trial}.pkl"), CheckpointError), f"opcode at byte {ops[i]} changed"

    # 2. one low mantissa byte flipped in every tensor's raw data: it loads, and every tensor of the
    #    generator differs from the original in exactly one element (the file's bytes, read as they are)
    damaged = bytearray(data)
    for end in blob_ends:
        damaged[end - 2] ^= 0x01
    G = outcome(damaged, "data.pkl")
    assert isinstance(G, Generator) and G.config == original.config
    changed = {k: int((v != reference[k]).sum()) for k, v in G.state_dict().items()}
    assert changed == {k: 1 for k in reference}, {k: n for k, n in changed.items() if n != 1}
    assert all(torch.isfinite(v).all() for v in G.state_dict().values())

    # 3. bytes flipped anywhere: a clear refusal or a generator of the same architecture
    for trial in range(12):
        damaged = bytearray(data)
        for pos in torch.randint(0, len(data), (8,), generator=gen).tolist():
            damaged[pos] ^= 0x5A
        result = outcome(damaged, f"fuzz{trial}.pkl")
        assert isinstance(result, CheckpointError) or result.config == original.config
    assert isinstance(load_checkpoint(src), Generator)                  # control: the undamaged file loads


def test_not_a_checkpoint(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "face.png")
    assert_clear_error(tmp_path / "face.png", "not a model checkpoint.*PNG image")
    (tmp_path / "notes.pkl").write_text("just some text\n")
    assert_clear_error(tmp_path / "notes.pkl", "not a model checkpoint.*text file")
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert_clear_error(tmp_path / "empty.pkl", "is empty")
    assert_clear_error(tmp_path / "missing.pkl", "no checkpoint file")
    assert_clear_error(tmp_path, "is not a file")


def test_pickle_without_generator(tmp_path):
    (tmp_path / "d.pkl").write_bytes(pickle.dumps({"training_set_kwargs": {}, "D": None, "augment_pipe": None}))
    assert_clear_error(tmp_path / "d.pkl", "holds no generator")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    assert_clear_error(tmp_path / "list.pkl", "not an NVIDIA network snapshot")
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "other.pt")
    assert_clear_error(tmp_path / "other.pt", "expected a rosinality")


def test_read_checkpoint_returns_config_and_nvidia_names(golden):
    config, sd = read_checkpoint(SG2_FILES["rosinality-tiny64"])
    with torch.device("meta"):
        expected = Generator(config).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    assert sd["synthesis.b4.const"].shape == (64, 4, 4) and sd["synthesis.b4.conv1.noise_strength"].shape == ()


def test_malformed_records_give_clear_errors(tmp_path):
    record = generator_to_nvidia_layout(Generator(TINY))
    del record.state["_modules"]["synthesis"]
    assert_clear_error(write_pickle(tmp_path / "nosyn.pkl", {"G_ema": record}), "no 'mapping' and 'synthesis'")

    record = generator_to_nvidia_layout(Generator(TINY))
    record.state["img_resolution"] = "big"
    assert_clear_error(write_pickle(tmp_path / "res.pkl", {"G_ema": record}), "unexpected form")

    record = generator_to_nvidia_layout(Generator(TINY))            # a broadcast view far bigger than its data
    record.state["_modules"]["mapping"].state["_buffers"]["w_avg"] = torch.zeros(1).expand(10**9)
    assert_clear_error(write_pickle(tmp_path / "huge.pkl", {"G_ema": record}), "more elements than its storage")

    record = generator_to_nvidia_layout(Generator(TINY))            # the same view smuggled in through BUILD
    record.state["_modules"]["mapping"].state["_buffers"]["w_avg"] = _RepointedTensor()
    assert_clear_error(write_pickle(tmp_path / "build.pkl", {"G_ema": record}), "followed by extra state")


class _RepointedTensor:
    """Pickles as a valid 4-float tensor followed by BUILD with (storage, 0, (10**9,), (0,)): without the
    BUILD check, Tensor.__setstate__ would call set_ and make a 10**9-element view of 4 floats."""

    def __reduce__(self):
        storage = torch.zeros(4).storage()
        return (GlobalRef("torch._utils", "_rebuild_tensor_v2"), (storage, 0, (4,), (1,), False, OrderedDict()),
                (storage, 0, (10**9,), (0,)))
