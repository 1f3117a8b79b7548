"""Real images into the generator: optimisation in W / W+ / S, encoders, and the hybrid of both.

    from interp.methods.invert import invert, encode, hybrid, prepare_image, load_image
    x = prepare_image(load_image("photo.jpg"), G.img_resolution)    # any size / mode -> [1, 3, R, R]
    inv = invert(G, x, space="w+", steps=300, model_id="faces64")     # -> Inversion
    inv.latent            # a Latent, origin {"kind": "inversion", "method": "optimization", "space": "w+", ...}
    inv.image             # its render [1, 3, R, R]
    inv.metrics           # {"psnr": dB, "ssim": ..., "perceptual": ..., "seconds": ...} against x
    inv.perceptual        # which perceptual term was used, and why ("predictor features: ...")
    Recipe(inv.latent)    # editable in every tab

    E = load_encoder("s")                                  # interp.builtin.encoder (faces64)
    fast = encode(G, E, x, model_id="faces64")             # one forward pass
    good = hybrid(G, E, x, steps=50, model_id="faces64")   # encoder, then 50 optimisation steps (IDInvert)

Spaces (``SPACES``): ``w`` (one w for every row), ``w+`` (one per ws row), ``s`` (StyleSpace: every style
layer's affine output, optimised directly). An S result is kept exactly as a styles override of the
Latent (``Latent.styles``; W+ cannot express it), with ``ws`` the least-squares closest W+ code;
``metrics["psnr_ws_only"]`` says how much a method that only reads ws would lose.

The loss: mean squared error + ``perceptual_weight`` x a perceptual distance chosen for the model
(``interp.metrics.perceptual_for``: LPIPS where its weights are present, the built-in predictor's features
for faces64, 1 - MS-SSIM otherwise), optionally through a degradation (``degrade``: the loss compares
``degrade(G(code))`` with the observed image, so inversion becomes restoration; ``interp.methods.restore``)
and a ``mask`` (1 = pixels the loss sees, 0 = ignored: inpainting). Adam from the mean latent (or from
``start``), with the StyleGAN2 projector's learning-rate schedule (5% warm-up, cosine ramp-down over the
last 25%). Noise: the model's constant noise, the one every tab renders with, is kept: a Latent carries no
noise maps, so optimising them (and regularising them, as the StyleGAN2 projector does) would fit detail
that the edit tabs could not reproduce.

Progress: ``progress(update)`` is called after every step with an :class:`Update` (step, steps, loss and,
every ``preview_every`` steps, the current image); ``inversion_steps`` yields the same updates (the last
one carries the result) for a UI that shows the reconstruction live.
"""
from __future__ import annotations

import io
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

from interp import metrics
from interp.edit import Latent, split_styles
from interp.models.stylegan2 import Generator

__all__ = ["SPACES", "Inversion", "ImageError", "Update", "code_image", "encode", "encoder_start", "flat_styles", "hybrid",
           "invert", "inversion_steps", "load_image", "lr_schedule", "MAX_PIXELS", "prepare_image",
           "project_styles", "report"]

SPACES = ("w", "w+", "s")
DEFAULT_STEPS = 300
DEFAULT_LR = 0.1                            # from the mean latent (0.03: -0.8 dB at 300 W+ steps on faces64)
HYBRID_LR = 0.01                            # from an encoder's code, already close
PERCEPTUAL_WEIGHT = 0.2
MAX_PIXELS = 40_000_000                     # uploads above this are refused (decompression bombs, memory)
MAX_FILE_BYTES = 50 * 2**20


class ImageError(ValueError):
    """An upload that cannot be used as an image (the message says why and what is accepted)."""


# ----------------------------------------------------------------------------------------------------
# Uploads


def load_image(source: str | Path | bytes | Image.Image) -> Image.Image:
    """Open an upload safely: any format PIL reads, size-checked before decoding, EXIF-rotated, RGB.

    Greyscale, palette, 16-bit and RGBA images are converted (transparency over white); animated images
    give their first frame. ImageError (a ValueError) for anything else, with a sentence a person reads.
    """
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (bytes, bytearray)):
            if len(source) > MAX_FILE_BYTES:
                raise ImageError(f"the file is {len(source) / 2**20:.0f} MB; at most {MAX_FILE_BYTES // 2**20} MB")
            fh: Any = io.BytesIO(source)
            label = "the upload"
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{path.name!r} does not exist")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ImageError(f"{path.name!r} is {path.stat().st_size / 2**20:.0f} MB; images up to "
                                 f"{MAX_FILE_BYTES // 2**20} MB are accepted")
            fh, label = str(path), repr(path.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fh)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{label} declares an enormous size (a decompression bomb?); images up to "
                             f"{MAX_PIXELS / 1e6:.0f} megapixels are accepted") from None
        except Exception:  # noqa: BLE001 - PIL raises several types for non-images
            raise ImageError(f"{label} is not an image that can be read (PNG, JPEG, WebP, BMP, GIF, TIFF ...)") \
                from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"the image is {w}x{h} ({w * h / 1e6:.0f} megapixels); at most {MAX_PIXELS / 1e6:.0f} "
                         "megapixels are accepted: downscale it first")
    if w < 1 or h < 1:
        raise ImageError(f"the image is empty ({w}x{h} pixels)")
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # noqa: BLE001 - truncated or corrupted data
        raise ImageError(f"the image data is damaged or truncated ({type(exc).__name__})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray((255 * arr / max(arr.max(), 1)).astype(np.uint8))
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageError("the image has NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        img = Image.fromarray((255 * (arr - lo) / max(hi - lo, 1e-12)).astype(np.uint8))
    return img.convert("RGB")


def prepare_image(image: Image.Image | Tensor | np.ndarray, resolution: int) -> Tensor:
    """An image of any size -> [1, 3, resolution, resolution] in [-1, 1]: centre-crop to a square, resize.

    Accepts a PIL image, a uint8 / float array [H, W(, C)] (floats in [0, 1]) or a tensor [1 or 3, H, W] /
    [1, 3, H, W] in [-1, 1]. ImageError for NaN, wrong shapes or empty images.
    """
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
            raise ImageError(f"an image array must be [H, W], [H, W, 3] or [H, W, 4], got shape {list(image.shape)}")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all():
                raise ImageError("the image has NaN or infinite values")
            arr = (arr.clip(0, 1) * 255).round().astype(np.uint8)
        image = Image.fromarray(arr.astype(np.uint8).squeeze(2) if arr.shape[2] == 1 else arr.astype(np.uint8))
        image = load_image(image)
    if isinstance(image, Image.Image):
        image = load_image(image)
        w, h = image.size
        side = min(w, h)
        image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        if side != resolution:
            image = image.resize((resolution, resolution), Image.LANCZOS if side > resolution else Image.BICUBIC)
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)[None].float()
        return x / 127.5 - 1                                               # [1, 3, R, R]
    if not isinstance(image, Tensor):
        raise ImageError(f"expected a PIL image, an array or a tensor, got {type(image).__name__}")
    x = image.detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3) or min(x.shape[2:]) < 1:
        raise ImageError(f"an image tensor must be [1, 3, H, W] (or [3, H, W]) in [-1, 1], got {list(image.shape)}")
    if not torch.isfinite(x).all():
        raise ImageError("the image has NaN or infinite values")
    x = x.expand(1, 3, *x.shape[2:]).clamp(-1, 1)
    h, w = x.shape[2:]
    side = min(h, w)
    x = x[:, :, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False,
                          antialias=side > resolution).clamp(-1, 1)
    return x


# ----------------------------------------------------------------------------------------------------
# Codes of each space


def flat_styles(G: Generator, ws: Tensor) -> Tensor:
    """ws [N, num_ws, w_dim] -> the flat S code [N, S] (every style layer, ``G.style_layers`` order)."""
    return torch.cat(list(G.styles(ws).values()), dim=1)


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"unknown inversion space {space!r}; allowed: {', '.join(SPACES)}")


def _mean_code(G: Generator, space: str, n: int) -> Tensor:
    w = G.mapping.w_avg.detach()[None].expand(n, -1)                       # [n, w_dim]
    if space == "w":
        return w.clone()
    ws = w[:, None].repeat(1, G.num_ws, 1)                                  # [n, num_ws, w_dim]
    return ws if space == "w+" else flat_styles(G, ws).detach()


def code_image(G: Generator, space: str, code: Tensor) -> Tensor:
    """The image [N, 3, H, W] of a code: w [N, w_dim], w+ [N, num_ws, w_dim] or s [N, S]."""
    _check_space(space)
    if space == "w":
        return G.synthesis(code[:, None].repeat(1, G.num_ws, 1))
    if space == "w+":
        return G.synthesis(code)
    return G.synthesis_from_styles(split_styles(G, code))


@torch.no_grad()
def project_styles(G: Generator, styles: Tensor) -> Tensor:
    """The W+ code [N, num_ws, w_dim] whose styles are closest (least squares, per ws row) to ``styles`` [N, S].

    A ws row feeds one or two affines (a ToRGB and the next block's first conv share one); rows with as
    many style channels as w_dim are matched exactly, shared rows in the least-squares sense.
    """
    per_layer = split_styles(G, styles)
    rows = []
    for row in range(G.num_ws):
        names = [n for n in G.style_layers if G.ws_index[n] == row]
        A = torch.cat([G.synthesis.layer(n).affine.weight * G.synthesis.layer(n).affine.weight_gain
                       for n in names])                                     # [C, w_dim]
        b = torch.cat([G.synthesis.layer(n).affine.bias * G.synthesis.layer(n).affine.bias_gain for n in names])
        s = torch.cat([per_layer[n] for n in names], dim=1)                # [N, C]
        sol = torch.linalg.lstsq(A.double(), (s - b).double().T).solution.T   # [N, w_dim]
        rows.append(sol.float())
    return torch.stack(rows, dim=1)                                         # [N, num_ws, w_dim]


def _latent(G: Generator, space: str, code: Tensor, model_id: str, model_hash: str,
            origin: dict[str, Any]) -> Latent:
    code = code.detach()
    if space == "w":
        return Latent(model_id, model_hash, code[None].repeat(G.num_ws, 1), origin)
    if space == "w+":
        return Latent(model_id, model_hash, code, origin)
    return Latent(model_id, model_hash, project_styles(G, code[None])[0], origin, styles=code)


# ----------------------------------------------------------------------------------------------------
# Optimisation


def lr_schedule(t: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """The StyleGAN2 projector's learning-rate factor at progress t in [0, 1]: cosine ramps up and down."""
    ramp = min(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return ramp * min(1.0, t / rampup) if rampup > 0 else ramp


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor. torch.optim's first step imports torch._dynamo (seconds on a
    busy CPU), which a visitor's first inversion would wait for; these four lines do not."""

    def __init__(self, param: Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param, self.betas, self.eps, self.t = param, betas, eps, 0
        self.m, self.v = torch.zeros_like(param), torch.zeros_like(param)

    @torch.no_grad()
    def step(self, lr: float) -> None:
        b1, b2 = self.betas
        self.t += 1
        g = self.param.grad
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.v / (1 - b2**self.t)).sqrt_().add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-lr / (1 - b1**self.t))


@dataclass(frozen=True)
class Inversion:
    """A result: the Latent, its image, the loss per step, metrics against the target, what was used."""

    latent: Latent
    image: Tensor                                   # [1, 3, H, W] the render of latent, on the CPU
    losses: tuple[float, ...]                       # per optimisation step (empty for an encoder)
    metrics: dict[str, float]                       # psnr, ssim, perceptual (vs the target), seconds, ...
    perceptual: str                                 # 'name: why' of the perceptual term ('' if none)
    method: str                                     # 'optimization w+', 'encoder s', 'hybrid s', 'restore sr4 ...'
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Update:
    """One optimisation step; ``image`` every ``preview_every`` steps; ``result`` on the last update only."""

    step: int
    steps: int
    loss: float
    image: Tensor | None = None
    result: Inversion | list[Inversion] | None = None


Degrade = Callable[[Tensor], Tensor]


def _targets(G: Generator, image: Tensor) -> Tensor:
    if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be a tensor [N, 3, H, W] in [-1, 1] (see prepare_image), got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if not torch.isfinite(image).all():
        raise ValueError("the image has NaN or infinite values")
    return image.detach().float().to(G.mapping.w_avg.device)


def report(result: Tensor, target: Tensor, dist: metrics.Perceptual | None = None,
           mask: Tensor | None = None) -> dict[str, float]:
    """PSNR, SSIM and perceptual distance of one result [1, 3, H, W] against a target (inside ``mask`` too)."""
    with torch.no_grad():
        out = {"psnr": float(metrics.psnr(result, target)[0]), "ssim": float(metrics.ssim(result, target)[0])}
        if dist is not None:
            out["perceptual"] = float(dist(result.to(target.device), target)[0])
        if mask is not None:
            out["psnr_mask"] = float(metrics.psnr(result, target, mask=mask)[0])
    return out


def inversion_steps(G: Generator, image: Tensor, space: str = "w+", steps: int = DEFAULT_STEPS,
                    lr: float = DEFAULT_LR, *, model_id: str = "", perceptual: str | metrics.Perceptual = "auto",
                    perceptual_weight: float = PERCEPTUAL_WEIGHT, degrade: Degrade | None = None,
                    mask: Tensor | None = None, start: Tensor | None = None, preview_every: int = 10,
                    origin: dict[str, Any] | None = None, method: str = "optimization",
                    seed: int = 0) -> Iterator[Update]:
    """The optimisation, one :class:`Update` per step; the last one's ``result`` is the Inversion
    (a list of them when ``image`` is a batch [N, 3, H, W] with N > 1). Arguments: see :func:`invert`."""
    from interp.diskcache import model_hash

    _check_space(space)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    t0 = time.perf_counter()
    target = _targets(G, image)                                             # what the loss compares with
    n = target.shape[0]
    device = target.device
    dist = perceptual if isinstance(perceptual, metrics.Perceptual) else (
        metrics.perceptual_for(model_id, device) if perceptual == "auto" else metrics.perceptual(perceptual, device))
    use_dist = dist if perceptual_weight > 0 else None
    m = None if mask is None else mask.float().to(device)
    if m is not None and (m.ndim != 4 or m.shape[1] != 1 or m.shape[2:] != target.shape[2:]):
        raise ValueError(f"mask must be [N or 1, 1, H, W] like the target {list(target.shape)}, got {list(m.shape)}")
    if m is not None and m.flatten(1).sum(1).min() == 0:
        raise ValueError("the mask hides every pixel: nothing is left to fit")

    code = (_mean_code(G, space, n) if start is None else start.detach().float().to(device)).clone()
    expected = tuple(_mean_code(G, space, 1).shape[1:])
    if tuple(code.shape) != (n, *expected):
        raise ValueError(f"start must be a {space} code of shape {[n, *expected]}, got {list(code.shape)}")
    code.requires_grad_(True)
    adam = _Adam(code)
    torch.manual_seed(seed)
    losses: list[float] = []
    with torch.enable_grad():
        for step in range(steps):
            img = code_image(G, space, code)
            pred = degrade(img) if degrade is not None else img
            err = (pred - target).square()                                 # [N, 3, h, w]
            if m is not None:
                mse = (err * m).flatten(1).sum(1) / (m.flatten(1).sum(1) * 3)
                seen = target * m + pred.detach() * (1 - m)                 # the hole compares with itself
            else:
                mse, seen = err.flatten(1).mean(1), target
            loss = mse + perceptual_weight * use_dist(pred, seen) if use_dist is not None else mse
            code.grad = None
            loss.sum().backward()
            adam.step(lr * lr_schedule(step / steps))
            losses.append(float(loss.detach().mean()))
            preview = img.detach()[:1].cpu() if preview_every and (step + 1) % preview_every == 0 else None
            if step + 1 < steps:
                yield Update(step + 1, steps, losses[-1], preview)

    with torch.no_grad():
        code = code.detach()
        final = code_image(G, space, code)
        seen_final = degrade(final) if degrade is not None else final
    seconds = time.perf_counter() - t0
    h = model_hash(G)
    results = []
    for i in range(n):
        o = {"kind": "inversion", "method": method, "space": space, "steps": steps, **(origin or {})}
        latent = _latent(G, space, code[i], model_id, h, o)
        mask_i = None if m is None else m[min(i, m.shape[0] - 1)][None]    # [1, 1, h, w]
        stats = report(seen_final[i:i + 1], target[i:i + 1], dist, mask_i)
        stats["seconds"] = seconds / n
        stats["loss"] = losses[-1] if losses else float("nan")
        if space == "s":                                                    # what a ws-only reader would see
            with torch.no_grad():
                ws_img = G.synthesis(latent.ws[None].to(device))
            stats["psnr_ws_only"] = float(metrics.psnr(degrade(ws_img) if degrade else ws_img, target[i:i + 1])[0])
        label = f"{method} {space}" if method in ("optimization", "hybrid", "encoder") else method
        results.append(Inversion(latent, final[i:i + 1].cpu(), tuple(losses), stats,
                                 f"{dist.name}: {dist.reason}" if use_dist is not None else "", label))
    yield Update(steps, steps, losses[-1] if losses else float("nan"), final[:1].cpu(),
                 results[0] if n == 1 else results)


def invert(G: Generator, image: Tensor, space: str = "w+", steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, *,
           model_id: str = "", perceptual: str | metrics.Perceptual = "auto",
           perceptual_weight: float = PERCEPTUAL_WEIGHT, progress: Callable[[Update], None] | None = None,
           degrade: Degrade | None = None, mask: Tensor | None = None, start: Tensor | None = None,
           preview_every: int = 10, origin: dict[str, Any] | None = None, method: str = "optimization",
           seed: int = 0) -> Inversion | list[Inversion]:
    """Optimise a code in ``space`` so that G reproduces ``image`` [N, 3, H, W] in [-1, 1] (at G's resolution).

    model_id:   stored in the Latent; also picks the perceptual term (``perceptual="auto"``).
    perceptual: ``auto`` | ``lpips`` | ``predictor features`` | ``ms-ssim`` | a metrics.Perceptual.
    degrade:    f(image) -> observation; the loss compares degrade(G(code)) with ``image`` (restoration).
    mask:       [N or 1, 1, h, w] like ``image``: 1 = fit this pixel, 0 = ignore it (inpainting).
    start:      the starting code (w [N, w_dim], w+ [N, num_ws, w_dim], s [N, S]); default the mean latent.
    progress:   called with an :class:`Update` after every step.
    Returns one :class:`Inversion` for one image, a list for a batch (optimised together, independently).
    """
    update = None
    for update in inversion_steps(G, image, space, steps, lr, model_id=model_id, perceptual=perceptual,
                                  perceptual_weight=perceptual_weight, degrade=degrade, mask=mask, start=start,
                                  preview_every=preview_every, origin=origin, method=method, seed=seed):
        if progress is not None:
            progress(update)
    assert update is not None and update.result is not None
    return update.result


# ----------------------------------------------------------------------------------------------------
# Encoders


def _encoder_space(encoder: Any) -> str:
    space = getattr(getattr(encoder, "config", None), "space", None)
    if space not in ("w+", "s"):
        raise ValueError(f"the encoder must predict 'w+' or 's' (config.space), got {space!r}")
    return space


def _encoder_code(G: Generator, encoder: Any, target: Tensor) -> Tensor:
    cfg = encoder.config
    if cfg.model_hash:
        from interp.diskcache import model_hash

        if cfg.model_hash != model_hash(G):
            raise ValueError(f"this encoder was trained for model {cfg.model_id!r} (weights {cfg.model_hash}), "
                             f"not for the loaded weights {model_hash(G)}")
    with torch.no_grad():
        code = encoder(target.to(next(encoder.parameters()).device)).to(target.device)
    return encoder.to_ws(code) if cfg.space == "w+" else code


def encoder_start(G: Generator, encoder: Any, image: Tensor) -> Tensor:
    """The encoder's code for ``image`` [N, 3, H, W], as a start for optimisation in its space
    (w+: [N, num_ws, w_dim], s: [N, S]); ValueError if it was trained for other weights."""
    return _encoder_code(G, encoder, _targets(G, image))


def encode(G: Generator, encoder: Any, image: Tensor, *, model_id: str = "",
           perceptual: str | metrics.Perceptual | None = "auto") -> Inversion | list[Inversion]:
    """One forward pass of an encoder (``interp.builtin.encoder``) -> Inversion(s), origin method 'encoder'."""
    space = _encoder_space(encoder)
    t0 = time.perf_counter()
    target = _targets(G, image)
    code = _encoder_code(G, encoder, target)
    with torch.no_grad():
        img = code_image(G, space, code)
    seconds = time.perf_counter() - t0
    dist = None if perceptual is None else perceptual if isinstance(perceptual, metrics.Perceptual) else (
        metrics.perceptual_for(model_id, target.device) if perceptual == "auto"
        else metrics.perceptual(perceptual, target.device))
    from interp.diskcache import model_hash

    h = model_hash(G)
    out = []
    for i in range(target.shape[0]):
        latent = _latent(G, space, code[i], model_id, h, {"kind": "inversion", "method": "encoder", "space": space})
        stats = report(img[i:i + 1], target[i:i + 1], dist)
        stats["seconds"] = seconds / target.shape[0]
        out.append(Inversion(latent, img[i:i + 1].cpu(), (), stats,
                             f"{dist.name}: {dist.reason}" if dist is not None else "", f"encoder {space}"))
    return out[0] if len(out) == 1 else out


def hybrid(G: Generator, encoder: Any, image: Tensor, steps: int = 50, lr: float = HYBRID_LR, *,
           model_id: str = "", **kwargs: Any) -> Inversion | list[Inversion]:
    """IDInvert-style: the encoder's code, then ``steps`` optimisation steps in the encoder's space.

    A tenth of the learning rate used from the mean latent: the start is already close. ``kwargs`` go to
    :func:`invert` (progress, perceptual, degrade, mask, ...).
    """
    space = _encoder_space(encoder)
    t0 = time.perf_counter()
    start = _encoder_code(G, encoder, _targets(G, image))
    encode_seconds = time.perf_counter() - t0
    result = invert(G, image, space, steps, lr, model_id=model_id, start=start, method="hybrid", **kwargs)
    for r in (result if isinstance(result, list) else [result]):
        r.metrics["seconds"] += encode_seconds / start.shape[0]
    return result
