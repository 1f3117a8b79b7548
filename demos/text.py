"""Tab "Text": edit the current image with words (CLIP): StyleCLIP global directions, W+ optimization, paint by word.

Layout and wiring only; the compute lives in ``interp.methods.styleclip``. Two methods:

- **Global direction** (real time): a StyleSpace direction for "target" relative to "neutral", from a
  one-off precomputation per model (channel relevance, cached on disk). ``alpha`` is the strength,
  ``beta`` the disentanglement threshold (the number of channels it moves is shown). "Apply" pushes the
  direction onto the current image's edit stack (it stays editable: undo, save in the recipe).
- **Optimization** (seconds): the W+ code is optimized towards the text (the styles, for an image
  inverted in S), with the current image's edit stack applied throughout. With "only change the painted region", CLIP sees only the brushed region
  and the rest of the image is kept (paint by word). "Apply" makes the optimized code the new *base*
  of the current image; the edits already stacked stay on top (the optimization was run with them).

On the built-in model the attribute predictor says what really changed (in fractions of each
factor's range), so an edit that changes nothing, or the wrong thing, shows as such.

API (gradio_client; the current image and the last optimization live in the client's session):

    client.predict(model_id, api_name="/text_prepare")                  # precompute (or load) the relevance
    client.predict(model_id, target, neutral, alpha, beta, scoring, api_name="/text_global")
        # -> before/after (2 images), channels (Markdown), what changed (Markdown)
    client.predict(model_id, target, neutral, steps, l2, identity, paint, brush, api_name="/text_optimize")
        # brush: an ImageEditor value ({"background", "layers", "composite"}) or None
        # -> before/after, CLIP score per step (plot), what changed, status
    client.predict(model_id, method, target, neutral, alpha, beta, scoring, api_name="/text_apply")
        # method "Global direction" (recomputed from the parameters) or "Optimization" (the last result)
        # -> current image, recipe summary, status
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np
import torch
from PIL import Image

from demos.common import (LONG_WORK, AppContext, check_float, check_int, clip_notice, get_generator, gpu, int_slider,
                          shown_markdown, user_error)
from demos.current import current_recipe, publish
from interp import diskcache
from interp.edit import DirectionEdit, Latent, Recipe, RenderSession
from interp.imaging import tensor_to_pil
from interp.methods import naming, styleclip
from interp.models.stylegan2 import Generator

TITLE = "Text"

METHODS = ("Global direction", "Optimization")
SCORING_CHOICES = [("Conditional: keep the other attributes (ours)", "conditional"),
                   ("StyleCLIP relevance (cosine)", "styleclip")]
ALPHA_RANGE = (-10.0, 10.0)
STEPS_RANGE = (5, 300)
L2_RANGE, IDENTITY_RANGE = (0.0, 1.0), (0.0, 2.0)
DEFAULT_STEPS, DEFAULT_L2, DEFAULT_IDENTITY = 100, 0.02, 0.1
EDITOR_SIZE = 256                 # the brush canvas: the current image enlarged (pixels stay visible)
NOTHING = 0.05                    # a factor change below 5 % of its range is "nothing measurable"
EXAMPLES = {
    "faces-builtin": [["a smiling face", "a face"], ["a face with glasses", "a face"], ["an old face", "a face"],
                      ["a face with blond hair", "a face with dark hair"], ["a face with long hair", "a face"],
                      ["a face lit from the right", "a face"], ["a face on an orange background", "a face"]],
    "faces": [["a smiling person", "a person"], ["a person with blond hair", "a person with hair"],
              ["a person wearing eyeglasses", "a person"], ["an old person", "a person"]],
}


# ----------------------------------------------------------------------------------------------------
# Per-session state


@dataclass
class TextSession:
    """Per-user state: the relevance and side directions of the selected model, the last optimization."""

    render: RenderSession = field(default_factory=RenderSession)
    model_hash: str = ""
    relevance: styleclip.Relevance | None = None
    side: styleclip.Side | None = None                                    # the vocabulary's attributes
    optimized: Latent | None = None                                       # the last optimization's result
    optimized_for: str = ""                                                # fingerprint of the recipe it started from


def _sentence(exc: Exception) -> str:
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _session(value: Any) -> TextSession:
    return value if isinstance(value, TextSession) else TextSession()


def _fingerprint(recipe: Recipe) -> str:
    h = hashlib.sha256(recipe.latent.ws.numpy().tobytes())
    h.update(recipe.summary().encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------
# Compute wrappers (ZeroGPU: one decorated call per event)


@gpu(duration=120)
def _relevance(G: Generator, clip, model_id: str, progress) -> styleclip.Relevance:
    return styleclip.channel_relevance(G, clip, model_id=model_id, progress=progress)


@gpu
def _before_after(G: Generator, session: TextSession, recipe: Recipe, edit: DirectionEdit | None,
                  latent: Latent | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    before = session.render.render(G, recipe.latent, recipe.edits)
    after = session.render.render(G, latent or recipe.latent, recipe.edits + ((edit,) if edit is not None else ()))
    return before, after


@gpu(duration=120)
def _optimize(G, latent, clip, text, neutral, steps, l2, identity, mask, edits, features, progress):
    return styleclip.optimize(G, latent, clip, text, steps, l2, identity, mask, progress, neutral=neutral,
                              edits=edits, features=features, preserve=styleclip.PAINT["preserve"])


# ----------------------------------------------------------------------------------------------------
# What the page shows


def judges_markdown(model_id: str, before: torch.Tensor, after: torch.Tensor, device: str) -> str:
    """What the built-in predictor says changed (built-in model only)."""
    if model_id not in naming.BUILTIN_IDS:
        return ("*What changed is measured only on the built-in model* (its factors are known); "
                f"`{model_id}` has no attribute predictor.")
    try:
        from interp.builtin import load_predictor

        predictor = load_predictor(device)
    except FileNotFoundError as exc:
        return f"*The attribute predictor is not available ({exc}).*"
    changes = styleclip.factor_changes(predictor, before.to(device), after.to(device))
    factors = sorted(((k, v) for k, v in changes.items() if ":" not in k), key=lambda kv: -abs(kv[1]))
    if abs(factors[0][1]) < NOTHING:
        head = (f"**Nothing measurable changed** (every factor moved less than {NOTHING:.0%} of its range): "
                "raise alpha, lower beta, or reword the text.")
    else:
        head = "**What the judges measured** (change of each factor, in fractions of its range):"
    rows = ["| factor | change |", "|---|---|"]
    for name, value in factors[:6]:
        if name == "hair_color":
            up = max((k for k in changes if k.startswith("hair_color:")), key=lambda k: changes[k])
            rows.append(f"| hair colour | {value:.2f} (towards {up.split(':')[1]}) |")
        else:
            rows.append(f"| {name.replace('_', ' ')} | {value:+.2f} |")
    return "\n".join([head, "", *rows])


def _mask_from_editor(value: Any, resolution: int) -> torch.Tensor | None:
    """The painted layers of an ImageEditor value -> a mask [H, W] in [0, 1] at image size (None: nothing painted)."""
    if not isinstance(value, dict):
        return None
    alpha = None
    for layer in value.get("layers") or []:
        if not isinstance(layer, np.ndarray):                             # the component delivers arrays
            continue
        arr = layer
        a = arr[..., 3] if arr.ndim == 3 and arr.shape[-1] == 4 else (arr.max(-1) if arr.ndim == 3 else arr)
        a = a.astype(np.float32) / 255.0
        alpha = a if alpha is None else np.maximum(alpha, a)
    if alpha is None or alpha.max() <= 0:
        return None
    m = torch.from_numpy(alpha)[None, None]                                # [1, 1, h, w]
    return torch.nn.functional.adaptive_avg_pool2d(m, (resolution, resolution))[0, 0].clamp(0, 1)


def _score_plot(scores: list[float]):
    import pandas as pd

    return pd.DataFrame({"step": list(range(len(scores))), "CLIP score": scores})   # step 0: the start


# ----------------------------------------------------------------------------------------------------
# Handlers (one per event; Gradio values in, Gradio values out)


class Handlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def clip(self, model_id: str):
        clip, why = naming.load_paired_clip(model_id, self.ctx.device)
        if clip is None:
            raise user_error(f"Text editing needs a CLIP, and none can be loaded for {model_id!r}: {why}.")
        return clip

    def texts(self, target: Any, neutral: Any) -> tuple[str, str]:
        try:
            return styleclip.check_texts(target, neutral)
        except ValueError as exc:
            raise user_error(_sentence(exc)) from exc

    def prepared(self, G: Generator, model_id: str, session: TextSession, progress) -> tuple[Any, TextSession]:
        clip = self.clip(model_id)
        mh = diskcache.model_hash(G)
        if session.relevance is None or session.model_hash != mh:
            session.relevance = _relevance(G, clip, model_id, lambda f, text: progress(f, desc=text))
            session.model_hash, session.side = mh, None
        return clip, session

    def side(self, clip, session: TextSession, model_id: str) -> styleclip.Side:
        if session.side is None:
            session.side = styleclip.side_directions(clip, naming.default_vocabulary(model_id),
                                                     naming.NEUTRAL[naming.domain_of(model_id)])
        return session.side

    def edit(self, model_id, G, session, target, neutral, alpha, beta, scoring, progress):
        target, neutral = self.texts(target, neutral)
        alpha = check_float(alpha, "Alpha (strength)", *ALPHA_RANGE)
        beta = check_float(beta, "Beta (disentanglement threshold)", 0.0, 1.0)
        if scoring not in styleclip.SCORINGS:
            raise user_error(f"Scoring must be one of {', '.join(styleclip.SCORINGS)}, got {scoring!r}.")
        clip, session = self.prepared(G, model_id, session, progress)
        try:
            return styleclip.global_edit(session.relevance, clip, target, neutral, alpha, beta,
                                         side=self.side(clip, session, model_id), scoring=scoring)
        except ValueError as exc:
            raise user_error(_sentence(exc)) from exc

    def prepare(self, model_id: str, session: Any, progress=gr.Progress()):
        G = get_generator(self.ctx, model_id)
        session = _session(session)
        _, session = self.prepared(G, model_id, session, progress)
        rel = session.relevance
        return (f"Channel relevance ready: {rel.num_channels} StyleSpace channels, {rel.params['n']} samples, "
                f"CLIP `{rel.clip_id}` (cached on disk)."), session

    def global_direction(self, model_id: str, target: str, neutral: str, alpha: float, beta: float, scoring: str,
                         recipe: Recipe | None, session: Any, progress=gr.Progress()):
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        session = _session(session)
        edit, n = self.edit(model_id, G, session, target, neutral, alpha, beta, scoring, progress)
        before, after = _before_after(G, session, recipe, edit)
        channels = (f"**{n} of {session.relevance.num_channels} channels** move (beta {beta:.2f}); strength "
                    f"{edit.strength:+.2f} std along the direction. Edit: '{edit.name}'.")
        return ((tensor_to_pil(before[0]), tensor_to_pil(after[0])), channels,
                judges_markdown(model_id, before, after, self.ctx.device), session)

    def optimize(self, model_id: str, target: str, neutral: str, steps: int, l2: float, identity: float,
                 paint: bool, brush: Any, recipe: Recipe | None, session: Any, progress=gr.Progress()):
        target, neutral = self.texts(target, neutral)
        steps = check_int(steps, "Steps", *STEPS_RANGE)
        l2 = check_float(l2, "L2 weight", *L2_RANGE)
        identity = check_float(identity, "Identity weight", *IDENTITY_RANGE)
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        session = _session(session)
        mask = _mask_from_editor(brush, G.img_resolution) if paint else None
        if paint and mask is None:
            raise user_error("The brush is empty: paint the region to change on the image (or untick 'Only change "
                             "the painted region').")
        clip = self.clip(model_id)
        features = None
        if model_id in naming.BUILTIN_IDS and identity > 0:
            from interp.builtin import load_predictor

            features = load_predictor(self.ctx.device).features
        if mask is not None:                    # paint by word: the outside-mask term replaces L2 and identity
            l2, identity, features = styleclip.PAINT["l2"], styleclip.PAINT["identity"], None
        try:
            result = _optimize(G, recipe.latent, clip, target, neutral, steps, l2, identity, mask, recipe.edits,
                               features, lambda f, text: progress(f, desc=text))
        except ValueError as exc:
            raise user_error(_sentence(exc)) from exc
        session.optimized, session.optimized_for = result, _fingerprint(recipe)
        before, after = _before_after(G, session, recipe, None, result)
        scores = result.origin["scores"]
        early = " (stopped early)" if result.origin["steps"] < steps else ""
        status = (f"Optimized for {result.origin['steps']} step(s){early}: CLIP score {scores[0]:.3f} -> "
                  f"{scores[-1]:.3f}. Press **Apply** to make it the current image.")
        return ((tensor_to_pil(before[0]), tensor_to_pil(after[0])), _score_plot(scores),
                judges_markdown(model_id, before, after, self.ctx.device), status, session)

    def apply(self, model_id: str, method: str, target: str, neutral: str, alpha: float, beta: float, scoring: str,
              recipe: Recipe | None, session: Any, progress=gr.Progress()):
        if method not in METHODS:
            raise user_error(f"Method must be one of {', '.join(METHODS)}, got {method!r}.")
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        session = _session(session)
        if method == "Global direction":
            edit, n = self.edit(model_id, G, session, target, neutral, alpha, beta, scoring, progress)
            if edit.strength == 0:
                raise user_error("Alpha is 0: the edit changes nothing. Move the alpha slider first.")
            shown = publish(G, recipe.push(edit))
            return (*shown, f"Applied '{edit.name}' ({n} channels, {edit.strength:+.2f} std).", session)
        if session.optimized is None or session.optimized.model_hash != recipe.latent.model_hash:
            raise user_error("There is no optimization result to apply: press 'Optimize' first.")
        if session.optimized_for != _fingerprint(recipe):
            raise user_error("The current image changed since the optimization ran: press 'Optimize' again.")
        shown = publish(G, Recipe(session.optimized, recipe.edits))
        session.optimized_for = _fingerprint(shown[0])
        return (*shown, "The optimized code is now the base of the current image (its edits stay on top).", session)

    def on_open(self, model_id: str, recipe: Recipe | None):
        """Opening the tab: the current image on the brush canvas and on both sides of the slider."""
        if not isinstance(recipe, Recipe) or recipe.model_id != model_id:
            return gr.skip(), gr.skip()
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        img = tensor_to_pil(recipe.render(G)[0])
        big = img.resize((EDITOR_SIZE, EDITOR_SIZE), Image.NEAREST)
        return {"background": big, "layers": [], "composite": big}, (img, img)

    def model_changed(self, model_id: str):
        domain = naming.domain_of(model_id)
        neutral = naming.NEUTRAL.get(domain, "a photo")
        example = (EXAMPLES.get(domain) or [["a bright photo", neutral]])[0]
        return example[0], example[1], None


# ----------------------------------------------------------------------------------------------------
# The page


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""
    h = Handlers(ctx)
    domain = naming.domain_of(ctx.model.value)
    examples = EXAMPLES.get(domain) or EXAMPLES["faces"]
    notice = clip_notice(ctx.model.value, "Text editing")
    clip_md = gr.Markdown(notice, visible=bool(notice), elem_id="text-clip-notice")
    with gr.Row():
        with gr.Column(scale=1):
            target = gr.Textbox(examples[0][0], label="Target text", info="What the image should become.")
            neutral = gr.Textbox(examples[0][1], label="Neutral text",
                                 info="The image without the change: 'a face' for 'a smiling face'. A value of an "
                                      "attribute ('blond hair') is compared with its other values unless you name "
                                      "one here ('a face with dark hair').")
            gr.Examples(examples, [target, neutral], label="Examples")
            method = gr.Radio(list(METHODS), value=METHODS[0], label="Method",
                              info="Global direction: one StyleSpace direction, real time (after a one-off "
                                   "precomputation). Optimization: optimize this image's W+ code, or its "
                                   "styles after an S inversion (seconds).")
            with gr.Group(visible=True) as global_box:
                alpha = gr.Slider(*ALPHA_RANGE, value=styleclip.DEFAULT_ALPHA, step=0.1, label="Alpha (strength)",
                                  info="Standard deviations of sampled styles along the direction; negative: the "
                                       "opposite.")
                beta = gr.Slider(0.0, 1.0, value=styleclip.DEFAULT_BETA, step=0.01,
                                 label="Beta (disentanglement threshold)",
                                 info="Channels scoring at most beta x the best channel stay put: higher = fewer "
                                      "channels, a more focused edit.")
                edit_btn = gr.Button("Edit with the global direction", variant="primary")
                channels = gr.Markdown("The number of channels the direction moves shows here (the first edit of a "
                                       "model precomputes the channel relevance: about a minute on a CPU).")
                with gr.Accordion("Channel score", open=False):
                    scoring = gr.Radio(SCORING_CHOICES, value="conditional", show_label=False,
                                       info="Conditional: a channel counts by the share of its CLIP change that "
                                            "goes to the target and not to the other attributes of the domain's "
                                            "vocabulary. StyleCLIP: cosine with the text direction.")
                    prepare_btn = gr.Button("Precompute channel relevance now", size="sm")
                    prepare_md = gr.Markdown("")
            with gr.Group(visible=False) as opt_box:
                steps = int_slider(*STEPS_RANGE, value=DEFAULT_STEPS, step=5, label="Steps (at most)",
                                   info="Stops early when the CLIP score stops improving.")
                l2 = gr.Slider(*L2_RANGE, value=DEFAULT_L2, step=0.01, label="L2 weight",
                               info="Pull towards the starting code: higher = a smaller change.")
                identity = gr.Slider(*IDENTITY_RANGE, value=DEFAULT_IDENTITY, step=0.05, label="Identity weight",
                                     info="Keep the image's features (the attribute predictor's on the built-in "
                                          "model, pixels elsewhere).")
                paint = gr.Checkbox(False, label="Only change the painted region (paint by word)",
                                    info="Paint on the image below; CLIP looks only there and the rest is kept "
                                         "(this replaces the L2 and identity terms; 200 steps work well).")
                optimize_btn = gr.Button("Optimize", variant="primary")
                plot = gr.LinePlot(x="step", y="CLIP score", title="CLIP score over the steps", height=200)
            status = gr.Markdown("")
        with gr.Column(scale=1):
            compare = gr.ImageSlider(label="Before / after", type="pil", format="png", height=320,
                                     elem_classes="pixel-image")
            judges = gr.Markdown("")
            apply_btn = gr.Button("Apply to the current image", variant="primary")
            gr.Markdown("Global direction: *Apply* stacks the direction on the current image. Optimization: the "
                        "optimized code becomes the current image's base, its edits stay on top.")
            brush = gr.ImageEditor(label="Brush (paint by word, used by the optimization)", type="numpy",
                                   sources=(), transforms=(), layers=False, height=EDITOR_SIZE + 60,
                                   canvas_size=(EDITOR_SIZE, EDITOR_SIZE), fixed_canvas=True,
                                   brush=gr.Brush(colors=["#ff3366"], default_size=12))

    session = gr.State(None)
    private = dict(api_visibility="private")
    texts = [target, neutral]
    global_inputs = [ctx.model, *texts, alpha, beta, scoring, ctx.current, session]
    # Progress (and a failure's "Error" pill, which stays until the next update) show on one small text
    # component, never on the images: a mistake is a toast.
    live = dict(trigger_mode="always_last", show_progress="minimal", show_progress_on=channels)

    prepare_btn.click(h.prepare, [ctx.model, session], [prepare_md, session], api_name="text_prepare", **LONG_WORK)
    gr.on([edit_btn.click, alpha.input, beta.input, target.submit, neutral.submit, scoring.input],
          h.global_direction,
          global_inputs, [compare, channels, judges, session], api_name="text_global", **live)
    optimize_btn.click(h.optimize, [ctx.model, *texts, steps, l2, identity, paint, brush, ctx.current, session],
                       [compare, plot, judges, status, session], api_name="text_optimize", show_progress_on=plot,
                       **LONG_WORK)
    apply_btn.click(h.apply, [ctx.model, method, *texts, alpha, beta, scoring, ctx.current, session],
                    [*ctx.shown, status, session], api_name="text_apply", show_progress_on=status).success(
        h.on_open, [ctx.model, ctx.current], [brush, compare], **private)
    method.change(lambda m: (gr.Group(visible=m == METHODS[0]), gr.Group(visible=m == METHODS[1])), method,
                  [global_box, opt_box], **private)
    ctx.model.change(h.model_changed, ctx.model, [target, neutral, session], **private)
    def note(model_id: str) -> gr.Markdown:
        return shown_markdown(clip_notice(model_id, "Text editing"))

    ctx.model.change(note, ctx.model, clip_md, show_progress="hidden", **private)
    if ctx.tab is not None:                       # opening the tab shows the current image (and whether CLIP is there)
        ctx.tab.select(h.on_open, [ctx.model, ctx.current], [brush, compare], **private)
        ctx.tab.select(note, ctx.model, clip_md, show_progress="hidden", **private)
