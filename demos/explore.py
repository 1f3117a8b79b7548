"""Tab "Explore": unsupervised sliders (SeFa, GANSpace), named by CLIP, measured against ground truth.

Layout and wiring only; the compute lives in ``interp.explore`` (directions, grid, effects).
The sliders move the session's current image (shown above every tab); "Apply" pushes the moved
directions onto its edit stack.

API (gradio_client; the current image and the directions live in the client's session):

    client.predict(model_id, "SeFa", "all", 0, 0, 6, vocabulary, True, api_name="/explore_find_directions")
        # method, layer range (+ custom first / last ws row), K, CLIP vocabulary, name with CLIP;
        # returns the status text and the slider updates (labels: CLIP name; info: index and share)
    client.predict(model_id, s0, ..., s9, api_name="/explore_render")     # current image + sliders -> image
    client.predict(model_id, s0, ..., s9, api_name="/explore_apply")      # push onto the current image's stack
    client.predict(model_id, direction, max_strength, n_strengths, n_samples, api_name="/explore_grid")
    client.predict(model_id, api_name="/explore_effects")                 # -> heat-map, table (built-in model)
    client.predict(api_name="/explore_export_directions")                 # -> .safetensors file
    client.predict(model_id, handle_file(path), api_name="/explore_import_directions")

``/explore_echo`` (callable, not listed) takes the render inputs and returns the session's last image
without computing: the baseline of the round-trip benchmark (bench/bench_explore.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from demos.common import (AppContext, check_float, check_int, export_path, get_generator, gpu, int_slider,
                          user_error)
from demos.current import current_recipe, publish
from interp import diskcache
from interp.directions import DirectionFileError, DirectionSet, load_directions, save_directions
from interp.edit import Recipe, RenderSession, latent_dim, layer_rows, rows_text
from interp.explore import METHODS, effects_report, find_directions, strength_grid
from interp.imaging import tensor_to_pil
from interp.methods import naming
from interp.models.stylegan2 import Generator

TITLE = "Explore"

K_MAX = 10                       # sliders created up front; "Number of directions" shows the first K
STRENGTH = 5.0                   # slider range: -STRENGTH .. +STRENGTH standard deviations
PRESET_CHOICES = ["all", "coarse", "middle", "fine", "custom"]
MAX_GRID_SAMPLES, MAX_GRID_STRENGTHS = 5, 9
RENDER_CONCURRENCY = 4           # slider renders running at once (all users); each user has its own cache
NAMING_PSI = 0.7                 # truncation of the samples CLIP looks at when naming


@gpu
def _render(G: Generator, session: RenderSession, recipe: Recipe, ds: DirectionSet | None,
            strengths: list[float]) -> Image.Image:
    pending = ds.edits(strengths[:ds.k]) if ds is not None else []
    return tensor_to_pil(session.render(G, recipe.latent, recipe.edits + tuple(pending))[0])


# ----------------------------------------------------------------------------------------------------
# What the page shows


def slider_updates(ds: DirectionSet | None, k: int | None = None) -> list[gr.Slider]:
    """K_MAX slider updates: named, with the method's statistic as info, visible for the first K, reset to 0."""
    names = naming.stored_names(ds)
    phrases = naming.distinct_phrases(names)
    out = []
    for i in range(K_MAX):
        if ds is not None and i < ds.k:
            what = "eigenvalue" if ds.method == "sefa" else "variance"
            info = f"Direction #{i}: {float(ds.shares[i]):.1%} of the {what}"
            label = f"Direction #{i}"
            if i < len(names):
                n = names[i]
                label = f"{phrases[i]} ({'right' if n.sign > 0 else 'left'} = more)"
                info += f"; CLIP confidence {n.confidence:.0%}"
                if n.also:
                    info += f"; next best phrase: {n.also}"
            out.append(gr.Slider(label=label, info=info, value=0, visible=True))
        else:
            out.append(gr.Slider(label=f"Direction #{i}", info=None, value=0, visible=ds is None and i < (k or 0)))
    return out


def _status(ds: DirectionSet, note: str) -> str:
    what = {"sefa": "SeFa (closed-form factorization of the style weights)",
            "ganspace": f"GANSpace (PCA of W over {ds.params.get('n_samples', '?')} samples)"}.get(ds.method, ds.method)
    return (f"**{ds.k} directions** from {what} on `{ds.model_id}`, ws rows {rows_text(ds.layers)} "
            f"(space `{ds.space}`). Slider units: standard deviations. {note}")


STALE = (None, "", None)         # grid image, effects text, effects heat-map: cleared when the directions change


# ----------------------------------------------------------------------------------------------------
# Handlers (one per event; Gradio values in, Gradio values out)


class Handlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def directions(self, ds: DirectionSet | None, model_id: str | None, required: bool = True) -> DirectionSet | None:
        if ds is not None and ds.model_id != model_id:
            raise user_error(f"The sliders hold directions of model {ds.model_id!r}, but {model_id!r} is selected. "
                             "Press 'Find directions' (or import directions made for this model).")
        if ds is None and required:
            raise user_error("There are no directions yet: press 'Find directions' first.")
        return ds

    def find(self, model_id: str, method: str, layer_range: str, first_row: int, last_row: int,
             num_directions: int, vocabulary: str, name_with_clip: bool, recipe: Recipe | None):
        if method not in METHODS:
            raise user_error(f"Method must be one of {', '.join(METHODS)}, got {method!r}.")
        if layer_range not in PRESET_CHOICES:
            raise user_error(f"Layer range must be one of {', '.join(PRESET_CHOICES)}, got {layer_range!r}.")
        k = check_int(num_directions, "Number of directions", 1, K_MAX)
        G = get_generator(self.ctx, model_id)
        psi = float(recipe.latent.origin.get("psi", NAMING_PSI)) if isinstance(recipe, Recipe) else NAMING_PSI
        try:
            if layer_range == "custom":
                rows = layer_rows(G, "custom", check_int(first_row, "First ws row", 0, G.num_ws - 1),
                                  check_int(last_row, "Last ws row", 0, G.num_ws - 1))
            else:
                rows = layer_rows(G, layer_range)
            if name_with_clip:
                naming.parse_vocabulary(vocabulary or "")
            ds, note = gpu(find_directions)(G, model_id, METHODS[method], rows, min(k, G.w_dim), layer_range,
                                            vocabulary or "", bool(name_with_clip), psi, self.ctx.device)
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        return [ds, _status(ds, note), *slider_updates(ds), *STALE]

    def strengths(self, values: dict[str, Any]) -> list[float]:
        return [check_float(values.get(f"strength_{i}", 0.0), f"Slider #{i}", -STRENGTH, STRENGTH)
                for i in range(K_MAX)]

    def render(self, model_id, recipe, ds, session, **values):
        strengths = self.strengths(values)
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        ds = self.directions(ds, model_id, required=False)
        session = session if isinstance(session, RenderSession) else RenderSession()
        try:
            return _render(G, session, recipe, ds, strengths), session
        except ValueError as exc:
            raise user_error(str(exc)) from exc

    def render_if_current(self, model_id, recipe, ds, session, **values):
        """Opening the tab: show the current image (if there is one) with the sliders."""
        if not isinstance(recipe, Recipe) or recipe.model_id != model_id:
            return gr.skip(), session
        return self.render(model_id, recipe, ds, session, **values)

    def echo(self, model_id, recipe, ds, session, **values):
        # The same inputs and output as render, without computing: the round-trip baseline.
        if isinstance(session, RenderSession) and session.last_image is not None:
            return tensor_to_pil(session.last_image[0]), session
        return Image.new("RGB", (64, 64), (128, 128, 128)), session

    def apply(self, model_id, recipe, ds, **values):
        strengths = self.strengths(values)
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        ds = self.directions(ds, model_id)
        if not any(strengths[:ds.k]):
            raise user_error("All sliders are at 0: move a slider first, then apply.")
        shown = publish(G, recipe.push(*ds.edits(strengths[:ds.k])))
        return [*shown, *[0.0] * K_MAX, shown[1]]

    def grid(self, model_id, recipe, ds, direction, max_strength, n_strengths, n_samples):
        max_strength = check_float(max_strength, "Largest strength", 0.1, STRENGTH)
        n_strengths = check_int(n_strengths, "Number of strengths", 2, MAX_GRID_STRENGTHS)
        n_samples = check_int(n_samples, "Other samples", 0, MAX_GRID_SAMPLES)
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        ds = self.directions(ds, model_id)
        index = check_int(direction, "Direction", 0, ds.k - 1)
        edit = ds.edits([0.0] * index + [1.0])[0]
        psi = float(recipe.latent.origin.get("psi", NAMING_PSI))
        return gpu(strength_grid)(G, recipe, edit, max_strength, n_strengths, n_samples, psi)

    def effects(self, model_id, recipe, ds):
        ds = self.directions(ds, model_id)
        if model_id not in naming.BUILTIN_IDS:
            return None, (f"The ground-truth effect matrix needs known generative factors, which only the built-in "
                          f"model ({', '.join(naming.BUILTIN_IDS)}) has; `{model_id}` is a Hub/user model.")
        G = get_generator(self.ctx, model_id)
        psi = float(recipe.latent.origin.get("psi", NAMING_PSI)) if isinstance(recipe, Recipe) else NAMING_PSI
        try:
            return gpu(effects_report)(G, ds, psi, self.ctx.device)
        except FileNotFoundError as exc:
            raise user_error(f"The attribute predictor is not available: {exc}") from exc

    def export_directions(self, ds):
        if ds is None:
            raise user_error("There are no directions to export: press 'Find directions' first.")
        rows = rows_text(ds.layers).replace(",", "_")
        return str(save_directions(ds, export_path(f"{ds.model_id}-{ds.method}-rows{rows}.safetensors")))

    def import_directions(self, model_id, file):
        if file is None:
            raise user_error("Choose a .safetensors direction file to import.")
        path = file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")
        G = get_generator(self.ctx, model_id)
        try:
            ds = load_directions(path, expected_hash=diskcache.model_hash(G))
        except DirectionFileError as exc:
            raise user_error(str(exc)) from exc
        if ds.model_id != model_id:  # same weights under another id: follow the picker
            ds = DirectionSet(ds.directions, ds.values, ds.stds, ds.shares, ds.space, ds.layers, ds.method,
                              model_id, ds.model_hash, ds.names, ds.params)
        if max(ds.layers) >= G.num_ws or ds.dim != latent_dim(G, ds.space, ds.layers):
            raise user_error(f"The file's directions ({ds.dim}-dimensional, space {ds.space}, rows "
                             f"{rows_text(ds.layers)}) do not fit model {model_id!r}.")
        if ds.k > K_MAX:
            ds = ds.subset(K_MAX)
        return [ds, _status(ds, f"Imported from {Path(path).name}."), *slider_updates(ds), *STALE]

    def model_changed(self, model_id):
        status = "Press **Find directions** to get sliders."
        return ["\n".join(naming.default_vocabulary(model_id)), None, status, *slider_updates(None, 0), *STALE]


# ----------------------------------------------------------------------------------------------------
# The page


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""
    h = Handlers(ctx)
    with gr.Row():
        with gr.Column(scale=1):
            method = gr.Radio(list(METHODS), value="SeFa", label="Method",
                              info="SeFa: closed form from the style weights. GANSpace: PCA of sampled W.")
            preset = gr.Radio(PRESET_CHOICES, value="all", label="Layer range",
                              info="Which ws rows the directions act on: coarse = pose/shape, middle = features, "
                                   "fine = colour/texture.")
            with gr.Row(visible=False) as custom_row:
                start = gr.Number(value=0, label="First ws row", precision=0, minimum=0)
                end = gr.Number(value=3, label="Last ws row", precision=0, minimum=0)
            k = int_slider(1, K_MAX, value=6, step=1, label="Number of directions")
            use_clip = gr.Checkbox(value=True, label="Name directions with CLIP")
            with gr.Accordion("CLIP vocabulary (one phrase per line; 'positive | negative' for pairs; "
                              "'a / b / c' for the values of one attribute)", open=False):
                vocabulary = gr.Textbox("\n".join(naming.default_vocabulary(ctx.model.value)), lines=8,
                                        show_label=False)
            find_btn = gr.Button("Find directions", variant="primary")
            status = gr.Markdown("Press **Find directions** to get sliders.")
        with gr.Column(scale=1):
            image = gr.Image(label="Current image with these sliders", type="pil", format="png", interactive=False,
                             height=320, elem_classes="pixel-image", elem_id="explore-image")
            sliders = [gr.Slider(-STRENGTH, STRENGTH, value=0, step=0.1, label=f"Direction #{i}", visible=False)
                       for i in range(K_MAX)]
            with gr.Row():
                apply_btn = gr.Button("Apply to the current image", variant="primary")
                reset_btn = gr.Button("Reset sliders")
    with gr.Accordion("Grid: one direction at several strengths", open=False):
        with gr.Row():
            g_index = gr.Number(value=0, label="Direction", precision=0, minimum=0, maximum=K_MAX - 1)
            g_max = gr.Slider(0.5, STRENGTH, value=3.0, step=0.5, label="Largest strength (std)")
            g_steps = int_slider(2, MAX_GRID_STRENGTHS, value=5, step=1, label="Strengths")
            g_samples = int_slider(0, MAX_GRID_SAMPLES, value=2, step=1, label="Other samples (seeds 1, 2, ...)")
        grid_btn = gr.Button("Show grid")
        grid_img = gr.Image(label="Rows: the current image, then other samples; columns: strength", type="pil",
                            format="png", interactive=False)
    with gr.Accordion("Ground truth (built-in model): what each direction really changes", open=False):
        effects_btn = gr.Button("Measure effects")
        effects_md = gr.Markdown()
        effects_img = gr.Image(label="Effect matrix", type="pil", format="png", interactive=False)
    with gr.Accordion("Export / import directions", open=False):
        with gr.Row():
            export_btn = gr.Button("Export directions")
            import_btn = gr.UploadButton("Import directions (.safetensors)", file_types=[".safetensors"])
        export_file = gr.File(label="Directions (.safetensors)", interactive=False)
    echo_btn = gr.Button(visible=False)
    echo_img = gr.Image(type="pil", format="png", visible=False)

    dirs = gr.State(None)
    session = gr.State(None)

    # ---- events
    strengths = {f"strength_{i}": s for i, s in enumerate(sliders)}      # named API parameters
    render_inputs = dict(inputs=[ctx.model, ctx.current, dirs, session], inputs_kwargs=strengths)
    render_kw = dict(trigger_mode="always_last", concurrency_limit=RENDER_CONCURRENCY,
                     concurrency_id="explore_render", show_progress="hidden")
    private = dict(api_visibility="private")
    stale = [grid_img, effects_md, effects_img]
    find_outputs = [dirs, status, *sliders, *stale]

    # Progress (and a failure's "Error" pill) show on one small component, never on the sliders.
    find_btn.click(h.find, [ctx.model, method, preset, start, end, k, vocabulary, use_clip, ctx.current],
                   find_outputs, api_name="explore_find_directions", show_progress_on=status).success(
        h.render_if_current, outputs=[image, session], **render_inputs, **private, **render_kw)
    gr.on([s.input for s in sliders], h.render, outputs=[image, session], **render_inputs, api_name="explore_render",
          **render_kw)
    if ctx.tab is not None:                  # opening the tab shows the current image
        ctx.tab.select(h.render_if_current, outputs=[image, session], **render_inputs, **private, **render_kw)
    echo_btn.click(h.echo, outputs=[echo_img, session], **render_inputs, api_name="explore_echo",
                   api_visibility="undocumented", **render_kw)
    apply_btn.click(h.apply, [ctx.model, ctx.current, dirs], [*ctx.shown, *sliders, image], inputs_kwargs=strengths,
                    show_progress="hidden",
                    api_name="explore_apply")
    reset_btn.click(lambda: [0.0] * K_MAX, None, sliders, **private).success(
        h.render_if_current, outputs=[image, session], **render_inputs, **private, **render_kw)
    preset.change(lambda p: gr.Row(visible=p == "custom"), preset, custom_row, **private)
    ctx.model.change(h.model_changed, ctx.model, [vocabulary, dirs, status, *sliders, *stale], **private)
    grid_btn.click(h.grid, [ctx.model, ctx.current, dirs, g_index, g_max, g_steps, g_samples], grid_img,
                   api_name="explore_grid")
    effects_btn.click(h.effects, [ctx.model, ctx.current, dirs], [effects_img, effects_md], api_name="explore_effects",
                      show_progress_on=effects_md)
    export_btn.click(h.export_directions, dirs, export_file, api_name="explore_export_directions")
    import_btn.upload(h.import_directions, [ctx.model, import_btn], find_outputs,
                      api_name="explore_import_directions", show_progress_on=status).success(
        h.render_if_current, outputs=[image, session], **render_inputs, **private, **render_kw)
