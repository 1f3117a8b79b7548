"""GAN Dissection for StyleGAN2: label feature-map units with segmenter parts, then paint with them.

Dissect one layer (Bau et al., ICLR 2019): per unit, a threshold at the top ``1 - quantile`` of
its activations over ``n`` samples; the unit's map, upsampled to the image and thresholded, is
compared with every part of a segmentation of the same image (IoU summed over the samples). A
unit's label is its best part; the units with IoU > 0.05 are the ones "with a clear meaning"::

    from interp.builtin import load_segmenter
    d = dissect(G, load_segmenter(), "b16.conv1", n=1000, seed=0, progress=lambda f, t: print(f, t))
    d.share_labelled()              # 0.34: share of units with IoU > 0.05
    d.units_per_concept()           # {"eyes": 12, "glasses": 9, ...}
    d.top_units("glasses", 16)      # unit indices, best IoU first
    d.table()                       # [(unit, label, iou), ...] for a table in the UI

Statistics are streamed over batches (the thresholds come from a subsample of the first
samples, everything else from all of them) and cached on disk (``interp.diskcache``) by model
hash, segmenter hash, layer and parameters; a second call returns in milliseconds.

Paint (the GANPaint brush) with one or more dissections::

    latent = Latent.from_seed(G, "faces64", seed=3, psi=0.7)
    layers = {name: dissect(G, seg, name, 1000, 0) for name in ("b8.conv0", "b16.conv0")}
    off = paint(G, latent, brush, "glasses", "remove", dissection=layers)   # a UnitEdit
    on = paint(G, latent, brush, "glasses", "add", dissection=layers)
    img = render(G, latent, [off])                                         # stacks with every edit

``remove`` switches the concept's units (highest IoU first) to their low level (their typical
activation where the concept is absent) inside the brush; ``add`` sets the whole feature vector
of the painted cells to the concept's mean feature vector (every unit at its mean level inside
the concept). The brush [H, W] in [0, 1] is at image resolution; the edit averages it down to the
layer's cells (exact area coverage), so a cell is changed in proportion to how much of it is
painted. ``strength`` in (0, 1] is the opacity of the change; above 1 the level is pushed past
the target, away from the opposite level.

Models without a segmenter: ``units_for_region(G, latent, brush, "b16.conv0", k=16)`` ranks the
units by how concentrated their activation on the current image is inside the brush; its
``edit(brush, "remove" | "amplify")`` makes the :class:`~interp.edit.UnitEdit`.
"""
from __future__ import annotations

import hashlib
import math
import weakref
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp import diskcache
from interp.edit import Latent, UnitEdit
from interp.models.stylegan2 import Generator
from interp.nethook import Trace

__all__ = [
    "ACTIONS",
    "LABEL_IOU",
    "REGION_ACTIONS",
    "Dissection",
    "RegionUnits",
    "dissect",
    "layer_activations",
    "paint",
    "unit_layers",
    "units_for_region",
]

ACTIONS = ("remove", "add")
REGION_ACTIONS = ("remove", "amplify")
LABEL_IOU = 0.05                     # a unit "has a clear meaning" above this IoU (the paper's convention)
LOW_QUANTILE = 0.5                   # a unit's "low" level: this quantile of its activations ("off" but typical)
CACHE_NAMESPACE = "dissect"
CACHE_VERSION = 1
CALIBRATION_VALUES = 2**23           # activations (samples x units x cells) kept to estimate the thresholds

Progress = Callable[[float, str], None]


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


@torch.no_grad()
def layer_activations(G: Generator, ws: Tensor, layer: str, noise_mode: str = "const") -> tuple[Tensor, Tensor]:
    """The output of ``layer`` [N, C, h, w] and the image [N, 3, H, W] for ws [N, num_ws, w_dim].

    The synthesis runs without the incremental cache, so the traced layer always runs.
    """
    _check_layer(G, layer)
    with Trace(G, f"synthesis.{layer}", detach=True) as t:
        img = G.synthesis(ws, noise_mode=noise_mode)
    return t.output, img


# ----------------------------------------------------------------------------------------------------
# Dissection


@dataclass(frozen=True)
class Dissection:
    """Per-unit statistics of one layer against a segmenter's parts (see the module docstring).

    Activations are those of the layer's output (after bias and leaky ReLU); "levels" are in the
    same units, ready to be a :class:`~interp.edit.UnitEdit` value.
    """

    layer: str                 # style layer name, e.g. "b16.conv0"
    resolution: int            # the layer's feature-map side (h = w)
    parts: tuple[str, ...]     # the segmenter's part names; columns of iou / mean_in / mean_out
    model_hash: str            # the generator's content hash
    n: int                     # samples
    seed: int                  # G.sample_z(n, seed)
    quantile: float            # threshold quantile (0.99: the top 1%)
    truncation_psi: float      # truncation of the samples
    thresholds: Tensor         # [C] activation level at ``quantile``
    iou: Tensor                # [C, P] IoU of the upsampled thresholded map with each part
    low: Tensor                # [C] the LOW_QUANTILE activation level (switch "off")
    mean_in: Tensor            # [C, P] mean activation over the cells of a part (area-weighted)
    mean_out: Tensor           # [C, P] mean activation over the cells outside a part (area-weighted)
    part_area: Tensor          # [P] share of image pixels labelled with each part

    @property
    def num_units(self) -> int:
        return int(self.iou.shape[0])

    @property
    def unit_iou(self) -> Tensor:
        """[C] each unit's best IoU (the IoU of its label)."""
        return self.iou.max(dim=1).values

    @property
    def label_index(self) -> Tensor:
        """[C] index of each unit's best part."""
        return self.iou.argmax(dim=1)

    @property
    def labels(self) -> tuple[str, ...]:
        """Each unit's best part name (whatever its IoU; see ``unit_iou`` for how clear it is)."""
        return tuple(self.parts[i] for i in self.label_index.tolist())

    def part_index(self, concept: str) -> int:
        if concept not in self.parts:
            raise ValueError(f"unknown concept {concept!r}; allowed: {', '.join(self.parts)}")
        return self.parts.index(concept)

    def share_labelled(self, min_iou: float = LABEL_IOU) -> float:
        """Share of the units whose best IoU exceeds ``min_iou`` (the lecture's "about one third")."""
        return float((self.unit_iou > min_iou).float().mean())

    def units_per_concept(self, min_iou: float = LABEL_IOU) -> dict[str, int]:
        """{part: number of units labelled with it above ``min_iou``}, every part listed, largest first."""
        clear = self.unit_iou > min_iou
        counts = {p: int((clear & (self.label_index == i)).sum()) for i, p in enumerate(self.parts)}
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def concepts(self, min_iou: float = LABEL_IOU) -> list[str]:
        """Parts with at least one clearly labelled unit, most units first (what the brush offers)."""
        return [p for p, c in self.units_per_concept(min_iou).items() if c > 0]

    def top_units(self, concept: str, k: int) -> tuple[int, ...]:
        """The ``k`` units with the highest IoU with ``concept`` (whatever their own label), best first."""
        j = self.part_index(concept)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_units:
            raise ValueError(f"k must be an integer between 1 and {self.num_units}, got {k!r}")
        return tuple(self.iou[:, j].argsort(descending=True)[:k].tolist())

    def table(self, min_iou: float = 0.0) -> list[tuple[int, str, float]]:
        """(unit, label, IoU) rows, best IoU first, for units whose IoU exceeds ``min_iou``."""
        ious = self.unit_iou
        order = ious.argsort(descending=True).tolist()
        labels = self.labels
        return [(u, labels[u], round(float(ious[u]), 4)) for u in order if float(ious[u]) > min_iou]

    def summary(self) -> str:
        counts = ", ".join(f"{p} {c}" for p, c in self.units_per_concept().items() if c)
        return (f"{self.layer} ({self.resolution}x{self.resolution}, {self.num_units} units, {self.n} samples): "
                f"{self.share_labelled():.0%} of the units have IoU > {LABEL_IOU} ({counts or 'none'})")

    # ---- cache form

    def tensors(self) -> dict[str, Tensor]:
        return {k: getattr(self, k) for k in ("thresholds", "iou", "low", "mean_in", "mean_out", "part_area")}


def _hash_module(module: nn.Module) -> str:
    h = hashlib.sha256(type(module).__name__.encode())
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


_SEGMENTER_HASHES: "weakref.WeakKeyDictionary[nn.Module, tuple[int, str]]" = weakref.WeakKeyDictionary()


def _segmenter_hash(segmenter) -> str:
    """A content hash of the segmenter's weights (memoised until they change), or its type name."""
    if not isinstance(segmenter, nn.Module):
        return type(segmenter).__qualname__
    version = sum(t._version for t in segmenter.state_dict(keep_vars=True).values())
    hit = _SEGMENTER_HASHES.get(segmenter)
    if hit is None or hit[0] != version:
        hit = (version, _hash_module(segmenter))
        _SEGMENTER_HASHES[segmenter] = hit
    return hit[1]


def _segmenter_parts(segmenter, parts: Sequence[str] | None) -> tuple[str, ...]:
    if parts is None:
        parts = getattr(segmenter, "parts", None)
    if parts is None and hasattr(segmenter, "config"):
        parts = getattr(segmenter.config, "parts", None)
    if parts is None:
        raise ValueError("the segmenter does not name its parts (no .parts or .config.parts); pass parts=[...]")
    parts = tuple(str(p) for p in parts)
    if len(parts) < 1 or len(set(parts)) != len(parts):
        raise ValueError(f"parts must be distinct names, got {parts!r}")
    return parts


def _segment(segmenter, img: Tensor, num_parts: int) -> Tensor:
    """Label map [N, H, W] (int64, on the image's device) at the image's resolution."""
    dev = next((p.device for p in segmenter.parameters()), img.device) if isinstance(segmenter, nn.Module) \
        else img.device
    logits = segmenter(img.to(dev))                                          # [N, P, h, w]
    if logits.ndim != 4 or logits.shape[1] != num_parts:
        raise ValueError(f"the segmenter must return logits [N, {num_parts}, H, W], got {list(logits.shape)}")
    if logits.shape[-2:] != img.shape[-2:]:
        logits = F.interpolate(logits.float(), size=img.shape[-2:], mode="bilinear", align_corners=False)
    return logits.argmax(1).to(img.device)


class _Tally:
    """Streaming sums for one layer: IoU counts at fixed thresholds and area-weighted part means."""

    def __init__(self, units: int, parts: int, device: torch.device) -> None:
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)   # noqa: E731
        self.parts = parts
        self.inter = z(units, parts)         # pixels where the unit is on and the part present
        self.on = z(units)                   # pixels where the unit is on
        self.area = z(parts)                 # pixels of each part
        self.sum_in = z(units, parts)        # sum of act x coverage of the part, per cell
        self.cover = z(parts)                # sum of coverage (cells)
        self.sum_all = z(units)              # sum of act over cells
        self.cells = 0                       # cells counted

    def add(self, act: Tensor, labels: Tensor, thresholds: Tensor) -> None:
        n, c, h, w = act.shape
        size = labels.shape[-2:]
        onehot = F.one_hot(labels, self.parts).permute(0, 3, 1, 2).to(act.dtype)   # [N, P, H, W]
        up = F.interpolate(act, size=size, mode="bilinear", align_corners=False)    # [N, C, H, W]
        on = (up > thresholds.view(1, -1, 1, 1)).to(act.dtype)
        self.inter += torch.einsum("ncx,npx->cp", on.flatten(2), onehot.flatten(2)).double()
        self.on += on.sum(dim=(0, 2, 3)).double()
        self.area += onehot.sum(dim=(0, 2, 3)).double()
        cover = F.adaptive_avg_pool2d(onehot, (h, w)) if size[0] % h == 0 and size[1] % w == 0 \
            else F.interpolate(onehot, size=(h, w), mode="area")                      # [N, P, h, w]
        self.sum_in += torch.einsum("ncx,npx->cp", act.flatten(2), cover.flatten(2)).double()
        self.cover += cover.sum(dim=(0, 2, 3)).double()
        self.sum_all += act.sum(dim=(0, 2, 3)).double()
        self.cells += n * h * w

    def result(self) -> dict[str, Tensor]:
        union = self.on[:, None] + self.area[None, :] - self.inter                  # [C, P]
        iou = torch.where(union > 0, self.inter / union.clamp_min(1), torch.zeros_like(union))
        mean_in = self.sum_in / self.cover.clamp_min(1e-9)[None]
        out_cover = (self.cells - self.cover).clamp_min(1e-9)                        # [P]
        mean_out = (self.sum_all[:, None] - self.sum_in) / out_cover[None]
        # A part never seen has no "inside": its mean is the overall mean.
        overall = (self.sum_all / max(self.cells, 1))[:, None].expand_as(mean_in)
        mean_in = torch.where(self.cover[None] > 0, mean_in, overall)
        pixels = self.area.sum().clamp_min(1)
        return {"iou": iou.float().cpu(), "mean_in": mean_in.float().cpu(), "mean_out": mean_out.float().cpu(),
                "part_area": (self.area / pixels).float().cpu()}


def _check_int(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@torch.no_grad()
def _compute(G: Generator, segmenter, layer: str, parts: tuple[str, ...], n: int, seed: int, quantile: float,
             truncation_psi: float, batch_size: int, progress: Progress | None) -> dict[str, Tensor]:
    units, res = _layer_shape(G, layer)
    device = G.mapping.w_avg.device
    report = progress or (lambda fraction, text: None)
    # Thresholds from the first samples (a subsample), kept at the layer's resolution.
    n_calib = min(n, max(batch_size, CALIBRATION_VALUES // (units * res * res)))
    calib_acts: list[Tensor] = []
    calib_labels: list[Tensor] = []
    tally = _Tally(units, len(parts), device)
    thresholds = low = None
    z_all = G.sample_z(n, seed)                                              # [n, z_dim]
    done = 0
    for z in z_all.split(batch_size):
        ws = G.mapping(z, truncation_psi=truncation_psi)                     # [B, num_ws, w_dim]
        act, img = layer_activations(G, ws, layer)                           # [B, C, h, w], [B, 3, H, W]
        act = act.float()
        labels = _segment(segmenter, img, len(parts))                        # [B, H, W]
        done += len(z)
        if thresholds is None:
            calib_acts.append(act)
            calib_labels.append(labels)
            if done >= n_calib:
                values = torch.cat(calib_acts).transpose(0, 1).reshape(units, -1)   # [C, S*h*w]
                thresholds = torch.quantile(values, quantile, dim=1) if values.shape[1] <= 2**24 \
                    else values.kthvalue(max(1, math.ceil(quantile * values.shape[1])), dim=1).values
                low = values.median(dim=1).values if LOW_QUANTILE == 0.5 else torch.quantile(values, LOW_QUANTILE, 1)
                del values
                for a, lab in zip(calib_acts, calib_labels):
                    tally.add(a, lab, thresholds)
                calib_acts, calib_labels = [], []
        else:
            tally.add(act, labels, thresholds)
        report(done / n, f"dissecting {layer}: {done} / {n} samples")
    out = tally.result()
    out["thresholds"] = thresholds.float().cpu()
    out["low"] = low.float().cpu()
    return out


def dissect(G: Generator, segmenter, layer: str, n: int = 1000, seed: int = 0, quantile: float = 0.99,
            progress: Progress | None = None, *, truncation_psi: float = 1.0, parts: Sequence[str] | None = None,
            batch_size: int = 32, cache: bool = True) -> Dissection:
    """Dissect ``layer`` over ``n`` samples of ``G.sample_z(n, seed)`` (see the module docstring).

    segmenter:  ``segmenter(images [N, 3, H, W] in [-1, 1]) -> logits [N, P, H', W']`` (resized to
                the image if needed); part names from ``segmenter.parts`` / ``segmenter.config.parts``
                or ``parts``.
    quantile:   a unit is "on" above this quantile of its activations (0.99: the top 1%).
    progress:   ``progress(fraction, text)`` after each batch (not called on a cache hit).
    cache:      read / write the on-disk cache (``INTERP_CACHE_DIR`` or ``~/.cache/interp``).
    """
    _check_layer(G, layer)
    n = _check_int(n, "n", 1)
    seed = _check_int(seed, "seed", 0)
    batch_size = _check_int(batch_size, "batch_size", 1)
    quantile = float(quantile)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be within (0, 1), e.g. 0.99 for the top 1%, got {quantile}")
    parts = _segmenter_parts(segmenter, parts)
    mh = diskcache.model_hash(G)
    params = {"version": CACHE_VERSION, "layer": layer, "n": n, "seed": seed, "quantile": quantile,
              "truncation_psi": float(truncation_psi), "parts": list(parts), "segmenter": _segmenter_hash(segmenter),
              "calibration": CALIBRATION_VALUES, "low_quantile": LOW_QUANTILE}
    key = diskcache.make_key(mh, params)
    out = diskcache.cached(CACHE_NAMESPACE, key,
                           lambda: _compute(G, segmenter, layer, parts, n, seed, quantile, float(truncation_psi),
                                            batch_size, progress),
                           metadata={"params": str(params)}, enabled=cache)
    _, res = _layer_shape(G, layer)
    return Dissection(layer, res, parts, mh, n, seed, quantile, float(truncation_psi), out["thresholds"],
                      out["iou"], out["low"], out["mean_in"], out["mean_out"], out["part_area"])
