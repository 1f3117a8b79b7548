"""Checkpoint loading: NVIDIA `.pkl`, rosinality `.pt` and our own safetensors format -> `Generator`.

    G = load_checkpoint("stylegan2-ffhq-256x256.pkl")          # format found from the content
    save_generator(G, "ffhq256.safetensors")                  # config JSON in the safetensors metadata

Formats (dispatch is on the file's first bytes, not on its extension):

- NVIDIA network pickles (stylegan2-ada-pytorch snapshots, and StyleGAN2 snapshots written by the
  stylegan3 repository with flat init kwargs) through `interp.models.unpickle`, a restricted
  unpickler that rebuilds tensors and init kwargs as data and never executes the source code the
  pickle embeds (`module_src`). `G_ema` is preferred, then `G`. StyleGAN3 generators and
  TensorFlow-era pickles are recognised and refused with a message that says what they are.
- rosinality `.pt` files (`g_ema`, `latent_avg`; also training checkpoints holding `args`, `g`,
  `d` and optimizer states) through `torch.load(weights_only=True)`; names and shapes are converted
  to NVIDIA's, channel counts inferred from the weight shapes.
- our format: a safetensors file whose metadata holds `format = "interp.stylegan2"` and
  `config` = `GeneratorConfig.to_dict()` as JSON; tensors are the NVIDIA-named state dict.

Every failure raises `CheckpointError` (a `ValueError`) with a sentence that says what is wrong.
"""
from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from interp.models.stylegan2 import Generator, GeneratorConfig, skip_init
from interp.models.unpickle import CheckpointError, PersistentRecord, restricted_load

__all__ = ["CheckpointError", "FORMAT_TAG", "detect_format", "load_checkpoint", "read_checkpoint",
           "save_generator", "nvidia_to_state_dict", "rosinality_to_state_dict"]

FORMAT_TAG = "interp.stylegan2"
FORMATS = ("nvidia-pkl", "torch", "safetensors")
SUPPORTED = ("an NVIDIA StyleGAN2(-ADA) network pickle (.pkl), a rosinality StyleGAN2 checkpoint (.pt), "
             "or an interp safetensors file written by `python -m interp.convert`")

_TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")   # pickled 0x1950a86a20f9469cfc6c


# ----------------------------------------------------------------------------------------------------
# Format detection


def detect_format(path: str | Path) -> str:
    """The checkpoint format of `path` from its first bytes: one of `FORMATS`.

    Raises `CheckpointError` for a missing file, an empty file, or a file of another kind."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint file at {str(p)!r}")
    if not p.is_file():
        raise CheckpointError(f"{str(p)!r} is not a file; expected {SUPPORTED}")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(16)
    if not head:
        raise CheckpointError(f"{p.name!r} is empty; expected {SUPPORTED}")
    if head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "nvidia-pkl"
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if header_len <= size - 8:
            return "safetensors"
        raise CheckpointError(f"{p.name!r} looks like a safetensors file but is truncated "
                              f"(its header needs {header_len} bytes, the file has {size - 8})")
    raise CheckpointError(f"{p.name!r} is not a model checkpoint ({_describe(head)}); expected {SUPPORTED}")


def _describe(head: bytes) -> str:
    kinds = {b"\x89PNG": "it is a PNG image", b"\xff\xd8\xff": "it is a JPEG image", b"GIF8": "it is a GIF image",
             b"\x1f\x8b": "it is gzip-compressed", b"%PDF": "it is a PDF document", b"\x89HDF": "it is an HDF5 file"}
    for magic, what in kinds.items():
        if head.startswith(magic):
            return what
    try:
        head.decode("utf-8")
        return "it looks like a text file"
    except UnicodeDecodeError:
        return "its content is not a known checkpoint format"


# ----------------------------------------------------------------------------------------------------
# Public API


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN2 generator from any supported checkpoint; returns it in eval mode, without grads."""
    config, state_dict = read_checkpoint(path)
    G = build_generator(config, state_dict, source=Path(path).name)
    return G.to(device)


def read_checkpoint(path: str | Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    """The config and NVIDIA-named fp32 state dict of a checkpoint, without building the model."""
    fmt = detect_format(path)
    if fmt == "nvidia-pkl":
        return _read_nvidia_pickle(Path(path))
    if fmt == "torch":
        return _read_torch_file(Path(path))
    return _read_safetensors(Path(path))


def build_generator(config: GeneratorConfig, state_dict: Mapping[str, Tensor], source: str = "checkpoint") -> Generator:
    """`Generator(config)` with `state_dict` loaded strictly; mismatches become a `CheckpointError`.

    The module is built without random init (`skip_init`: about a second for 30M parameters) and the
    checkpoint's tensors are assigned to it."""
    with skip_init():
        G = Generator(config)
    expected = G.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensors of the wrong shape, e.g. {k} is {list(state_dict[k].shape)} "
                         f"but the config gives {list(expected[k].shape)}")
        raise CheckpointError(f"the weights in {source} do not match a StyleGAN2 generator with the config "
                              f"read from it: {'; '.join(parts)}")
    G.load_state_dict({k: v.contiguous() for k, v in state_dict.items()}, strict=True, assign=True)
    return G.eval().requires_grad_(False)


def save_generator(G: Generator, path: str | Path) -> None:
    """Write `G` as safetensors with `format` and `config` (JSON) in the metadata."""
    from safetensors.torch import save_file

    if not isinstance(G, Generator):
        raise TypeError(f"save_generator expects an interp Generator, got {type(G).__name__}")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in G.state_dict().items()}
    metadata = {"format": FORMAT_TAG, "config": json.dumps(G.config.to_dict(), sort_keys=True)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def _few(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


# ----------------------------------------------------------------------------------------------------
# Our format


def _read_safetensors(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT_TAG or "config" not in metadata:
                found = f"format {metadata['format']!r}" if "format" in metadata else "no interp metadata"
                raise CheckpointError(
                    f"{path.name!r} is a safetensors file with {found}; only safetensors files written by "
                    f"`python -m interp.convert` / save_generator (metadata format={FORMAT_TAG!r} and a "
                    f"'config') carry the generator config needed to load them")
            tensors = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path.name!r} is not a readable safetensors file (truncated or corrupted): "
                              f"{str(e)[:160]}") from None
    try:
        config = GeneratorConfig.from_dict(json.loads(metadata["config"]))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"the generator config stored in {path.name!r} is invalid: {e}") from None
    return config, tensors


# ----------------------------------------------------------------------------------------------------
# NVIDIA pickles


def _read_nvidia_pickle(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    try:
        with open(path, "rb") as f:
            data = restricted_load(f)
    except CheckpointError as e:
        raise CheckpointError(f"{path.name!r}: {e}") from None
    try:
        return nvidia_to_state_dict(_pick_generator(data, path.name))
    except CheckpointError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as e:
        raise CheckpointError(f"{path.name!r} has an NVIDIA network record of an unexpected form and cannot be "
                              f"read as a StyleGAN2 generator ({type(e).__name__}: {str(e)[:120]})") from None


def _pick_generator(data: Any, name: str) -> PersistentRecord:
    if isinstance(data, PersistentRecord):
        candidates = {"the pickled network": data}
    elif isinstance(data, dict):
        candidates = {k: data[k] for k in ("G_ema", "G") if data.get(k) is not None}
        if not candidates:
            keys = ", ".join(repr(k) for k in list(data)[:10])
            raise CheckpointError(f"{name!r} is a pickle of a dict with keys {keys} but holds no generator "
                                  f"('G_ema' or 'G'); is it a discriminator-only or a non-StyleGAN file?")
    else:
        raise CheckpointError(f"{name!r} is a pickle of a {type(data).__name__}, not an NVIDIA network snapshot "
                              f"(a dict with 'G_ema' / 'G')")
    key, record = next(iter(candidates.items()))
    if not isinstance(record, PersistentRecord):
        raise CheckpointError(f"{key!r} in {name!r} is a {type(record).__name__}, not an NVIDIA persistent network")
    if _is_stylegan3(record):
        kw = _init_kwargs(record)
        config = "R" if kw.get("conv_kernel") == 1 or kw.get("use_radial_filters") else "T"
        raise CheckpointError(f"{name!r} holds a StyleGAN3 generator (config {config}: Fourier-feature input, "
                              f"layers L0..L{_count_sg3_layers(record) - 1}). StyleGAN3 checkpoints are not "
                              f"supported yet; use a StyleGAN2 / StyleGAN2-ADA checkpoint")
    if record.class_name != "Generator":
        raise CheckpointError(f"{key!r} in {name!r} is a {record.class_name!r}, not a StyleGAN2 'Generator'")
    return record


def _records(record: PersistentRecord, prefix: str = ""):
    yield prefix, record
    for child_name, child in (record.state.get("_modules") or {}).items():
        if isinstance(child, PersistentRecord):
            yield from _records(child, f"{prefix}{child_name}.")


def _is_stylegan3(record: PersistentRecord) -> bool:
    for prefix, r in _records(record):
        if r.class_name == "SynthesisInput" or "magnitude_ema" in (r.state.get("_buffers") or {}):
            return True
        if prefix == "synthesis." and any(re.fullmatch(r"L\d+_\d+_\d+", k) for k in r.state.get("_modules") or {}):
            return True
    return False


def _count_sg3_layers(record: PersistentRecord) -> int:
    synthesis = (record.state.get("_modules") or {}).get("synthesis")
    modules = (synthesis.state.get("_modules") or {}) if isinstance(synthesis, PersistentRecord) else {}
    return sum(1 for k in modules if re.fullmatch(r"L\d+_\d+_\d+", k))


def _init_kwargs(record: PersistentRecord) -> dict[str, Any]:
    kw = record.state.get("_init_kwargs", record.state.get("init_kwargs")) or {}
    return dict(kw) if isinstance(kw, dict) else {}


def _flatten(record: PersistentRecord, prefix: str = "") -> dict[str, Tensor]:
    """A persistent record's tensors with torch's `state_dict()` names (parameters, persistent buffers)."""
    out: dict[str, Tensor] = {}
    state = record.state
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for name, t in (state.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(t, Tensor):
                raise CheckpointError(f"{prefix}{name} in the pickle is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointError(f"submodule {prefix}{name} in the pickle is a {type(child).__name__}, "
                                  f"not an NVIDIA persistent network")
        out.update(_flatten(child, f"{prefix}{name}."))
    return out


def nvidia_to_state_dict(record: PersistentRecord) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    """Config and fp32 state dict of an NVIDIA StyleGAN2 `Generator` record (from the restricted unpickler).

    Reads the init kwargs in both flavours (stylegan2-ada-pytorch: nested `mapping_kwargs` /
    `synthesis_kwargs`; stylegan3 repository: flat), and the sub-networks' own attributes, which
    hold the values actually used (e.g. `w_avg_beta`, the mapping layers' `bias_gain`)."""
    sd = {k: v.to(torch.float32) for k, v in _flatten(record).items()}
    modules = record.state.get("_modules") or {}
    mapping, synthesis = modules.get("mapping"), modules.get("synthesis")
    if not isinstance(mapping, PersistentRecord) or not isinstance(synthesis, PersistentRecord):
        raise CheckpointError("the pickled Generator has no 'mapping' and 'synthesis' networks")
    g_kw = _init_kwargs(record)
    m_kw = {**g_kw.get("mapping_kwargs", {}), **_init_kwargs(mapping)}
    s_kw = {**{k: v for k, v in g_kw.items() if k not in ("mapping_kwargs", "synthesis_kwargs")},
            **g_kw.get("synthesis_kwargs", {}), **_init_kwargs(synthesis)}
    gs, ms = record.state, mapping.state

    c_dim = gs.get("c_dim", g_kw.get("c_dim", 0))
    if c_dim:
        raise CheckpointError(f"this is a conditional generator (c_dim={c_dim}); only unconditional StyleGAN2 "
                              f"generators (c_dim=0) are supported")
    sub = [r for _, r in _records(synthesis)]
    architectures = {s_kw.get("architecture", "skip")} | {
        r.state["architecture"] for r in sub if r.class_name == "SynthesisBlock" and "architecture" in r.state}
    if architectures != {"skip"}:
        bad = sorted(a for a in architectures if a != "skip")
        raise CheckpointError(f"this generator uses the {bad[0]!r} architecture; only NVIDIA's default "
                              f"'skip' architecture is supported")

    z_dim, w_dim = int(gs.get("z_dim", g_kw.get("z_dim"))), int(gs.get("w_dim", g_kw.get("w_dim")))
    img_resolution = int(gs.get("img_resolution", g_kw.get("img_resolution")))
    img_channels = int(gs.get("img_channels", g_kw.get("img_channels", 3)))
    num_layers = int(ms.get("num_layers", m_kw.get("num_layers", 8)))
    fc0 = (ms.get("_modules") or {}).get("fc0")
    lr_multiplier = m_kw.get("lr_multiplier", 0.01)
    if isinstance(fc0, PersistentRecord) and "bias_gain" in fc0.state:
        lr_multiplier = fc0.state["bias_gain"]
    w_avg_beta = ms.get("w_avg_beta", m_kw.get("w_avg_beta", 0.998))
    if w_avg_beta is None:
        w_avg_beta = 0.998
    conv_clamp = s_kw.get("conv_clamp")
    layer_clamps = {r.state["conv_clamp"] for r in sub if r.class_name == "SynthesisLayer" and "conv_clamp" in r.state}
    if len(layer_clamps) == 1:           # the value the layers were built with
        conv_clamp = layer_clamps.pop()
    channel_base = int(s_kw.get("channel_base", 32768))
    channel_max = int(s_kw.get("channel_max", 512))

    channels = _channels_from_state_dict(sd, img_resolution)
    rule = {res: min(channel_base // res, channel_max) for res in channels}
    try:
        config = GeneratorConfig(
            z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            mapping_layers=num_layers, mapping_lr_multiplier=float(lr_multiplier),
            channel_base=channel_base, channel_max=channel_max,
            channels=None if channels == rule else channels,
            conv_clamp=None if conv_clamp is None else float(conv_clamp),
            w_avg_beta=float(w_avg_beta), architecture="skip")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"the generator's init kwargs in the pickle are not a valid config: {e}") from None
    return config, sd


def _channels_from_state_dict(sd: Mapping[str, Tensor], img_resolution: int) -> dict[int, int]:
    if img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise CheckpointError(f"the pickle gives img_resolution={img_resolution}, not a power of two >= 4")
    channels = {}
    for i in range(2, int(math.log2(img_resolution)) + 1):
        res = 2**i
        key = f"synthesis.b{res}.conv1.weight"
        if key not in sd:
            raise CheckpointError(f"the pickled generator has no {key}: it is not a StyleGAN2 synthesis network "
                                  f"of resolution {img_resolution}")
        channels[res] = int(sd[key].shape[0])
    return channels


# ----------------------------------------------------------------------------------------------------
# rosinality (and other torch.save files)


def _read_torch_file(path: Path) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    ckpt = _torch_load_safely(path)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path.name!r} is a PyTorch file holding a {type(ckpt).__name__}, not a "
                              f"rosinality checkpoint (a dict with 'g_ema')")
    if isinstance(ckpt.get("g_ema"), dict):
        g, which = ckpt["g_ema"], "g_ema"
    elif "style.1.weight" in ckpt:
        g, which = ckpt, "the file itself"
    elif isinstance(ckpt.get("g"), dict):
        g, which = ckpt["g"], "g"
        warnings.warn(f"{path.name}: no 'g_ema' in the checkpoint; using the non-averaged generator 'g'", stacklevel=3)
    else:
        keys = ", ".join(repr(k) for k in list(ckpt)[:10])
        raise CheckpointError(f"{path.name!r} is a PyTorch file with keys {keys}; expected a rosinality "
                              f"StyleGAN2 checkpoint with a 'g_ema' state dict")
    args = ckpt.get("args")
    lr_mlp = getattr(args, "lr_mlp", 0.01) if isinstance(args, argparse.Namespace) else 0.01
    try:
        config, sd = rosinality_to_state_dict(g, ckpt.get("latent_avg"), lr_mlp=float(lr_mlp), source=which)
    except CheckpointError:
        raise
    except (AttributeError, TypeError, ValueError, IndexError, RuntimeError) as e:
        raise CheckpointError(f"the rosinality state dict in {path.name!r} ({which}) has tensors of unexpected "
                              f"shapes ({type(e).__name__}: {str(e)[:120]})") from None
    if "mapping.w_avg" not in sd:
        sd["mapping.w_avg"] = _estimate_w_avg(config, sd)
        warnings.warn(f"{path.name}: no 'latent_avg' in the checkpoint; estimated w_avg from 10000 samples",
                      stacklevel=3)
    return config, sd


def _torch_load_safely(path: Path) -> Any:
    """`torch.load(weights_only=True)`, with `argparse.Namespace` (rosinality's `args`) allowed for this call."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"the global {m.group(1)}" if m else "an object type"
        if m or "Unsupported" in str(e):
            raise CheckpointError(f"{path.name!r} refers to {what}, which a weights-only load does not allow; "
                                  f"refusing to unpickle it (it could run code)") from None
        raise CheckpointError(f"{path.name!r} is a damaged PyTorch file: {str(e)[:160]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError, OSError) as e:
        detail = str(e).split(". ")[0][:160]
        raise CheckpointError(f"{path.name!r} is a truncated or corrupted PyTorch file and cannot be read "
                              f"({type(e).__name__}: {detail})") from None


def rosinality_to_state_dict(g: Mapping[str, Tensor], latent_avg: Tensor | None = None, lr_mlp: float = 0.01,
                             source: str = "g_ema") -> tuple[GeneratorConfig, dict[str, Tensor]]:
    """Convert a rosinality `Generator` state dict to our config and NVIDIA-named state dict.

    rosinality scales the modulated-conv weight at run time by 1 / sqrt(in * k * k) before the
    demodulation; NVIDIA applies no such scale. The scale is folded into the stored weight, so the
    demodulated weight, eps included, is exactly rosinality's. The ToRGB scale 1 / sqrt(in) equals
    NVIDIA's ToRGB `weight_gain`, and the mapping / affine layers use the same equalized-lr
    convention (weight_gain = lr_mul / sqrt(in), bias_gain = lr_mul), so those copy unchanged."""
    g = {k: v for k, v in g.items() if isinstance(v, Tensor)}
    try:
        return _convert_rosinality(g, latent_avg, lr_mlp)
    except KeyError as e:
        raise CheckpointError(f"the rosinality state dict in {source} lacks {e.args[0]}; it is not a complete "
                              f"StyleGAN2 generator") from None


def _convert_rosinality(g: dict[str, Tensor], latent_avg: Tensor | None, lr_mlp: float
                        ) -> tuple[GeneratorConfig, dict[str, Tensor]]:
    f32 = {k: v.to(torch.float32) for k, v in g.items()}
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in f32:
        n_mlp += 1
    if n_mlp == 0:
        raise CheckpointError("the rosinality state dict has no mapping layers (style.1.weight, ...)")
    style_dim = int(f32["style.1.weight"].shape[1])
    n_rgbs = 0
    while f"to_rgbs.{n_rgbs}.conv.weight" in f32:
        n_rgbs += 1
    resolution = 4 * 2**n_rgbs
    img_channels = int(f32["to_rgb1.conv.weight"].shape[1])

    sd: dict[str, Tensor] = {}
    for i in range(n_mlp):
        sd[f"mapping.fc{i}.weight"] = f32[f"style.{i + 1}.weight"]
        sd[f"mapping.fc{i}.bias"] = f32[f"style.{i + 1}.bias"]
    if latent_avg is not None:
        if not isinstance(latent_avg, Tensor) or latent_avg.numel() != style_dim:
            raise CheckpointError(f"latent_avg in the checkpoint should have {style_dim} values")
        sd["mapping.w_avg"] = latent_avg.reshape(style_dim).to(torch.float32)

    kernels = {k: v for k, v in f32.items() if k.endswith(("blur.kernel", "upsample.kernel"))}
    filt = _resample_filter(kernels)
    channels = {4: int(f32["input.input"].shape[1])}
    sd["synthesis.b4.const"] = f32["input.input"][0]                           # [1, C, 4, 4] -> [C, 4, 4]
    sd["synthesis.b4.resample_filter"] = filt.clone()
    _styled_conv(sd, f32, "conv1", "synthesis.b4.conv1", f32["noises.noise_0"], filt)
    _to_rgb(sd, f32, "to_rgb1", "synthesis.b4.torgb")
    for k in range(n_rgbs):
        res = 8 * 2**k
        channels[res] = int(f32[f"convs.{2 * k}.conv.weight"].shape[1])
        sd[f"synthesis.b{res}.resample_filter"] = filt.clone()
        _styled_conv(sd, f32, f"convs.{2 * k}", f"synthesis.b{res}.conv0", f32[f"noises.noise_{2 * k + 1}"], filt)
        _styled_conv(sd, f32, f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f32[f"noises.noise_{2 * k + 2}"], filt)
        _to_rgb(sd, f32, f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    try:
        config = GeneratorConfig(z_dim=style_dim, w_dim=style_dim, img_resolution=resolution,
                                 img_channels=img_channels, mapping_layers=n_mlp, mapping_lr_multiplier=lr_mlp,
                                 channel_max=max(channels.values()), channels=channels, conv_clamp=None)
    except ValueError as e:
        raise CheckpointError(f"the rosinality weights do not give a valid generator config: {e}") from None
    return config, sd


def _resample_filter(kernels: Mapping[str, Tensor]) -> Tensor:
    """NVIDIA's normalised [4, 4] FIR filter from rosinality's blur/upsample kernels (make_kernel * factor^2)."""
    if not kernels:
        f = torch.tensor([1.0, 3.0, 3.0, 1.0])
        return torch.outer(f, f) / 64
    normalised = [k / k.sum() for k in kernels.values()]
    if any(n.shape != normalised[0].shape or not torch.allclose(n, normalised[0]) for n in normalised):
        raise CheckpointError("the rosinality checkpoint uses different blur kernels in different layers; "
                              "only one FIR filter for every layer is supported")
    return normalised[0].clone()


def _styled_conv(sd: dict[str, Tensor], g: Mapping[str, Tensor], src: str, dst: str, noise: Tensor,
                 filt: Tensor) -> None:
    w = g[f"{src}.conv.weight"][0]                                              # [1, O, I, k, k] -> [O, I, k, k]
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    sd[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
    sd[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
    sd[f"{dst}.weight"] = w * (1 / math.sqrt(fan_in))
    sd[f"{dst}.noise_strength"] = g[f"{src}.noise.weight"].reshape([])         # [1] -> []
    sd[f"{dst}.bias"] = g[f"{src}.activate.bias"].reshape(-1)
    sd[f"{dst}.noise_const"] = noise[0, 0]                                     # [1, 1, R, R] -> [R, R]
    sd[f"{dst}.resample_filter"] = filt.clone()


def _to_rgb(sd: dict[str, Tensor], g: Mapping[str, Tensor], src: str, dst: str) -> None:
    sd[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
    sd[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
    sd[f"{dst}.weight"] = g[f"{src}.conv.weight"][0]                            # [1, 3, I, 1, 1] -> [3, I, 1, 1]
    sd[f"{dst}.bias"] = g[f"{src}.bias"].reshape(-1)                           # [1, 3, 1, 1] -> [3]


def _estimate_w_avg(config: GeneratorConfig, sd: Mapping[str, Tensor], n: int = 10000) -> Tensor:
    """Mean of W over `n` seeded latents, for rosinality files saved without `latent_avg`."""
    G = Generator(config)
    G.mapping.load_state_dict({k[len("mapping."):]: v for k, v in sd.items() if k.startswith("mapping.")
                               and k != "mapping.w_avg"}, strict=False)
    with torch.no_grad():
        z = torch.randn([n, config.z_dim], generator=torch.Generator().manual_seed(0))
        return G.mapping(z)[:, 0].mean(dim=0)
