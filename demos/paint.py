"""Tab "Paint": the GAN Dissection brush. Paint a region of the current image, then remove or add a concept there.

Layout and wiring only; the compute lives in ``interp.methods.dissect`` (dissection, ``paint``,
``units_for_region``) and ``interp.edit`` (``UnitEdit``, ``RenderSession``).

Two kinds of concept:

- a part of the built-in segmenter (``faces64``: glasses, hair, eyes, ...): the model is dissected
  once (every unit layer, ``samples`` samples, cached on disk) and ``paint`` switches the concept's
  units off (``remove``) or sets the painted cells to the concept's level (``add``);
- ``what I painted`` (every model, the only one for Hub / user models, which have no segmenter): the
  units most active where you painted, switched off (``remove``) or amplified (``add``).

API (gradio_client; the current image lives in the client's session). ``mask`` is an image file, square
(any size, resized to the model's), white = painted (grey = partly), or a transparent PNG whose opaque
pixels are painted:

    client.predict(model_id, handle_file("mask.png"), "glasses", "remove", 1.0, "auto", 0, 500,
                   api_name="/paint_preview")
        # concept, action (remove | add), strength (0.1-4), layer ("auto" or e.g. "b16.conv1"),
        # units (0 = automatic), samples (of the dissection) -> (before, after) images, note (Markdown)
    client.predict(model_id, handle_file("mask.png"), "glasses", "remove", 1.0, "auto", 0, 500,
                   api_name="/paint_apply")
        # push the edit onto the current image's stack -> current image, summary, None (before / after), note
    client.predict(model_id, 500, "glasses", api_name="/paint_dissect")
        # samples, concept (picks the table's layer) -> status, share of labelled units per layer and concept
        # (a plot: {"columns", "data"}), the table's layer, the units table (unit, label, IoU), the concepts
    client.predict(model_id, "b16.conv1", 500, api_name="/paint_unit_table")     # -> units table of a layer
    client.predict(model_id, "b16.conv1", 17, 500, api_name="/paint_unit_maps")
        # -> one unit over 4 samples: the images, its activation, where it is "on"

The dissection endpoints need a model with a segmenter (``faces64``); the brush endpoints dissect first when
the concept needs it (progress on the note) and the result is cached on disk.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from demos.common import (LONG_WORK, AppContext, check_float, check_int, export_path, get_generator, gpu, int_slider,
                          user_error)
from demos.current import current_recipe, publish
from interp import diskcache
from interp.edit import Recipe, RenderSession, UnitEdit
from interp.imaging import labelled_grid, tensor_to_pil
from interp.methods.dissect import (LABEL_IOU, MAX_STRENGTH, Dissection, choose_layer, dissect_layers, paint,
                                    unit_layers, unit_maps, units_for_region)
from interp.models.stylegan2 import Generator

TITLE = "Paint"

WHAT_I_PAINTED = "what I painted"
ACTIONS = ("remove", "add")
AUTO = "auto"
SEGMENTER_MODELS = ("faces64",)          # models with a part segmenter (the built-in domain)
SHOW = 256                               # the editor and before / after show small images enlarged to this
DEFAULT_SAMPLES, MIN_SAMPLES, MAX_SAMPLES = 500, 32, 5000
REGION_UNITS = 24                        # "what I painted": units switched by default (at most a quarter of the layer)
REGION_LAYER_RES = 16                    # "what I painted", auto layer: the 16x16 block (as measured on faces64)
MAP_SAMPLES = 4                          # samples shown for one unit
MAX_MASK_PIXELS = 4096 * 4096
TABLE_HEADERS = ["Unit", "Label", "IoU"]
NO_DISSECTION = ("Not dissected yet. **Dissect** labels every unit of every layer with the segmenter's parts "
                 "(the first run takes a minute or more; the result is cached on disk).")
START_NOTE = "Paint over a region of the image, pick what to do there, then press **Preview**."


# ----------------------------------------------------------------------------------------------------
# Images and masks (conversion only)


def display_size(resolution: int) -> int:
    """Small images are enlarged by a whole factor (crisp pixels) to about SHOW pixels; large ones stay."""
    return resolution * max(1, round(SHOW / resolution))


def _enlarge(image: Image.Image | torch.Tensor) -> Image.Image:
    pil = tensor_to_pil(image) if isinstance(image, torch.Tensor) else image.convert("RGB")
    size = display_size(pil.width)
    return pil if size == pil.width else pil.resize((size, size), Image.NEAREST)


def _fingerprint(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()[:16]


def _path(file: Any) -> str | None:
    if file is None:
        return None
    return file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")


def editor_strokes(editor: Any) -> np.ndarray | None:
    """The painted pixels of an ImageEditor value (any layer's alpha > 0) as bool [H, W]; None when none."""
    if not isinstance(editor, dict):
        return None
    painted = None
    for layer in editor.get("layers") or []:
        arr = np.asarray(layer)
        if arr.ndim == 3 and arr.shape[2] == 4:
            alpha = arr[:, :, 3] > 0
            painted = alpha if painted is None else painted | alpha
    return painted if painted is not None and painted.any() else None


def read_mask(path: str | None, resolution: int) -> torch.Tensor:
    """A mask image file -> float [R, R] in [0, 1] at the model's resolution (area-averaged when larger).

    Greyscale: white = painted (grey = partly). With transparency: the alpha channel. A colour image
    without transparency is refused (it is a picture, not a mask).
    """
    if path is None:
        raise user_error("The mask is missing: paint the region first (or pass a mask image, white = painted).")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_MASK_PIXELS:
                raise user_error(f"The mask is {img.width}x{img.height} pixels; masks of at most 4096x4096 are "
                                 "accepted.")
            img.load()
            mask_image = img.copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise user_error(f"The mask is not an image that can be read (PNG, WebP or JPEG; white = painted): "
                         f"{type(exc).__name__}.") from None
    w, h = mask_image.size
    if w != h:
        raise user_error(f"The mask must be square like the image (e.g. {resolution}x{resolution} or "
                         f"{display_size(resolution)}x{display_size(resolution)}), got {w}x{h}.")
    has_alpha = mask_image.mode in ("RGBA", "LA", "PA") or "transparency" in mask_image.info
    if has_alpha:
        alpha = np.asarray(mask_image.convert("RGBA"))[:, :, 3]
        if alpha.min() < 255:                                         # a transparent layer: the strokes are opaque
            values = alpha.astype(np.float32) / 255
        else:
            has_alpha = False
    if not has_alpha:
        rgb = np.asarray(mask_image.convert("RGB")).astype(np.int16)   # [H, W, 3]
        spread = rgb.max(axis=2) - rgb.min(axis=2)
        if (spread > 24).mean() > 0.01:
            raise user_error("The mask must be black and white (white = painted, grey = partly), or a transparent "
                             "PNG whose painted pixels are opaque; this file is a colour picture.")
        values = rgb.mean(axis=2).astype(np.float32) / 255
    m = torch.from_numpy(np.ascontiguousarray(values))
    if m.max() <= 0:
        raise user_error("The mask is empty: paint the region first (white = the region to edit).")
    if m.shape[0] != resolution:
        mode = "area" if m.shape[0] > resolution else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        m = torch.nn.functional.interpolate(m[None, None], size=(resolution, resolution), mode=mode,
                                            **kwargs)[0, 0].clamp(0, 1)
        if m.max() <= 0:
            raise user_error("The mask is empty at the image's resolution: paint a larger region.")
    return m


def _heat(maps: torch.Tensor) -> torch.Tensor:
    """Activation maps [n, H, W] -> colour images [n, 3, H, W] in [-1, 1] (inferno, one scale for all)."""
    import matplotlib

    lo, hi = float(maps.min()), float(maps.max())
    x = ((maps - lo) / max(hi - lo, 1e-8)).clamp(0, 1).numpy()
    rgb = matplotlib.colormaps["inferno"](x)[..., :3]                  # [n, H, W, 3] in [0, 1]
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() * 2 - 1


def unit_sheet(images: torch.Tensor, maps: torch.Tensor, on: torch.Tensor, title: str) -> Image.Image:
    """Samples, the unit's activation over them, and where it is "on" (the region the IoU uses)."""
    n = images.shape[0]
    imgs = images.clamp(-1, 1)
    heat = 0.35 * imgs + 0.65 * _heat(maps)
    tint = torch.tensor([1.0, 0.9, -0.6]).view(1, 3, 1, 1)                # yellow where the unit is on
    region = torch.where(on[:, None], 0.4 * imgs + 0.6 * tint, 0.35 * imgs - 0.4)
    cell = max(96, display_size(images.shape[-1]) // 2)
    return labelled_grid(torch.cat([imgs, heat, region]), cols=n, col_labels=[f"sample {i + 1}" for i in range(n)],
                         row_labels=["image", "activation", f"on ({title})"], cell=cell)


# ----------------------------------------------------------------------------------------------------
# What the page shows


def has_segmenter(model_id: str | None) -> bool:
    return model_id in SEGMENTER_MODELS


def segmenter_parts(model_id: str | None) -> tuple[str, ...]:
    if not has_segmenter(model_id):
        return ()
    from interp.builtin import PARTS

    return tuple(PARTS)


def concept_choices(model_id: str | None, ds: dict[str, Dissection] | None = None) -> list[tuple[str, str]]:
    """(label, value) pairs: "what I painted", then the parts (after a dissection: with their labelled units)."""
    out = [("what I painted (the units active there)", WHAT_I_PAINTED)]
    parts = segmenter_parts(model_id)
    if not ds:
        return out + [(p, p) for p in parts]
    counts = {p: 0 for p in parts}
    for d in ds.values():
        for p, c in d.units_per_concept().items():
            counts[p] = counts.get(p, 0) + c
    for p in sorted(parts, key=lambda p: -counts[p]):
        out.append((f"{p} ({counts[p]} units in all layers)" if counts[p] else f"{p} (no clear unit)", p))
    return out


def layer_choices(G: Generator | None) -> list[tuple[str, str]]:
    if G is None:
        return [("auto", AUTO)]
    out = [("auto", AUTO)]
    for name in unit_layers(G):
        res = G.synthesis.layer(name).resolution
        out.append((f"{name} ({res}x{res})", name))
    return out


def region_layer(G: Generator) -> str:
    """The layer "what I painted" uses when none is chosen: the 16x16 block's conv1 (or the closest)."""
    layers = unit_layers(G)
    by_res = sorted(layers, key=lambda n: (abs(G.synthesis.layer(n).resolution - REGION_LAYER_RES),
                                           not n.endswith("conv1")))
    return by_res[0]


def share_frame(ds: dict[str, Dissection]) -> pd.DataFrame:
    """One row per layer and concept: the share of the layer's units labelled with it (IoU > 0.05)."""
    rows = []
    for name, d in ds.items():
        counts = {p: c for p, c in d.units_per_concept().items() if c}
        if not counts:
            rows.append({"layer": name, "concept": d.parts[0], "share": 0.0})
        for p, c in counts.items():
            rows.append({"layer": name, "concept": p, "share": c / d.num_units})
    return pd.DataFrame(rows, columns=["layer", "concept", "share"])


def dissection_status(ds: dict[str, Dissection], seconds: float | None) -> str:
    best = max(ds.values(), key=lambda d: d.share_labelled())
    first = next(iter(ds.values()))
    when = "from the disk cache" if seconds is None else f"in {seconds:.0f} s (now cached on disk)"
    lines = [f"**Dissected** {len(ds)} layers on {first.n} samples {when}. A unit is labelled with the part its "
             f"thresholded map overlaps best (IoU > {LABEL_IOU}); `{best.layer}` has the largest share "
             f"({best.share_labelled():.0%}).",
             " · ".join(f"`{d.layer}` {d.share_labelled():.0%}" for d in ds.values())]
    return "\n\n".join(lines)


def dissection_intro(model_id: str | None) -> str:
    if has_segmenter(model_id):
        return NO_DISSECTION
    return (f"Model `{model_id}` has no part segmenter: its units cannot be labelled with concepts. "
            f"'{WHAT_I_PAINTED}' still works: it uses the units most active where you paint.")


def unit_rows(d: Dissection) -> list[list[Any]]:
    return [[u, label, iou] for u, label, iou in d.table()]


# ----------------------------------------------------------------------------------------------------
# Compute wrappers (GPU on ZeroGPU)


@dataclass(frozen=True)
class Brush:
    """A brush edit and what the note says about it."""

    edit: UnitEdit
    note: str


@gpu
def _render_pair(G: Generator, session: RenderSession, recipe: Recipe, edit: UnitEdit
                 ) -> tuple[Image.Image, Image.Image, float]:
    before = session.render(G, recipe.latent, recipe.edits)
    after = session.render(G, recipe.latent, recipe.edits + (edit,))
    return _enlarge(before[0]), _enlarge(after[0]), session.last_ms


@gpu(duration=240)
def _dissect(G: Generator, device: str, samples: int, progress) -> dict[str, Dissection]:
    from interp.builtin import load_segmenter

    return dissect_layers(G, load_segmenter(device), None, samples, seed=0, progress=progress)


@gpu
def _unit_maps(G: Generator, d: Dissection, unit: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return unit_maps(G, d, unit, n=MAP_SAMPLES, seed=0)


@gpu
def _region(G: Generator, latent, mask: torch.Tensor, layer: str, k: int):
    return units_for_region(G, latent, mask, layer, k)


# ----------------------------------------------------------------------------------------------------
# Handlers (one per event; Gradio values in, Gradio values out)


class Handlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    # ---- the editor

    def load_editor(self, image: Image.Image | None, shown: str | None):
        """Opening the tab, or a new current image: the image on the canvas (strokes kept if it is the same)."""
        if not isinstance(image, Image.Image):
            return gr.skip(), gr.skip(), gr.skip()
        key = _fingerprint(image)
        if key == shown:
            return gr.skip(), gr.skip(), gr.skip()
        editor = {"background": _enlarge(image), "layers": [], "composite": None}
        return editor, key, None

    def editor_mask(self, editor: dict | None) -> str:
        """The strokes as a mask image (white = painted) for the public endpoints."""
        painted = editor_strokes(editor)
        if painted is None:
            raise user_error("Paint the region first: brush over the part of the image to edit.")
        path = export_path("mask.png")                             # goes with the other exports after their TTL
        Image.fromarray(painted.astype(np.uint8) * 255).save(path)
        return str(path)

    # ---- the dissection

    def dissections(self, G: Generator, model_id: str, samples: int, memo: dict | None,
                    progress: gr.Progress | None) -> tuple[dict[str, Dissection], dict, float | None]:
        """Every unit layer dissected on ``samples`` samples: from this session, the disk cache, or computed."""
        if not has_segmenter(model_id):
            raise user_error(f"Model {model_id!r} has no part segmenter, so its units have no concept labels: "
                             f"pick '{WHAT_I_PAINTED}' (the units most active where you painted).")
        key = f"{diskcache.model_hash(G)}/{samples}"
        if isinstance(memo, dict) and memo.get("key") == key:
            return memo["layers"], memo, None
        t0 = time.perf_counter()
        calls = []

        def report(fraction: float, text: str) -> None:
            calls.append(fraction)
            if progress is not None:
                progress(fraction, desc=text)

        if progress is not None:
            progress(0, desc=f"dissecting every layer on {samples} samples")
        try:
            ds = _dissect(G, self.ctx.device, samples, report)
        except FileNotFoundError as exc:
            raise user_error(f"The part segmenter is not available: {exc}") from exc
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        seconds = time.perf_counter() - t0 if calls else None
        return ds, {"key": key, "layers": ds}, seconds

    def dissect(self, model_id: str, samples: int, concept: str, memo: dict | None, progress=gr.Progress()):
        samples = check_int(samples, "Samples", MIN_SAMPLES, MAX_SAMPLES)
        G = get_generator(self.ctx, model_id)
        ds, memo, seconds = self.dissections(G, model_id, samples, memo, progress)
        if concept in segmenter_parts(model_id):
            shown = choose_layer(ds, concept, "remove")
        else:
            shown = max(ds.values(), key=lambda d: d.share_labelled()).layer
        table_layer = gr.Dropdown(choices=list(ds), value=shown, interactive=True)
        concepts = gr.Dropdown(choices=concept_choices(model_id, ds))
        return (memo, dissection_status(ds, seconds), share_frame(ds), table_layer, unit_rows(ds[shown]), concepts)

    def unit_table(self, model_id: str, layer: str, samples: int, memo: dict | None):
        samples = check_int(samples, "Samples", MIN_SAMPLES, MAX_SAMPLES)
        G = get_generator(self.ctx, model_id)
        ds, memo, _ = self.dissections(G, model_id, samples, memo, None)
        if layer not in ds:
            raise user_error(f"Layer must be one of {', '.join(ds)}, got {layer!r}.")
        return unit_rows(ds[layer]), memo

    def pick_unit(self, evt: gr.SelectData):
        row = evt.row_value if evt is not None else None
        if not row:
            return gr.skip()
        return int(row[0])

    def unit_maps(self, model_id: str, layer: str, unit: int, samples: int, memo: dict | None):
        samples = check_int(samples, "Samples", MIN_SAMPLES, MAX_SAMPLES)
        G = get_generator(self.ctx, model_id)
        ds, memo, _ = self.dissections(G, model_id, samples, memo, None)
        if layer not in ds:
            raise user_error(f"Layer must be one of {', '.join(ds)}, got {layer!r}.")
        d = ds[layer]
        unit = check_int(unit, "Unit", 0, d.num_units - 1)
        images, maps, on = _unit_maps(G, d, unit)
        label, iou = d.labels[unit], float(d.unit_iou[unit])
        sheet = unit_sheet(images, maps, on, f"{label}, IoU {iou:.2f}")
        return sheet, memo

    # ---- the brush

    def brush(self, model_id: str, mask: str | None, concept: str, action: str, strength: float, layer: str,
              units: int, samples: int, recipe: Recipe | None, memo: dict | None,
              progress: gr.Progress | None) -> tuple[Generator, Recipe, Brush, dict | None]:
        """Check everything, then make the UnitEdit of the brush (dissecting first when needed)."""
        if action not in ACTIONS:
            raise user_error(f"Action must be one of {', '.join(ACTIONS)}, got {action!r}.")
        strength = check_float(strength, "Strength", 0.1, MAX_STRENGTH)
        units = check_int(units, "Units", 0, 4096)
        samples = check_int(samples, "Samples", MIN_SAMPLES, MAX_SAMPLES)
        allowed = [WHAT_I_PAINTED, *segmenter_parts(model_id)]
        if concept not in allowed:
            extra = "" if has_segmenter(model_id) else (f" (model {model_id!r} has no part segmenter, so only "
                                                         "the units of the painted region can be used)")
            raise user_error(f"Concept must be one of: {', '.join(repr(c) for c in allowed)}{extra}; got {concept!r}.")
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        layers = unit_layers(G)
        if layer != AUTO and layer not in layers:
            raise user_error(f"Layer must be 'auto' or one of {', '.join(layers)}, got {layer!r}.")
        R = G.img_resolution
        m = read_mask(_path(mask), R)
        painted = float(m.mean())                                      # as the recipe summary counts it
        try:
            if concept == WHAT_I_PAINTED:
                brush = self.region_brush(G, recipe, m, action, strength, layer, units, painted)
            else:
                ds, memo, _ = self.dissections(G, model_id, samples, memo, progress)
                brush = self.concept_brush(G, recipe, m, concept, action, strength, layer, units, painted, ds)
        except gr.Error:
            raise
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        return G, recipe, brush, memo

    def region_brush(self, G: Generator, recipe: Recipe, m: torch.Tensor, action: str, strength: float,
                     layer: str, units: int, painted: float) -> Brush:
        name = region_layer(G) if layer == AUTO else layer
        n_units = G.synthesis.layer(name).weight.shape[0]
        k = units or min(REGION_UNITS, max(1, n_units // 4))          # a selection, not the whole layer
        if k > n_units:
            raise user_error(f"Units must be at most {n_units} (the units of {name}), got {k}.")
        picked = _region(G, recipe.latent, m, name, k)
        edit = picked.edit("remove" if action == "remove" else "amplify", strength)
        res = G.synthesis.layer(name).resolution
        verb = "switched off" if action == "remove" else f"amplified x{1 + strength:.1f}"
        note = (f"**{action} what you painted**: the {len(edit.units)} units of `{name}` ({res}x{res}"
                f"{', auto' if layer == AUTO else ''}) whose active region best matches the painted {painted:.0%} "
                f"of the image (best overlap IoU {float(picked.scores[0]):.2f}), {verb} there")
        if action == "remove" and strength != 1:
            note += f" (strength {strength:g})"
        return Brush(edit, note + ".")

    def concept_brush(self, G: Generator, recipe: Recipe, m: torch.Tensor, concept: str, action: str,
                      strength: float, layer: str, units: int, painted: float, ds: dict[str, Dissection]) -> Brush:
        k = units if units and action == "remove" else None
        if k is not None and layer != AUTO and k > ds[layer].num_units:
            raise user_error(f"Units must be at most {ds[layer].num_units} (the units of {layer}), got {k}.")
        edit = paint(G, recipe.latent, m, concept, action, strength, ds, layer=None if layer == AUTO else layer, k=k)
        d = ds[edit.layer]
        j = d.part_index(concept)
        why = {"remove": "its units have the highest IoU with the concept",
               "add": "the coarsest layer with a clearly labelled unit"}[action]
        where = f"`{edit.layer}` ({d.resolution}x{d.resolution}{f', auto: {why}' if layer == AUTO else ''})"
        if action == "remove":
            ious = d.iou[list(edit.units), j]
            note = (f"**remove {concept}**: {len(edit.units)} units of {where}, IoU with {concept} "
                    f"{float(ious.min()):.2f}-{float(ious.max()):.2f}, switched to their low level in the painted "
                    f"{painted:.0%} of the image")
        else:
            note = (f"**add {concept}**: all {len(edit.units)} units of {where} set to their mean level on "
                    f"{concept} in the painted {painted:.0%} of the image")
            if units:
                note += " ('Units' applies to remove only)"
        if strength != 1:
            note += f", strength {strength:g}"
        return Brush(edit, note + ".")

    def preview(self, model_id: str, mask: str | None, concept: str, action: str, strength: float, layer: str,
                units: int, samples: int, recipe: Recipe | None, memo: dict | None, session: RenderSession | None,
                progress=gr.Progress()):
        G, recipe, brush, memo = self.brush(model_id, mask, concept, action, strength, layer, units, samples,
                                            recipe, memo, progress)
        session = session if isinstance(session, RenderSession) else RenderSession()
        try:
            before, after, ms = _render_pair(G, session, recipe, brush.edit)
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        note = (f"{brush.note}\n\nRendered in {ms:.0f} ms (only `{brush.edit.layer}` and the layers after it ran "
                "again). Press **Apply** to add it to the current image's edits.")
        return (before, after), note, memo, session

    def apply(self, model_id: str, mask: str | None, concept: str, action: str, strength: float, layer: str,
              units: int, samples: int, recipe: Recipe | None, memo: dict | None, progress=gr.Progress()):
        G, recipe, brush, memo = self.brush(model_id, mask, concept, action, strength, layer, units, samples,
                                            recipe, memo, progress)
        shown = publish(G, recipe.push(brush.edit))
        note = f"Applied: {brush.note[0].lower()}{brush.note[1:]}\n\nPaint again to add another edit."
        return (*shown, None, note, memo)

    def units_range(self, model_id: str | None, layer: str | None):
        """The Units slider goes up to the chosen layer's units (for auto: the largest layer's)."""
        try:
            G = get_generator(self.ctx, model_id)
        except gr.Error:
            return gr.skip()
        names = [layer] if layer in unit_layers(G) else unit_layers(G)
        return gr.Slider(maximum=max(int(G.synthesis.layer(n).weight.shape[0]) for n in names))

    def model_changed(self, model_id: str | None):
        G = None
        if model_id:
            try:
                G = get_generator(self.ctx, model_id)
            except gr.Error:
                G = None
        return (gr.Dropdown(choices=concept_choices(model_id), value=WHAT_I_PAINTED),
                gr.Dropdown(choices=layer_choices(G), value=AUTO), None, dissection_intro(model_id),
                gr.BarPlot(None, sort=unit_layers(G) if G is not None else None),
                gr.Dropdown(choices=[], value=None), None, None, None, START_NOTE, None)


# ----------------------------------------------------------------------------------------------------
# The page


def _max_units(G: Generator | None) -> int:
    return max((int(G.synthesis.layer(n).weight.shape[0]) for n in unit_layers(G)), default=512) if G else 512


def _local_generator(ctx: AppContext, model_id: str | None) -> Generator | None:
    """The preselected model when it loads without a download (its layers fill the layer list), else None."""
    if not model_id or model_id not in ctx.zoo:
        return None
    try:
        status = ctx.zoo.availability(ctx.zoo.get_entry(model_id))
        if not status.available or status.needs_download:
            return None
        return ctx.zoo.load_generator(model_id, ctx.device)
    except Exception:  # noqa: BLE001 - the layer list then fills in when a model is picked
        return None


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""
    h = Handlers(ctx)
    model_id = ctx.model.value
    G0 = _local_generator(ctx, model_id)
    # The dropdowns take any value: their choices follow the model picked in the page, while an API caller
    # names the model per call; the handlers check the values and name the allowed ones.
    with gr.Row():
        with gr.Column(scale=1):
            editor = gr.ImageEditor(label="Current image: paint the region to edit", type="numpy", format="png",
                                    image_mode="RGBA", sources=[], transforms=[], layers=False,
                                    canvas_size=(SHOW, SHOW), fixed_canvas=False, height=SHOW + 140,
                                    brush=gr.Brush(default_size=10, colors=[("#ff00ff", 0.55)], color_mode="fixed"),
                                    placeholder="No current image yet: generate one in the Generate tab.",
                                    elem_id="paint-editor", interactive=True)
            concept = gr.Dropdown(concept_choices(model_id), value=WHAT_I_PAINTED, label="Concept",
                                  allow_custom_value=True, elem_id="paint-concept",
                                  info="A part of the segmenter (built-in model: dissected once, cached), or the "
                                       "units most active where you painted (every model).")
            action = gr.Radio(list(ACTIONS), value="remove", label="Action",
                              info="remove: switch the units off there. add: set the concept's level there "
                                   "('what I painted': amplify what is there).")
            strength = gr.Slider(0.1, MAX_STRENGTH, value=1.0, step=0.1, label="Strength",
                                 info="1: the concept's level; below 1 fades the change, above 1 pushes past it.")
            with gr.Row():
                layer = gr.Dropdown(layer_choices(G0), value=AUTO, label="Layer", scale=2, allow_custom_value=True,
                                    elem_id="paint-layer",
                                    info="auto: the dissected layer that suits the concept best; 16x16 for "
                                         "'what I painted'.")
                units = int_slider(0, _max_units(G0), value=0, step=1, label="Units (0 = automatic)", scale=1,
                                   info="remove: how many units to switch off.", elem_id="paint-units")
            with gr.Row():
                preview_btn = gr.Button("Preview", variant="secondary")
                apply_btn = gr.Button("Apply to the current image", variant="primary")
        with gr.Column(scale=1):
            compare = gr.ImageSlider(label="Before (left) / after (right): drag the handle", type="pil",
                                     format="png", interactive=False, elem_classes="pixel-image",
                                     elem_id="paint-compare", max_height=SHOW + 64)
            note = gr.Markdown(START_NOTE, elem_id="paint-note")
    with gr.Accordion("Dissection: which units mean what", open=False):
        with gr.Row():
            samples = int_slider(MIN_SAMPLES, MAX_SAMPLES, value=DEFAULT_SAMPLES, step=1, label="Samples",
                                 info="Generated images the units are measured on (the paper uses 1,000); "
                                      "more: steadier labels, longer first run.", scale=3,
                                 elem_id="paint-samples")
            dissect_btn = gr.Button("Dissect", scale=1)
        status = gr.Markdown(dissection_intro(model_id), elem_id="paint-dissect-status")
        plot = gr.BarPlot(None, x="layer", y="share", color="concept", y_title="share of the layer's units",
                          x_title="layer (coarse to fine)", label="Units with a clear meaning (IoU > 0.05), per layer",
                          sort=unit_layers(G0) if G0 is not None else None, y_lim=[0, 1])   # no height: it clips
                                                                                            # the legend
        with gr.Row():
            with gr.Column(scale=1):
                table_layer = gr.Dropdown([], value=None, label="Units of layer", interactive=True,
                                          allow_custom_value=True)
                table = gr.Dataframe(headers=TABLE_HEADERS, datatype=["number", "str", "number"], interactive=False,
                                     label="Units, best IoU first (click a row to see the unit)", max_height=320)
            with gr.Column(scale=2):
                with gr.Row():
                    unit = gr.Number(value=0, label="Unit", precision=0, minimum=0, scale=1)
                    maps_btn = gr.Button("Show where it fires", scale=1)
                maps = gr.Image(label=f"The unit on {MAP_SAMPLES} samples", type="pil", format="png",
                                interactive=False)
    # The brush as a mask image file for the public endpoints (a File, not an Image: a wrong upload gets a
    # sentence from read_mask instead of a preprocessing traceback).
    mask = gr.File(label="Mask (white = painted)", type="filepath", visible=False)
    shown_key = gr.State(None)          # fingerprint of the image on the canvas
    memo = gr.State(None)               # this session's dissection {key, layers}
    session = gr.State(None)            # RenderSession: incremental synthesis of the previews

    # ---- events
    private = dict(api_visibility="private")
    quiet = dict(show_progress="hidden")
    brush_inputs = [ctx.model, mask, concept, action, strength, layer, units, samples, ctx.current, memo]
    load = dict(fn=h.load_editor, inputs=[ctx.shown[1], shown_key], outputs=[editor, shown_key, compare],
                **private, **quiet)
    if ctx.tab is not None:              # opening the tab puts the current image on the canvas
        ctx.tab.select(**load)
    ctx.shown[1].change(**load)          # a new current image (here, or from another tab): a fresh canvas

    # Progress (and a failure's "Error" pill) show on the note, never on the editor or the sliders.
    preview_btn.click(h.editor_mask, editor, mask, **private, **quiet).success(
        h.preview, [*brush_inputs, session], [compare, note, memo, session], api_name="paint_preview",
        show_progress_on=note)
    apply_btn.click(h.editor_mask, editor, mask, **private, **quiet).success(
        h.apply, brush_inputs, [*ctx.shown, compare, note, memo], api_name="paint_apply", show_progress_on=note)
    dissect_btn.click(h.dissect, [ctx.model, samples, concept, memo],
                      [memo, status, plot, table_layer, table, concept], api_name="paint_dissect",
                      show_progress_on=status, **LONG_WORK)
    table_layer.input(h.unit_table, [ctx.model, table_layer, samples, memo], [table, memo],
                      api_name="paint_unit_table", show_progress_on=status)
    table.select(h.pick_unit, None, unit, **private, **quiet).success(
        h.unit_maps, [ctx.model, table_layer, unit, samples, memo], [maps, memo], **private, show_progress_on=maps)
    maps_btn.click(h.unit_maps, [ctx.model, table_layer, unit, samples, memo], [maps, memo],
                   api_name="paint_unit_maps", show_progress_on=maps)
    layer.change(h.units_range, [ctx.model, layer], units, **private, **quiet)
    ctx.model.change(h.model_changed, ctx.model,
                     [concept, layer, memo, status, plot, table_layer, table, maps, compare, note, session], **private,
                     **quiet)
