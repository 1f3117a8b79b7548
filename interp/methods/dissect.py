"""GAN Dissection for StyleGAN2: label feature-map units with segmenter parts, then paint with them.

Dissect (Bau et al., ICLR 2019). Per unit of a layer, a threshold at the top ``1 - quantile`` of
its activations over ``n`` samples; the unit's map, upsampled to the image and thresholded, is
compared with each part of a segmentation of the same image (IoU summed over the samples). A
unit's label is its best part; units with IoU > 0.05 are those "with a clear meaning"::

    from interp.builtin import load_segmenter
    seg = load_segmenter()
    d = dissect(G, seg, "b16.conv1", n=1000, seed=0, progress=lambda f, text: print(f"{f:.0%} {text}"))
    d.share_labelled()              # 0.35: share of units with IoU > 0.05
    d.units_per_concept()           # {"glasses": 16, "eyes": 15, "eyebrows": 10, ...}
    d.top_units("glasses", 8)       # unit indices, best IoU first
    d.table()                       # [(unit, label, iou), ...] best first, for a table in the UI
    layers = dissect_layers(G, seg, n=1000, seed=0)   # every unit layer in one pass over the samples

Statistics are streamed over batches: the thresholds (and each unit's low level) come from the
first samples (a subsample of at most ``CALIBRATION_VALUES`` activations per layer), the IoU
counts and the per-part mean levels from all of them; no [n, C, H, W] tensor is kept. Results are
cached on disk (``interp.diskcache``) by model hash, segmenter hash, layer and parameters; a second
call returns in milliseconds. ``python -m interp.precompute dissect`` fills the same entries on many
processes from the pieces below (:func:`cache_entries`, :func:`batch_activations`,
:class:`LayerTally`: its counts are sums, its thresholds exact order statistics). A layer is named as
in ``G.styles`` (``b16.conv0``); its output
(after bias and leaky ReLU) is read with :mod:`interp.nethook`.

Paint (the GANPaint brush). ``paint`` returns the :class:`~interp.edit.UnitEdit` of the shared
pipeline, so it stacks with every other edit and is saved in recipes::

    latent = Latent.from_seed(G, "faces64", seed=3, psi=0.7)
    off = paint(G, latent, brush, "glasses", "remove", dissection=layers)   # brush [64, 64] in [0, 1]
    on = paint(G, latent, brush, "glasses", "add", dissection=layers)
    img = render(G, latent, [off])
    choose_layer(layers, "glasses", "remove")                              # "b16.conv1": what "auto" picks

- ``remove``: the units whose IoU with the concept exceeds 0.05 (at least 4, at most a quarter of
  the layer; best first) go to their *low* level (the bottom ``1 - quantile`` of their
  activations, mirroring the "on" threshold; zero is not low enough: it is a typical level) inside
  the brush. Auto layer: the one whose concept units have the highest mean IoU.
- ``add``: the whole feature vector of the painted cells goes to the concept's mean feature
  vector (every unit at its mean level over the concept's cells). Auto layer: the coarsest one
  with a unit whose IoU with the concept exceeds 0.05 (``b8.conv0`` for glasses on faces64):
  coarse cells leave the later layers room to draw the concept's shape.

The brush [H, W] in [0, 1] is at image resolution (other square sizes are resized); the edit
averages it over each feature cell of the layer (exact area coverage, ``edit.mask_at(h, w)`` shows
the cells), so a cell changes in proportion to how much of it is painted. ``strength`` in (0, 1]
is the opacity of the change; above 1 the level is pushed past the target, away from the
opposite level (``add``: the concept-absent mean; ``remove``: the concept's mean).

Models without a segmenter: ``units_for_region(G, latent, brush, "b16.conv1", k=24)`` picks the
units whose "on" region on the current image (thresholds from ``unit_levels``: samples, no
segmenter) best matches the brush (IoU); its ``edit("remove" | "amplify", strength)`` makes the
UnitEdit ("whatever is here")::

    picked = units_for_region(G, latent, brush, "b16.conv1", k=24)
    img = render(G, latent, [picked.edit("remove")])
"""
from __future__ import annotations

import hashlib
import math
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp import diskcache
from interp.edit import Latent, UnitEdit
from interp.models.stylegan2 import Generator
from interp.nethook import TraceDict

__all__ = [
    "ACTIONS",
    "LABEL_IOU",
    "REGION_ACTIONS",
    "Dissection",
    "LayerTally",
    "RegionUnits",
    "UnitLevels",
    "choose_layer",
    "batch_activations",
    "cache_entries",
    "concept_units",
    "dissect",
    "dissect_layers",
    "layer_activations",
    "paint",
    "quantile_rank",
    "segmenter_parts",
    "unit_layers",
    "unit_levels",
    "unit_maps",
    "units_for_region",
]

ACTIONS = ("remove", "add")
REGION_ACTIONS = ("remove", "amplify")
LABEL_IOU = 0.05                     # a unit "has a clear meaning" above this IoU (the paper's convention)
MIN_REMOVE_UNITS = 4                 # remove switches at least this many units ...
MAX_REMOVE_SHARE = 0.25              # ... and at most this share of the layer
MAX_STRENGTH = 4.0
CACHE_NAMESPACE = "dissect"
CACHE_VERSION = 2
CALIBRATION_VALUES = 2**22           # activations (samples x units x cells) per layer for the thresholds
MIN_CALIBRATION_SAMPLES = 64

Progress = Callable[[float, str], None]
Dissections = Union["Dissection", Mapping[str, "Dissection"], Sequence["Dissection"]]


# ----------------------------------------------------------------------------------------------------
# Layers and activations


def unit_layers(G: Generator) -> list[str]:
    """The layers whose units can be dissected and edited (``b4.conv1``, ``b8.conv0``, ...; no ToRGB)."""
    return [name for name in G.style_layers if not name.endswith("torgb")]


def _check_layer(G: Generator, layer: str) -> None:
    allowed = unit_layers(G)
    if layer not in allowed:
        raise ValueError(f"unknown layer {layer!r}; allowed: {', '.join(allowed)}")


def _layer_shape(G: Generator, layer: str) -> tuple[int, int]:
    """(units, resolution) of a unit layer."""
    module = G.synthesis.layer(layer)
    return int(module.weight.shape[0]), int(module.resolution)


def _layer_order(layer: str) -> tuple[int, str]:
    block, role = layer.split(".")                                     # "b16.conv1" -> (16, "conv1")
    return int(block[1:]), role


@torch.no_grad()
def layer_activations(G: Generator, ws: Tensor, layers: str | Sequence[str],
                      noise_mode: str = "const") -> tuple[Tensor | dict[str, Tensor], Tensor]:
    """The output of a layer [N, C, h, w] (a dict of them for a list of layers) and the image [N, 3, H, W].

    ``ws`` is [N, num_ws, w_dim]; the synthesis runs without the incremental cache, so every
    traced layer runs.
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    for name in names:
        _check_layer(G, name)
    with TraceDict(G, [f"synthesis.{name}" for name in names], detach=True) as td:
        img = G.synthesis(ws, noise_mode=noise_mode)
    acts = {name: td[f"synthesis.{name}"].output for name in names}
    return (acts[layers] if isinstance(layers, str) else acts), img


# ----------------------------------------------------------------------------------------------------
# Dissection


@dataclass(frozen=True)
class Dissection:
    """Per-unit statistics of one layer against a segmenter's parts (see the module docstring).

    Activation levels are those of the layer's output, ready to be a UnitEdit ``value``.
    """

    layer: str                 # style layer name, e.g. "b16.conv0"
    resolution: int            # the layer's feature-map side (h = w)
    parts: tuple[str, ...]     # the segmenter's part names: the columns of iou / mean_in / mean_out
    model_hash: str            # the generator's content hash
    n: int                     # samples: G.sample_z(n, seed)
    seed: int
    quantile: float            # "on" above this quantile (0.99: the top 1%)
    truncation_psi: float      # truncation of the samples
    thresholds: Tensor         # [C] activation level at ``quantile``
    low: Tensor                # [C] activation level at ``1 - quantile`` (a unit switched "off")
    iou: Tensor                # [C, P] IoU of the upsampled thresholded map with each part
    mean_in: Tensor            # [C, P] mean activation over a part's cells (weighted by the part's area in a cell)
    mean_out: Tensor           # [C, P] mean activation over the other cells (weighted likewise)
    part_area: Tensor          # [P] share of the image pixels labelled with each part

    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def unit_iou(self) -> Tensor:
        """[C] each unit's best IoU (the IoU of its label)."""
        return self.iou.max(dim=1).values

    @property
    def label_index(self) -> Tensor:
        """[C] index into ``parts`` of each unit's best part."""
        return self.iou.argmax(dim=1)

    @property
    def labels(self) -> tuple[str, ...]:
        """Each unit's best part (whatever its IoU; ``unit_iou`` says how clear it is)."""
        return tuple(self.parts[i] for i in self.label_index.tolist())

    def part_index(self, concept: str) -> int:
        if concept not in self.parts:
            raise ValueError(f"unknown concept {concept!r}; allowed: {', '.join(self.parts)}")
        return self.parts.index(concept)

    def share_labelled(self, min_iou: float = LABEL_IOU) -> float:
        """Share of the units whose best IoU exceeds ``min_iou`` (the lecture's "about one third")."""
        return float((self.unit_iou > min_iou).float().mean())

    def units_per_concept(self, min_iou: float = LABEL_IOU) -> dict[str, int]:
        """{part: units labelled with it above ``min_iou``} for every part, most units first."""
        clear = self.unit_iou > min_iou
        counts = {p: int((clear & (self.label_index == i)).sum()) for i, p in enumerate(self.parts)}
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def concepts(self, min_iou: float = LABEL_IOU) -> list[str]:
        """Parts with at least one clearly labelled unit, most units first (what a brush offers)."""
        return [p for p, c in self.units_per_concept(min_iou).items() if c > 0]

    def top_units(self, concept: str, k: int) -> tuple[int, ...]:
        """The ``k`` units with the highest IoU with ``concept`` (whatever their own label), best first."""
        j = self.part_index(concept)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.num_units:
            raise ValueError(f"k must be an integer between 1 and {self.num_units}, got {k!r}")
        return tuple(self.iou[:, j].argsort(descending=True, stable=True)[:int(k)].tolist())

    def table(self, min_iou: float = 0.0) -> list[tuple[int, str, float]]:
        """(unit, label, IoU) rows, best IoU first, for the units whose IoU exceeds ``min_iou``."""
        ious = self.unit_iou
        labels = self.labels
        return [(u, labels[u], round(float(ious[u]), 4)) for u in ious.argsort(descending=True, stable=True).tolist()
                if float(ious[u]) > min_iou]

    def summary(self) -> str:
        counts = ", ".join(f"{p} {c}" for p, c in self.units_per_concept().items() if c)
        return (f"{self.layer} ({self.resolution}x{self.resolution}, {self.num_units} units, {self.n} samples): "
                f"{self.share_labelled():.0%} of the units have IoU > {LABEL_IOU} ({counts or 'none'})")


_TENSOR_FIELDS = ("thresholds", "low", "iou", "mean_in", "mean_out", "part_area")


def _hash_module(module: nn.Module) -> str:
    h = hashlib.sha256(type(module).__name__.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_SEGMENTER_HASHES: "weakref.WeakKeyDictionary[nn.Module, tuple[int, str]]" = weakref.WeakKeyDictionary()


def _segmenter_hash(segmenter) -> str:
    """A content hash of the segmenter's weights (memoised until they change in place)."""
    if not isinstance(segmenter, nn.Module):
        return type(segmenter).__qualname__
    version = sum(t._version for t in segmenter.state_dict(keep_vars=True).values())
    hit = _SEGMENTER_HASHES.get(segmenter)
    if hit is None or hit[0] != version:
        hit = (version, _hash_module(segmenter))
        _SEGMENTER_HASHES[segmenter] = hit
    return hit[1]


def segmenter_parts(segmenter, parts: Sequence[str] | None = None) -> tuple[str, ...]:
    """The segmenter's part names (``segmenter.parts`` or ``segmenter.config.parts``), or ``parts`` when given."""
    if parts is None:
        parts = getattr(segmenter, "parts", None)
    if parts is None:
        parts = getattr(getattr(segmenter, "config", None), "parts", None)
    if parts is None:
        raise ValueError("the segmenter does not name its parts (no .parts or .config.parts); pass parts=[...]")
    parts = tuple(str(p) for p in parts)
    if not parts or len(set(parts)) != len(parts):
        raise ValueError(f"parts must be distinct names, got {parts!r}")
    return parts


def _segment(segmenter, img: Tensor, num_parts: int) -> Tensor:
    """Label map [N, H, W] (int64, on the image's device) at the image's resolution."""
    param = next(segmenter.parameters(), None) if isinstance(segmenter, nn.Module) else None
    logits = segmenter(img.to(param.device) if param is not None else img)   # [N, P, h, w]
    if logits.ndim != 4 or logits.shape[1] != num_parts:
        raise ValueError(f"the segmenter must return logits [N, {num_parts}, H, W], got {list(logits.shape)}")
    if logits.shape[-2:] != img.shape[-2:]:
        logits = F.interpolate(logits.float(), size=img.shape[-2:], mode="bilinear", align_corners=False)
    return logits.argmax(1).to(img.device)


def _cell_cover(onehot: Tensor, h: int, w: int) -> Tensor:
    """Share of each feature cell covered by each part: [N, P, H, W] -> [N, P, h, w]."""
    if onehot.shape[-2] % h == 0 and onehot.shape[-1] % w == 0:
        return F.adaptive_avg_pool2d(onehot, (h, w))                      # exact area coverage
    return F.interpolate(onehot, size=(h, w), mode="area")


class LayerTally:
    """Streaming statistics of one layer: a calibration buffer, then IoU counts and part means.

    ``add(act, labels)`` batch by batch: the first ``n_calib`` samples (whole batches) are buffered
    until the thresholds exist, then every batch is counted. The counts (``counts()``) are sums, so
    tallies of disjoint batches merge by adding them (``add_counts``) once they share thresholds
    (``set_levels``).
    """

    COUNTS = ("inter", "on", "area", "sum_in", "cover", "sum_all", "cells")

    def __init__(self, layer: str, units: int, res: int, parts: int, n: int, batch_size: int,
                 quantile: float) -> None:
        z = lambda *s: torch.zeros(*s, dtype=torch.float64)   # noqa: E731  (sums on the CPU: MPS has no float64)
        self.layer, self.parts, self.quantile = layer, parts, quantile
        per_sample = units * res * res
        self.n_calib = min(n, max(batch_size, MIN_CALIBRATION_SAMPLES, CALIBRATION_VALUES // per_sample))
        self.buffer: list[tuple[Tensor, Tensor]] = []   # (activations, labels) until the thresholds exist
        self.buffered = 0
        self.thresholds: Tensor | None = None
        self.low: Tensor | None = None
        self.inter = z(units, parts)         # pixels where the unit is on and the part present
        self.on = z(units)                   # pixels where the unit is on
        self.area = z(parts)                 # pixels of each part
        self.sum_in = z(units, parts)        # sum over cells of activation x the part's coverage of the cell
        self.cover = z(parts)                # sum over cells of the part's coverage
        self.sum_all = z(units)              # sum of activations over cells
        self.cells = 0

    @classmethod
    def of(cls, G: Generator, layer: str, num_parts: int, n: int, batch_size: int, quantile: float) -> "LayerTally":
        """The tally of ``layer`` of G for ``n`` samples in batches of ``batch_size``."""
        units, res = _layer_shape(G, layer)
        return cls(layer, units, res, num_parts, n, batch_size, quantile)

    def set_levels(self, thresholds: Tensor, low: Tensor) -> None:
        """Use these thresholds (and low levels) instead of calibrating; count anything buffered."""
        self.thresholds, self.low = thresholds, low
        buffer, self.buffer, self.buffered = self.buffer, [], 0
        for a, lab in buffer:
            self._count(a, lab.long())

    def counts(self) -> dict[str, Tensor]:
        """The sums counted so far (float64; ``cells`` as a one-element tensor)."""
        out = {name: getattr(self, name) for name in self.COUNTS[:-1]}
        out["cells"] = torch.tensor([float(self.cells)], dtype=torch.float64)
        return out

    def add_counts(self, counts: Mapping[str, Tensor]) -> None:
        """Add another tally's ``counts()`` (of other samples, with the same thresholds)."""
        for name in self.COUNTS[:-1]:
            setattr(self, name, getattr(self, name) + counts[name].to(torch.float64))
        self.cells += int(round(float(counts["cells"].sum())))

    def add(self, act: Tensor, labels: Tensor) -> None:
        if self.thresholds is not None:
            self._count(act, labels)
            return
        self.buffer.append((act, labels.to(torch.uint8)))
        self.buffered += act.shape[0]
        if self.buffered >= self.n_calib:
            self._calibrate()

    def _calibrate(self) -> None:
        acts = torch.cat([a for a, _ in self.buffer])                          # [S, C, h, w]
        values = acts.transpose(0, 1).reshape(acts.shape[1], -1)                # [C, S*h*w]
        self.thresholds = _quantile_rows(values, self.quantile)
        self.low = _quantile_rows(values, 1 - self.quantile)
        del acts, values
        buffer, self.buffer = self.buffer, []
        for a, lab in buffer:
            self._count(a, lab.long())

    def _count(self, act: Tensor, labels: Tensor) -> None:
        n, c, h, w = act.shape
        H, W = labels.shape[-2:]
        onehot = F.one_hot(labels, self.parts).permute(0, 3, 1, 2).to(act.dtype)   # [N, P, H, W]
        pixels = onehot.flatten(2).transpose(1, 2)                                 # [N, HW, P]
        thresholds = self.thresholds.view(-1, 1, 1)
        same = (h, w) == (H, W)
        if not same:   # bilinear upsampling (F.interpolate's, align_corners=False) as two small matmuls: 3x faster
            rows, cols = _upsample_matrix(h, H, act), _upsample_matrix(w, W, act).T
        # A few samples at a time on the CPU, so that the upsampled maps stay in the cache (2.5x faster there).
        step = n if act.device.type != "cpu" else max(1, _COUNT_CHUNK // (c * H * W))
        inter = torch.zeros(c, self.parts, dtype=act.dtype, device=act.device)
        for s in range(0, n, step):
            a = act[s:s + step]
            up = a - thresholds if same else (rows @ a @ cols).sub_(thresholds)
            inter += torch.bmm(up.gt_(0).flatten(2), pixels[s:s + step]).sum(0)     # [C, P]: unit on and part there
        self.inter += _cpu64(inter)
        self.on += _cpu64(inter.sum(1))                    # every pixel has one part: exact (sums of 0/1 < 2^24)
        self.area += _cpu64(onehot.sum(dim=(0, 2, 3)))
        cover = _cell_cover(onehot, h, w)                                        # [N, P, h, w]
        self.sum_in += _cpu64(torch.einsum("ncx,npx->cp", act.flatten(2), cover.flatten(2)))
        self.cover += _cpu64(cover.sum(dim=(0, 2, 3)))
        self.sum_all += _cpu64(act.sum(dim=(0, 2, 3)))
        self.cells += n * h * w

    def result(self) -> dict[str, Tensor]:
        if self.thresholds is None:                                              # fewer samples than n_calib
            self._calibrate()
        union = self.on[:, None] + self.area[None, :] - self.inter              # [C, P]
        iou = torch.where(union > 0, self.inter / union.clamp_min(1), torch.zeros_like(union))
        overall = (self.sum_all / max(self.cells, 1))[:, None]                  # [C, 1]
        mean_in = torch.where(self.cover[None] > 0, self.sum_in / self.cover.clamp_min(1e-12)[None], overall)
        out_cover = self.cells - self.cover                                      # [P]
        mean_out = torch.where(out_cover[None] > 1e-9,
                               (self.sum_all[:, None] - self.sum_in) / out_cover.clamp_min(1e-12)[None], overall)
        return {"thresholds": self.thresholds.float().cpu(), "low": self.low.float().cpu(),
                "iou": iou.float().cpu(), "mean_in": mean_in.float().cpu(), "mean_out": mean_out.float().cpu(),
                "part_area": (self.area / self.area.sum().clamp_min(1)).float().cpu()}


def _cpu64(t: Tensor) -> Tensor:
    return t.detach().to("cpu").double()


def _upsample_matrix(size: int, out: int, like: Tensor) -> Tensor:
    """[out, size]: x [.., size] -> A @ x is bilinear upsampling with align_corners=False (F.interpolate's)."""
    key = (size, out, like.device, like.dtype)
    if key not in _UPSAMPLE:
        src = ((torch.arange(out, dtype=torch.float64) + 0.5) * (size / out) - 0.5).clamp_min(0)
        i0 = src.floor().long().clamp(max=size - 1)
        i1 = (i0 + 1).clamp(max=size - 1)
        frac = src - i0
        A = torch.zeros(out, size, dtype=torch.float64)
        rows = torch.arange(out)
        A.index_put_((rows, i0), 1 - frac, accumulate=True)
        A.index_put_((rows, i1), frac, accumulate=True)
        _UPSAMPLE[key] = A.to(like.device, like.dtype)
    return _UPSAMPLE[key]


_UPSAMPLE: dict[tuple, Tensor] = {}
_COUNT_CHUNK = 1 << 19          # float32 values of upsampled maps per step on the CPU: 2 MiB


def quantile_rank(q: float, m: int) -> int:
    """k such that the ``q`` quantile of ``m`` values is their k-th smallest (1-based), as the thresholds use."""
    return min(m, max(1, math.ceil(q * m)))


def _quantile_rows(values: Tensor, q: float) -> Tensor:
    """The ``q`` quantile of each row of [C, M] (kthvalue: torch.quantile refuses very long rows)."""
    return values.kthvalue(quantile_rank(q, values.shape[1]), dim=1).values


@torch.no_grad()
def batch_activations(G: Generator, segmenter, z: Tensor, layers: Sequence[str], num_parts: int,
                      truncation_psi: float) -> tuple[dict[str, Tensor], Tensor]:
    """One batch of the dissection: float activations {layer: [B, C, h, w]} and part labels [B, H, W]."""
    ws = G.mapping(z, truncation_psi=truncation_psi)                         # [B, num_ws, w_dim]
    acts, img = layer_activations(G, ws, list(layers))
    labels = _segment(segmenter, img, num_parts)                              # [B, H, W]
    return {name: a.float() for name, a in acts.items()}, labels


@torch.no_grad()
def _compute(G: Generator, segmenter, layers: list[str], parts: tuple[str, ...], n: int, seed: int,
             quantile: float, truncation_psi: float, batch_size: int,
             progress: Progress | None) -> dict[str, dict[str, Tensor]]:
    tallies = {name: LayerTally.of(G, name, len(parts), n, batch_size, quantile) for name in layers}
    what = layers[0] if len(layers) == 1 else f"{len(layers)} layers"
    done = 0
    for z in G.sample_z(n, seed).split(batch_size):                       # [B, z_dim]
        acts, labels = batch_activations(G, segmenter, z, layers, len(parts), truncation_psi)
        for name in layers:
            tallies[name].add(acts[name], labels)
        done += len(z)
        if progress is not None:
            progress(done / n, f"dissecting {what}: {done} / {n} samples")
    return {name: t.result() for name, t in tallies.items()}


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_sampling(n, seed, batch_size, quantile) -> tuple[int, int, int, float]:
    """The sample count, seed, batch size and "on" quantile shared by dissect_layers and unit_levels."""
    n, seed, batch_size = _check_int(n, "n", 1), _check_int(seed, "seed", 0), _check_int(batch_size, "batch_size", 1)
    quantile = float(quantile)
    if not 0.5 < quantile < 1:
        raise ValueError(f"quantile must be within (0.5, 1), e.g. 0.99 for the top 1%, got {quantile}")
    return n, seed, batch_size, quantile


def cache_entries(G: Generator, segmenter, layers: Iterable[str] | None = None, n: int = 1000, seed: int = 0,
                  quantile: float = 0.99, *, truncation_psi: float = 1.0, parts: Sequence[str] | None = None,
                  batch_size: int = 32) -> dict[str, tuple[str, dict[str, str]]]:
    """{layer: (cache key, metadata)} of the entries :func:`dissect_layers` reads and writes (arguments checked)."""
    names = unit_layers(G) if layers is None else list(dict.fromkeys(layers))
    if not names:
        raise ValueError(f"layers is empty; allowed: {', '.join(unit_layers(G))}")
    for name in names:
        _check_layer(G, name)
    n, seed, batch_size, quantile = _check_sampling(n, seed, batch_size, quantile)
    parts = segmenter_parts(segmenter, parts)
    mh = diskcache.model_hash(G)
    base = {"version": CACHE_VERSION, "n": n, "seed": seed, "quantile": quantile,
            "truncation_psi": float(truncation_psi), "parts": list(parts), "segmenter": _segmenter_hash(segmenter),
            "calibration": CALIBRATION_VALUES, "min_calibration": MIN_CALIBRATION_SAMPLES, "batch_size": batch_size}
    return {name: (diskcache.make_key(mh, {**base, "layer": name}),
                   {"params": str({**base, "layer": name}), "model_hash": mh}) for name in names}


def dissect_layers(G: Generator, segmenter, layers: Iterable[str] | None = None, n: int = 1000, seed: int = 0,
                   quantile: float = 0.99, progress: Progress | None = None, *, truncation_psi: float = 1.0,
                   parts: Sequence[str] | None = None, batch_size: int = 32,
                   cache: bool = True) -> dict[str, Dissection]:
    """:func:`dissect` for several layers (default: every unit layer) in one pass over the samples.

    Layers found in the disk cache are not recomputed; each layer is cached on its own, under the
    same key as ``dissect(G, segmenter, layer, ...)``.
    """
    names = unit_layers(G) if layers is None else list(dict.fromkeys(layers))
    n, seed, batch_size, quantile = _check_sampling(n, seed, batch_size, quantile)
    truncation_psi = float(truncation_psi)
    parts = segmenter_parts(segmenter, parts)
    entries = cache_entries(G, segmenter, names, n, seed, quantile, truncation_psi=truncation_psi, parts=parts,
                            batch_size=batch_size)
    keys = {name: key for name, (key, _) in entries.items()}
    mh = diskcache.model_hash(G)
    found: dict[str, dict[str, Tensor]] = {}
    if cache:
        for name in names:
            hit = diskcache.load(CACHE_NAMESPACE, keys[name])
            if hit is not None and all(f in hit[0] for f in _TENSOR_FIELDS):
                found[name] = hit[0]
    missing = [name for name in names if name not in found]
    if missing:
        computed = _compute(G, segmenter, missing, parts, n, seed, quantile, truncation_psi, batch_size, progress)
        for name, tensors in computed.items():
            found[name] = tensors
            if cache:
                try:
                    diskcache.save(CACHE_NAMESPACE, keys[name], tensors, entries[name][1])
                except OSError:                                             # a read-only or full disk
                    pass
    out = {}
    for name in names:
        t = found[name]
        out[name] = Dissection(name, _layer_shape(G, name)[1], parts, mh, n, seed, quantile, truncation_psi,
                               *(t[f] for f in _TENSOR_FIELDS))
    return out


def dissect(G: Generator, segmenter, layer: str, n: int = 1000, seed: int = 0, quantile: float = 0.99,
            progress: Progress | None = None, *, truncation_psi: float = 1.0, parts: Sequence[str] | None = None,
            batch_size: int = 32, cache: bool = True) -> Dissection:
    """Dissect ``layer`` over the ``n`` samples ``G.sample_z(n, seed)`` (see the module docstring).

    segmenter:  ``segmenter(images [N, 3, H, W] in [-1, 1]) -> logits [N, P, H', W']`` (resized to
                the image when H' != H); part names from ``segmenter.parts``,
                ``segmenter.config.parts`` or ``parts``.
    quantile:   a unit is "on" above this quantile of its activations (0.99: the top 1%).
    progress:   ``progress(fraction, text)`` after each batch (not called on a cache hit).
    cache:      read / write the disk cache (``INTERP_CACHE_DIR`` or ``~/.cache/interp``).
    """
    if not isinstance(layer, str):
        raise TypeError(f"layer must be one layer name such as 'b16.conv1' (dissect_layers takes several), "
                        f"got {type(layer).__name__}")
    return dissect_layers(G, segmenter, [layer], n, seed, quantile, progress, truncation_psi=truncation_psi,
                          parts=parts, batch_size=batch_size, cache=cache)[layer]


@torch.no_grad()
def unit_maps(G: Generator, dissection: Dissection, unit: int, n: int = 4, seed: int = 0,
              truncation_psi: float = 0.7) -> tuple[Tensor, Tensor, Tensor]:
    """A unit over ``n`` samples: images [n, 3, H, W], its map upsampled to [n, H, W] and where it is on [n, H, W].

    For showing what a unit responds to (the activation map and the thresholded region the IoU uses).
    """
    units = dissection.num_units
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)) or not 0 <= unit < units:
        raise ValueError(f"unit must be an integer within 0 .. {units - 1}, got {unit!r}")
    n = _check_int(n, "n", 1)
    if dissection.model_hash != diskcache.model_hash(G):
        raise ValueError(f"the dissection of {dissection.layer} was made for other weights; dissect this model")
    ws = G.mapping(G.sample_z(n, seed), truncation_psi=truncation_psi)       # [n, num_ws, w_dim]
    act, img = layer_activations(G, ws, dissection.layer)
    up = F.interpolate(act[:, unit:unit + 1].float(), size=img.shape[-2:], mode="bilinear",
                       align_corners=False)[:, 0]                             # [n, H, W]
    return img.cpu(), up.cpu(), (up > float(dissection.thresholds[unit])).cpu()


# ----------------------------------------------------------------------------------------------------
# Painting with a dissection


def _as_dissections(dissection: Dissections | None) -> dict[str, Dissection]:
    if dissection is None:
        raise ValueError("paint needs a dissection of this model: dissect(G, segmenter, layer, ...) or "
                         "dissect_layers(G, segmenter) (the built-in model: interp.builtin.load_segmenter()); "
                         "for a model without a segmenter use units_for_region")
    if isinstance(dissection, Dissection):
        return {dissection.layer: dissection}
    items = list(dissection.values()) if isinstance(dissection, Mapping) else list(dissection)
    if not items or not all(isinstance(d, Dissection) for d in items):
        raise TypeError("dissection must be a Dissection, or a dict / list of them (one per layer)")
    return {d.layer: d for d in items}


def _brush(mask, resolution: int) -> Tensor:
    """A brush as float [R, R] in [0, 1] at image resolution; uint8 is read as 0..255 (an alpha channel)."""
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).detach().cpu()
    if m.ndim != 2:
        raise ValueError(f"the brush mask must be one channel [H, W], got shape {list(m.shape)}")
    if m.dtype == torch.bool:
        m = m.float()
    elif m.dtype == torch.uint8:
        m = m.float() / 255
    else:
        m = m.float()
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("brush mask values must be within [0, 1] (or uint8 0..255)")
    if m.max() == 0:
        raise ValueError("the brush mask is empty: paint over the region to edit first")
    if tuple(m.shape) != (resolution, resolution):
        if m.shape[0] != m.shape[1]:
            raise ValueError(f"the brush mask must be square like the image ({resolution}x{resolution}), "
                             f"got {m.shape[0]}x{m.shape[1]}")
        mode = "area" if m.shape[0] > resolution else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        m = F.interpolate(m[None, None], size=(resolution, resolution), mode=mode, **kwargs)[0, 0].clamp(0, 1)
        if m.max() == 0:
            raise ValueError("the brush mask is empty at the image's resolution: paint a larger region")
    return m


def _check_strength(strength) -> float:
    if isinstance(strength, bool):
        raise ValueError(f"strength must be a number within (0, {MAX_STRENGTH}], got {strength!r}")
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number within (0, {MAX_STRENGTH}], got {strength!r}") from None
    if not math.isfinite(s) or not 0 < s <= MAX_STRENGTH:
        raise ValueError(f"strength must be within (0, {MAX_STRENGTH}] (1: the concept's level), got {strength!r}")
    return s


def _levels(target: Tensor, opposite: Tensor, strength: float) -> tuple[Tensor, float]:
    """(value, opacity): strength <= 1 fades the change in; above 1 the level moves past the target."""
    if strength <= 1:
        return target, strength
    return opposite + strength * (target - opposite), 1.0


def concept_units(dissection: Dissection, concept: str, k: int | None = None) -> tuple[int, ...]:
    """The units ``remove`` switches off: IoU with ``concept`` above LABEL_IOU (at least 4, at most a
    quarter of the layer), best first; or the top ``k`` when ``k`` is given."""
    if k is not None:
        return dissection.top_units(concept, k)
    j = dissection.part_index(concept)
    clear = int((dissection.iou[:, j] > LABEL_IOU).sum())
    cap = max(1, int(dissection.num_units * MAX_REMOVE_SHARE))
    return dissection.top_units(concept, max(min(MIN_REMOVE_UNITS, cap), min(clear, cap)))


def choose_layer(dissection: Dissections, concept: str, action: str) -> str:
    """The layer ``paint`` uses when none is given (see the module docstring for the rules)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}")
    ds = sorted(_as_dissections(dissection).values(), key=lambda d: _layer_order(d.layer))
    cols = [d.iou[:, d.part_index(concept)] for d in ds]
    clear = [c[c > LABEL_IOU] for c in cols]
    if not any(len(c) for c in clear):                                     # no clear unit anywhere: best unit
        return ds[int(torch.stack([c.max() for c in cols]).argmax())].layer
    if action == "add":
        return next(d.layer for d, c in zip(ds, clear) if len(c))
    scores = torch.stack([c.mean() if len(c) else torch.tensor(0.0) for c in clear])
    return ds[int(scores.argmax())].layer


def paint(G: Generator, latent: Latent, mask, concept: str, action: str, strength: float = 1.0,
          dissection: Dissections | None = None, *, layer: str | None = None, k: int | None = None) -> UnitEdit:
    """The brush edit that removes or adds ``concept`` inside ``mask`` (see the module docstring).

    mask:       [H, W] in [0, 1] (bool, or uint8 0..255 such as an alpha channel), at image resolution.
    dissection: one Dissection, or several (a dict or list, one per layer) to let ``layer=None``
                ("auto") choose among them.
    layer:      force one of the dissected layers; k: force the number of units ``remove`` switches.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; allowed: {', '.join(ACTIONS)}")
    strength = _check_strength(strength)
    ds = _as_dissections(dissection)
    mh = diskcache.model_hash(G)
    for d in ds.values():
        if d.model_hash != mh:
            raise ValueError(f"the dissection of {d.layer} was made for other weights ({d.model_hash}) than the "
                             f"model's ({mh}); dissect this model")
    if latent.model_hash != mh:
        raise ValueError(f"the image was made with model {latent.model_id!r} (weights {latent.model_hash}), not "
                         f"with this model ({mh})")
    first = next(iter(ds.values()))
    if concept not in first.parts:
        clear = sorted({c for d in ds.values() for c in d.concepts()})
        raise ValueError(f"unknown concept {concept!r}; allowed: {', '.join(first.parts)} (with clearly labelled "
                         f"units: {', '.join(clear) or 'none'})")
    brush = _brush(mask, G.img_resolution)
    if layer is None:
        layer = choose_layer(ds, concept, action)
    elif layer not in ds:
        raise ValueError(f"layer {layer!r} has no dissection here; allowed: {', '.join(ds)}")
    d = ds[layer]
    j = d.part_index(concept)
    if action == "remove":
        units = concept_units(d, concept, k)
        idx = list(units)
        value, opacity = _levels(d.low[idx], d.mean_in[idx, j], strength)
    else:
        if k is not None:
            raise ValueError("k only applies to 'remove'; 'add' sets every unit of the layer")
        units = tuple(range(d.num_units))
        value, opacity = _levels(d.mean_in[:, j], d.mean_out[:, j], strength)
    return UnitEdit(layer, units, brush * opacity, action, value, name=concept, method="dissection")


# ----------------------------------------------------------------------------------------------------
# Models without a segmenter: the units of the painted region


@dataclass(frozen=True)
class UnitLevels:
    """Per-unit activation levels of one layer over samples, without any segmenter."""

    layer: str
    model_hash: str
    n: int
    seed: int
    quantile: float
    thresholds: Tensor      # [C] level at ``quantile`` ("on" above it, as in a Dissection)
    low: Tensor             # [C] level at ``1 - quantile`` (a unit switched "off")


def unit_levels(G: Generator, layer: str, n: int = 256, seed: int = 0, quantile: float = 0.99, *,
                truncation_psi: float = 1.0, batch_size: int = 32, cache: bool = True) -> UnitLevels:
    """Each unit's "on" threshold and "off" level over ``G.sample_z(n, seed)`` (cached on disk).

    What :func:`units_for_region` needs for a model without a segmenter; a :class:`Dissection`
    carries the same levels.
    """
    _check_layer(G, layer)
    n, seed, batch_size, quantile = _check_sampling(n, seed, batch_size, quantile)
    mh = diskcache.model_hash(G)
    params = {"version": CACHE_VERSION, "kind": "levels", "layer": layer, "n": n, "seed": seed, "quantile": quantile,
              "truncation_psi": float(truncation_psi)}

    @torch.no_grad()
    def compute() -> dict[str, Tensor]:
        acts = []
        for z in G.sample_z(n, seed).split(batch_size):                    # [B, z_dim]
            ws = G.mapping(z, truncation_psi=float(truncation_psi))          # [B, num_ws, w_dim]
            with TraceDict(G, [f"synthesis.{layer}"], detach=True, stop=True) as td:
                G.synthesis(ws)
            a = td[f"synthesis.{layer}"].output.float()                      # [B, C, h, w]
            acts.append(a.transpose(0, 1).reshape(a.shape[1], -1).cpu())    # [C, B*h*w]
        values = torch.cat(acts, dim=1)
        return {"thresholds": _quantile_rows(values, quantile), "low": _quantile_rows(values, 1 - quantile)}

    out = diskcache.cached(CACHE_NAMESPACE, diskcache.make_key(mh, params), compute,
                           metadata={"params": str(params)}, enabled=cache)
    return UnitLevels(layer, mh, n, seed, quantile, out["thresholds"], out["low"])


@dataclass(frozen=True)
class RegionUnits:
    """The units whose "on" region on the current image best matches a painted region, best first."""

    layer: str
    units: tuple[int, ...]
    scores: Tensor      # [k] IoU of each unit's thresholded map (on this image) with the brush
    inside: Tensor      # [k] mean level inside the brush on this image
    low: Tensor         # [k] each unit's "off" level (bottom 1 - quantile over samples)
    mask: Tensor        # [H, W] the brush, at image resolution

    def edit(self, action: str = "remove", strength: float = 1.0, name: str = "what I painted") -> UnitEdit:
        """``remove``: the units go to their low level inside the brush; ``amplify``: they are scaled
        by ``1 + strength`` there."""
        if action not in REGION_ACTIONS:
            raise ValueError(f"unknown action {action!r}; allowed: {', '.join(REGION_ACTIONS)}")
        strength = _check_strength(strength)
        if action == "amplify":
            return UnitEdit(self.layer, self.units, self.mask, "scale", 1.0 + strength, name=name,
                            method="dissection")
        value, opacity = _levels(self.low, self.inside, strength)
        return UnitEdit(self.layer, self.units, self.mask * opacity, "remove", value, name=name, method="dissection")


@torch.no_grad()
def units_for_region(G: Generator, latent: Latent, mask, layer: str, k: int = 24,
                     levels: "UnitLevels | Dissection | None" = None) -> RegionUnits:
    """The ``k`` units of ``layer`` whose activation on the current image is most concentrated in ``mask``.

    A unit is "on" where its upsampled map exceeds its threshold over samples (``levels``: a
    :class:`Dissection` or :class:`UnitLevels` of the layer; default ``unit_levels(G, layer)``,
    cached on disk); the score is the IoU of that region with the brush (soft for a soft brush).
    Thresholds from samples matter: ranking by the share of a unit's activation inside the brush
    on this one image removed about a fifth as much on faces64 (bench/bench_paint.py).
    """
    _check_layer(G, layer)
    units, res = _layer_shape(G, layer)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= units:
        raise ValueError(f"k must be an integer between 1 and {units} (the units of {layer}), got {k!r}")
    brush = _brush(mask, G.img_resolution)
    if tuple(latent.ws.shape) != (G.num_ws, G.w_dim):
        raise ValueError(f"the latent has ws {list(latent.ws.shape)} but the model needs [{G.num_ws}, {G.w_dim}]")
    if levels is None:
        levels = unit_levels(G, layer)
    if levels.layer != layer or levels.thresholds.numel() != units:
        raise ValueError(f"levels are for layer {levels.layer!r}, not {layer!r}")
    ws = latent.ws[None].to(G.mapping.w_avg.device)                           # [1, num_ws, w_dim]
    act, img = layer_activations(G, ws, layer)
    act = act[0].float().cpu()                                                # [C, h, w]
    up = F.interpolate(act[None], size=img.shape[-2:], mode="bilinear", align_corners=False)[0]   # [C, H, W]
    on = (up > levels.thresholds.view(-1, 1, 1)).float()
    inter = (on * brush).sum(dim=(1, 2))
    union = torch.maximum(on, brush.expand_as(on)).sum(dim=(1, 2))
    iou = inter / union.clamp_min(1e-12)                                      # [C]
    order = iou.argsort(descending=True, stable=True)[:int(k)]
    cover = _cell_cover(brush[None, None], res, res)[0, 0]                    # [h, w]
    inside = (act * cover).sum(dim=(1, 2)) / cover.sum().clamp_min(1e-12)
    return RegionUnits(layer, tuple(order.tolist()), iou[order], inside[order], levels.low[order], brush)
