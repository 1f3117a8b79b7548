"""The core vocabulary: the current image is data (a ``Latent``) and every method's edit stacks on it.

    latent = Latent.from_seed(G, "faces64", seed=42, psi=0.7)          # or an inversion, a restoration
    older = DirectionEdit(d, "w", layer_rows(G, "middle"), 2.0, std=0.4, name="+ an old face",
                          method="interfacegan")
    off = UnitEdit("b16.conv0", units=(3, 17), mask=brush, mode="remove", name="glasses")
    img = render(G, latent, [older, off])                               # [1, 3, H, W]
    recipe = Recipe(latent, (older, off))
    recipe.save("portrait.safetensors"); Recipe.load("portrait.safetensors").render(G)
    print(recipe.summary())

Spaces (see DESIGN.md): ``z`` (input latent), ``w`` (W+, one row of ``ws`` per style input),
``s`` (StyleSpace: the concatenated affine outputs of the style layers fed by ``layers``).

Edits:

- :class:`DirectionEdit`: move ``strength`` standard deviations along a direction in z, w or s on
  some ws rows (SeFa, GANSpace, InterFaceGAN boundaries, StyleCLIP global directions).
- :class:`UnitEdit`: set (``remove`` / ``add``) or scale some channels of one synthesis layer
  inside a spatial mask (the GAN Dissection brush); self-contained, so a recipe replays it
  without any statistics.

:func:`render` applies z edits (seed latents only), then W edits, then S edits, then unit edits
through :mod:`interp.nethook`; with a :class:`~interp.models.stylegan2.SynthesisCache` it reuses
the activations below the first changed layer. ``render(G, latent, [])`` equals
``G.synthesis(latent.ws[None])`` bit for bit. A latent with a StyleSpace override (``Latent.styles``, an
S-space inversion) renders from those styles (:func:`synthesize_styles`); W edits move them by what they
move the affine outputs, S and unit edits apply as usual.

``layers`` of a direction edit are always rows of ``ws``. Presets name the usual ranges
(GANSpace's convention):

- ``all``:    every row
- ``coarse``: rows 0-3   (4x4 and 8x8 blocks: pose, face shape)
- ``middle``: rows 4-7   (16x16 and 32x32: features, expression, hair style)
- ``fine``:   rows 8-end (64x64 and above: colour, texture, lighting)
- ``custom``: rows ``start`` .. ``end`` (inclusive)

Models below 64x64 (fewer than 10 rows) split their rows into three near-equal parts instead.

Strength is in units of the direction's standard deviation (``DirectionEdit.std``: the spread of
sampled latents projected on the direction), so a slider at 2 means "two standard deviations" for
every method. An edit with strength 0 leaves the latent untouched: the image is the original bit
for bit.
"""
from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from interp import nethook
from interp.models.stylegan2 import Generator, SynthesisCache

__all__ = [
    "PRECISIONS",
    "PRESETS",
    "SPACES",
    "UNIT_MODES",
    "DirectionEdit",
    "Latent",
    "Recipe",
    "RecipeError",
    "RenderSession",
    "UnitEdit",
    "apply_styles",
    "apply_ws",
    "apply_z",
    "cast_styles",
    "enforce_cache_budget",
    "latent_dim",
    "layer_rows",
    "projection_stds",
    "preview_precision",
    "render",
    "render_cache_budget",
    "render_copy",
    "resolve_layers",
    "resolve_precision",
    "rows_text",
    "sample_latents",
    "split_styles",
    "style_layers_for_rows",
    "style_sizes",
    "synthesize",
    "synthesize_styles",
    "synthesize_ws",
]

SPACES = ("z", "w", "s")
PRESETS = ("all", "coarse", "middle", "fine", "custom")
UNIT_MODES = ("remove", "add", "scale")
RECIPE_FORMAT = "interp.recipe/1"
MAX_RECIPE_BYTES = 64 * 2**20
MAX_SEED = 2**32 - 1              # numpy's RandomState seeds (G.sample_z)
MAX_SEED_SAMPLES = 4096           # a seed latent is sample `index` of G.sample_z(n, seed): n at most this
MAX_RECIPE_STRENGTH = 100.0       # std units: far beyond any slider; a larger one only makes a broken image
MAX_RECIPE_STD = 1000.0           # latent units per std


# ----------------------------------------------------------------------------------------------------
# Layer ranges


def _num_ws(G_or_num_ws: Generator | int) -> int:
    n = G_or_num_ws if isinstance(G_or_num_ws, int) else G_or_num_ws.num_ws
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"num_ws must be a positive integer, got {n!r}")
    return n


def layer_rows(G_or_num_ws: Generator | int, preset: str = "all", start: int | None = None,
               end: int | None = None) -> tuple[int, ...]:
    """The ws rows of a layer-range preset (see the module docstring); ``custom`` uses start..end inclusive."""
    n = _num_ws(G_or_num_ws)
    if preset not in PRESETS:
        raise ValueError(f"unknown layer range {preset!r}; allowed: {', '.join(PRESETS)}")
    if preset == "custom":
        if start is None or end is None:
            raise ValueError("layer range 'custom' needs start and end rows")
        if isinstance(start, bool) or isinstance(end, bool) or int(start) != start or int(end) != end:
            raise ValueError(f"custom start and end must be whole numbers, got {start!r} and {end!r}")
        start, end = int(start), int(end)
        if not 0 <= start <= end < n:
            raise ValueError(f"custom layer range {start}-{end} is invalid: need 0 <= start <= end <= {n - 1}")
        return tuple(range(start, end + 1))
    if start is not None or end is not None:
        raise ValueError(f"start/end are only used with layer range 'custom', not {preset!r}")
    if preset == "all":
        return tuple(range(n))
    if n >= 10:
        bounds = {"coarse": (0, 4), "middle": (4, 8), "fine": (8, n)}
    else:
        parts = np.array_split(np.arange(n), 3)
        bounds = {name: (int(p[0]), int(p[-1]) + 1) if len(p) else (0, 0)
                  for name, p in zip(("coarse", "middle", "fine"), parts)}
    lo, hi = bounds[preset]
    if lo >= hi:
        raise ValueError(f"layer range {preset!r} is empty for a model with {n} ws rows; use 'all' or 'custom'")
    return tuple(range(lo, hi))


def resolve_layers(G: Generator, layers: str | Iterable[int] | Iterable[str] | None) -> tuple[int, ...]:
    """ws rows from a preset name, a list of rows, or a list of style layer names (``b8.conv0``, ...)."""
    if layers is None:
        return layer_rows(G, "all")
    if isinstance(layers, str):
        return layer_rows(G, layers)
    items = list(layers)
    if not items:
        raise ValueError("layers is empty; pass a preset (all, coarse, middle, fine), ws rows or style layer names")
    if all(isinstance(x, str) for x in items):
        unknown = [x for x in items if x not in G.ws_index]
        if unknown:
            raise ValueError(f"unknown style layer(s) {unknown}; allowed: {', '.join(G.style_layers)}")
        return tuple(sorted({G.ws_index[x] for x in items}))
    rows = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise ValueError(f"layers must be ws rows (integers) or style layer names, got {x!r}")
        if not 0 <= int(x) < G.num_ws:
            raise ValueError(f"ws row {x} is out of range; allowed: 0 .. {G.num_ws - 1}")
        rows.append(int(x))
    return tuple(sorted(set(rows)))


def style_layers_for_rows(G: Generator, rows: Iterable[int]) -> list[str]:
    """The style layers (in synthesis order) whose affine reads one of the given ws rows."""
    rows = set(rows)
    return [name for name in G.style_layers if G.ws_index[name] in rows]


def latent_dim(G: Generator, space: str, rows: Sequence[int]) -> int:
    """Dimension of a direction in ``space`` (for ``s``: the summed channels of the fed style layers)."""
    _check_space(space)
    if space == "z":
        return G.z_dim
    if space == "w":
        return G.w_dim
    return sum(G.synthesis.layer(name).affine.weight.shape[0] for name in style_layers_for_rows(G, rows))


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"unknown latent space {space!r}; allowed: {', '.join(SPACES)}")


# ----------------------------------------------------------------------------------------------------
# Edits


def _finite_float(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return number


@dataclass(frozen=True)
class DirectionEdit:
    """Move ``strength`` standard deviations (``std`` latent units each) along ``direction``.

    direction: [D] in the latent ``space`` (normalised to unit length on construction).
    layers:    ws rows the edit applies to (``z`` edits must use every row: Z feeds all of them).
    name:      what a person reads ("+ a smiling face", "age"); method: who made it ("sefa", ...).
    """

    direction: Tensor
    space: str
    layers: tuple[int, ...]
    strength: float
    std: float = 1.0
    name: str = ""
    method: str = ""

    def __post_init__(self) -> None:
        _check_space(self.space)
        d = torch.as_tensor(self.direction, dtype=torch.float32).detach().cpu()
        if d.ndim != 1 or d.numel() == 0:
            raise ValueError(f"direction must be a vector [D], got shape {list(d.shape)}")
        norm = d.norm()
        if not torch.isfinite(norm) or norm == 0:
            raise ValueError("direction must be finite and non-zero")
        if abs(float(norm) - 1) > 1e-6:                                   # unit vectors stay bit for bit (round trips)
            d = d / norm
        object.__setattr__(self, "direction", d)
        layers = tuple(int(r) for r in self.layers)
        if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
            raise ValueError(f"layers must be distinct non-negative ws rows, got {self.layers!r}")
        object.__setattr__(self, "layers", tuple(sorted(layers)))
        object.__setattr__(self, "strength", _finite_float(self.strength, "strength"))
        object.__setattr__(self, "std", _finite_float(self.std, "std"))
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "method", str(self.method))

    @property
    def delta(self) -> Tensor:
        """The latent offset [D]: strength * std * unit direction."""
        return self.direction * (self.strength * self.std)

    def with_strength(self, strength: float) -> "DirectionEdit":
        return replace(self, strength=strength)


@dataclass(frozen=True)
class UnitEdit:
    """Set or scale ``units`` (channels) of the synthesis layer ``layer`` inside ``mask``.

    layer:  a style layer name as in ``G.styles`` (``b16.conv0``); the edit acts on its output.
    units:  channel indices of that layer.
    mask:   [H, W] in [0, 1] at image resolution (averaged down to the layer's resolution, so a
            feature cell is edited in proportion to how much of it is painted), or None: everywhere.
    mode:   ``remove`` / ``add``: inside the mask the units go to ``value`` (their low / high level);
            ``scale``: the units are multiplied by ``value`` inside the mask.
    value:  one level for all units, or one per unit [U]; default 0 (switch off).
    """

    layer: str
    units: tuple[int, ...]
    mask: Tensor | None = None
    mode: str = "remove"
    value: Any = 0.0
    name: str = ""
    method: str = "dissection"

    def __post_init__(self) -> None:
        if not isinstance(self.layer, str) or "." not in self.layer:
            raise ValueError(f"layer must be a style layer name such as 'b16.conv0', got {self.layer!r}")
        if self.layer.endswith("torgb"):
            raise ValueError(f"unit edits act on convolution layers (conv0 / conv1), not {self.layer!r}")
        units = tuple(int(u) for u in self.units)
        if not units or len(set(units)) != len(units) or min(units) < 0:
            raise ValueError(f"units must be distinct non-negative channel indices, got {self.units!r}")
        object.__setattr__(self, "units", units)
        if self.mode not in UNIT_MODES:
            raise ValueError(f"unknown unit edit mode {self.mode!r}; allowed: {', '.join(UNIT_MODES)}")
        if self.mask is not None:
            m = torch.as_tensor(self.mask, dtype=torch.float32).detach().cpu()
            if m.ndim != 2 or min(m.shape) < 1:
                raise ValueError(f"mask must be [H, W] at image resolution, got shape {list(m.shape)}")
            if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
                raise ValueError("mask values must be finite and within [0, 1]")
            if m.max() == 0:
                raise ValueError("the mask is empty: paint the region the edit should change")
            object.__setattr__(self, "mask", m)
        v = torch.as_tensor(self.value, dtype=torch.float32).detach().cpu().reshape(-1)
        if v.numel() not in (1, len(units)):
            raise ValueError(f"value must be one number or one per unit ({len(units)}), got {v.numel()}")
        if not torch.isfinite(v).all():
            raise ValueError("value must be finite")
        object.__setattr__(self, "value", v)
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "method", str(self.method))

    @property
    def module_path(self) -> str:
        """The nethook path of the edited layer inside the generator."""
        return f"synthesis.{self.layer}"

    def mask_at(self, h: int, w: int) -> Tensor:
        """The mask averaged down (or up) to a feature map of [h, w]: [1, 1, h, w]."""
        if self.mask is None:
            return torch.ones(1, 1, h, w)
        m = self.mask[None, None]                                          # [1, 1, H, W]
        if m.shape[-2] % h == 0 and m.shape[-1] % w == 0:
            return F.adaptive_avg_pool2d(m, (h, w))                        # exact area coverage
        return F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)

    def apply(self, features: Tensor) -> Tensor:
        """The edited output [N, C, h, w] of the layer (a new tensor)."""
        n, c, h, w = features.shape
        if max(self.units) >= c:
            raise ValueError(f"unit {max(self.units)} does not exist: layer {self.layer} has {c} units")
        m = self.mask_at(h, w).to(features)                               # [1, 1, h, w]
        idx = torch.tensor(self.units, device=features.device)
        x = features.index_select(1, idx)                                  # [N, U, h, w]
        v = self.value.to(features).reshape(1, -1, 1, 1)                   # [1, U or 1, 1, 1]
        if self.mode == "scale":
            x = x * (1 + m * (v - 1))
        else:
            x = x * (1 - m) + m * v
        return features.index_copy(1, idx, x)


AnyEdit = Union[DirectionEdit, UnitEdit]


def _active(edits: Iterable[AnyEdit], space: str) -> list[DirectionEdit]:
    return [e for e in edits if isinstance(e, DirectionEdit) and e.space == space and e.strength != 0]


def _check_rows(e: DirectionEdit, num_ws: int) -> None:
    if max(e.layers) >= num_ws:
        raise ValueError(f"edit {e.name or ''} uses ws row {max(e.layers)} but the model has rows 0 .. {num_ws - 1}")


def apply_z(z: Tensor, edits: Iterable[AnyEdit], num_ws: int | None = None) -> Tensor:
    """z [N, z_dim] plus the active z-space edits (a new tensor; ``z`` itself when none is active)."""
    active = _active(edits, "z")
    if not active:
        return z
    out = z.clone()
    for e in active:
        if num_ws is not None and e.layers != tuple(range(num_ws)):
            raise ValueError("a z-space edit moves every ws row; use the layer range 'all' (or edit in w / s)")
        if e.direction.numel() != z.shape[1]:
            raise ValueError(f"z edit has dimension {e.direction.numel()}, the model's z_dim is {z.shape[1]}")
        out += e.delta.to(out)
    return out


def apply_ws(ws: Tensor, edits: Iterable[AnyEdit]) -> Tensor:
    """ws [N, num_ws, w_dim] plus the active w-space edits on their rows (``ws`` itself when none is active)."""
    active = _active(edits, "w")
    if not active:
        return ws
    out = ws.clone()
    for e in active:
        _check_rows(e, ws.shape[1])
        if e.direction.numel() != ws.shape[2]:
            raise ValueError(f"w edit has dimension {e.direction.numel()}, the model's w_dim is {ws.shape[2]}")
        out[:, list(e.layers)] += e.delta.to(out)
    return out


def apply_styles(G: Generator, styles: dict[str, Tensor], edits: Iterable[AnyEdit]) -> dict[str, Tensor]:
    """StyleSpace edits: each direction is split over the style layers fed by its rows, in synthesis order."""
    active = _active(edits, "s")
    if not active:
        return styles
    out = dict(styles)
    for e in active:
        _check_rows(e, G.num_ws)
        names = style_layers_for_rows(G, e.layers)
        sizes = [out[n].shape[1] for n in names]
        if e.direction.numel() != sum(sizes):
            raise ValueError(f"s edit has dimension {e.direction.numel()}, the style layers {names} have {sum(sizes)}")
        for name, part in zip(names, e.delta.split(sizes)):
            out[name] = out[name] + part.to(out[name])
    return out


def style_sizes(G: Generator) -> list[int]:
    """Channels of each style layer in ``G.style_layers`` order: a flat S vector has ``sum`` of them."""
    return [G.synthesis.layer(name).affine.weight.shape[0] for name in G.style_layers]


def split_styles(G: Generator, flat: Tensor) -> dict[str, Tensor]:
    """A flat S vector [N, S] (every style layer, ``G.style_layers`` order) -> {layer: [N, C]}."""
    sizes = style_sizes(G)
    if flat.ndim != 2 or flat.shape[1] != sum(sizes):
        raise ValueError(f"styles must be [N, {sum(sizes)}] (every style layer of the model), got {list(flat.shape)}")
    return dict(zip(G.style_layers, flat.split(sizes, dim=1)))


def _unit_hook(edit: UnitEdit, owner: int):
    # Hooks live on the shared generator: only the thread that installed one applies it, so concurrent
    # renders of other users on the same model are untouched (their cache only skips the hooked blocks).
    def hook(output: Tensor) -> Tensor | None:
        return edit.apply(output).to(output.dtype) if threading.get_ident() == owner else None
    return hook


def _unit_traces(G: Generator, edits: Sequence[AnyEdit]) -> list[nethook.Trace]:
    """Install the unit edits as hooks (the caller closes the returned traces); refuses z edits."""
    if _active(edits, "z"):
        raise ValueError("z-space edits need z: use synthesize(G, z, ...) or a latent made from a seed")
    units = [e for e in edits if isinstance(e, UnitEdit)]
    for e in units:
        if e.layer not in G.ws_index:
            raise ValueError(f"unknown layer {e.layer!r}; allowed: "
                             f"{', '.join(n for n in G.style_layers if not n.endswith('torgb'))}")
        if e.mask is not None and tuple(e.mask.shape) != (G.img_resolution, G.img_resolution):
            raise ValueError(f"the mask is {list(e.mask.shape)} but the model makes {G.img_resolution}x"
                             f"{G.img_resolution} images")
    owner = threading.get_ident()
    return [nethook.Trace(G, e.module_path, retain_output=False, edit_output=_unit_hook(e, owner)) for e in units]


def synthesize_ws(G: Generator, ws: Tensor, edits: Sequence[AnyEdit] = (), noise_mode: str = "const",
                  cache: SynthesisCache | None = None) -> Tensor:
    """Image [N, 3, H, W] of ``ws`` [N, num_ws, w_dim] after the W, S and unit edits (z edits are refused)."""
    traces = _unit_traces(G, edits)
    ws, dtype = apply_ws(ws, edits), _low_precision(G)
    ws = ws if dtype is None else ws.to(dtype)               # the synthesis computes in the dtype of its styles
    try:
        if _active(edits, "s"):
            return G.synthesis_from_styles(cast_styles(apply_styles(G, G.styles(ws), edits), G),
                                           noise_mode=noise_mode, cache=cache)
        return G.synthesis(ws, noise_mode=noise_mode, cache=cache)
    finally:
        for t in traces:
            t.close()


def synthesize_styles(G: Generator, ws: Tensor, styles: dict[str, Tensor], edits: Sequence[AnyEdit] = (),
                      noise_mode: str = "const", cache: SynthesisCache | None = None) -> Tensor:
    """Image [N, 3, H, W] of explicit ``styles`` (an S-space inversion) after the W, S and unit edits.

    ``ws`` [N, num_ws, w_dim] is the W+ code the styles stand in for: a W edit moves the styles by
    what it moves the affine outputs of ``ws`` (the affines are linear, so the shift does not depend
    on ``ws``). Without edits the image is ``G.synthesis_from_styles(styles)`` exactly.
    """
    traces = _unit_traces(G, edits)
    try:
        if _active(edits, "w"):
            before, after = G.styles(ws), G.styles(apply_ws(ws, edits))
            styles = {name: s + (after[name] - before[name]) for name, s in styles.items()}
        return G.synthesis_from_styles(cast_styles(apply_styles(G, styles, edits), G), noise_mode=noise_mode,
                                       cache=cache)
    finally:
        for t in traces:
            t.close()


def _low_precision(G: Generator) -> torch.dtype | None:
    """The dtype of a low-precision copy of G (see :func:`render_copy`); None for a float32 model."""
    w_avg = getattr(getattr(G, "mapping", None), "w_avg", None)
    return w_avg.dtype if isinstance(w_avg, Tensor) and w_avg.dtype != torch.float32 else None


def cast_styles(styles: dict[str, Tensor], G: Generator) -> dict[str, Tensor]:
    """Styles in a low-precision copy's dtype (edits add float32 offsets; the synthesis computes in the dtype
    of its styles)."""
    dtype = _low_precision(G)
    return styles if dtype is None else {name: s.to(dtype) for name, s in styles.items()}


def synthesize(G: Generator, z: Tensor, edits: Sequence[AnyEdit] = (), truncation_psi: float = 1.0,
               noise_mode: str = "const", cache: SynthesisCache | None = None) -> Tensor:
    """Image [N, 3, H, W] of ``z`` [N, z_dim] after applying ``edits`` in z, w, s, then unit edits."""
    ws = G.mapping(apply_z(z, edits, G.num_ws), truncation_psi=truncation_psi)   # [N, num_ws, w_dim]
    return synthesize_ws(G, ws, [e for e in edits if not (isinstance(e, DirectionEdit) and e.space == "z")],
                         noise_mode, cache)


# ----------------------------------------------------------------------------------------------------
# The current image


ORIGIN_KINDS = ("seed", "inversion", "restoration", "optimization", "recipe")


@dataclass(frozen=True)
class Latent:
    """The current image as data: which model, its W+ code, and where it came from.

    ws:     [num_ws, w_dim] (W+), on the CPU.
    origin: a small JSON-able dict: {"kind": "seed", "seed", "psi"[, "index", "n"]},
            {"kind": "inversion", "method", "space", "steps", ...}, {"kind": "restoration", "task", ...}.
    styles: None, or a StyleSpace override [S] (every style layer's style, ``G.style_layers`` order;
            see :func:`split_styles`): an S-space inversion, which W+ cannot express exactly. Then
            ``render`` synthesises from these styles and ``ws`` is the closest W+ code (least squares
            through the affines), used by methods that only read ws.
    """

    model_id: str
    model_hash: str
    ws: Tensor
    origin: dict[str, Any] = field(default_factory=lambda: {"kind": "seed"})
    styles: Tensor | None = None

    def __post_init__(self) -> None:
        ws = torch.as_tensor(self.ws).detach().to("cpu", torch.float32)
        if ws.ndim != 2 or min(ws.shape) < 1:
            raise ValueError(f"ws must be [num_ws, w_dim], got shape {list(ws.shape)}")
        if not torch.isfinite(ws).all():
            raise ValueError("ws must be finite (no NaN or infinity)")
        object.__setattr__(self, "ws", ws)
        if self.styles is not None:
            styles = torch.as_tensor(self.styles).detach().to("cpu", torch.float32)
            if styles.ndim != 1 or styles.numel() < 1:
                raise ValueError(f"styles must be a flat vector [S], got shape {list(styles.shape)}")
            if not torch.isfinite(styles).all():
                raise ValueError("styles must be finite (no NaN or infinity)")
            object.__setattr__(self, "styles", styles)
        origin = dict(self.origin)
        if origin.get("kind") not in ORIGIN_KINDS:
            raise ValueError(f"origin kind must be one of {', '.join(ORIGIN_KINDS)}, got {origin.get('kind')!r}")
        json.dumps(origin)                                                 # must be JSON-able
        object.__setattr__(self, "origin", origin)

    @classmethod
    @torch.no_grad()
    def from_seed(cls, G: Generator, model_id: str, seed: int, psi: float = 1.0, index: int = 0,
                  n: int = 1) -> "Latent":
        """Sample ``index`` of ``G.sample_z(n, seed)`` mapped with truncation ``psi``."""
        from interp.diskcache import model_hash

        if not 0 <= index < n:
            raise ValueError(f"index must be within 0 .. {n - 1}, got {index}")
        ws = G.mapping(G.sample_z(n, seed), truncation_psi=psi)[index]   # [num_ws, w_dim], as in the batch
        origin = {"kind": "seed", "seed": int(seed), "psi": float(psi)}
        if n > 1:
            origin.update(index=int(index), n=int(n))
        return cls(model_id, model_hash(G), ws, origin)

    def z(self, G: Generator) -> Tensor:
        """[1, z_dim] for a seed latent (z-space edits need it); ValueError for any other origin."""
        if self.origin.get("kind") != "seed":
            raise ValueError(f"z-space edits need a latent made from a seed; this image comes from "
                             f"{self.describe()}. Edit it in w or s instead")
        seed, n, index = self.origin.get("seed"), self.origin.get("n", 1), self.origin.get("index", 0)
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in (seed, n, index))
        if not whole or not 0 <= seed <= MAX_SEED or not 1 <= n <= MAX_SEED_SAMPLES or not 0 <= index < n:
            raise ValueError(f"this image's origin (seed {seed!r}, sample {index!r} of {n!r}) is not a seed sample: "
                             f"seeds are whole numbers 0 .. {MAX_SEED}, samples 0 .. n - 1 with n <= {MAX_SEED_SAMPLES}")
        return G.sample_z(n, seed)[index:index + 1]

    def describe(self) -> str:
        """A short text: 'seed 42, psi 0.70', 'an inversion (w+, 300 steps)', ..."""
        o = self.origin
        kind = o.get("kind")
        if kind == "seed":
            extra = f", sample {int(o['index']) + 1} of {o['n']}" if "index" in o else ""
            return f"seed {o.get('seed')}, psi {float(o.get('psi', 1.0)):.2f}{extra}"
        details = ", ".join(f"{k} {v}" for k, v in o.items() if k != "kind" and isinstance(v, (str, int, float)))
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}" + (f" ({details})" if details else "")


@torch.no_grad()
def render(G: Generator, latent: Latent, edits: Sequence[AnyEdit] = (), noise_mode: str = "const",
           cache: SynthesisCache | None = None) -> Tensor:
    """The image [1, 3, H, W] of ``latent`` with ``edits`` stacked on it (z, then w, s, unit edits)."""
    if tuple(latent.ws.shape) != (G.num_ws, G.w_dim):
        raise ValueError(f"the latent has ws {list(latent.ws.shape)} but the model needs [{G.num_ws}, {G.w_dim}]")
    device = G.mapping.w_avg.device
    if latent.styles is not None:
        styles = split_styles(G, latent.styles[None].to(device))
        img = synthesize_styles(G, latent.ws[None].to(device), styles, edits, noise_mode, cache)
    elif _active(edits, "z"):
        z = latent.z(G).to(device)
        img = synthesize(G, z, edits, float(latent.origin.get("psi", 1.0)), noise_mode, cache)
    else:
        img = synthesize_ws(G, latent.ws[None].to(device), edits, noise_mode, cache)
    img = img.float()                                                     # a bfloat16 copy's image too
    if not torch.isfinite(img).all():
        raise ValueError("the image came out as NaN / infinity: the latent or an edit's strength is far outside what "
                         "the model can render; undo the last edit or use a smaller strength")
    return img


PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` itself, or for "auto" bfloat16 where the hardware runs it natively (recent x86 CPUs with
    AVX-512 BF16 / AMX, CUDA GPUs that support it), else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if device.type == "cpu":
        try:
            return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"
        except (AttributeError, RuntimeError):
            return "float32"
    return "float32"


_FAST: dict[tuple[str, str, str], Generator] = {}
_FAST_LOCK = threading.Lock()


def render_copy(G: torch.nn.Module, precision: str) -> torch.nn.Module:
    """G itself (float32), or a frozen low-precision copy of it (channels-last on CPU); memoised (2 entries)."""
    if precision == "float32" or not isinstance(G, Generator):
        return G
    from interp import diskcache

    device = G.mapping.w_avg.device
    key = (diskcache.model_hash(G), str(device), precision)
    with _FAST_LOCK:
        hit = _FAST.get(key)
    if hit is not None:
        return hit
    fast = Generator(copy.deepcopy(G.config))
    fast.load_state_dict(G.state_dict())
    fast = fast.to(device, getattr(torch, precision)).eval().requires_grad_(False)
    if device.type == "cpu":
        fast = fast.to(memory_format=torch.channels_last)                 # oneDNN's fast layout
    with _FAST_LOCK:
        while len(_FAST) >= 2:
            _FAST.pop(next(iter(_FAST)))
        _FAST[key] = fast
    return fast


def preview_precision() -> str:
    """The precision of the tabs' interactive renders (``INTERP_RENDER_PRECISION``: float32, the default,
    bfloat16 or auto). bfloat16 renders large models 1.6-3.9x faster on CPUs with AMX, with an image error
    of about 0.25 % of the range on average (README "Speed"); methods (inversion, directions, scores) stay
    float32."""
    raw = os.environ.get("INTERP_RENDER_PRECISION", "float32").strip().lower()
    if raw not in PRECISIONS:
        raise ValueError(f"INTERP_RENDER_PRECISION must be one of {', '.join(PRECISIONS)}, got {raw!r}")
    return raw


class RenderSession:
    """Per-user render state: a lock, an incremental synthesis cache and the last render's figures.

    Keep one per browser session (``gr.State``); successive renders that differ only in late layers
    (a slider on fine rows, a brush at 32x32) re-run only those layers.

    The caches of all sessions share one memory budget (``INTERP_RENDER_CACHE_MB``, default 1024; a
    1024x1024 generator's cache holds 267 MB of features). Past it, the caches of the sessions
    that rendered least recently are emptied: their next render is a full pass, with the same result.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache = SynthesisCache()
        self.last_image: Tensor | None = None
        self.last_ms: float = 0.0
        self.last_used = 0.0
        _SESSIONS.add(self)

    def render(self, G: Generator, latent: Latent, edits: Sequence[AnyEdit] = ()) -> Tensor:
        with self.lock:
            t0 = time.perf_counter()
            shown = render_copy(G, resolve_precision(preview_precision(), G.mapping.w_avg.device))
            img = render(shown, latent, edits, cache=self.cache).cpu()
            self.last_ms = (time.perf_counter() - t0) * 1000
            self.last_image = img
            self.last_used = time.monotonic()
        enforce_cache_budget()
        return img

    def cache_bytes(self) -> int:
        """Bytes of the tensors this session's synthesis cache holds."""
        c = self.cache
        tensors = [c.ws, *c.styles.values()] + [t for e in c.entries for t in (*e.conv_styles, e.rgb_style, e.x, e.img)]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


_SESSIONS: "weakref.WeakSet[RenderSession]" = weakref.WeakSet()
_BUDGET_LOCK = threading.Lock()


def render_cache_budget() -> int:
    """Bytes all render sessions' caches may hold together (``INTERP_RENDER_CACHE_MB``, default 1024)."""
    raw = os.environ.get("INTERP_RENDER_CACHE_MB", "1024")
    try:
        mb = float(raw)
    except ValueError:
        mb = float("nan")
    if not (math.isfinite(mb) and mb >= 0):
        raise ValueError(f"INTERP_RENDER_CACHE_MB must be a number of megabytes >= 0, got {raw!r}")
    return int(mb * 2**20)


def enforce_cache_budget(budget: int | None = None) -> int:
    """Empty the caches of the least recently used render sessions until all of them together hold at most
    ``budget`` bytes (default :func:`render_cache_budget`). A session that is rendering is skipped.
    Returns the bytes held afterwards."""
    budget = render_cache_budget() if budget is None else budget
    with _BUDGET_LOCK:
        sessions = sorted(_SESSIONS, key=lambda s: s.last_used)
        sizes = [s.cache_bytes() for s in sessions]
        total = sum(sizes)
        for session, size in zip(sessions, sizes):
            if total <= budget:
                break
            if size and session.lock.acquire(blocking=False):
                try:
                    session.cache.clear()
                    total -= size
                finally:
                    session.lock.release()
    return total


# ----------------------------------------------------------------------------------------------------
# Latent samples and standard deviations


@torch.no_grad()
def sample_latents(G: Generator, space: str, n: int, seed: int, rows: Sequence[int] | None = None,
                   truncation_psi: float = 1.0, batch_size: int = 4096) -> Tensor:
    """n latents [n, D] in ``space`` from ``G.sample_z(n, seed)`` (for ``s``: styles of the rows' layers)."""
    _check_space(space)
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    z = G.sample_z(n, seed)                                                # [n, z_dim]
    if space == "z":
        return z.cpu()
    rows = tuple(range(G.num_ws)) if rows is None else tuple(rows)
    names = style_layers_for_rows(G, rows) if space == "s" else ()
    out = []
    for chunk in z.split(batch_size):
        w = G.mapping(chunk, truncation_psi=truncation_psi)[:, 0]          # [B, w_dim]
        if space == "w":
            out.append(w.cpu())
        else:
            out.append(torch.cat([G.synthesis.layer(name).affine(w) for name in names], dim=1).cpu())
    return torch.cat(out)


def projection_stds(samples: Tensor, directions: Tensor) -> Tensor:
    """Standard deviation [K] of samples [N, D] projected on each unit direction of [K, D]."""
    if directions.ndim != 2 or samples.ndim != 2 or samples.shape[1] != directions.shape[1]:
        raise ValueError(f"need samples [N, D] and directions [K, D], got {list(samples.shape)} and "
                         f"{list(directions.shape)}")
    units = directions.detach().to(samples.device, torch.float64)
    units = units / units.norm(dim=1, keepdim=True)
    proj = (samples.double() - samples.double().mean(0)) @ units.T          # [N, K]
    return proj.std(0).float().clamp_min(1e-8)


# ----------------------------------------------------------------------------------------------------
# Recipes: the current image and its edit stack, saved as one file


class RecipeError(ValueError):
    """A recipe file that cannot be used: foreign, damaged, or made for another model."""


def read_tagged_file(path: str | Path, what: str, max_bytes: int, tag: str, error: type[ValueError],
                     foreign_hint: str, keys: Sequence[str] | None = None) -> tuple[dict[str, str], dict[str, Tensor]]:
    """(metadata, float tensors) of a small safetensors file of ours whose metadata says ``format: tag``.

    Every failure raises ``error`` with a sentence: missing, larger than ``max_bytes``, another format
    (``foreign_hint`` says how to get a right one), lacking ``keys`` (default: read them all), unreadable.
    """
    from safetensors import safe_open

    path = Path(path)
    label = path.name
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise error(f"{label!r} is {size / 2**20:.0f} MiB; a {what} is small (at most {max_bytes // 2**20} MiB)")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            found = meta.get("format")
            if found != tag:
                kind = f"format {found!r}" if found else f"no {what} metadata"
                raise error(f"{label!r} is a safetensors file with {kind}, not a {what} (format {tag!r}); {foreign_hint}")
            present = set(f.keys())
            missing = sorted(set(keys or ()) - present)
            if missing:
                raise error(f"{label!r} lacks the tensors {missing}; the file is damaged")
            tensors = {k: f.get_tensor(k).float() for k in (keys or present)}
    except error:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise error(f"{label!r} is not a readable safetensors file (truncated or corrupted): {str(exc)[:160]}") from None
    return meta, tensors


METHOD_NAMES = {"sefa": "SeFa", "ganspace": "GANSpace", "interfacegan": "InterFaceGAN", "styleclip": "StyleCLIP",
                "dissection": "Dissection brush", "clip": "CLIP", "gradient": "Judge's gradient"}


def rows_text(rows: Sequence[int]) -> str:
    """ws rows as a short text: '4-7' for a range, '0,2,5' otherwise."""
    rows = list(rows)
    return f"{rows[0]}-{rows[-1]}" if rows == list(range(rows[0], rows[-1] + 1)) else ",".join(map(str, rows))


def _edit_line(e: AnyEdit) -> str:
    who = METHOD_NAMES.get(e.method, e.method or "edit")
    if isinstance(e, DirectionEdit):
        name = f" '{e.name}'" if e.name else ""
        return f"{who}{name}: {e.strength:+.2f} std in {e.space}, rows {rows_text(e.layers)}"
    where = "everywhere" if e.mask is None else f"in a painted region ({float(e.mask.mean()):.0%} of the image)"
    name = f" '{e.name}'" if e.name else ""
    level = "" if e.mode != "scale" else f" x{float(e.value.mean()):.2f}"
    return f"{who}{name}: {e.mode}{level} {len(e.units)} unit(s) of {e.layer} {where}"


@dataclass(frozen=True)
class Recipe:
    """The current image (a :class:`Latent`) and its edit stack; re-creates the image anywhere.

    ``push`` / ``undo`` / ``cleared`` return new recipes (the stack is immutable data);
    ``save`` writes one safetensors file (every vector and mask as a tensor, the rest as JSON
    metadata); ``load`` reads it without executing anything.
    """

    latent: Latent
    edits: tuple[AnyEdit, ...] = ()

    def __post_init__(self) -> None:
        edits = tuple(self.edits)
        for e in edits:
            if not isinstance(e, (DirectionEdit, UnitEdit)):
                raise TypeError(f"edits must be DirectionEdit or UnitEdit, got {type(e).__name__}")
        object.__setattr__(self, "edits", edits)

    @property
    def model_id(self) -> str:
        return self.latent.model_id

    def push(self, *edits: AnyEdit) -> "Recipe":
        return replace(self, edits=self.edits + tuple(e for e in edits if not (
            isinstance(e, DirectionEdit) and e.strength == 0)))

    def undo(self) -> "Recipe":
        return replace(self, edits=self.edits[:-1])

    def cleared(self) -> "Recipe":
        return replace(self, edits=())

    def check_model(self, model_hash: str) -> None:
        if self.latent.model_hash != model_hash:
            raise RecipeError(f"this image was made with model {self.latent.model_id!r} (weights "
                              f"{self.latent.model_hash}), but the loaded model has weights {model_hash}; "
                              "select the model it was made with")

    def render(self, G: Generator, extra: Sequence[AnyEdit] = (), cache: SynthesisCache | None = None) -> Tensor:
        """The image [1, 3, H, W]; ``extra`` edits (a tab's pending ones) go on top of the stack."""
        from interp.diskcache import model_hash

        self.check_model(model_hash(G))
        return render(G, self.latent, self.edits + tuple(extra), cache=cache)

    def summary(self) -> str:
        """A short readable text: the source, then one line per edit."""
        lines = [f"Image: {self.latent.describe()} from model {self.latent.model_id} "
                 f"(weights {self.latent.model_hash[:8]})"]
        if not self.edits:
            lines.append("No edits yet.")
        lines += [f"{i}. {_edit_line(e)}" for i, e in enumerate(self.edits, 1)]
        return "\n".join(lines)

    # ---- files

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Copies: edits often hold views of one tensor (the rows of a method's direction matrix, the same
        # direction applied twice), and safetensors refuses to save tensors that share memory.
        tensors = {"latent.ws": self.latent.ws.detach().clone()}
        if self.latent.styles is not None:
            tensors["latent.styles"] = self.latent.styles.detach().clone()
        meta_edits = []
        for i, e in enumerate(self.edits):
            if isinstance(e, DirectionEdit):
                tensors[f"edits.{i}.direction"] = e.direction.detach().clone()
                meta_edits.append({"type": "direction", "space": e.space, "layers": list(e.layers),
                                   "strength": e.strength, "std": e.std, "name": e.name, "method": e.method})
            else:
                tensors[f"edits.{i}.value"] = e.value.detach().clone()
                if e.mask is not None:
                    tensors[f"edits.{i}.mask"] = e.mask.detach().clone()
                meta_edits.append({"type": "unit", "layer": e.layer, "units": list(e.units), "mode": e.mode,
                                   "name": e.name, "method": e.method})
        meta = {"format": RECIPE_FORMAT, "model_id": self.latent.model_id, "model_hash": self.latent.model_hash,
                "origin": json.dumps(self.latent.origin), "edits": json.dumps(meta_edits),
                "summary": self.summary()}
        save_file(tensors, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path, expected_hash: str | None = None) -> "Recipe":
        """Read a recipe file; ``expected_hash`` (the loaded model's) refuses recipes of other weights."""
        label = Path(path).name
        meta, tensors = read_tagged_file(path, "recipe file", MAX_RECIPE_BYTES, RECIPE_FORMAT, RecipeError,
                                         "save one with the Recipe panel's download button")
        try:
            latent = Latent(meta["model_id"], meta["model_hash"], tensors["latent.ws"], json.loads(meta["origin"]),
                            tensors.get("latent.styles"))
            edits: list[AnyEdit] = []
            for i, d in enumerate(json.loads(meta["edits"])):
                if d["type"] == "direction":
                    e = DirectionEdit(tensors[f"edits.{i}.direction"], d["space"], tuple(d["layers"]), d["strength"],
                                      d["std"], d.get("name", ""), d.get("method", ""))
                    if abs(e.strength) > MAX_RECIPE_STRENGTH or e.std > MAX_RECIPE_STD:
                        raise ValueError(f"edit {i} moves {e.strength:g} std of {e.std:g} latent units; a recipe's "
                                         f"strengths are within +-{MAX_RECIPE_STRENGTH:g} std of at most "
                                         f"{MAX_RECIPE_STD:g} units")
                    edits.append(e)
                elif d["type"] == "unit":
                    edits.append(UnitEdit(d["layer"], tuple(d["units"]), tensors.get(f"edits.{i}.mask"), d["mode"],
                                          tensors[f"edits.{i}.value"], d.get("name", ""), d.get("method", "")))
                else:
                    raise ValueError(f"edit {i} has unknown type {d['type']!r}; allowed: direction, unit")
        except (KeyError, ValueError, TypeError) as exc:
            raise RecipeError(f"{label!r} has damaged or inconsistent contents: {exc}") from None
        recipe = cls(latent, tuple(edits))
        if expected_hash is not None:
            recipe.check_model(expected_hash)
        return recipe
