"""Restoration by inversion: the degradation goes inside the loss, the result is a Latent.

    from interp.methods.restore import restore, degrade, baseline, TASKS
    low = degrade(clean, "sr4")                          # [1, 3, 16, 16] from a 64x64 image (area average)
    out = restore(G, low, "sr4", model_id="faces64")     # optimise G's code so that degrade(G(code)) = low
    out.image                                            # [1, 3, 64, 64]: the super-resolved face
    out.latent                                           # origin {"kind": "restoration", "task": "sr4", ...}
    out.metrics["consistency_psnr"]                      # degrade(result) vs the observation, dB
    restore(G, low, "sr4", truth=clean).metrics["psnr"]  # vs the truth, when it is known (benchmarks, demos)
    baseline(low, "sr4")                                 # what a restorer must beat: bicubic here

Tasks (``TASKS``):

- ``colorize``: the observation is a greyscale image (luma, ITU-R BT.601); a colour upload is turned grey
  first. Baseline: the grey image.
- ``sr4`` / ``sr8``: the observation is the image averaged over 4x4 / 8x8 blocks (area downsampling). Give
  the small image, or one at the model's size (it is area-downsampled first). Baseline: bicubic upsampling.
- ``inpaint``: the observation is the image with a hole; ``mask`` [H, W] or [1, 1, H, W] marks the hole
  (1 = missing; a brush stroke), at the model's resolution or any size (resized). The loss ignores the
  hole; the generator fills it. Baseline: the hole filled with the mean colour of the rest.

Because the result is a Latent, a restored image is editable in every tab. ``restore`` takes the same
options as :func:`interp.methods.invert.invert` (space, steps, lr, progress, perceptual, start, ...);
``restoration_steps`` yields live updates like ``inversion_steps``.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from interp import metrics
from interp.methods.invert import (DEFAULT_STEPS, HYBRID_LR, Inversion, Update, encode, encoder_start,
                                   inversion_steps, report)
from interp.models.stylegan2 import Generator

__all__ = ["METHODS", "TASKS", "baseline", "degrade", "hole_mask", "observation", "restoration_steps", "restore",
           "solve"]

TASKS = ("colorize", "sr4", "sr8", "inpaint")
METHODS = ("optimization", "encoder", "hybrid")
RESTORE_LR = 0.03               # restorations fit less information than a reconstruction: a gentler rate
FACTORS = {"sr4": 4, "sr8": 8}
LUMA = (0.299, 0.587, 0.114)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown restoration task {task!r}; allowed: {', '.join(TASKS)}")


def grey(x: Tensor) -> Tensor:
    """Luma replicated on three channels: [N, 3, H, W] -> [N, 3, H, W]."""
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).reshape(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand(-1, 3, -1, -1)


def area_down(x: Tensor, factor: int) -> Tensor:
    """Average over factor x factor blocks: [N, C, H, W] -> [N, C, H/f, W/f]."""
    return F.avg_pool2d(x, factor)


def hole_mask(mask: Any, resolution: int) -> Tensor:
    """A hole mask (1 = missing) from [H, W], [1, H, W] or [1, 1, H, W] (tensor or array, any size; 0..1 or
    0..255) -> binary [1, 1, R, R]: centre-cropped like the image; when larger than R, a model pixel whose
    area holds any value above 0.5 is a hole (a thin brush stroke still counts). ValueError when it is
    empty or covers everything."""
    m = torch.as_tensor(mask).detach().float().cpu()
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2 or min(m.shape) < 1:
        raise ValueError(f"the inpainting mask must be [H, W] (1 = hole), got shape {list(torch.as_tensor(mask).shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("the inpainting mask has NaN or infinite values")
    if m.max() > 1:
        m = m / 255 if m.max() <= 255 else m / m.max()
    m = m[None, None]
    if tuple(m.shape[2:]) != (resolution, resolution):
        side = min(m.shape[2:])
        h, w = m.shape[2:]
        m = m[:, :, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        if side > resolution:                                             # a cell with any paint is a hole
            m = F.adaptive_max_pool2d(m, (resolution, resolution))
        else:
            m = F.interpolate(m, size=(resolution, resolution), mode="nearest")
    m = (m > 0.5).float()
    if m.sum() == 0:
        raise ValueError("the inpainting mask is empty: paint the missing region with the brush first")
    if m.sum() == m.numel():
        raise ValueError("the inpainting mask covers the whole image: leave some pixels to fit")
    return m


def degrade(image: Tensor, task: str, mask: Tensor | None = None) -> Tensor:
    """The observation a task starts from, made from a clean image [N, 3, H, W] (benchmarks, demos, tests)."""
    _check_task(task)
    if task == "colorize":
        return grey(image)
    if task in FACTORS:
        return area_down(image, FACTORS[task])
    if mask is None:
        raise ValueError("inpaint needs a mask (1 = hole)")
    m = hole_mask(mask, image.shape[-1]).to(image)
    return image * (1 - m)                                                  # the hole shows black-grey 0


def observation(image: Tensor, task: str, resolution: int) -> Tensor:
    """An upload made ready for ``task``: grey for colorize, the small image for sr (area-downsampled when
    given at the model's size, resized otherwise), unchanged for inpaint. ``image`` [1, 3, h, w]."""
    _check_task(task)
    if task == "colorize":
        return grey(image)
    if task in FACTORS:
        small = resolution // FACTORS[task]
        side = image.shape[-1]
        if side == small:
            return image
        if side % small == 0:
            return area_down(image, side // small)
        return F.interpolate(image, size=(small, small), mode="area" if side > small else "bicubic",
                             align_corners=None if side > small else False).clamp(-1, 1)
    return image


def baseline(observed: Tensor, task: str, mask: Tensor | None = None, resolution: int | None = None) -> Tensor:
    """The simple answer a restoration must beat, at full resolution [N, 3, R, R]: the grey image (colorize),
    bicubic upsampling (sr4 / sr8), the mean colour of the known pixels in the hole (inpaint)."""
    _check_task(task)
    if task == "colorize":
        return observed
    if task in FACTORS:
        size = resolution or observed.shape[-1] * FACTORS[task]
        return F.interpolate(observed, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    if mask is None:
        raise ValueError("inpaint needs a mask (1 = hole)")
    m = hole_mask(mask, observed.shape[-1]).to(observed)
    known = 1 - m
    mean = (observed * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True)
    return observed * known + mean * m


def restoration_steps(G: Generator, observed: Tensor, task: str, mask: Any = None, space: str = "w+",
                      steps: int = DEFAULT_STEPS, lr: float = RESTORE_LR, *, model_id: str = "",
                      truth: Tensor | None = None, **kwargs: Any) -> Iterator[Update]:
    """Like ``inversion_steps``; the last update's result has restoration metrics (see :func:`restore`)."""
    _check_task(task)
    R = G.img_resolution
    if not isinstance(observed, Tensor) or observed.ndim != 4 or observed.shape[1] != 3:
        raise ValueError(f"the observation must be an image tensor [N, 3, H, W], got "
                         f"{getattr(observed, 'shape', type(observed).__name__)}")
    obs = observation(observed.float(), task, R)
    hole = None
    if task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask of the missing region (1 = hole): paint it with the brush")
        hole = hole_mask(mask, R)
        if obs.shape[-1] != R:
            raise ValueError(f"inpainting needs the image at the model's resolution {R}x{R} (see prepare_image)")
    fn = {"colorize": grey, "sr4": lambda x: area_down(x, 4), "sr8": lambda x: area_down(x, 8)}.get(task)
    origin = {"kind": "restoration", "task": task}
    known = None if hole is None else (1 - hole).to(G.mapping.w_avg.device)
    final = None
    for update in inversion_steps(G, obs, space, steps, lr, model_id=model_id, degrade=fn, mask=known,
                                  origin=origin, method=f"restore {task}", **kwargs):
        if update.result is None:
            yield update
        else:
            final = update
    assert final is not None
    results = final.result if isinstance(final.result, list) else [final.result]
    for i, r in enumerate(results):
        seen = r.metrics.get("psnr_mask", r.metrics["psnr"])               # inpaint: the known pixels only
        stats = {"consistency_psnr": seen, "seconds": r.metrics["seconds"], "loss": r.metrics["loss"]}
        if "psnr_ws_only" in r.metrics:
            stats["psnr_ws_only_consistency"] = r.metrics["psnr_ws_only"]
        if truth is not None:
            t = truth[i:i + 1].float().to(r.image.device)
            stats.update(report(r.image, t, metrics.perceptual_for(model_id, t.device), hole))
        r.metrics.clear()
        r.metrics.update(stats)
    yield final


def restore(G: Generator, observed: Tensor, task: str, mask: Any = None, space: str = "w+",
            steps: int = DEFAULT_STEPS, lr: float = RESTORE_LR, *, model_id: str = "",
            truth: Tensor | None = None, **kwargs: Any) -> Inversion | list[Inversion]:
    """Restore ``observed`` [N, 3, h, w] by inverting G through the task's degradation (see the module doc).

    mask:  the hole for ``inpaint`` (1 = missing).
    truth: the clean image [N, 3, R, R], when known: adds psnr / ssim (and psnr_mask inside the hole).
    Other options as :func:`interp.methods.invert.invert`. metrics: consistency_psnr (degraded result vs the
    observation), seconds, loss, and with ``truth``: psnr, ssim[, psnr_mask].
    """
    update = None
    progress = kwargs.pop("progress", None)
    for update in restoration_steps(G, observed, task, mask, space, steps, lr, model_id=model_id, truth=truth,
                                    **kwargs):
        if progress is not None:
            progress(update)
    assert update is not None and update.result is not None
    return update.result


def solve(G: Generator, image: Tensor, task: str = "reconstruct", method: str = "optimization", space: str = "w+",
          steps: int = DEFAULT_STEPS, *, encoder: Any = None, mask: Any = None, truth: Tensor | None = None,
          model_id: str = "", **kwargs: Any) -> Iterator[Update]:
    """One entry point for a UI or a benchmark: ``task`` "reconstruct" or one of ``TASKS``, ``method`` one of
    ``METHODS``; yields :class:`Update` s, the last one with the result.

    optimization: ``steps`` Adam steps in ``space`` from the mean latent.
    encoder:      one forward pass of ``encoder`` (its own space; reconstruction only).
    hybrid:       the encoder's code (of the task's baseline image for a restoration), then ``steps``
                  optimisation steps in the encoder's space at the smaller ``HYBRID_LR``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if task != "reconstruct":
        _check_task(task)
    if method != "optimization" and encoder is None:
        raise ValueError(f"method {method!r} needs an encoder")
    if method == "encoder":
        if task != "reconstruct":
            raise ValueError(f"an encoder only reconstructs; for {task!r} use optimization or hybrid (the encoder "
                             "then starts the optimisation from the task's baseline image)")
        yield Update(0, 0, float("nan"), None, encode(G, encoder, image, model_id=model_id))
        return
    if method == "hybrid":
        space = encoder.config.space
        start_image = image if task == "reconstruct" else baseline(
            observation(image.float(), task, G.img_resolution), task,
            hole_mask(mask, G.img_resolution) if task == "inpaint" and mask is not None else None, G.img_resolution)
        kwargs = {"start": encoder_start(G, encoder, start_image), "lr": kwargs.pop("lr", HYBRID_LR), **kwargs}
    if task == "reconstruct":
        yield from inversion_steps(G, image, space, steps, model_id=model_id, mask=mask, method=method, **kwargs)
    else:
        yield from restoration_steps(G, image, task, mask, space, steps, model_id=model_id, truth=truth, **kwargs)
