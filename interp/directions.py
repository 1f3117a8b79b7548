"""Latent directions as data, saved as safetensors with metadata, importable by every tab.

A :class:`DirectionSet` holds K directions of one method in one latent space, with what an edit
needs (standard deviations for strength units, the ws rows) and where they come from (model id
and content hash, method, parameters, names)::

    ds = DirectionSet.create(dirs, values, stds, space="w", layers=rows, method="sefa",
                             model_id="faces64", model_hash=G.content_hash())
    save_directions(ds, "sefa.safetensors")
    ds = load_directions("sefa.safetensors", expected_hash=G.content_hash())
    edits = ds.edits([2.0, 0, -1.5])          # strengths in std units, one per direction

Loading refuses files that are not direction files (e.g. a model checkpoint), damaged files, and
(with ``expected_hash``) directions computed for other weights, each with a sentence saying why.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from interp.edit import SPACES, DirectionEdit, read_tagged_file

__all__ = ["DirectionFileError", "DirectionSet", "load_directions", "save_directions"]

FORMAT_TAG = "interp.directions/1"
MAX_FILE_BYTES = 256 * 2**20


class DirectionFileError(ValueError):
    """A direction file that cannot be used: foreign, damaged, or made for another model."""


@dataclass(frozen=True)
class DirectionSet:
    directions: Tensor            # [K, D] unit rows
    values: Tensor                # [K] eigenvalues (SeFa) or variances (GANSpace)
    stds: Tensor                  # [K] latent units per strength unit
    shares: Tensor                # [K] share of the total eigenvalue / variance
    space: str                    # 'z', 'w' or 's'
    layers: tuple[int, ...]       # ws rows the edits apply to
    method: str                   # 'sefa', 'ganspace', ...
    model_id: str
    model_hash: str
    names: tuple[str, ...]        # one label per direction
    params: dict[str, Any] = field(default_factory=dict)   # method parameters, naming details (JSON-able)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"unknown latent space {self.space!r}; allowed: {', '.join(SPACES)}")
        d = self.directions
        if not isinstance(d, Tensor) or d.ndim != 2 or d.shape[0] < 1:
            raise ValueError(f"directions must be a tensor [K, D] with K >= 1, got {getattr(d, 'shape', d)!r}")
        k = d.shape[0]
        for name in ("values", "stds", "shares"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or tuple(t.shape) != (k,):
                raise ValueError(f"{name} must be a tensor [{k}], got {getattr(t, 'shape', t)!r}")
        if not torch.isfinite(d).all() or not torch.isfinite(self.stds).all() or (self.stds <= 0).any():
            raise ValueError("directions and stds must be finite and stds positive")
        if len(self.names) != k:
            raise ValueError(f"names must have one entry per direction ({k}), got {len(self.names)}")
        if not self.layers or min(self.layers) < 0:
            raise ValueError(f"layers must be non-empty ws rows, got {self.layers!r}")
        object.__setattr__(self, "layers", tuple(int(r) for r in self.layers))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        json.dumps(self.params)  # must be JSON-able (raises TypeError otherwise)

    @classmethod
    def create(cls, directions: Tensor, values: Tensor, stds: Tensor, *, space: str, layers: Sequence[int],
               method: str, model_id: str, model_hash: str, shares: Tensor | None = None,
               names: Sequence[str] | None = None, params: dict[str, Any] | None = None) -> "DirectionSet":
        """Normalise the rows, default shares (values / their sum) and names (``#0``, ``#1``, ...)."""
        d = directions.detach().float().cpu()
        d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
        values = values.detach().float().cpu()
        if shares is None:
            shares = values / values.sum().clamp_min(1e-12)
        return cls(d, values, stds.detach().float().cpu(), shares.detach().float().cpu(), space, tuple(layers),
                   method, model_id, model_hash, tuple(names or (f"#{i}" for i in range(d.shape[0]))),
                   dict(params or {}))

    @property
    def k(self) -> int:
        return self.directions.shape[0]

    @property
    def dim(self) -> int:
        return self.directions.shape[1]

    def edits(self, strengths: Sequence[float]) -> list[DirectionEdit]:
        """One DirectionEdit per non-zero strength (std units); ``strengths`` may be shorter than K."""
        if len(strengths) > self.k:
            raise ValueError(f"got {len(strengths)} strengths for {self.k} directions")
        out = []
        for i, s in enumerate(strengths):
            s = float(s)
            if not math.isfinite(s):
                raise ValueError(f"strength {i} must be a finite number, got {s}")
            if s != 0:
                out.append(DirectionEdit(self.directions[i], self.space, self.layers, s, float(self.stds[i]), self.names[i],
                                         self.method))
        return out

    def with_names(self, names: Sequence[str], **params: Any) -> "DirectionSet":
        return replace(self, names=tuple(names), params={**self.params, **params})

    def subset(self, k: int) -> "DirectionSet":
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be between 1 and {self.k}, got {k}")
        return replace(self, directions=self.directions[:k], values=self.values[:k], stds=self.stds[:k],
                       shares=self.shares[:k], names=self.names[:k])


def save_directions(ds: DirectionSet, path: str | Path) -> Path:
    """Write ``ds`` as safetensors (tensors: directions, values, stds, shares; metadata: the rest)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: getattr(ds, name).detach().float().cpu().contiguous()
               for name in ("directions", "values", "stds", "shares")}
    meta = {"format": FORMAT_TAG, "space": ds.space, "layers": json.dumps(list(ds.layers)), "method": ds.method,
            "model_id": ds.model_id, "model_hash": ds.model_hash, "names": json.dumps(list(ds.names)),
            "params": json.dumps(ds.params, sort_keys=True)}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_directions(path: str | Path, expected_hash: str | None = None) -> DirectionSet:
    """Read a direction file; ``expected_hash`` (the loaded model's content hash) refuses foreign models' files."""
    label = Path(path).name
    meta, tensors = read_tagged_file(path, "direction file", MAX_FILE_BYTES, FORMAT_TAG, DirectionFileError,
                                     "export directions from the Explore tab (or interp.directions.save_directions) "
                                     "to get one", keys=("directions", "values", "stds", "shares"))
    try:
        for name in ("values", "shares"):                  # shown on the sliders; directions / stds: DirectionSet
            if not torch.isfinite(tensors[name]).all():
                raise ValueError(f"{name} must be finite")
        ds = DirectionSet(tensors["directions"], tensors["values"], tensors["stds"], tensors["shares"],
                          meta["space"], _json_rows(meta["layers"]), meta["method"], meta["model_id"],
                          meta["model_hash"], _json_names(meta["names"]), _json_params(meta.get("params", "{}")))
    except (KeyError, ValueError, TypeError) as exc:
        raise DirectionFileError(f"{label!r} has damaged or inconsistent metadata: {exc}") from None
    if expected_hash is not None and ds.model_hash != expected_hash:
        raise DirectionFileError(
            f"{label!r} holds directions for model {ds.model_id!r} (weights {ds.model_hash}), but the selected model "
            f"has weights {expected_hash}; directions only make sense for the weights they were computed on")
    return ds


# A file's metadata is untrusted JSON: check the types the rest of the code relies on.


def _json_rows(text: str) -> tuple[int, ...]:
    rows = json.loads(text)
    if not isinstance(rows, list) or not all(isinstance(r, int) and not isinstance(r, bool) for r in rows):
        raise ValueError(f"layers must be a list of whole ws rows, got {text[:80]!r}")
    return tuple(rows)


def _json_names(text: str) -> tuple[str, ...]:
    names = json.loads(text)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a list of texts, got {text[:80]!r}")
    return tuple(names)


def _json_params(text: str) -> dict[str, Any]:
    params = json.loads(text)
    if not isinstance(params, dict):
        raise ValueError(f"params must be a JSON object, got {text[:80]!r}")
    naming = params.get("naming")
    if naming is not None:        # CLIP names: interp.methods.naming.DirectionName.to_dict(), read by the tabs
        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        required = {"index", "phrase", "entry", "sign", "score", "confidence"}
        runner = {"runner_up", "runner_sign", "runner_score"}           # optional (files of earlier versions)

        def ok(n: Any) -> bool:
            return (isinstance(n, dict) and required <= set(n) <= required | runner
                    and isinstance(n["index"], int) and isinstance(n["phrase"], str) and isinstance(n["entry"], str)
                    and n["sign"] in (-1, 1) and number(n["score"]) and number(n["confidence"])
                    and 0 <= n["confidence"] <= 1 and isinstance(n.get("runner_up", ""), str)
                    and n.get("runner_sign", 0) in (-1, 0, 1) and number(n.get("runner_score", 0.0)))
        if not isinstance(naming, list) or not all(ok(n) for n in naming):
            raise ValueError("params 'naming' must be a list of CLIP names {index, phrase, entry, sign: +1 or -1, "
                             "score, confidence: 0..1, optionally runner_up, runner_sign, runner_score}")
    return params
