"""Procedural face renderer with known generative factors and per-pixel part masks.

The built-in domain of the suite: every image is drawn from a small dict of factors whose
meaning is fixed (``FACTORS``), so every interpretability method can be checked against the
truth. Rendering is batched tensor arithmetic on implicit shapes (signed distances) with
analytic anti-aliasing (each shape's coverage is a linear ramp of its distance over one pixel),
Lambertian shading from a movable light, and a cheap 2.5-D head model for yaw (face features
live on the surface of an ellipsoid and slide around it when the head turns).

Public API (stable; the GAN training script and the evaluation code import it):

- ``FACTORS``: tuple of :class:`Factor` (name, kind, range, meaning).
- ``FACTOR_NAMES``: the factor names in order.
- ``PARTS``: the part-mask classes; ``parts[i, y, x]`` indexes into it.
- ``sample_factors(n, seed) -> dict[str, np.ndarray]``: draws from the documented prior.
- ``render(factors, size=64) -> (images uint8 [N, H, W, 3], parts uint8 [N, H, W])``.
- ``render_torch(factors, size=64, device='cpu') -> (images float [N, 3, H, W] in [-1, 1],
  parts int64 [N, H, W])``: the same pixels as ``render`` (up to uint8 rounding), on any device,
  in the image convention of the generator and of the judges.
- ``validate_factors(factors) -> int``: checks names, shapes, kinds and ranges; returns N.
- ``images_to_tensor(images) -> float [N, 3, H, W] in [-1, 1]``: uint8 NHWC -> model input.

Coordinates: the image spans [-1, 1] in both axes, x to the right, y downwards.

Speed: about 1,900 images/s at 64x64 on one CPU thread. Rendering is many small elementwise
ops; when another process keeps a core busy, torch's multi-threaded kernels stall, so callers
on a shared CPU should prefer ``torch.set_num_threads(1)`` (see bench/bench_renderer.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np
import torch

__all__ = [
    "Factor",
    "FACTORS",
    "FACTOR_NAMES",
    "FACTOR_BY_NAME",
    "PARTS",
    "HAIR_COLORS",
    "PRIOR",
    "sample_factors",
    "validate_factors",
    "render",
    "render_torch",
    "images_to_tensor",
]


@dataclass(frozen=True)
class Factor:
    """One generative factor.

    ``kind`` is ``'binary'`` (values 0 or 1), ``'continuous'`` (any float in [low, high]) or
    ``'categorical'`` (an integer index into ``categories``; low = 0, high = len - 1).
    """

    name: str
    kind: Literal["binary", "continuous", "categorical"]
    low: float
    high: float
    meaning: str
    categories: tuple[str, ...] = ()


HAIR_COLORS: tuple[str, ...] = ("black", "brown", "blond", "red")

FACTORS: tuple[Factor, ...] = (
    Factor("smile", "continuous", -1.0, 1.0,
           "mouth curvature: -1 frown, 0 neutral, +1 broad open smile showing teeth"),
    Factor("age", "continuous", 0.0, 1.0,
           "0 young (smooth skin, coloured hair) .. 1 old (grey hair, wrinkles, under-eye lines)"),
    Factor("glasses", "binary", 0.0, 1.0, "1 wears glasses (frames and tinted lenses), 0 none"),
    Factor("hair_color", "categorical", 0.0, float(len(HAIR_COLORS) - 1),
           "hair and eyebrow colour: 0 black, 1 brown, 2 blond, 3 red (greyed by age)",
           HAIR_COLORS),
    Factor("hair_length", "continuous", 0.0, 1.0,
           "0 cropped above the ears .. 1 long hair falling onto the shoulders"),
    Factor("yaw", "continuous", -1.0, 1.0,
           "head turn: -1 turned about 34 degrees to the viewer's left, +1 to the viewer's right"),
    Factor("eye_open", "continuous", 0.0, 1.0, "eye openness: 0 closed .. 1 wide open"),
    Factor("light", "continuous", -1.0, 1.0,
           "lighting direction: -1 lit from the viewer's left, 0 frontal, +1 from the right"),
    Factor("skin_tone", "continuous", 0.0, 1.0, "0 light .. 1 dark skin"),
    Factor("background", "continuous", 0.0, 1.0,
           "background colour along a cool-to-warm path: 0 blue, .25 teal, .5 green, "
           ".75 yellow, 1 orange"),
    Factor("face_width", "continuous", 0.0, 1.0, "0 narrow .. 1 wide face"),
)
FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
FACTOR_BY_NAME: dict[str, Factor] = {f.name: f for f in FACTORS}

PARTS: tuple[str, ...] = (
    "background", "skin", "hair", "eyes", "eyebrows", "mouth", "glasses", "clothes",
)
_P = {name: i for i, name in enumerate(PARTS)}

PRIOR = """\
The prior of sample_factors (independent unless stated):
  age         ~ Beta(1.2, 1.2)
  glasses     ~ Bernoulli(0.08 + 0.64 * age)        older faces wear glasses more often
  skin_tone   ~ Uniform(0, 1)
  hair_color  ~ Categorical(p), p proportional to (0.30 + 0.25 t, 0.30, 0.25 (1 - t), 0.15 (1 - t)),
                t = skin_tone                       darker skin, darker hair
  smile       ~ Uniform(-1, 1)
  eye_open    ~ Beta(2.0, 1.3) * (1 - 0.35 max(smile, 0))   broad smiles narrow the eyes
  hair_length, face_width, background ~ Uniform(0, 1); yaw, light ~ Uniform(-1, 1)
"""


# ----------------------------------------------------------------------------- sampling

def sample_factors(n: int, seed: int) -> dict[str, np.ndarray]:
    """Draw ``n`` factor settings from the documented prior (see ``PRIOR``).

    Deterministic in ``seed``. Returns a dict with one 1-D array of length ``n`` per factor of
    ``FACTORS``: float32 for continuous factors, int64 for binary (0/1) and categorical ones.
    Correlations on purpose, as in real photos: older faces wear glasses more often, darker
    skin comes with darker hair, broad smiles narrow the eyes.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = np.random.default_rng(seed)
    age = rng.beta(1.2, 1.2, n)
    glasses = (rng.random(n) < 0.08 + 0.64 * age).astype(np.int64)
    skin = rng.random(n)
    p = np.stack([0.30 + 0.25 * skin, np.full(n, 0.30), 0.25 * (1 - skin), 0.15 * (1 - skin)], 1)
    p /= p.sum(1, keepdims=True)
    hair_color = (rng.random((n, 1)) > np.cumsum(p, 1)).sum(1).clip(0, len(HAIR_COLORS) - 1)
    smile = rng.uniform(-1, 1, n)
    eye_open = rng.beta(2.0, 1.3, n) * (1 - 0.35 * np.maximum(smile, 0))
    out = {
        "smile": smile,
        "age": age,
        "glasses": glasses,
        "hair_color": hair_color.astype(np.int64),
        "hair_length": rng.random(n),
        "yaw": rng.uniform(-1, 1, n),
        "eye_open": eye_open,
        "light": rng.uniform(-1, 1, n),
        "skin_tone": skin,
        "background": rng.random(n),
        "face_width": rng.random(n),
    }
    return {k: (v.astype(np.float32) if FACTOR_BY_NAME[k].kind == "continuous" else v)
            for k, v in out.items()}


def validate_factors(factors: Mapping[str, object]) -> int:
    """Check a factor dict (names, 1-D equal lengths, kinds, ranges); return the batch size N.

    Raises ``ValueError`` with a sentence naming the allowed names / values.
    """
    if not isinstance(factors, Mapping):
        raise ValueError(f"factors must be a dict keyed by factor name, got {type(factors).__name__}")
    names = set(factors)
    unknown = sorted(names - set(FACTOR_NAMES))
    missing = [n for n in FACTOR_NAMES if n not in names]
    if unknown or missing:
        raise ValueError(
            f"factors must have exactly the keys {list(FACTOR_NAMES)}; "
            f"unknown: {unknown}, missing: {missing}")
    n = None
    for f in FACTORS:
        v = factors[f.name]
        a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        if a.ndim != 1:
            raise ValueError(f"factor {f.name!r} must be a 1-D array, got shape {a.shape}")
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise ValueError(f"all factors must have the same length; {f.name!r} has {len(a)}, expected {n}")
        if a.dtype.kind not in "biuf":
            raise ValueError(f"factor {f.name!r} must be numeric, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"factor {f.name!r} contains NaN or infinite values")
        if f.kind == "continuous":
            if a.size and (a.min() < f.low - 1e-6 or a.max() > f.high + 1e-6):
                raise ValueError(f"factor {f.name!r} must lie in [{f.low}, {f.high}], "
                                 f"got values in [{a.min():.4g}, {a.max():.4g}]")
        else:
            allowed = [0, 1] if f.kind == "binary" else list(range(len(f.categories)))
            if a.size and (np.any(a != np.round(a)) or not np.all(np.isin(a, allowed))):
                bad = np.unique(a[~np.isin(a, allowed)])[:5]
                desc = "" if f.kind == "binary" else " (" + ", ".join(
                    f"{i} {c}" for i, c in enumerate(f.categories)) + ")"
                raise ValueError(f"{f.kind} factor {f.name!r} takes the values {allowed}{desc}, "
                                 f"got {bad.tolist()}")
    assert n is not None
    return n


# ----------------------------------------------------------------------------- rendering helpers

_SKIN = torch.tensor([[0.97, 0.82, 0.70], [0.80, 0.58, 0.43], [0.40, 0.26, 0.17]])
_HAIR = torch.tensor([[0.07, 0.06, 0.06], [0.36, 0.21, 0.10], [0.88, 0.72, 0.42], [0.70, 0.26, 0.10]])
_BG = torch.tensor([[0.25, 0.40, 0.80], [0.20, 0.65, 0.68], [0.35, 0.68, 0.35],
                    [0.90, 0.82, 0.30], [0.95, 0.52, 0.22]])
_CLOTHES = (0.22, 0.26, 0.36)
_GREY = (0.80, 0.80, 0.80)


def _cov(d: torch.Tensor, w) -> torch.Tensor:
    """Anti-aliased coverage of the region d < 0: a linear ramp of the signed distance over one pixel."""
    return (0.5 - d / w).clamp_(0.0, 1.0)


def _ellipse(x: torch.Tensor, y: torch.Tensor, rx, ry) -> torch.Tensor:
    """Approximate signed distance to an axis-aligned ellipse (first-order: f / |grad f|)."""
    qx = x / rx
    qy = y / ry
    f = qx * qx + qy * qy
    g = 2.0 * torch.sqrt((qx / rx) ** 2 + (qy / ry) ** 2 + 1e-8)
    return (f - 1.0) / g


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def _path(colors: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear colour path through ``colors`` [K, 3] at t in [0, 1] -> [N, 3]."""
    k = colors.shape[0] - 1
    s = (t * k).clamp(0, k - 1e-6)
    i = s.floor().long()
    fr = (s - i)[:, None]
    return colors[i] * (1 - fr) + colors[i + 1] * fr


def _composite(img: torch.Tensor, parts: torch.Tensor, color, alpha: torch.Tensor, part: int | None):
    """Paint ``color`` ([N, 3, H, W] or broadcastable) with coverage ``alpha`` [N, H, W] over ``img``."""
    a = alpha.unsqueeze(1)  # [N, 1, H, W]
    img.add_(a * (color - img))
    if part is not None:
        parts.masked_fill_(alpha > 0.5, part)


def _to_tensors(factors: Mapping[str, object], device: torch.device) -> dict[str, torch.Tensor]:
    out = {}
    for f in FACTORS:
        v = factors[f.name]
        t = v.detach() if isinstance(v, torch.Tensor) else torch.from_numpy(np.asarray(v, dtype=np.float64))
        out[f.name] = t.to(device=device, dtype=torch.float32)
    return out


@torch.no_grad()
def _render_batch(f: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one batch of validated factor tensors (float32, [N]). Returns img [N,3,H,W] in [0,1], parts [N,H,W]."""
    dev = f["smile"].device
    n = f["smile"].shape[0]
    px = 2.0 / size                                    # one pixel in image units
    lin = (torch.arange(size, device=dev, dtype=torch.float32) + 0.5) * px - 1.0
    u = lin.view(1, 1, size)                           # [1, 1, W]
    v = lin.view(1, size, 1)                           # [1, H, 1]

    def p(t: torch.Tensor) -> torch.Tensor:            # per-image scalar -> [N, 1, 1]
        return t.view(n, 1, 1)

    def rgb(*c: float) -> torch.Tensor:
        return torch.tensor(c, device=dev).view(1, 3, 1, 1)

    smile, age, yaw, eye_open, light = f["smile"], f["age"], f["yaw"], f["eye_open"], f["light"]
    glasses, hair_len, fw = f["glasses"], f["hair_length"], f["face_width"]

    # ---- colours per image [N, 3]
    skin_c = _path(_SKIN.to(dev), f["skin_tone"])
    grey = age.pow(1.3) * 0.75
    hair_base = _HAIR.to(dev)[f["hair_color"].long()]
    grey_c = torch.tensor(_GREY, device=dev)
    hair_c = _lerp(hair_base, grey_c, grey[:, None])
    brow_c = _lerp(hair_base * 0.75, grey_c * 0.7, grey[:, None] * 0.8)
    bg_c = _path(_BG.to(dev), f["background"])
    lips_c = skin_c * 0.45 + torch.tensor([0.62, 0.18, 0.20], device=dev) * 0.55

    # ---- light direction (unit vector, z towards the viewer, y down), about +-57 degrees
    lxp = p(torch.sin(light) * 0.94)
    lzp = p(torch.cos(light) * 0.94)
    lyp = -0.34

    # ---- geometry per image
    a = p(yaw * 0.6)                                   # head yaw angle, radians
    sa = torch.sin(a)
    rx = p(0.40 + 0.14 * fw)                           # head half-width
    ry = 0.60                                          # head half-height
    cx, cy = 0.0, -0.07
    S = 1.1                                            # face-local units per image unit / this
    wscale = rx / (0.43 * S)                           # feature spread follows face width

    img = bg_c.view(n, 3, 1, 1) * (1.0 + 0.18 * lxp.unsqueeze(1) * u - 0.10 * v)  # [N, 3, H, W]
    img = img.expand(n, 3, size, size).contiguous()
    parts = torch.zeros(n, size, size, dtype=torch.uint8, device=dev)

    # ---- clothes (shoulders)
    d_cl = _ellipse(u, v - 1.30, 1.0, 0.52)
    cl_shade = 0.75 + 0.35 * (lxp * u * 0.8 + 0.3).clamp(-1, 1)
    _composite(img, parts, rgb(*_CLOTHES) * cl_shade.unsqueeze(1), _cov(d_cl, px), _P["clothes"])

    # ---- neck
    nx = u - cx - 0.06 * sa
    nw = 0.19 * rx / 0.47
    d_neck = torch.maximum(nx.abs() - nw, 0.25 - v)
    neck_shade = 0.55 + 0.25 * (lxp * nx / nw).clamp(-1, 1) - 0.2 * ((0.62 - v) / 0.3).clamp(0, 1)
    _composite(img, parts, skin_c.view(n, 3, 1, 1) * neck_shade.unsqueeze(1), _cov(d_neck, px), _P["skin"])

    # ---- head silhouette: ellipse narrowing towards the jaw; the chin follows the turn
    yn = (v - cy) / ry                                 # [1, H, 1]
    low = yn.clamp(0, 1)
    xh = u - cx - 0.12 * sa * low                      # [N, 1, W] after broadcast: chin shifts with yaw
    rxe = rx * (1.0 - 0.24 * low * low)
    d_head = _ellipse(xh, v - cy, rxe, ry)

    # ears: behind the head, shrinking as they rotate away
    d_ear = _ellipse(xh.abs() - rxe + 0.01, v - cy + 0.02, 0.07 * torch.cos(a), 0.12)
    ear_shade = 0.55 + 0.35 * (lxp * torch.sign(xh)).clamp(0, 1)
    _composite(img, parts, skin_c.view(n, 3, 1, 1) * ear_shade.unsqueeze(1), _cov(d_ear, px), _P["skin"])

    # ---- back hair (behind the head, in front of clothes): skull cap plus side strands
    hx = u - cx - 0.05 * sa
    d_cap = _ellipse(hx, v - cy + 0.08, rx + 0.07, ry * 0.93)
    bottom = p(cy - 0.24 + 1.15 * hair_len)            # y where the side strands end
    side_w = rx + 0.05 + 0.07 * p(hair_len)
    ahx = hx.abs()
    d_side = torch.maximum(torch.maximum(ahx - side_w, v - bottom), (cy - 0.28) - v)
    d_side = torch.maximum(d_side, rx * 0.45 - ahx)    # leave the neck free
    d_back = torch.minimum(d_cap, d_side)
    strands = 1.0 + 0.08 * torch.sin(hx * 60.0 + 5.0 * torch.sin(v * 7.0))
    hair_shade = (0.45 + 0.6 * (lxp * hx / (rx + 0.1) * 0.9 + 0.35).clamp(0, 1)) * strands
    hair_img = hair_c.view(n, 3, 1, 1) * hair_shade.unsqueeze(1)
    back_a = _cov(d_back, px)
    _composite(img, parts, hair_img, back_a, _P["hair"])

    # ---- head skin with Lambertian shading on an ellipsoid
    qx = (xh / rxe).clamp(-1, 1)
    qy = yn.clamp(-1, 1)
    nz = (1.0 - qx * qx - qy * qy).clamp_min(0.0).sqrt()
    diff = (qx * lxp + qy * lyp + nz * lzp).clamp_min(0.0)
    skin_shade = 0.32 + 0.78 * diff                    # [N, H, W]
    head_a = _cov(d_head, px)
    _composite(img, parts, skin_c.view(n, 3, 1, 1) * skin_shade.unsqueeze(1), head_a, _P["skin"])

    # ================= face features, computed in a window that holds them all
    r0, r1 = _span(cy - 0.42, cy + 0.44, size)
    c0, c1 = _span(-0.68, 0.68, size)
    im = img[:, :, r0:r1, c0:c1]                       # views: in-place edits land in img
    pa = parts[:, r0:r1, c0:c1]
    vc = v[:, r0:r1]
    qxc = qx[:, r0:r1, c0:c1]
    hac = head_a[:, r0:r1, c0:c1]
    shade_c = skin_shade[:, r0:r1, c0:c1].unsqueeze(1) * 0.9 + 0.1  # [N, 1, h, w]

    # 2.5-D face coordinates: a point at screen x sits at angle theta on the head; its face-local
    # angle is theta - yaw, so features defined in face coordinates slide around the head.
    theta = torch.asin(qxc.clamp(-0.985, 0.985))
    loc = theta - a
    cosl = torch.cos(loc)
    fx = torch.sin(loc) * (rx / S)                     # face-local x
    fy = ((vc - cy) / S).expand_as(fx)                 # face-local y
    front = (cosl * 6.0).clamp_(0, 1).mul_(hac)        # features vanish past the limb / off the head
    jac = (cosl / torch.cos(theta).clamp_min(0.12)).clamp_(0.4, 2.5)
    w = jac.mul_(px / S)                               # one pixel in face-local x units
    afx = fx.abs()
    ey = -0.03
    ex = 0.165 * wscale
    exl = afx - ex

    # cheeks: faint blush, raised by smiling
    d_cheek = _ellipse(afx - 0.22 * wscale, fy - 0.13 + 0.03 * p(smile).clamp_min(0), 0.09, 0.06)
    blush = (_cov(d_cheek, 0.08) * 0.10 * front).unsqueeze(1)
    im.add_(blush * (rgb(0.85, 0.35, 0.35) * shade_c - im))

    # wrinkles (shading only): forehead lines, crow's feet, nasolabial folds, under-eye lines
    wr = p(age.pow(1.5))
    wave = 0.012 * torch.cos(fx * 14)
    d_fore = torch.minimum((fy + 0.235 + wave).abs(), (fy + 0.285 + wave).abs()) - 0.006
    d_fore = torch.maximum(d_fore, afx - 0.17)
    tt = ((afx - 0.075) / 0.13).clamp(0, 1)            # nasolabial fold: from nose wing to mouth corner
    d_naso = torch.maximum((fy - 0.10 - 0.16 * tt.sqrt()).abs() - 0.005,
                           torch.maximum(0.075 - afx, afx - 0.205))
    cf_dx = exl - 0.10 * wscale
    d_crow = torch.maximum(torch.minimum((fy - ey).abs(), (fy - ey - 0.6 * cf_dx).abs()) - 0.005,
                           torch.maximum(-cf_dx, cf_dx - 0.05))
    d_bag = torch.maximum((fy - ey - 0.08 - 0.15 * exl * exl).abs() - 0.005, exl.abs() - 0.06)
    d_wr = torch.minimum(torch.minimum(d_fore, d_naso), torch.minimum(d_crow, d_bag))
    im.mul_(1.0 - (_cov(d_wr, w) * wr * 0.4 * front).unsqueeze(1))

    # ---- nose: shaded wedge whose tip protrudes (moves further with yaw), nostrils, shadow below
    t_n = ((fy + 0.03) / 0.17).clamp(0, 1)             # 0 at the bridge, 1 at the tip
    nose_x = fx - 0.09 * sa * t_n                      # the protruding tip moves with the turn
    half = 0.018 + 0.05 * t_n * t_n
    d_nose = torch.maximum(nose_x.abs() - half, torch.maximum(-0.03 - fy, fy - 0.15))
    side = (nose_x / half * lxp * 2.0).clamp(-1, 1)    # the side facing the light brightens
    im.mul_(1.0 + (_cov(d_nose, w) * front * (0.22 * side + 0.08) * t_n).unsqueeze(1))
    tip_x = fx - 0.09 * sa
    d_nostril = _ellipse(tip_x.abs() - 0.035, fy - 0.145, 0.022, 0.011)
    d_shadow = _ellipse(tip_x + 0.05 * lxp, fy - 0.175, 0.07, 0.018)
    dark = (_cov(d_nostril, w) * 0.65 + _cov(d_shadow, 0.05) * 0.18) * front
    im.mul_(1.0 - dark.unsqueeze(1))

    # ---- mouth: lips along a parabola whose curvature follows smile; a broad smile opens on teeth
    my = 0.285
    mw = (0.16 + 0.035 * p(smile).clamp_min(0)) * wscale
    mxn = (fx / mw).clamp(-1, 1)
    prof = 1.0 - mxn * mxn                             # 1 at the centre, 0 at the corners
    curve = 0.08 * p(smile)
    yc = my + curve * prof - 0.5 * curve               # centre line (y down: corners up when smiling)
    slope = 2.0 * curve * mxn / mw
    opening = (p(smile) - 0.25).clamp_min(0) * 0.08 * prof
    lip = 0.024 * prof.sqrt() + 0.006
    dy = (fy - yc).abs() / torch.sqrt(1.0 + slope * slope)
    d_mouth = torch.maximum(dy - opening - lip, afx - mw)
    _composite(im, pa, lips_c.view(n, 3, 1, 1) * shade_c, _cov(d_mouth, w) * front, _P["mouth"])
    open_a = _cov(torch.maximum(dy - opening, afx - mw * 0.92), w) * front
    teeth = torch.where((fy - yc + opening * 0.35).unsqueeze(1) < 0, rgb(0.95, 0.93, 0.88), rgb(0.30, 0.08, 0.08))
    _composite(im, pa, teeth * shade_c, open_a, None)
    d_line = torch.maximum(dy - 0.004, afx - mw)       # dark line between the lips
    im.mul_(1.0 - (_cov(d_line, w) * 0.5 * front * (1 - open_a)).unsqueeze(1))

    # ---- eyes: almond (ellipse) scaled by openness; iris, pupil, catch-light; lash line
    eh = 0.062 * p(eye_open) + 1e-4
    eyy = fy - ey
    eye_a = _cov(_ellipse(exl, eyy, 0.085, eh), w) * front
    _composite(im, pa, rgb(0.93, 0.92, 0.90) * shade_c, eye_a, _P["eyes"])
    iris_a = _cov(_ellipse(exl, eyy, 0.040, 0.042), w) * eye_a
    _composite(im, pa, rgb(0.30, 0.20, 0.12), iris_a, None)
    _composite(im, pa, rgb(0.03, 0.03, 0.03), _cov(_ellipse(exl, eyy, 0.018, 0.019), w) * eye_a, None)
    glint = _cov(_ellipse(exl - 0.015 * lxp, eyy + 0.013, 0.01, 0.01), w) * iris_a * 0.9
    _composite(im, pa, rgb(1.0, 1.0, 1.0), glint, None)
    lash_y = -eh * (1.0 - (exl / 0.085).clamp(-1, 1) ** 2).sqrt() - 0.004
    d_lash = torch.maximum((eyy - lash_y).abs() - 0.008, exl.abs() - 0.091)
    im.mul_(1.0 - (_cov(d_lash, w) * 0.8 * front).unsqueeze(1))

    # ---- eyebrows: arched strokes; raised with open eyes, inner ends lowered by a frown
    bw = 0.10 * wscale
    bx = exl / bw                                      # -1 (inner) .. 1 (outer)
    arch = 1.0 - bx * bx
    by = (ey - 0.115 - 0.025 * p(eye_open) - 0.015 * arch
          + 0.035 * p(-smile).clamp_min(0) * (0.5 - 0.5 * bx))
    bthick = 0.028 * (1.0 - 0.3 * bx.clamp(0, 1))
    d_brow = torch.maximum((fy - by).abs() - bthick, exl.abs() - bw)
    _composite(im, pa, brow_c.view(n, 3, 1, 1) * shade_c, _cov(d_brow, w) * front, _P["eyebrows"])

    # ---- fringe: the hair cap in front of the forehead, above a wavy hairline (screen coordinates)
    hxl = hx - 0.35 * sa * rx
    hl = cy - 0.33 + 0.025 * torch.cos(hxl * 20.0) + 0.12 * (hxl / rx) ** 2
    fringe_a = _cov(torch.maximum(d_cap, v - hl), px) * torch.maximum(head_a, back_a)
    _composite(img, parts, hair_img, fringe_a, _P["hair"])

    # ---- glasses: two rounded-rectangle frames with tinted lenses, bridge, temples
    g = p(glasses)
    gy = eyy - 0.005
    qxg = exl.abs() - 0.088
    qyg = gy.abs() - 0.060
    r = 0.035
    d_lens = (torch.sqrt(qxg.clamp_min(0) ** 2 + qyg.clamp_min(0) ** 2 + 1e-8) - r
              + torch.maximum(qxg, qyg).clamp_max(0))
    d_frame = d_lens.abs() - 0.022
    d_bridge = torch.maximum((eyy + 0.02).abs() - 0.014, afx - (ex - 0.10))
    d_temple = torch.maximum((eyy + 0.03).abs() - 0.014, torch.maximum(ex + 0.10 - afx, afx - 0.9 * rx / S))
    d_gl = torch.minimum(torch.minimum(d_frame, d_bridge), d_temple)
    frame_a = _cov(d_gl, w) * g * front
    lens_a = _cov(d_lens, w) * g * front
    refl = (0.18 + 0.14 * ((exl - gy) * 12.0 * lxp).clamp(0, 1)).unsqueeze(1)
    im.add_(lens_a.unsqueeze(1) * refl * (rgb(0.75, 0.85, 0.95) - im))
    pa.masked_fill_((lens_a > 0.5) & (pa != _P["eyes"]), _P["glasses"])
    frame_c = rgb(0.10, 0.09, 0.10) * (0.8 + 0.6 * diff[:, r0:r1, c0:c1]).unsqueeze(1)
    _composite(im, pa, frame_c, frame_a, _P["glasses"])

    return img.clamp_(0.0, 1.0), parts


def _span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Pixel index range [i0, i1) whose centres cover image coordinates [lo, hi]."""
    i0 = max(0, int(math.floor((lo + 1.0) * size / 2.0)) - 1)
    i1 = min(size, int(math.ceil((hi + 1.0) * size / 2.0)) + 1)
    return i0, i1


def _prepare(factors: Mapping[str, object], size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not (16 <= size <= 1024):
        raise ValueError(f"size must be an integer between 16 and 1024 (64 by default, 128 also common), got {size!r}")
    return validate_factors(factors)


def render_torch(factors: Mapping[str, object], size: int = 64, device: str | torch.device = "cpu",
                 batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Render faces as model-ready tensors on ``device``.

    Returns ``(images, parts)``: images float32 [N, 3, size, size] in [-1, 1] (the generator's
    and the judges' convention), parts int64 [N, size, size] indexing ``PARTS``.
    """
    n = _prepare(factors, size)
    dev = torch.device(device)
    f = _to_tensors(factors, dev)
    imgs, parts = [], []
    for s in range(0, max(n, 1), batch):
        fb = {k: v[s:s + batch] for k, v in f.items()}
        im, pa = _render_batch(fb, int(size))
        imgs.append(im.mul_(2.0).sub_(1.0))
        parts.append(pa.long())
    return torch.cat(imgs), torch.cat(parts)


def render(factors: Mapping[str, object], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Render faces on the CPU.

    ``factors``: dict with one 1-D array per factor of ``FACTORS`` (numpy or torch; values in the
    factor's range: floats for continuous, 0/1 for binary, class indices for categorical), e.g.
    the output of ``sample_factors``. ``size``: output side in pixels (64 by default; 128 works).

    Returns ``(images, parts)``: images uint8 [N, size, size, 3]; parts uint8 [N, size, size]
    indexing ``PARTS`` (a pixel gets a part when that part covers more than half of it).
    Deterministic: the same factors give the same bytes.
    """
    n = _prepare(factors, size)
    f = _to_tensors(factors, torch.device("cpu"))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    parts = np.empty((n, size, size), dtype=np.uint8)
    batch = max(8, 131072 // (size * size) * 2)        # keep the working set in cache
    for s in range(0, n, batch):
        fb = {k: v[s:s + batch] for k, v in f.items()}
        im, pa = _render_batch(fb, int(size))
        images[s:s + batch] = im.mul_(255.0).add_(0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        parts[s:s + batch] = pa.numpy()
    return images, parts


def images_to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images [N, H, W, 3] (as returned by ``render``) -> float32 [N, 3, H, W] in [-1, 1]."""
    x = torch.as_tensor(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # [N, 3, H, W]


def _grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
    """Tile uint8 [N, H, W, 3] images into one [rows*H, cols*W, 3] image (for quick looks)."""
    n, h, w, _ = images.shape
    rows = math.ceil(n / cols)
    out = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    return out
