"""An edit is data: ``(direction, space, layers, strength)``; this module applies it.

Spaces (see DESIGN.md): ``z`` (input latent), ``w`` (W+, one row of ``ws`` per style input),
``s`` (StyleSpace: the concatenated affine outputs of the style layers fed by ``layers``).

``layers`` are always rows of ``ws``. Presets name the usual ranges (GANSpace's convention):

- ``all``:    every row
- ``coarse``: rows 0-3   (4x4 and 8x8 blocks: pose, face shape)
- ``middle``: rows 4-7   (16x16 and 32x32: features, expression, hair style)
- ``fine``:   rows 8-end (64x64 and above: colour, texture, lighting)
- ``custom``: rows ``start`` .. ``end`` (inclusive)

Models below 64x64 (fewer than 10 rows) split their rows into three near-equal parts instead.

Strength is in units of the direction's standard deviation (``Edit.std``: the spread of sampled
latents projected on the direction), so a slider at 2 means "two standard deviations" for SeFa and
GANSpace alike::

    e = Edit(direction=d, space="w", layers=layer_rows(G, "middle"), strength=2.0, std=std)
    img = synthesize(G, z, [e], truncation_psi=0.7)

An edit with strength 0 leaves the latent untouched, so the image is the original bit for bit.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from interp.models.stylegan2 import Generator, SynthesisCache

__all__ = [
    "PRESETS",
    "SPACES",
    "Edit",
    "EditRecipe",
    "apply_styles",
    "apply_ws",
    "apply_z",
    "latent_dim",
    "layer_rows",
    "projection_stds",
    "render_recipe",
    "resolve_layers",
    "sample_latents",
    "style_layers_for_rows",
    "synthesize",
]

SPACES = ("z", "w", "s")
PRESETS = ("all", "coarse", "middle", "fine", "custom")
RECIPE_FORMAT = "interp.edit/1"


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


@dataclass(frozen=True)
class Edit:
    """Move ``strength`` standard deviations (``std`` latent units each) along ``direction``.

    direction: [D] in the latent ``space`` (normalised to unit length on construction).
    layers:    ws rows the edit applies to (``z`` edits must use every row: Z feeds all of them).
    """

    direction: Tensor
    space: str
    layers: tuple[int, ...]
    strength: float
    std: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        _check_space(self.space)
        d = torch.as_tensor(self.direction, dtype=torch.float32).detach()
        if d.ndim != 1 or d.numel() == 0:
            raise ValueError(f"direction must be a vector [D], got shape {list(d.shape)}")
        norm = d.norm()
        if not torch.isfinite(norm) or norm == 0:
            raise ValueError("direction must be finite and non-zero")
        object.__setattr__(self, "direction", d / norm)
        layers = tuple(int(r) for r in self.layers)
        if not layers or len(set(layers)) != len(layers) or min(layers) < 0:
            raise ValueError(f"layers must be distinct non-negative ws rows, got {self.layers!r}")
        object.__setattr__(self, "layers", tuple(sorted(layers)))
        for attr in ("strength", "std"):
            value = float(getattr(self, attr))
            if not math.isfinite(value):
                raise ValueError(f"{attr} must be a finite number, got {getattr(self, attr)!r}")
            object.__setattr__(self, attr, value)
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def delta(self) -> Tensor:
        """The latent offset [D]: strength * std * unit direction."""
        return self.direction * (self.strength * self.std)

    def with_strength(self, strength: float) -> "Edit":
        return Edit(self.direction, self.space, self.layers, strength, self.std, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"direction": self.direction.tolist(), "space": self.space, "layers": list(self.layers),
                "strength": self.strength, "std": self.std, "name": self.name}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Edit":
        allowed = {"direction", "space", "layers", "strength", "std", "name"}
        if not isinstance(d, dict):
            raise ValueError(f"an edit must be a JSON object with keys {sorted(allowed)}, got {type(d).__name__}")
        unknown = set(d) - allowed
        missing = {"direction", "space", "layers", "strength"} - set(d)
        if unknown or missing:
            raise ValueError(f"edit keys must be {sorted(allowed)} (unknown: {sorted(unknown)}, missing: {sorted(missing)})")
        return cls(torch.tensor(d["direction"], dtype=torch.float32), d["space"], tuple(d["layers"]),
                   d["strength"], d.get("std", 1.0), d.get("name", ""))


def _active(edits: Iterable[Edit], space: str) -> list[Edit]:
    return [e for e in edits if e.space == space and e.strength != 0]


def _check_rows(e: Edit, num_ws: int) -> None:
    if max(e.layers) >= num_ws:
        raise ValueError(f"edit {e.name or ''} uses ws row {max(e.layers)} but the model has rows 0 .. {num_ws - 1}")


def apply_z(z: Tensor, edits: Iterable[Edit], num_ws: int | None = None) -> Tensor:
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


def apply_ws(ws: Tensor, edits: Iterable[Edit]) -> Tensor:
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


def apply_styles(G: Generator, styles: dict[str, Tensor], edits: Iterable[Edit]) -> dict[str, Tensor]:
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


def synthesize(G: Generator, z: Tensor, edits: Sequence[Edit] = (), truncation_psi: float = 1.0,
               noise_mode: str = "const", cache: SynthesisCache | None = None,
               ws: Tensor | None = None) -> Tensor:
    """Image [N, 3, H, W] of ``z`` [N, z_dim] (or of given ``ws``) after applying ``edits`` in z, w, then s."""
    if ws is None:
        z = apply_z(z, edits, G.num_ws)
        ws = G.mapping(z, truncation_psi=truncation_psi)                   # [N, num_ws, w_dim]
    elif _active(edits, "z"):
        raise ValueError("z-space edits need z, not ws")
    ws = apply_ws(ws, edits)
    if _active(edits, "s"):
        return G.synthesis_from_styles(apply_styles(G, G.styles(ws), edits), noise_mode=noise_mode, cache=cache)
    return G.synthesis(ws, noise_mode=noise_mode, cache=cache)


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
    names = style_layers_for_rows(G, rows)
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
# Recipes: an edit that re-creates an image


@dataclass(frozen=True)
class EditRecipe:
    """Everything needed to re-create an edited image: model, seed, psi, and the edits."""

    model_id: str
    model_hash: str
    seed: int
    truncation_psi: float
    edits: tuple[Edit, ...] = field(default_factory=tuple)
    noise_mode: str = "const"

    def to_json(self) -> str:
        return json.dumps({
            "format": RECIPE_FORMAT, "model_id": self.model_id, "model_hash": self.model_hash, "seed": self.seed,
            "truncation_psi": self.truncation_psi, "noise_mode": self.noise_mode,
            "edits": [e.to_dict() for e in self.edits],
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> "EditRecipe":
        try:
            d = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"the edit is not valid JSON: {exc}") from None
        if not isinstance(d, dict) or d.get("format") != RECIPE_FORMAT:
            raise ValueError(f"not an edit recipe: expected a JSON object with \"format\": \"{RECIPE_FORMAT}\"")
        required = ("model_id", "model_hash", "seed", "truncation_psi", "edits")
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"the edit recipe lacks {missing}")
        if not isinstance(d["edits"], list):
            raise ValueError("the edit recipe's 'edits' must be a list")
        seed = d["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"the recipe's seed must be a non-negative integer, got {seed!r}")
        return cls(str(d["model_id"]), str(d["model_hash"]), seed, float(d["truncation_psi"]),
                   tuple(Edit.from_dict(e) for e in d["edits"]), str(d.get("noise_mode", "const")))


@torch.no_grad()
def render_recipe(G: Generator, recipe: EditRecipe, model_hash: str | None = None) -> Tensor:
    """The image [1, 3, H, W] of a recipe; refuses a recipe made for other weights when ``model_hash`` is given."""
    if model_hash is not None and recipe.model_hash != model_hash:
        raise ValueError(f"this edit was made for model {recipe.model_id!r} (weights {recipe.model_hash}); the "
                         f"loaded model has weights {model_hash}")
    z = G.sample_z(1, recipe.seed)
    return synthesize(G, z, recipe.edits, recipe.truncation_psi, recipe.noise_mode)
