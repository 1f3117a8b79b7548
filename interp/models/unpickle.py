"""A restricted unpickler for NVIDIA network pickles (stylegan2-ada-pytorch / stylegan3 snapshots).

NVIDIA pickles store each network as `torch_utils.persistence._reconstruct_persistent_obj(meta)`,
where `meta = {type: 'class', version, module_src, class_name, state}`: `module_src` is the full
Python source of the network's module and `state` is the module's `__dict__`. Loading such a file
with plain `pickle.load` imports `torch_utils` and *executes* `module_src`. Here every global the
pickle names goes through an allow-list, and the allowed ones are replaced by functions that build
plain data:

- `_reconstruct_persistent_obj(meta)` -> `PersistentRecord(class_name, state, ...)`; `module_src`
  is kept only as its length, it is never compiled or executed;
- tensors (`torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, storages embedded with
  `torch.storage._load_from_bytes`, which hold a nested `torch.save` that is read with
  `torch.load(weights_only=True)`) -> `torch.Tensor`;
- `dnnlib.util.EasyDict` -> a dict, `collections.OrderedDict`, numpy scalars/arrays, `torch.Size`,
  torch dtypes, sets.

Any other global is refused with a `CheckpointError` that names it (`module.name`). `dnnlib` and
`torch_utils` are never imported. TensorFlow-era pickles (`dnnlib.tflib.network.Network`) are
recognised by their first global and refused with a message that says what they are.

`dump_nvidia_layout` writes pickles in the same layout (used by the tests and the benchmark to
make fixtures, e.g. a pickle with hostile `module_src`); it needs none of NVIDIA's code either.
"""
from __future__ import annotations

import _codecs
import _compat_pickle
import collections
import io
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray


class CheckpointError(ValueError):
    """A checkpoint file cannot be loaded; the message says why in words a person understands."""


# ----------------------------------------------------------------------------------------------------
# Plain-data stand-ins for NVIDIA's classes


@dataclass
class PersistentRecord:
    """One `torch_utils.persistence` object as data: its class name and its `__dict__` (`state`)."""

    class_name: str
    state: dict[str, Any]
    version: int | None = None
    module_src_chars: int = 0          # length of the embedded source; the source itself is dropped
    extra: dict[str, Any] = field(default_factory=dict)


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict` (a dict with attribute access); only its items matter."""

    def __setstate__(self, state: Any) -> None:      # BUILD with a (usually empty) instance dict
        if state:
            raise CheckpointError("the pickle gives a dnnlib.util.EasyDict an unexpected instance state")


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise CheckpointError("a torch_utils.persistence record in the pickle has no 'state' dict")
    if meta.get("type", "class") != "class":
        raise CheckpointError(f"unsupported torch_utils.persistence record type {meta.get('type')!r}; "
                              "allowed: 'class'")
    class_name = meta.get("class_name")
    if not isinstance(class_name, str):
        raise CheckpointError("a torch_utils.persistence record in the pickle has no class name")
    src = meta.get("module_src")
    return PersistentRecord(class_name=class_name, state=meta["state"], version=meta.get("version"),
                            module_src_chars=len(src) if isinstance(src, str) else 0)


def _load_from_bytes(b: Any) -> torch.UntypedStorage:
    """An embedded storage: the bytes of a nested legacy `torch.save(storage)`, read weights-only."""
    if not isinstance(b, (bytes, bytearray)):
        raise CheckpointError("an embedded tensor storage in the pickle is not a byte string")
    try:
        storage = torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means a damaged file
        raise CheckpointError(f"an embedded tensor storage could not be read (the file is damaged): "
                              f"{type(e).__name__}") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise CheckpointError("an embedded tensor storage in the pickle does not hold a storage")
    return storage


def _ints(x: Any, what: str) -> tuple[int, ...]:
    if not isinstance(x, (tuple, list, torch.Size)) or not all(isinstance(v, int) for v in x):
        raise CheckpointError(f"a tensor record in the pickle has an invalid {what}")
    return tuple(x)


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, torch.TypedStorage):
        raise CheckpointError("a tensor record in the pickle does not point at a tensor storage")
    if not isinstance(storage_offset, int):
        raise CheckpointError("a tensor record in the pickle has an invalid storage offset")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError("a tensor record in the pickle has a size and stride of different lengths")
    if backward_hooks:
        raise CheckpointError("a tensor in the pickle carries backward hooks; refusing to attach code")
    t = torch.empty((0,), dtype=storage.dtype)
    try:
        t.set_(storage._untyped_storage, storage_offset, size, stride)
    except RuntimeError:
        raise CheckpointError("a tensor in the pickle does not fit its storage (the file is damaged)") from None
    if t.numel() > storage.size():      # a broadcast view bigger than its data: would blow up when copied
        raise CheckpointError("a tensor in the pickle claims more elements than its storage holds")
    return t


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("a parameter record in the pickle does not hold a tensor")
    if backward_hooks:
        raise CheckpointError("a parameter in the pickle carries backward hooks; refusing to attach code")
    return data


def _rebuild_parameter_with_state(data: Any, requires_grad: Any = False, backward_hooks: Any = None,
                                  state: Any = None) -> torch.Tensor:
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _torch_size(x: Any = ()) -> tuple[int, ...]:
    return _ints(x, "torch.Size")


def _codecs_encode(obj: Any, encoding: Any = "utf-8") -> bytes:
    """Pickle protocol 2 stores bytes as `_codecs.encode(text, 'latin1')`."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError("the pickle calls _codecs.encode with unexpected arguments")
    return _codecs.encode(obj, "latin1")


def _make_set(items: Any = ()) -> set:
    return set(items)


def _make_frozenset(items: Any = ()) -> frozenset:
    return frozenset(items)


_TORCH_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8",
                 "uint8", "bool", "float", "half", "double", "long", "int")

# (module, name) -> the object the unpickler hands out instead.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "Size"): _torch_size,
    ("builtins", "set"): _make_set,
    ("builtins", "frozenset"): _make_frozenset,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy._core.multiarray", "scalar"): _np_multiarray.scalar,
    ("numpy.core.multiarray", "scalar"): _np_multiarray.scalar,
    ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
}
_ALLOWED.update({("torch", name): getattr(torch, name) for name in _TORCH_DTYPES})

TF_NETWORK_MESSAGE = (
    "this is a TensorFlow-era StyleGAN/StyleGAN2 pickle (a (G, D, Gs) tuple of dnnlib.tflib networks, "
    "as written by the original NVlabs/stylegan2 TensorFlow code); it holds TensorFlow variables and "
    "code, not PyTorch weights, and is not supported. Convert it first, e.g. with the legacy.py script "
    "of NVlabs/stylegan2-ada-pytorch, or use a PyTorch .pkl of the same model.")


def allowed_globals() -> list[str]:
    """The allow-list, as `module.name` strings (for error messages and documentation)."""
    return sorted(f"{m}.{n}" for m, n in _ALLOWED)


def _allowed_summary() -> str:
    names = [g for g in allowed_globals() if g.removeprefix("torch.") not in _TORCH_DTYPES]
    return ", ".join(names) + " and torch dtypes"


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler, so that BUILD can be checked
    """An unpickler whose `find_class` hands out only the data builders above, and whose BUILD opcode
    never reaches a tensor: `Tensor.__setstate__` would call `set_` with any size and stride, a view
    that `_rebuild_tensor_v2`'s storage check never saw (e.g. 10**9 elements over 4 floats)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def load_build(self) -> None:
        if isinstance(self.stack[-2], torch.Tensor):
            raise CheckpointError("a tensor in the pickle is followed by extra state (the BUILD opcode) that would "
                                  "re-point it at other memory; NVIDIA network pickles never do this, refusing it")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names written by protocols 0-2 (`__builtin__.set`), as pickle's own find_class maps them.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        obj = _ALLOWED.get((module, name))
        if obj is not None:
            return obj
        if module.startswith("dnnlib.tflib"):
            raise CheckpointError(TF_NETWORK_MESSAGE)
        raise CheckpointError(
            f"the pickle refers to the global {module}.{name}, which is not on the allow-list of a "
            f"StyleGAN network pickle; refusing to load it (it could run code). Allowed globals: "
            f"{_allowed_summary()}")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("the pickle uses persistent ids, which NVIDIA network pickles never do; "
                              "it is not a network pickle")


def restricted_load(f: BinaryIO) -> Any:
    """Unpickle an NVIDIA network pickle as plain data (see the module docstring).

    Raises `CheckpointError` for refused globals and for truncated or corrupted data."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")
            return RestrictedUnpickler(f).load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RuntimeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"the pickle is truncated or corrupted and cannot be read "
                              f"({type(e).__name__}: {str(e)[:120]})") from None


# ----------------------------------------------------------------------------------------------------
# Writing the same layout (fixtures for tests and benchmarks)


class GlobalRef:
    """A callable/class placeholder that pickles as the global `module.name` without importing it."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:
        raise RuntimeError(f"{self.module}.{self.name} is a pickling placeholder and cannot be called")


class EasyDictOut(dict):
    """Pickles as `dnnlib.util.EasyDict` (a dict subclass), as NVIDIA's kwargs dicts do."""

    _pickle_as = ("dnnlib.util", "EasyDict")


class NvidiaPickler(pickle._Pickler):  # the pure-Python pickler, so that `save_global` can be overridden
    """Writes `GlobalRef(...)` and classes with `_pickle_as` as plain global references (nothing is
    imported); everything else pickles as usual (tensors as `_rebuild_tensor_v2(_load_from_bytes(..))`)."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        ref = (obj.module, obj.name) if isinstance(obj, GlobalRef) else getattr(obj, "_pickle_as", None)
        if ref is not None:
            if self.proto < 4:
                self.write(pickle.GLOBAL + f"{ref[0]}\n{ref[1]}\n".encode("utf-8"))
            else:
                self.save(ref[0])
                self.save(ref[1])
                self.write(pickle.STACK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[GlobalRef] = save_global


@dataclass
class PersistentObj:
    """What `dump_nvidia_layout` writes as `torch_utils.persistence._reconstruct_persistent_obj(meta)`."""

    class_name: str
    state: dict[str, Any]
    module_src: str = "# module source omitted\n"
    version: int = 6

    def __reduce__(self) -> tuple:
        meta = dict(type="class", version=self.version, module_src=self.module_src,
                    class_name=self.class_name, state=self.state)
        return (_RECONSTRUCT_REF, (meta,))


_RECONSTRUCT_REF = GlobalRef("torch_utils.persistence", "_reconstruct_persistent_obj")


def dump_nvidia_layout(obj: Any, f: BinaryIO, protocol: int = 4) -> None:
    """Pickle `obj` where `PersistentObj` values become NVIDIA persistence records and tensors become
    `_rebuild_tensor_v2(_load_from_bytes(...))`, the layout of stylegan2-ada-pytorch snapshots."""
    NvidiaPickler(f, protocol=protocol).dump(obj)


def module_state(params: dict[str, torch.Tensor] | None = None, buffers: dict[str, torch.Tensor] | None = None,
                 modules: dict[str, Any] | None = None, **attrs: Any) -> dict[str, Any]:
    """A torch `nn.Module.__dict__`-like state with the keys NVIDIA's pickles carry."""
    od: Callable[[], collections.OrderedDict] = collections.OrderedDict
    state: dict[str, Any] = dict(
        training=False, _parameters=dict(params or {}), _buffers=dict(buffers or {}),
        _non_persistent_buffers_set=set(), _backward_pre_hooks=od(), _backward_hooks=od(),
        _is_full_backward_hook=None, _forward_hooks=od(), _forward_hooks_with_kwargs=od(),
        _forward_hooks_always_called=od(), _forward_pre_hooks=od(), _forward_pre_hooks_with_kwargs=od(),
        _state_dict_hooks=od(), _state_dict_pre_hooks=od(), _load_state_dict_pre_hooks=od(),
        _load_state_dict_post_hooks=od(), _modules=dict(modules or {}))
    state.update(attrs)
    return state


def generator_to_nvidia_layout(G: torch.nn.Module, module_src: str = "# module source omitted\n") -> PersistentObj:
    """An interp `Generator` as the tree of persistence records NVIDIA's training code pickles: class
    names, `_parameters` / `_buffers` / `_modules`, the attributes and init kwargs (nested
    stylegan2-ada-pytorch flavour) that NVIDIA's modules carry. For fixtures and benchmarks."""
    cfg = G.config
    g_kwargs = EasyDictOut(
        z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
        mapping_kwargs=EasyDictOut(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier),
        synthesis_kwargs=EasyDictOut(channel_base=cfg.channel_base, channel_max=cfg.channel_max, num_fp16_res=0,
                                     conv_clamp=cfg.conv_clamp, architecture=cfg.architecture))

    def attrs(name: str, m: torch.nn.Module) -> dict[str, Any]:
        kind = type(m).__name__
        if kind == "Generator":
            return dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                        img_channels=cfg.img_channels, num_ws=cfg.num_ws, _init_args=(), _init_kwargs=g_kwargs)
        if kind == "MappingNetwork":
            return dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, num_ws=cfg.num_ws, num_layers=cfg.mapping_layers,
                        w_avg_beta=cfg.w_avg_beta, _init_args=(),
                        _init_kwargs=dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
                                          num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier))
        if kind == "FullyConnectedLayer":
            out_f, in_f = m.weight.shape
            lr = m.bias_gain
            return dict(activation="lrelu" if getattr(m, "lrelu", False) else "linear",
                        weight_gain=np.float64(lr / np.sqrt(in_f)), bias_gain=lr, _init_args=(in_f, out_f),
                        _init_kwargs=dict(activation="lrelu" if getattr(m, "lrelu", False) else "linear",
                                          lr_multiplier=lr))
        if kind == "SynthesisNetwork":
            return dict(w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
                        num_ws=cfg.num_ws, block_resolutions=list(cfg.block_resolutions), _init_args=(),
                        _init_kwargs=dict(w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                                          img_channels=cfg.img_channels, channel_base=cfg.channel_base,
                                          channel_max=cfg.channel_max, num_fp16_res=0, conv_clamp=cfg.conv_clamp))
        if kind == "SynthesisBlock":
            return dict(resolution=m.resolution, in_channels=m.in_channels, w_dim=cfg.w_dim,
                        img_channels=cfg.img_channels, is_last=m.resolution == cfg.img_resolution,
                        architecture=cfg.architecture, use_fp16=False, channels_last=False,
                        _init_args=(m.in_channels, cfg.channels_at(m.resolution)),
                        _init_kwargs=dict(w_dim=cfg.w_dim, resolution=m.resolution, img_channels=cfg.img_channels,
                                          architecture=cfg.architecture, conv_clamp=cfg.conv_clamp))
        if kind == "SynthesisLayer":
            return dict(resolution=m.resolution, up=m.up, use_noise=True, activation="lrelu",
                        conv_clamp=cfg.conv_clamp, padding=1, act_gain=np.float64(np.sqrt(2)),
                        _init_args=tuple(m.weight.shape[1::-1]),
                        _init_kwargs=dict(w_dim=cfg.w_dim, resolution=m.resolution, up=m.up,
                                          conv_clamp=cfg.conv_clamp))
        if kind == "ToRGBLayer":
            return dict(conv_clamp=cfg.conv_clamp, weight_gain=np.float64(m.weight_gain),
                        _init_args=tuple(m.weight.shape[1::-1][:2]), _init_kwargs=dict(w_dim=cfg.w_dim))
        return {}

    def convert(name: str, m: torch.nn.Module) -> PersistentObj:
        params = {k: torch.nn.Parameter(v.detach().clone(), requires_grad=False) for k, v in m._parameters.items()}
        buffers = {k: v.detach().clone() for k, v in m._buffers.items()}
        children = {k: convert(k, c) for k, c in m._modules.items()}
        return PersistentObj(type(m).__name__, module_state(params, buffers, children, **attrs(name, m)),
                             module_src=module_src)

    return convert("", G)
