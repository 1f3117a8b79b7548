"""Helpers shared by the tabs: the app context, model access, PIL <-> tensor, grids, ZeroGPU.

Tabs stay thin: they build components, validate input with :func:`check_int` /
:func:`check_float`, fetch the generator with :func:`get_generator` and convert
tensors with :func:`tensor_to_pil` / :func:`grid_image`.  Failures surface as
``gr.Error`` with a sentence a person understands.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

# `spaces` must be imported before anything initialises CUDA on ZeroGPU Spaces.
try:  # pragma: no cover - only on Hugging Face Spaces
    import spaces as _spaces
except ImportError:  # the package is optional: locally GPU work runs in-process
    _spaces = None

import gradio as gr
import numpy as np
import torch
from PIL import Image

from interp.models.stylegan2 import Generator
from interp.zoo import ModelEntry, ModelUnavailable, UnknownModelError, Zoo

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "AppContext",
    "ModelChoices",
    "check_float",
    "check_int",
    "get_generator",
    "gpu",
    "grid_image",
    "model_choices",
    "pil_to_tensor",
    "tensor_to_pil",
    "ZEROGPU",
]

ZEROGPU = _spaces is not None


def gpu(fn: F | None = None, *, duration: int | None = None) -> Any:
    """``spaces.GPU`` on Hugging Face ZeroGPU, a no-op decorator everywhere else.

    Usable bare (``@gpu``) or with a duration in seconds (``@gpu(duration=120)``).
    """

    def wrap(f: F) -> F:
        if _spaces is None:
            return f
        return _spaces.GPU(duration=duration)(f) if duration is not None else _spaces.GPU(f)

    return wrap(fn) if fn is not None else wrap


# ------------------------------------------------------------------ context


@dataclass
class AppContext:
    """What every tab's ``build(ctx)`` receives.

    zoo:     the model registry (shared, read-only for tabs).
    device:  torch device string the generators run on.
    model:   the model picker; pass it as an event input to get the selected zoo id.
    latent:  per-user ``gr.State`` with the last generated latents, a dict
             {"model_id", "seed", "truncation_psi", "ws" [N, num_ws, w_dim] cpu tensor}
             or None; tabs may read it to edit what the user generated.
    tab:     the tab being built (its ``select`` event fires when a user opens it), or None.
    demo:    the whole gr.Blocks (its ``load`` event fires when a page opens), or None.
    """

    zoo: Zoo
    device: str
    model: gr.Dropdown
    latent: gr.State
    tab: gr.Tab | None = None
    demo: gr.Blocks | None = None


@dataclass(frozen=True)
class ModelChoices:
    choices: list[tuple[str, str]]          # (label, id) for the dropdown
    default: str | None                     # the preselected id, None when nothing is usable
    unavailable: list[tuple[ModelEntry, str]]

    def note_markdown(self) -> str:
        """A Markdown note on the models that cannot be used, and how to add one."""
        lines = []
        if not self.choices:
            lines.append("**No model is available.** Add one with `python app.py --models /path/to/network.pkl` "
                         "(NVIDIA `.pkl`, rosinality `.pt` or our `.safetensors`; `hf://owner/repo/file.pkl` "
                         "URLs work too) or the `INTERP_MODELS` environment variable.")
        if self.unavailable:
            lines.append(f"{len(self.unavailable)} model(s) are not available right now:")
            for entry, reason in self.unavailable:
                lines.append(f"- **{entry.id}** ({entry.name}): {reason}")
            if self.choices:
                lines.append("\nAdd your own model with `--models /path/to/file.pkl` or `INTERP_MODELS`.")
        return "\n".join(lines)


def model_choices(zoo: Zoo) -> ModelChoices:
    """Split the registry into usable models (for the picker) and unavailable ones (with reasons)."""
    choices, unavailable, local = [], [], []
    for entry in zoo.list_models():
        try:
            status = zoo.availability(entry)
        except Exception as exc:  # a broken cache entry must not stop the app from starting
            unavailable.append((entry, f"cannot check the file ({type(exc).__name__}: {exc})"))
            continue
        if status.available:
            label = entry.name + (" - downloads on first use" if status.needs_download else "")
            choices.append((label, entry.id))
            if not status.needs_download:
                local.append(entry.id)
        else:
            unavailable.append((entry, status.reason))
    ids = [i for _, i in choices]
    user = [e.id for e in zoo.list_models() if e.user and e.id in ids]
    # preference: the user's own model, the registry default, any local file, anything
    for candidate in (user[:1], [zoo.default_id] if zoo.default_id in ids else [], local[:1], ids[:1]):
        if candidate:
            return ModelChoices(choices, candidate[0], unavailable)
    return ModelChoices(choices, None, unavailable)


def get_generator(ctx: AppContext, model_id: str | None) -> Generator:
    """The selected generator, loaded through the zoo cache; errors become gr.Error."""
    if not model_id:
        raise gr.Error("No model is selected. Pick one in the model list at the top, or start the app with "
                       "--models /path/to/network.pkl to add your own.")
    try:
        ctx.zoo.get_entry(model_id)  # only registered ids: API callers must not load arbitrary paths
        return ctx.zoo.load_generator(model_id, ctx.device)
    except (ModelUnavailable, UnknownModelError) as exc:
        raise gr.Error(str(exc)) from exc
    except ValueError as exc:  # CheckpointError and friends: the file is not a usable checkpoint
        raise gr.Error(f"Model {model_id!r} could not be loaded: {exc}") from exc


# --------------------------------------------------------------- validation


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi], else gr.Error naming the allowed range."""
    if value is None or isinstance(value, bool):
        raise gr.Error(f"{name} must be a whole number between {lo} and {hi}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a whole number between {lo} and {hi}, got {value!r}.") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise gr.Error(f"{name} must be a whole number between {lo} and {hi}, got {value!r}.")
    return int(number)


def check_float(value: Any, name: str, lo: float, hi: float) -> float:
    """``value`` as a float in [lo, hi], else gr.Error naming the allowed range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise gr.Error(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}.") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise gr.Error(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}.")
    return number


# ------------------------------------------------------------- conversions


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """A generator image [3, H, W] (or [1, 3, H, W]) in about [-1, 1] -> RGB PIL image."""
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image, got a batch of {img.shape[0]}; use grid_image")
        img = img[0]
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor [3, H, W] or [1, H, W], got shape {tuple(img.shape)}")
    x = ((img.detach().float().cpu() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)  # [C, H, W]
    x = x.permute(1, 2, 0).numpy()                                                        # [H, W, C]
    if x.shape[2] == 1:
        return Image.fromarray(x[:, :, 0], mode="L").convert("RGB")
    return Image.fromarray(x, mode="RGB")


def pil_to_tensor(image: Image.Image, resolution: int | None = None) -> torch.Tensor:
    """RGB PIL image -> [1, 3, H, W] in [-1, 1]; resized (Lanczos) to a square ``resolution`` if given."""
    image = image.convert("RGB")
    if resolution is not None and image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # [H, W, 3]
    x = x.permute(2, 0, 1).unsqueeze(0).float()                     # [1, 3, H, W]
    return x / 127.5 - 1


def grid_image(imgs: torch.Tensor, cols: int | None = None) -> Image.Image:
    """A batch [N, 3, H, W] in [-1, 1] as one PIL image: ``cols`` columns (default ceil(sqrt(N))), no padding.

    Empty cells of the last row are black; one image comes back unchanged in size.
    """
    if imgs.dim() != 4:
        raise ValueError(f"expected a batch of images [N, C, H, W], got shape {tuple(imgs.shape)}")
    n, c, h, w = imgs.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = torch.full((rows * cols, c, h, w), -1.0, dtype=imgs.dtype, device=imgs.device)
    canvas[:n] = imgs
    canvas = canvas.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4)  # [C, rows, H, cols, W]
    return tensor_to_pil(canvas.reshape(c, rows * h, cols * w))          # [C, rows*H, cols*W]
