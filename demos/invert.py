"""Tab "Invert & restore": a real image into the generator (optimisation, encoders, hybrid), restoration by
inversion (colorize, super-resolve, inpaint), and the result as the current image of every tab.

Layout and wiring only; the compute lives in ``interp.methods.invert`` / ``interp.methods.restore``.

API (gradio_client; the result and the comparison table live in the client's session):

    client.predict(model_id, handle_file("face.png"), "Optimization W+", 300, "Reconstruct", False, None,
                   api_name="/invert")
        # image (any size and format; centre-cropped, resized), method, steps, task, degrade_first (the upload
        # is clean: degrade it first and measure against it), mask (an image, white = hole, for "Inpaint");
        # -> live reconstruction, (before, after), status (Markdown), comparison table
    client.predict(model_id, api_name="/invert_use")       # the result becomes the current image -> image, summary

Methods: "Optimization W" / "W+" / "S", "Encoder W+" / "S" and "Hybrid W+" / "S" (encoder, then the steps)
for the built-in model. Tasks: "Reconstruct", "Colorize", "Super-resolve x4", "Super-resolve x8", "Inpaint".
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from demos.common import LONG_WORK, AppContext, check_int, export_path, get_generator, gpu, int_slider, user_error
from demos.current import publish
from interp import diskcache
from interp.edit import Recipe
from interp.imaging import tensor_to_pil
from interp.methods import restore as restoration
from interp.methods.invert import ImageError, Inversion, load_image, prepare_image

TITLE = "Invert & restore"

METHODS = {                       # label -> (method, space)
    "Optimization W": ("optimization", "w"),
    "Optimization W+": ("optimization", "w+"),
    "Optimization S": ("optimization", "s"),
    "Encoder W+": ("encoder", "w+"),
    "Encoder S": ("encoder", "s"),
    "Hybrid W+": ("hybrid", "w+"),
    "Hybrid S": ("hybrid", "s"),
}
TASKS = {"Reconstruct": "reconstruct", "Colorize": "colorize", "Super-resolve x4": "sr4",
         "Super-resolve x8": "sr8", "Inpaint": "inpaint"}
MAX_STEPS = 1000
DEFAULT_STEPS = 200
PREVIEW_EVERY = 10
SHOW = 256                        # before/after and the brush canvas are shown enlarged to this size
ENCODER_MODELS = ("faces64",)
METHOD_INFO = ("Optimization: Adam from the average face. Encoder: one pass (built-in model). "
               "Hybrid: the encoder, then the steps.")
LOW_PSNR = 22.0                   # below this the reconstruction note says the image may be out of domain
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples" / "invert"
TABLE_HEADERS = ["Method", "Task", "Steps", "PSNR (dB)", "SSIM", "Perceptual", "Time (s)", "Compared with"]


def _pixels(img: torch.Tensor) -> Image.Image:
    """A [1, 3, h, w] image enlarged (nearest) to SHOW pixels, so 64x64 results stay crisp."""
    return tensor_to_pil(img[0]).resize((SHOW, SHOW), Image.NEAREST)


def _path(file: Any) -> str | None:
    if file is None:
        return None
    return file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")


def _fingerprint(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()[:16]


def _examples() -> list[str]:
    files = [p for p in EXAMPLES.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    return [str(p) for p in sorted(files, key=lambda p: (not p.name.startswith("render"), p.name))]   # renders first


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------------------------------
# Handlers (one per event; Gradio values in, Gradio values out)


class Handlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def upload_to_tensor(self, image: Any, resolution: int) -> tuple[torch.Tensor, tuple[int, int]]:
        path = _path(image)
        if path is None:
            raise user_error("Upload an image first (or pick one of the examples).")
        try:
            pil = load_image(path)
            return prepare_image(pil, resolution), pil.size
        except ImageError as exc:
            raise user_error(f"This upload cannot be used: {exc}.") from exc

    def mask_to_tensor(self, mask: Any, resolution: int) -> torch.Tensor:
        path = _path(mask)
        if path is None:
            raise user_error("Inpainting needs a mask: paint the missing region with the brush (or pass a mask "
                             "image, white = hole, through the API).")
        try:
            m = np.asarray(load_image(path).convert("L"), dtype=np.float32) / 255
            return restoration.hole_mask(m, resolution)
        except (ImageError, ValueError) as exc:
            raise user_error(f"The mask cannot be used: {exc}.") from exc

    def encoder(self, model_id: str, space: str):
        from interp.builtin.encoder import load_encoder

        if model_id not in ENCODER_MODELS:
            raise user_error(f"Encoders are trained for the built-in model only ({', '.join(ENCODER_MODELS)}); "
                             f"for {model_id!r} pick an optimization method.")
        try:
            return load_encoder(space, self.ctx.device)
        except FileNotFoundError as exc:
            raise user_error(f"The {space} encoder is not available: {exc}") from exc

    def run(self, model_id: str, image: str | None, method: str, steps: int, task: str, degrade_first: bool,
            mask: str | None, runs: dict | None, progress=gr.Progress()):
        if method not in METHODS:
            raise user_error(f"Method must be one of {', '.join(METHODS)}, got {method!r}.")
        if task not in TASKS:
            raise user_error(f"Task must be one of {', '.join(TASKS)}, got {task!r}.")
        steps = check_int(steps, "Steps", 0, MAX_STEPS)
        kind, space = METHODS[method]
        task_id = TASKS[task]
        if kind == "optimization" and steps == 0:
            raise user_error("Optimization needs at least 1 step (0 steps is the average face).")
        G = get_generator(self.ctx, model_id)
        R = G.img_resolution
        small = task_id in ("sr4", "sr8") and not degrade_first               # the upload is the low-res image
        x, size = self.upload_to_tensor(image, R // restoration.FACTORS[task_id] if small else R)
        hole = self.mask_to_tensor(mask, R) if task_id == "inpaint" else None
        truth, observed = None, x
        if task_id != "reconstruct" and degrade_first:
            truth, observed = x, restoration.degrade(x, task_id, hole)
        encoder = self.encoder(model_id, space) if kind != "optimization" else None
        notes = self.notes(model_id, size, R, kind, task_id, degrade_first)
        before = (restoration.baseline(observed, task_id, None, R) if observed.shape[-1] != R
                  else restoration.degrade(observed, task_id, hole) if task_id == "inpaint" else observed)
        progress(0, desc="starting")
        try:
            final = None
            for update in gpu(_stream)(G, observed, task_id, kind, space, steps, encoder, hole, truth, model_id):
                if update.result is None:
                    progress((update.step, update.steps), desc=f"step {update.step}/{update.steps}, "
                                                               f"loss {update.loss:.4f}")
                    if update.image is not None:
                        yield _pixels(update.image), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
                else:
                    final = update.result
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        assert isinstance(final, Inversion)
        runs = self.record(runs, x, final, method, task, steps if kind != "encoder" else "one pass", truth is not None)
        status = self.status(final, kind, task_id, truth is not None, notes)
        table = [row for row in runs["rows"]]
        yield (_pixels(final.image), (_pixels(before), _pixels(final.image)), status, table,
               {"model_id": model_id, "latent": final.latent}, runs)

    def notes(self, model_id: str, size: tuple[int, int], R: int, kind: str, task: str, degrade_first: bool) -> list[str]:
        w, h = size
        notes = []
        side = R // restoration.FACTORS[task] if task in restoration.FACTORS and not degrade_first else R
        if (w, h) != (side, side):
            notes.append(f"The {w}x{h} upload was centre-cropped to a square and resized to {side}x{side}.")
        if model_id in ENCODER_MODELS:
            notes.append("Not aligned: no face-landmark model is available here, so the face is not moved to the "
                         "position the model expects; centre and fill the frame as in the examples.")
        if kind == "hybrid" and task != "reconstruct":
            notes.append("Hybrid restoration: the encoder starts from the task's baseline image "
                         "(grey / bicubic / mean fill), then the optimisation restores.")
        if task != "reconstruct" and not degrade_first:
            notes.append("The upload is taken as the degraded observation; the scores compare the degraded result "
                         "with it (tick 'degrade it first' to measure against a clean original).")
        return notes

    def record(self, runs: dict | None, x: torch.Tensor, result: Inversion, method: str, task: str, steps: int | str,
               has_truth: bool) -> dict:
        key = _fingerprint(x)
        if not isinstance(runs, dict) or runs.get("image") != key:
            runs = {"image": key, "rows": []}
        m = result.metrics
        psnr = m.get("psnr", m.get("consistency_psnr"))
        versus = "the upload" if task == "Reconstruct" else "the original" if has_truth else "the degraded upload"
        row = [method, task, steps, _fmt(psnr, 2), _fmt(m.get("ssim"), 3), _fmt(m.get("perceptual"), 4),
               _fmt(m.get("seconds"), 2), versus]
        return {"image": key, "rows": runs["rows"] + [row]}

    def status(self, result: Inversion, kind: str, task: str, has_truth: bool, notes: list[str]) -> str:
        m = result.metrics
        lines = [f"**{result.method}**: {result.latent.describe()}."]
        if task == "reconstruct" or has_truth:
            lines.append(f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f} against "
                         f"{'the upload' if task == 'reconstruct' else 'the original'}"
                         + (f"; inside the hole {m['psnr_mask']:.2f} dB" if "psnr_mask" in m else "")
                         + f"; {m['seconds']:.2f} s.")
        else:
            lines.append(f"Degraded result vs the upload: {m['consistency_psnr']:.2f} dB; {m['seconds']:.2f} s.")
        if result.perceptual:
            lines.append(f"Perceptual term: {result.perceptual}.")
        if "psnr_ws_only" in m:
            lines.append(f"S result kept exactly as styles; a method that reads only ws would see "
                         f"{m['psnr_ws_only']:.2f} dB.")
        if task == "reconstruct" and m["psnr"] < LOW_PSNR:
            lines.append(f"The reconstruction is far from the upload ({m['psnr']:.1f} dB): the image may be outside "
                         "what this model makes; it is still inverted, and editable.")
        lines += notes
        lines.append("Press **Use as current image** to edit it in every tab.")
        return "\n\n".join(lines)

    def use(self, model_id: str, result: dict | None):
        if not isinstance(result, dict) or "latent" not in result:
            raise user_error("There is no result yet: press 'Invert' first.")
        if result["model_id"] != model_id:
            raise user_error(f"The result was made with model {result['model_id']!r}, but {model_id!r} is selected: "
                             "select it again, or invert with this model.")
        G = get_generator(self.ctx, model_id)
        latent = result["latent"]
        if latent.model_hash != diskcache.model_hash(G):
            raise user_error("The model's weights changed since this inversion: invert again.")
        return publish(G, Recipe(latent))

    @staticmethod
    def task_picked(method: str, task: str):
        """A restoration picked while an encoder is selected: the same space's hybrid (an encoder only reconstructs)."""
        if not _encoder_restoring(method, task):
            return gr.skip()
        hybrid = next(label for label, ks in METHODS.items() if ks == ("hybrid", METHODS[method][1]))
        gr.Info(f"An encoder only reconstructs: {task} runs as {hybrid} (the encoder starts the optimisation).")
        return hybrid

    @staticmethod
    def methods_for(model_id: str, method: str) -> gr.Radio:
        """The methods a model offers: encoders and hybrids only where an encoder is trained for it; a method that
        goes becomes the optimization in its space."""
        if model_id in ENCODER_MODELS:
            return gr.Radio(choices=list(METHODS), value=method, info=METHOD_INFO)
        choices = [label for label, (kind, _) in METHODS.items() if kind == "optimization"]
        space = METHODS.get(method, ("", "w+"))[1]
        value = method if method in choices else next(c for c in choices if METHODS[c][1] == space)
        return gr.Radio(choices=choices, value=value,
                        info=f"Adam from the average face. Encoders are trained for the built-in model only "
                             f"({', '.join(ENCODER_MODELS)}), so this model inverts by optimization.")

    @staticmethod
    def method_picked(method: str, task: str):
        """An encoder picked while a restoration is selected: the task becomes Reconstruct."""
        if not _encoder_restoring(method, task):
            return gr.skip()
        gr.Info(f"An encoder only reconstructs: the task is now Reconstruct. For {task}, pick a hybrid method.")
        return "Reconstruct"

    def brush_to_mask(self, editor: dict | None, task: str):
        """The painted strokes of the brush as a mask image (white = hole) for the public endpoint."""
        if TASKS.get(task) != "inpaint":
            return None
        layers = (editor or {}).get("layers") or []
        painted = None
        for layer in layers:
            arr = np.asarray(layer)
            if arr.ndim == 3 and arr.shape[2] == 4:
                alpha = arr[:, :, 3] > 0
                painted = alpha if painted is None else painted | alpha
        if painted is None and (editor or {}).get("composite") is not None and editor.get("background") is not None:
            painted = np.any(np.asarray(editor["composite"])[..., :3] != np.asarray(editor["background"])[..., :3],
                             axis=-1)
        if painted is None or not painted.any():
            raise user_error("The inpainting mask is empty: paint the missing region on the image with the brush.")
        path = export_path("inpaint-mask.png")
        Image.fromarray((painted * 255).astype(np.uint8)).save(path)
        return str(path)

    def show_brush(self, model_id: str, image: str | None, task: str):
        """Task 'Inpaint': the prepared upload on the brush canvas."""
        if TASKS.get(task) != "inpaint":
            return gr.ImageEditor(visible=False)
        if _path(image) is None or not model_id:
            return gr.ImageEditor(visible=True)
        G = get_generator(self.ctx, model_id)
        x, _ = self.upload_to_tensor(image, G.img_resolution)
        return gr.ImageEditor(value={"background": _pixels(x), "layers": [], "composite": None}, visible=True)


def _is_encoder(method: str) -> bool:
    return METHODS.get(method, ("",))[0] == "encoder"


def _encoder_restoring(method: str, task: str) -> bool:
    """An encoder with a restoration task: a combination that can only fail (an encoder only reconstructs)."""
    return _is_encoder(method) and TASKS.get(task, "reconstruct") != "reconstruct"


def _stream(G, observed, task, kind, space, steps, encoder, hole, truth, model_id):
    yield from restoration.solve(G, observed, task, kind, space, steps, encoder=encoder, mask=hole, truth=truth,
                                 model_id=model_id, preview_every=PREVIEW_EVERY)


# ----------------------------------------------------------------------------------------------------
# The page


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""
    h = Handlers(ctx)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.Image(label="Image (any size and format; centre-cropped and resized to the model)",
                              type="filepath", image_mode=None, sources=["upload", "clipboard"], height=256,
                              elem_classes="pixel-image")
            examples = _examples()
            if examples:
                gr.Examples(examples, inputs=upload, label="Examples: held-out renders, degraded ones, a photo-like one",
                            examples_per_page=12)
            method = gr.Radio(list(METHODS), value="Optimization W+", label="Method", info=METHOD_INFO)
            steps = int_slider(0, MAX_STEPS, value=DEFAULT_STEPS, step=10, label="Steps",
                               info="Optimization and hybrid; encoders ignore it.")
            task = gr.Radio(list(TASKS), value="Reconstruct", label="Task",
                            info="Restorations put the degradation inside the loss; the result is editable.")
            degrade_first = gr.Checkbox(value=False, label="The upload is clean: degrade it first",
                                        info="Then the scores measure the restoration against the original.")
            brush = gr.ImageEditor(label="Inpaint: paint the missing region", type="numpy", visible=False,
                                   sources=[], transforms=[], layers=False, canvas_size=(SHOW, SHOW),
                                   brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"))
            mask = gr.Image(label="Inpainting mask (white = hole)", type="filepath", image_mode=None, visible=False)
            with gr.Row():
                run_btn = gr.Button("Invert", variant="primary")
                stop_btn = gr.Button("Stop")
        with gr.Column(scale=1):
            live = gr.Image(label="Reconstruction (live)", type="pil", format="png", interactive=False, height=256,
                            elem_classes="pixel-image")
            compare = gr.ImageSlider(label="Before / after", type="pil", format="png", interactive=False,
                                     height=256, elem_classes="pixel-image")
            status = gr.Markdown("Upload an image (or pick an example), choose a method and press **Invert**.")
            use_btn = gr.Button("Use as current image", variant="primary")
    table = gr.Dataframe(headers=TABLE_HEADERS, label="Methods run on this image", interactive=False, wrap=True)
    result = gr.State(None)
    runs = gr.State(None)

    # ---- events
    private = dict(api_visibility="private")
    run_event = run_btn.click(h.brush_to_mask, [brush, task], mask, **private).success(
        h.run, [ctx.model, upload, method, steps, task, degrade_first, mask, runs],
        [live, compare, status, table, result, runs], api_name="invert", **LONG_WORK)
    stop_btn.click(None, None, None, cancels=[run_event], **private)
    method.change(lambda m: gr.Slider(interactive=not _is_encoder(m)), method, steps, **private)
    ctx.model.change(h.methods_for, [ctx.model, method], method, **private)
    if ctx.demo is not None:                                      # the page may open on a model without encoders
        ctx.demo.load(h.methods_for, [ctx.model, method], method, **private)
    task.input(h.task_picked, [method, task], method, **private)           # the visitor's latest choice wins
    method.input(h.method_picked, [method, task], task, **private)
    use_btn.click(h.use, [ctx.model, result], ctx.shown, api_name="invert_use")
    for trigger in (task.change, upload.change):
        trigger(h.show_brush, [ctx.model, upload, task], brush, **private)
