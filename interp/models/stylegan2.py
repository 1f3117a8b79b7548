"""StyleGAN2 generator, numerically the NVIDIA stylegan2-ada-pytorch `Generator`, in plain PyTorch.

One readable file, no custom CUDA/C++ ops: the same code runs on CPU and GPU, fp32 by default.
Parameter and buffer names equal NVIDIA's `G_ema.state_dict()`, so an NVIDIA state dict loads strictly.

Latent spaces: `z` [N, z_dim] -> mapping -> `ws` (W+) [N, num_ws, w_dim] -> per-layer affine -> `s`
(StyleSpace, one vector per style layer) -> synthesis -> image [N, 3, H, W] in about [-1, 1].

Style layers are named after their block and role: `b4.conv1`, `b4.torgb`, `b8.conv0`, `b8.conv1`,
`b8.torgb`, ..., `b{R}.torgb`. `G.ws_index[name]` is the row of `ws` that feeds the layer.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

NOISE_MODES = ("const", "random", "none")
SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class GeneratorConfig:
    z_dim: int = 512                          # Input latent (Z) dimensionality.
    w_dim: int = 512                          # Intermediate latent (W) dimensionality.
    img_resolution: int = 1024                # Output resolution, a power of two >= 4.
    img_channels: int = 3                     # Number of output colour channels.
    mapping_layers: int = 8                   # Number of fully-connected layers in the mapping network.
    mapping_lr_multiplier: float = 0.01       # Learning-rate multiplier of the mapping layers.
    channel_base: int = 32768                 # Overall multiplier for the number of channels.
    channel_max: int = 512                    # Maximum number of channels in any layer.
    channels: dict[int, int] | None = None    # Explicit channels per resolution; overrides base/max.
    conv_clamp: float | None = None           # Clamp the output of convolution layers to +-X, None = off.
    w_avg_beta: float = 0.998                 # Decay of the running average of W during training.
    architecture: str = "skip"                # Only NVIDIA's default for G, 'skip', is implemented.

    def __post_init__(self) -> None:
        res = self.img_resolution
        if not isinstance(res, int) or res < 4 or res & (res - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {res!r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base", "channel_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.architecture != "skip":
            raise ValueError(f"architecture {self.architecture!r} is not supported; allowed: 'skip'")
        if self.channels is not None:
            chans = {int(k): int(v) for k, v in self.channels.items()}
            missing = [r for r in self.block_resolutions if r not in chans]
            if missing:
                raise ValueError(f"channels must give a count for every resolution; missing {missing}")
            object.__setattr__(self, "channels", chans)

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels_at(self, res: int) -> int:
        if self.channels is not None:
            return self.channels[res]
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["channels"] is not None:
            d["channels"] = {str(k): v for k, v in d["channels"].items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown generator config keys {unknown}; allowed: {sorted(known)}")
        return cls(**dict(d))


# ----------------------------------------------------------------------------------------------------
# Primitive ops


_SKIP_INIT = contextvars.ContextVar("skip_init", default=False)


@contextlib.contextmanager
def skip_init():
    """Build networks with uninitialised weights, for a checkpoint to overwrite: no random draws (about
    a second for 30M parameters). Cheaper than the meta device, whose first operations import torch._dynamo
    (2 s of every model load)."""
    token = _SKIP_INIT.set(True)
    try:
        yield
    finally:
        _SKIP_INIT.reset(token)


def _randn(shape: list[int]) -> Tensor:
    return torch.empty(shape) if _SKIP_INIT.get() else torch.randn(shape)


def setup_filter(taps: list[float]) -> Tensor:
    """Separable FIR filter as a normalised 2D outer product, e.g. [1, 3, 3, 1] -> [4, 4]."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, pad: tuple[int, int, int, int] = (0, 0, 0, 0),
              gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad (x0, x1, y0, y1), convolve with the 2D FIR filter `f` (reference)."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)                                # [N, C, H*up, W*up]
    x = F.pad(x, list(pad))
    k = (f * gain).flip([0, 1]).to(x.dtype)                               # true convolution
    k = k[None, None].repeat(c, 1, 1, 1)                                  # [C, 1, kh, kw]
    return F.conv2d(x, k, groups=c)


def upsample2d(x: Tensor, f: Tensor, gain: float = 4.0) -> Tensor:
    """2x up-sampling with the [4, 4] FIR filter `f`: `upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4)`.

    A depthwise transposed convolution (stride 2) does the zero insertion and the filter in one op,
    without the 4x larger zero-stuffed tensor; it scatters, so `f` is applied unflipped (true convolution).
    """
    c = x.shape[1]
    k = (f * gain).to(x.dtype)[None, None].expand(c, -1, -1, -1)         # [C, 1, 4, 4]
    return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)      # [N, C, 2H, 2W]


def fir_filter(x: Tensor, f: Tensor, padding: int, gain: float, bias: Tensor | None = None) -> Tensor:
    """Depthwise convolution with the 2D FIR filter `f` and equal zero padding on every side (+ bias)."""
    k = (f * gain).flip([0, 1]).to(x.dtype)[None, None]                  # [1, 1, kh, kw]
    return F.conv2d(x, k.expand(x.shape[1], -1, -1, -1), bias, padding=padding, groups=x.shape[1])


def fast_layout(x: Tensor) -> Tensor:
    """Activations in channels-last order on CPU and CUDA: oneDNN and cuDNN convolve, filter and transpose-
    convolve NHWC without reordering; on CPU this halves the time of the high-resolution layers."""
    if x.device.type in ("cpu", "cuda"):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _tracks_grad(*tensors: Tensor) -> bool:
    """Whether autograd records ops on these tensors (then no in-place updates of saved results)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def bias_act(x: Tensor, b: Tensor | None, lrelu: bool, gain: float, clamp: float | None) -> Tensor:
    """bias, optional leaky ReLU (slope 0.2), gain, clamp: NVIDIA's bias_act for 'linear' and 'lrelu'."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype)
    if lrelu:
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


# ----------------------------------------------------------------------------------------------------
# Layers


class FullyConnectedLayer(nn.Module):
    """Equalized-learning-rate linear layer."""

    def __init__(self, in_features: int, out_features: int, lrelu: bool = False,
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(_randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        b = self.bias.to(x.dtype) * self.bias_gain
        if not self.lrelu:                                                # the weight gain rides in the GEMM
            return torch.addmm(b.unsqueeze(0), x, self.weight.to(x.dtype).t(), alpha=self.weight_gain)
        w = self.weight.to(x.dtype) * self.weight_gain
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=SQRT2, clamp=None)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int, lr_multiplier: float,
                 w_avg_beta: float):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        features = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(features[i], features[i + 1], lrelu=True, lr_multiplier=lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                update_w_avg: bool = False) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).to(self.w_avg.dtype).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])                    # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = torch.cat([self.w_avg.lerp(x[:, :cutoff], truncation_psi), x[:, cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally 2x up-sampling), noise, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int,
                 conv_clamp: float | None, resample_filter: Tensor):
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(_randn([out_channels, in_channels, 3, 3]))
        self.register_buffer("resample_filter", resample_filter.clone())
        self.register_buffer("noise_const", _randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self._energy: tuple[tuple, Tensor] | None = None  # (weight identity and version, sum of w^2 over taps)
        self.set_weight_layout()
        self.register_load_state_dict_post_hook(_set_weight_layout_after_load)

    def set_weight_layout(self) -> None:
        """Store the weight [O, I, 3, 3] in the memory order its convolution reads: channels-last for conv1,
        channels-last of the transposed [I, O, 3, 3] for the up-sampling conv0. Then neither the weight
        nor its modulated copy needs a reorder per call. (Shape, values and state-dict names stay NVIDIA's;
        called again after `load_state_dict`, which may assign tensors of another layout.)"""
        with torch.no_grad():
            w = self.weight.data
            if self.up == 1:
                self.weight.data = w.contiguous(memory_format=torch.channels_last)
            else:
                self.weight.data = w.transpose(0, 1).contiguous(memory_format=torch.channels_last).transpose(0, 1)

    def forward(self, x: Tensor, styles: Tensor, noise_mode: str) -> Tensor:
        x = fast_layout(x)
        w = self.weight.to(x.dtype)
        styles = styles.to(x.dtype)
        grad = _tracks_grad(x, styles, w, self.bias, self.noise_strength)
        # Demodulation and the activation gain sqrt(2) in one scale per sample and output channel:
        # lrelu(x) * g == lrelu(x * g) for g > 0, so the gain also scales the noise and the bias.
        scale = (styles.square() @ self._weight_energy(w).t() + 1e-8).rsqrt() * SQRT2       # [N, O]
        bias = self.bias.to(x.dtype) * SQRT2
        if x.shape[0] == 1 and w.numel() <= x[0].numel() + self.out_channels * self.resolution**2:
            # One sample, activations larger than the weight: modulate and demodulate the weight itself
            # (NVIDIA's fused modconv); no pass over the activations for the styles or the scale, and the
            # bias rides in the convolution.
            x = self._conv(x, w, scale.reshape(-1, 1, 1, 1) * styles.reshape(1, -1, 1, 1), bias)
        else:
            # A batch, or a low resolution (a 512x512x3x3 weight against 4x4 ... 32x32 pixels): one shared
            # convolution of the modulated input with the stored weight, then the per-sample scale and the
            # bias. (On CPU this beats a grouped convolution of per-sample weights at every size we measured.)
            x = self._conv(x * styles[:, :, None, None], w, None, None)
            s, b = scale[:, :, None, None], bias[:, None, None]
            x = torch.addcmul(b, x, s) if grad else x.mul_(s).add_(b)
        if noise_mode == "const":
            noise = (self.noise_const * (self.noise_strength * SQRT2)).to(x.dtype)          # [H, W]
            x = x + noise if grad else x.add_(noise)
        elif noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            noise = noise * (self.noise_strength * SQRT2).to(x.dtype)                       # [N, 1, H, W]
            x = x + noise if grad else x.add_(noise)
        x = F.leaky_relu(x, 0.2) if grad else F.leaky_relu_(x, 0.2)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp) if grad else x.clamp_(-self.conv_clamp, self.conv_clamp)
        return x

    def _weight_energy(self, w: Tensor) -> Tensor:
        """Sum of w^2 over the kernel taps [O, I]; kept while the weight is unchanged (no autograd)."""
        if (torch.is_grad_enabled() and w.requires_grad) or torch.compiler.is_compiling():
            return w.square().sum(dim=[2, 3])
        key = (self.weight.data_ptr(), self.weight._version, w.dtype, w.device)
        cached = self._energy
        if cached is None or cached[0] != key:
            cached = self._energy = (key, w.square().sum(dim=[2, 3]))
        return cached[1]

    def _conv(self, x: Tensor, w: Tensor, mod: Tensor | None, bias: Tensor | None) -> Tensor:
        """3x3 convolution (conv0: 2x up-sampling) with the weight `w` times `mod` [O, I, 1, 1] if given
        (the product keeps the weight's memory layout, see `set_weight_layout`)."""
        if self.up == 1:
            return F.conv2d(x, w if mod is None else w * mod, bias, padding=1)
        # Transposed strided conv, then the FIR low-pass (NVIDIA conv2d_resample, up=2, padding=1).
        wt = w.transpose(0, 1) if mod is None else w.transpose(0, 1) * mod.transpose(0, 1)   # [I, O, 3, 3]
        x = F.conv_transpose2d(x, wt, stride=2)                                  # [N, O, 2H+1, 2W+1]
        return fir_filter(x, self.resample_filter, padding=1, gain=4, bias=bias)  # [N, O, 2H, 2W]


def _set_weight_layout_after_load(module: SynthesisLayer, incompatible_keys: Any) -> None:
    module.set_weight_layout()


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to RGB, no demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp: float | None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(_randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, styles: Tensor) -> Tensor:
        x = fast_layout(x)
        styles = styles.to(x.dtype) * self.weight_gain
        w, b = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if x.shape[0] == 1:
            x = F.conv2d(x, w * styles.reshape(1, -1, 1, 1), b)                  # modulated weight
        else:
            x = F.conv2d(x * styles[:, :, None, None], w, b)                     # modulated input, shared conv
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))
        f = self.resample_filter
        if in_channels == 0:
            self.const = nn.Parameter(_randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, 2, conv_clamp, f)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, 1, conv_clamp, f)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp)

    @property
    def layer_names(self) -> list[str]:
        return (["conv1"] if self.in_channels == 0 else ["conv0", "conv1"]) + ["torgb"]

    def features(self, x: Tensor | None, styles: list[Tensor], noise_mode: str) -> Tensor:
        """The block's convolutions; `styles` are those of conv0 (absent in b4) and conv1."""
        if self.in_channels == 0:
            x = fast_layout(self.const.to(styles[0].dtype).unsqueeze(0).repeat([styles[0].shape[0], 1, 1, 1]))
            return self.conv1(x, styles[0], noise_mode)
        return self.conv1(self.conv0(x, styles[0], noise_mode), styles[1], noise_mode)

    def to_image(self, x: Tensor, img: Tensor | None, style: Tensor) -> Tensor:
        """Skip architecture: up-sample the running image and add this block's ToRGB output."""
        y = self.torgb(x, style).to(torch.float32)
        if img is None:
            return y
        return upsample2d(img, self.resample_filter).add_(y)        # the fresh up-sampled image takes the sum

    def forward(self, x: Tensor | None, img: Tensor | None, styles: list[Tensor],
                noise_mode: str) -> tuple[Tensor, Tensor]:
        x = self.features(x, styles[:-1], noise_mode)
        return x, self.to_image(x, img, styles[-1])


class CacheEntry(NamedTuple):
    """What a SynthesisCache keeps of one block: its style inputs and its outputs."""
    conv_styles: list[Tensor]                    # styles of conv0 (absent in b4) and conv1
    rgb_style: Tensor                            # style of the ToRGB layer
    x: Tensor                                    # features after conv1 [N, C, H, W]
    img: Tensor                                  # running image after this block [N, 3, H, W]


class SynthesisCache:
    """Reuses work between calls whose styles agree up to some layer (incremental synthesis).

    Pass the same object to successive `G.synthesis(..., cache=cache)` calls. A call reuses every
    block whose style inputs are unchanged, and the convolutions of the first changed block when
    only its ToRGB style changed; the result equals a full pass. Blocks with forward hooks
    attached (see `interp.nethook`), and everything after them, are neither reused nor stored.
    `G.synthesis(ws, cache=...)` also reuses the affine outputs (styles) of the rows of ws that are
    unchanged, so that a late edit does not pay for every layer's affine.
    """

    def __init__(self) -> None:
        self.key: tuple[int, int, str, str, torch.device] | None = None
        self.entries: list[CacheEntry] = []
        self.ws_key: tuple | None = None         # (model, shape, dtype, device) of `ws`
        self.ws: Tensor | None = None            # the last ws [N, num_ws, w_dim] and its styles
        self.styles: dict[str, Tensor] = {}
        self.hits = 0                            # whole blocks reused, for inspection and benchmarks
        self.feature_hits = 0                    # blocks whose convolutions were reused (ToRGB recomputed)

    def clear(self) -> None:
        self.key, self.entries = None, []
        self.ws_key, self.ws, self.styles = None, None, {}


def _has_hooks(module: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class SynthesisNetwork(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.w_dim, self.img_resolution, self.num_ws = cfg.w_dim, cfg.img_resolution, cfg.num_ws
        self.block_resolutions = cfg.block_resolutions
        for res in self.block_resolutions:
            in_ch = 0 if res == 4 else cfg.channels_at(res // 2)
            block = SynthesisBlock(in_ch, cfg.channels_at(res), cfg.w_dim, res, cfg.img_channels, cfg.conv_clamp)
            setattr(self, f"b{res}", block)
        # Style layer name -> (module, row of ws). Block b4 reads ws[0], ws[1]; block i >= 1 reads ws[2i-1 .. 2i+1].
        self.ws_index: dict[str, int] = {}
        idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            for j, name in enumerate(block.layer_names):
                self.ws_index[f"b{res}.{name}"] = idx + j
            idx += len(block.layer_names) - 1
        self.style_layers = list(self.ws_index)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def layer(self, name: str) -> nn.Module:
        if name not in self.ws_index:
            raise KeyError(f"unknown style layer {name!r}; allowed: {', '.join(self.style_layers)}")
        block, role = name.split(".")
        return getattr(getattr(self, block), role)

    def styles(self, ws: Tensor) -> dict[str, Tensor]:
        self._check_ws(ws)
        return {name: self.layer(name).affine(ws[:, i]) for name, i in self.ws_index.items()}

    def _check_ws(self, ws: Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")

    def forward(self, ws: Tensor, noise_mode: str = "const", cache: SynthesisCache | None = None) -> Tensor:
        if cache is None:
            return self.from_styles(self.styles(ws), noise_mode=noise_mode)
        styles = self._styles_reusing(ws, cache)
        img = self.from_styles(styles, noise_mode=noise_mode, cache=cache)
        if not _tracks_grad(ws):
            cache.ws_key, cache.ws = (id(self), ws.shape, ws.dtype, ws.device), ws.detach().clone()
            cache.styles = {name: s.detach() for name, s in styles.items()     # not what a hook made
                            if not _has_hooks(self.layer(name).affine)}
        return img

    def _styles_reusing(self, ws: Tensor, cache: SynthesisCache) -> dict[str, Tensor]:
        """styles(ws), taking the styles of the rows equal to the cache's last ws from the cache (unless
        the affine layer has hooks, or autograd records ws)."""
        self._check_ws(ws)
        if cache.ws is None or cache.ws_key != (id(self), ws.shape, ws.dtype, ws.device) or _tracks_grad(ws):
            return self.styles(ws)
        same = (ws == cache.ws).all(dim=2).all(dim=0).tolist()             # per row of ws
        styles = {}
        for name, i in self.ws_index.items():
            affine = self.layer(name).affine
            reuse = same[i] and name in cache.styles and not _has_hooks(affine)
            styles[name] = cache.styles[name] if reuse else affine(ws[:, i])
        return styles

    def from_styles(self, styles: Mapping[str, Tensor], noise_mode: str = "const",
                    cache: SynthesisCache | None = None) -> Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        missing = [n for n in self.style_layers if n not in styles]
        if missing:
            raise ValueError(f"styles lack layers {missing}")
        blocks = self.blocks()
        per_block = [[styles[f"b{b.resolution}.{n}"] for n in b.layer_names] for b in blocks]
        if cache is None or noise_mode == "random":
            if cache is not None:
                cache.clear()
            x = img = None
            for block, block_styles in zip(blocks, per_block):
                x, img = block(x, img, block_styles, noise_mode)
            return img.contiguous()                                       # NCHW, whatever the layers used

        first = per_block[0][0]
        key = (id(self), first.shape[0], noise_mode, str(first.dtype), first.device)   # one cache, one model
        if cache.key != key:
            cache.clear()
        cache.key = key
        hooked = [_has_hooks(b) for b in blocks]
        limit = min(len(cache.entries), hooked.index(True) if any(hooked) else len(blocks))
        same = lambda a, b: all(torch.equal(u, v) for u, v in zip(a, b))     # noqa: E731
        start = 0
        while start < limit and same(per_block[start][:-1], cache.entries[start].conv_styles) \
                and torch.equal(per_block[start][-1], cache.entries[start].rgb_style):
            start += 1
        reuse_features = start < limit and same(per_block[start][:-1], cache.entries[start].conv_styles)
        cache.hits += start
        x, img = (cache.entries[start - 1].x, cache.entries[start - 1].img) if start else (None, None)
        features = cache.entries[start].x if reuse_features else None
        del cache.entries[start:]
        for i in range(start, len(blocks)):
            block, block_styles = blocks[i], per_block[i]
            if i == start and features is not None:
                x = features
                cache.feature_hits += 1
            else:
                x = block.features(x, block_styles[:-1], noise_mode)
            img = block.to_image(x, img, block_styles[-1])
            if not any(hooked[:i + 1]):
                conv_styles = [s.detach().clone() for s in block_styles[:-1]]
                cache.entries.append(CacheEntry(conv_styles, block_styles[-1].detach().clone(), x.detach(),
                                                img.detach()))
        return img.contiguous()


def layer_flops(cfg: GeneratorConfig) -> dict[str, int]:
    """Floating-point operations of each style layer for one image, counted from the config, in execution order.

    A multiply-add counts 2. Conv layers: demodulation, modulation (of the weight or of the activations,
    whichever is smaller, as `SynthesisLayer` does for one image), the 3x3 convolution (conv0: transposed,
    stride 2, on the input grid, then the 4x4 FIR low-pass), bias, noise, leaky ReLU (and clamp). ToRGB
    layers: the modulated 1x1 convolution, bias, and the block's skip connection (the running image
    up-sampled with the 4x4 FIR filter and added). The cost of an incremental synthesis is the sum over
    the layers it recomputes.
    """
    flops: dict[str, int] = {}
    epilogue = 4 if cfg.conv_clamp is not None else 3                    # per output element

    def modulation(inp: int, out: int, res_in: int, res: int) -> int:
        return 2 * out * inp * 9 + 2 * min(out * inp * 9, inp * res_in**2 + out * res**2)

    for res in cfg.block_resolutions:
        out = cfg.channels_at(res)
        if res > 4:
            inp = cfg.channels_at(res // 2)
            flops[f"b{res}.conv0"] = (modulation(inp, out, res // 2, res) + 2 * inp * out * 9 * (res // 2) ** 2
                                      + 2 * 16 * out * res**2 + epilogue * out * res**2)
        flops[f"b{res}.conv1"] = modulation(out, out, res, res) + 2 * out * out * 9 * res**2 + epilogue * out * res**2
        skip = 2 * 16 * cfg.img_channels * (res // 2) ** 2 + cfg.img_channels * res**2 if res > 4 else 0
        flops[f"b{res}.torgb"] = 2 * out * cfg.img_channels + (2 * out + 1) * cfg.img_channels * res**2 + skip
    return flops


# ----------------------------------------------------------------------------------------------------
# Generator


class Generator(nn.Module):
    """StyleGAN2 generator: `mapping` (Z -> W+), `synthesis` (W+ -> image), `styles` (W+ -> S)."""

    def __init__(self, config: GeneratorConfig | None = None, **kwargs: Any):
        super().__init__()
        cfg = config if config is not None else GeneratorConfig(**kwargs)
        self.config = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg)
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.mapping_layers,
                                      cfg.mapping_lr_multiplier, cfg.w_avg_beta)

    @property
    def style_layers(self) -> list[str]:
        return self.synthesis.style_layers

    @property
    def ws_index(self) -> dict[str, int]:
        return self.synthesis.ws_index

    def styles(self, ws: Tensor) -> dict[str, Tensor]:
        """StyleSpace: each style layer's affine output (ToRGB: before its weight gain)."""
        return self.synthesis.styles(ws)

    def synthesis_from_styles(self, styles: Mapping[str, Tensor], noise_mode: str = "const",
                              cache: SynthesisCache | None = None) -> Tensor:
        return self.synthesis.from_styles(styles, noise_mode=noise_mode, cache=cache)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "const") -> Tensor:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode=noise_mode)

    def sample_z(self, n: int, seed: int) -> Tensor:
        """Seeded latents, identical on every device: numpy's generator, like NVIDIA's scripts."""
        z = np.random.RandomState(seed).randn(n, self.z_dim)
        return torch.from_numpy(z).to(torch.float32).to(self.mapping.w_avg.device)

    def content_hash(self) -> str:
        """Short sha256 of the config and every tensor: identifies a model's weights in saved artefacts."""
        h = hashlib.sha256(json.dumps(self.config.to_dict(), sort_keys=True).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# Discriminator (for training the built-in model; residual architecture as in StyleGAN2 config F)


class DiscriminatorConv(nn.Module):
    """Equalized-learning-rate conv, optional FIR-filtered 2x down-sampling, bias, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, down: bool = False,
                 bias: bool = True, lrelu: bool = True):
        super().__init__()
        self.kernel_size, self.down, self.lrelu = kernel_size, down, lrelu
        self.weight = nn.Parameter(_randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("resample_filter", setup_filter([1, 3, 3, 1]))

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.down:
            # Low-pass, then a stride-2 conv (padding so that [H, W] -> [H/2, W/2]).
            x = fir_filter(x, self.resample_filter, padding=1 + self.kernel_size // 2, gain=1)
            x = F.conv2d(x, w, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        return bias_act(x, self.bias, lrelu=self.lrelu, gain=(SQRT2 if self.lrelu else 1.0) * gain, clamp=None)


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, img_channels: int, from_rgb: bool):
        super().__init__()
        if from_rgb:
            self.fromrgb = DiscriminatorConv(img_channels, in_channels, 1)
        self.conv0 = DiscriminatorConv(in_channels, in_channels, 3)
        self.conv1 = DiscriminatorConv(in_channels, out_channels, 3, down=True)
        self.skip = DiscriminatorConv(in_channels, out_channels, 1, down=True, bias=False, lrelu=False)

    def forward(self, x: Tensor | None, img: Tensor) -> Tensor:
        if x is None:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
        return y + x


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation; returns logits [N]."""

    def __init__(self, img_resolution: int, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, channels: dict[int, int] | None = None, mbstd_group: int = 4):
        super().__init__()
        cfg = GeneratorConfig(img_resolution=img_resolution, channel_base=channel_base, channel_max=channel_max,
                              channels=channels)
        self.img_resolution, self.mbstd_group = img_resolution, mbstd_group
        self.block_resolutions = cfg.block_resolutions[:0:-1]                # R, R/2, ..., 8
        for res in self.block_resolutions:
            block = DiscriminatorBlock(cfg.channels_at(res), cfg.channels_at(res // 2), img_channels,
                                       from_rgb=res == img_resolution)
            setattr(self, f"b{res}", block)
        c4 = cfg.channels_at(4)
        self.conv = DiscriminatorConv(c4 + 1, c4, 3)
        self.fc = FullyConnectedLayer(c4 * 16, c4, lrelu=True)
        self.out = FullyConnectedLayer(c4, 1)

    def forward(self, img: Tensor) -> Tensor:
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        n, c, h, w = x.shape
        g = min(self.mbstd_group, n) if n % min(self.mbstd_group, n) == 0 else 1
        y = x.reshape(g, -1, c, h, w)                                     # [G, N/G, C, H, W]
        y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt()    # [N/G, C, H, W]
        y = y.mean(dim=[1, 2, 3]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)  # [N, 1, H, W]
        x = self.conv(torch.cat([x, y], dim=1))
        x = self.fc(x.flatten(1))
        return self.out(x).squeeze(1)
