"""Image quality: PSNR, SSIM, MS-SSIM and a perceptual distance chosen for the model.

Every function takes generator-convention images: float [N, 3, H, W] in [-1, 1] (values outside are
clamped for the scores, not for the differentiable losses), and returns one value per image [N]:

    from interp import metrics
    metrics.psnr(restored, truth)                    # dB, on the [0, 1] scale; higher is better
    metrics.psnr(restored, truth, mask=hole)         # only inside a [N or 1, 1, H, W] mask (inpainting)
    metrics.ssim(restored, truth)                    # in [-1, 1], 1 = identical (pytorch_msssim)
    metrics.ms_ssim(restored, truth)                 # multi-scale, as many scales as the size allows

    dist = metrics.perceptual_for("faces64")         # picked automatically; say which one to the user:
    dist.name, dist.reason                           # 'predictor features', 'the built-in ...'
    d = dist(restored, truth)                        # [N], differentiable, 0 = identical; lower is better

The perceptual distance, in order of preference:

1. ``lpips``: the LPIPS package (AlexNet) when it is installed *and* its backbone weights are already
   in torch's cache (a Space or a machine that downloaded them once); never downloads.
2. ``predictor features`` for the built-in ``faces64``: LPIPS's recipe (unit-normalised channels,
   squared differences, averaged) on three stages of the built-in attribute predictor, a network that
   was trained on these faces and so sees what matters in them.
3. ``ms-ssim``: 1 - MS-SSIM, which needs no weights at all.

For the built-in model, the predictor wins over LPIPS: AlexNet was trained on photos, not on these faces.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Perceptual", "PERCEPTUAL_NAMES", "ms_ssim", "perceptual", "perceptual_for", "psnr", "ssim",
           "to_unit"]

PERCEPTUAL_NAMES = ("auto", "lpips", "predictor features", "ms-ssim")
BUILTIN_FACE_MODELS = ("faces64",)
LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"             # torchvision's AlexNet file that lpips loads


def _check_pair(a: Tensor, b: Tensor) -> None:
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 3, H, W] (or [N, 1, H, W]), got {list(a.shape)}")
    if a.shape[1:] != b.shape[1:] or (a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0])):
        raise ValueError(f"images to compare must have the same shape, got {list(a.shape)} and {list(b.shape)}")


def to_unit(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1], clamped (what a viewer sees)."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def psnr(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio [N] in dB on the [0, 1] scale; inside ``mask`` [N or 1, 1, H, W] if given.

    Identical images give 100 dB (a cap instead of infinity, so means stay finite).
    """
    _check_pair(a, b)
    err = (to_unit(a) - to_unit(b)).square()                              # [N, C, H, W]
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.float().to(err.device).expand(err.shape[0], 1, *err.shape[2:])   # [N, 1, H, W]
        area = m.flatten(1).sum(1) * err.shape[1]
        if (area == 0).any():
            raise ValueError("the mask is empty: PSNR inside it is undefined")
        mse = (err * m).flatten(1).sum(1) / area
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).clamp_max(100.0)


def _window(size: int) -> int:
    win = min(11, size if size % 2 else size - 1)
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {size}x{size}")
    return win


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """Structural similarity [N] (Gaussian window 11, or the largest odd window that fits), on [0, 1]."""
    from pytorch_msssim import ssim as _ssim

    _check_pair(a, b)
    a, b = to_unit(a), to_unit(b)
    a, b = torch.broadcast_tensors(a, b)
    return _ssim(a, b, data_range=1.0, size_average=False, win_size=_window(min(a.shape[-2:])))


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # Wang et al. 2003, five scales


def _gauss_window(size: int, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x.square() / (2 * sigma**2))
    return g / g.sum()                                                     # [size]


def _ssim_cs(a: Tensor, b: Tensor, win: Tensor, k1: float = 0.01, k2: float = 0.03) -> tuple[Tensor, Tensor]:
    """Per-image SSIM and contrast-structure terms [N] of [0, 1] images (Wang et al. 2004, valid window)."""
    c = a.shape[1]
    wx = win.to(a).reshape(1, 1, 1, -1).repeat(c, 1, 1, 1)                # [C, 1, 1, k]
    blur = lambda t: F.conv2d(F.conv2d(t, wx, groups=c), wx.transpose(2, 3), groups=c)   # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a.square()
    var_b = blur(b * b) - mu_b.square()
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = k1**2, k2**2
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    s = (2 * mu_a * mu_b + c1) / (mu_a.square() + mu_b.square() + c1) * cs
    return s.flatten(1).mean(1), cs.flatten(1).mean(1)


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # Wang et al. 2003, five scales


def ms_ssim(a: Tensor, b: Tensor, clamp: bool = True) -> Tensor:
    """Multi-scale SSIM [N] with as many of the five published scales as the image size allows.

    (pytorch_msssim's ms_ssim needs images over 160 pixels; a 64x64 model gets three scales here.)
    ``clamp=False`` keeps gradients for values outside [-1, 1] (a loss); scores use the default.
    """
    _check_pair(a, b)
    a, b = ((a.float() + 1) / 2, (b.float() + 1) / 2) if not clamp else (to_unit(a), to_unit(b))
    a, b = torch.broadcast_tensors(a, b)
    side = min(a.shape[-2:])
    win = 7 if side >= 48 else 5 if side >= 20 else 3
    levels = 5
    while levels > 1 and side / 2 ** (levels - 1) < win:
        levels -= 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:levels])
    weights = weights / weights.sum()
    window = _gauss_window(win)
    terms = []
    for i in range(levels):
        s, cs = _ssim_cs(a, b, window)
        terms.append(F.relu(s if i == levels - 1 else cs))
        if i < levels - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    stacked = torch.stack(terms)                                           # [levels, N]
    return (stacked.clamp_min(1e-8) ** weights.to(stacked).reshape(-1, 1)).prod(0)


# ----------------------------------------------------------------------------------------------------
# Perceptual distances


class Perceptual:
    """A differentiable distance [N] between image batches; ``name`` and ``reason`` say what it is."""

    def __init__(self, name: str, fn: Callable[[Tensor, Tensor], Tensor], reason: str) -> None:
        self.name, self.fn, self.reason = name, fn, reason

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        _check_pair(a, b)
        return self.fn(a, b)

    def __repr__(self) -> str:
        return f"Perceptual({self.name!r})"


def _normalize_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x * torch.rsqrt(x.square().sum(dim=1, keepdim=True) + eps)


def _predictor_distance(device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    from interp.builtin import load_predictor
    from interp.builtin.common import check_images

    P = load_predictor(device)
    stages = (1, 3, 5)                              # ends of the 32x32, 16x16 and 8x8 stages of P.body

    def features(x: Tensor) -> list[Tensor]:
        x = check_images(x, P.config.image_size)
        out = []
        for i, layer in enumerate(P.body):
            x = layer(x)
            if i in stages:
                out.append(_normalize_channels(x))
            if i >= stages[-1]:
                break
        return out

    def distance(a: Tensor, b: Tensor) -> Tensor:
        fa, fb = features(a), features(b)                  # b may be one image for a batch a
        return sum((u - v).square().sum(1).mean(dim=(1, 2)) for u, v in zip(fa, fb)) / len(fa)

    return distance


def _lpips_available() -> str | None:
    """None when lpips can run offline; otherwise why not."""
    import importlib.util

    if importlib.util.find_spec("lpips") is None:
        return "the lpips package is not installed"
    if not (Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE).is_file():    # honours TORCH_HOME
        return f"its AlexNet weights ({LPIPS_BACKBONE}) are not in torch's cache"
    return None


def _lpips_distance(device: torch.device) -> Callable[[Tensor, Tensor], Tensor]:
    import lpips

    net = lpips.LPIPS(net="alex", verbose=False).to(device).eval().requires_grad_(False)
    return lambda a, b: net(a, b, normalize=False).flatten()


_CACHE: dict[tuple[str, str], Perceptual] = {}


def perceptual(name: str, device: str | torch.device = "cpu") -> Perceptual:
    """One perceptual distance by name (see ``PERCEPTUAL_NAMES``; ``auto`` is :func:`perceptual_for`)."""
    if name not in PERCEPTUAL_NAMES or name == "auto":
        raise ValueError(f"unknown perceptual distance {name!r}; allowed: {', '.join(PERCEPTUAL_NAMES[1:])} "
                         "(or 'auto' through perceptual_for)")
    dev = torch.device(device)
    key = (name, str(dev))
    if key not in _CACHE:
        if name == "lpips":
            why = _lpips_available()
            if why:
                raise ValueError(f"LPIPS cannot be used: {why}")
            _CACHE[key] = Perceptual(name, _lpips_distance(dev), "LPIPS (AlexNet)")
        elif name == "predictor features":
            _CACHE[key] = Perceptual(name, _predictor_distance(dev),
                                     "features of the built-in attribute predictor (LPIPS-style), trained on "
                                     "these faces")
        else:
            _CACHE[key] = Perceptual(name, lambda a, b: 1 - ms_ssim(a, b, clamp=False),
                                     "1 - MS-SSIM (no perceptual network available)")
    return _CACHE[key]


def perceptual_for(model_id: str | None, device: str | torch.device = "cpu") -> Perceptual:
    """The best available perceptual distance for a model (see the module docstring for the order)."""
    if model_id in BUILTIN_FACE_MODELS:
        try:
            return perceptual("predictor features", device)
        except FileNotFoundError:
            pass                                     # no predictor weights: fall through
    why = _lpips_available()
    if why is None:
        return perceptual("lpips", device)
    fallback = perceptual("ms-ssim", device)
    return Perceptual(fallback.name, fallback.fn, f"{fallback.reason}; LPIPS is not used because {why}")
