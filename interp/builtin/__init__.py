"""The built-in domain: procedural faces with known factors, and the small models that read them.

Renderer (``faces``)::

    from interp.builtin import FACTORS, PARTS, sample_factors, render
    f = sample_factors(16, seed=0)            # {factor: [16]} from the documented prior
    images, parts = render(f, size=64)        # uint8 [16, 64, 64, 3], uint8 [16, 64, 64]

Judges (shipped in ``assets/builtin/``; image input = float [N, 3, H, W] in [-1, 1], square,
resized to 64x64 inside; ``images_to_tensor`` converts renders)::

    P = load_predictor()      # P(x) -> {factor: value in FACTORS units / probability}; P.features(x)
    S = load_segmenter()      # S(x) -> part logits [N, len(PARTS), H, W]; S.segment(x) -> labels
    model, preprocess, tokenizer = load_clip()   # open_clip model, PIL preprocess, tokenizer

Loaders cache one instance per device; the instances are shared, in eval mode, with frozen
parameters (gradients still flow to the input images).
"""

from __future__ import annotations

import threading

import torch

from .common import ASSETS, load_config, load_weights
from .faces import (FACTOR_BY_NAME, FACTOR_NAMES, FACTORS, HAIR_COLORS, PARTS, PRIOR, Factor,
                    images_to_tensor, render, render_torch, sample_factors, validate_factors)
from .predictor import AttributePredictor, PredictorConfig
from .segmenter import PartSegmenter, SegmenterConfig

__all__ = [
    "Factor", "FACTORS", "FACTOR_NAMES", "FACTOR_BY_NAME", "PARTS", "HAIR_COLORS", "PRIOR",
    "sample_factors", "validate_factors", "render", "render_torch", "images_to_tensor",
    "AttributePredictor", "PredictorConfig", "PartSegmenter", "SegmenterConfig",
    "load_predictor", "load_segmenter", "load_clip",
]

_CACHE: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    from interp.devices import resolve_device

    dev = torch.device(resolve_device(device))
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _missing(stem, train: str) -> FileNotFoundError:
    return FileNotFoundError(f"built-in weights {stem} not found; train them with `python -m interp.builtin.{train}`")


def _frozen(model: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
    model = model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_judge(name: str, model_cls: type, config_cls: type, trainer: str, device) -> torch.nn.Module:
    dev = _device(device)
    key = (name, str(dev))
    with _LOCK:
        if key not in _CACHE:
            stem = ASSETS / name
            if not (stem.with_suffix(".safetensors")).exists():
                raise _missing(stem.with_suffix(".safetensors"), trainer)
            model = load_weights(model_cls(load_config(stem, config_cls)), stem)
            _CACHE[key] = _frozen(model, dev)
        return _CACHE[key]


def load_predictor(device: str | torch.device | None = None) -> AttributePredictor:
    """The shipped attribute predictor (cached per device; CPU by default)."""
    return _load_judge("predictor", AttributePredictor, PredictorConfig, "train_predictor", device)


def load_segmenter(device: str | torch.device | None = None) -> PartSegmenter:
    """The shipped part segmenter (cached per device; CPU by default)."""
    return _load_judge("segmenter", PartSegmenter, SegmenterConfig, "train_segmenter", device)


def load_clip(device: str | torch.device | None = None):
    """The shipped tiny CLIP through open_clip: ``(model, preprocess, tokenizer)``.

    Same as ``open_clip.create_model_and_transforms(CLIP_NAME, pretrained=CLIP_WEIGHTS)`` (the
    validation transform) and ``open_clip.get_tokenizer(CLIP_NAME)`` after registering the
    config shipped in ``assets/builtin/``. Cached per device; CPU by default.
    """
    import open_clip

    from .clip import CLIP_WEIGHTS, register

    dev = _device(device)
    key = ("clip", str(dev))
    with _LOCK:
        if key not in _CACHE:
            if not CLIP_WEIGHTS.exists():
                raise _missing(CLIP_WEIGHTS, "train_clip")
            name = register()
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(CLIP_WEIGHTS), device=dev)
            _CACHE[key] = (_frozen(model, dev), preprocess, open_clip.get_tokenizer(name))
        return _CACHE[key]
