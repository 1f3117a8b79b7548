"""Tab "Explore": unsupervised sliders (SeFa, GANSpace), named by CLIP, measured against ground truth.

Layout and wiring only; the math lives in ``interp.methods`` (sefa, ganspace, edit, naming,
effects) and ``interp.directions``.

API (gradio_client; state such as the current directions lives in the client's session):

    client.predict(model_id, "SeFa", "all", 0, 0, 6, vocabulary, True, 0.7, api_name="/explore_find_directions")
        # method, layer range (+ custom first / last ws row), K, CLIP vocabulary, name with CLIP, psi;
        # returns the status text and the K_MAX slider updates (labels: index, share, CLIP name)
    client.predict(model_id, seed, psi, s0, ..., s9, api_name="/explore_render")        # -> image
    client.predict(model_id, seed, psi, s0, ..., s9, api_name="/explore_echo")          # same image, no compute
    client.predict(api_name="/explore_export_directions")                                # -> .safetensors file
    client.predict(model_id, handle_file(path), api_name="/explore_import_directions")
    client.predict(model_id, seed, psi, s0, ..., s9, api_name="/explore_export_edit")    # -> JSON text
    client.predict(model_id, json_text, api_name="/explore_render_edit")                 # -> image
    client.predict(model_id, seed, psi, index, max_strength, n_strengths, n_seeds, api_name="/explore_grid")
    client.predict(model_id, psi, api_name="/explore_effects")                           # -> heatmap, table

``/explore_echo`` takes the render inputs and returns the session's last image without computing:
the baseline for the round-trip benchmark (bench/bench_explore.py).
"""
from __future__ import annotations

import io
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from demos.common import AppContext, check_float, check_int, get_generator, gpu, grid_image, tensor_to_pil
from interp import diskcache
from interp.directions import DirectionFileError, DirectionSet, load_directions, save_directions
from interp.methods import effects as effects_mod
from interp.methods import ganspace, naming, sefa
from interp.methods.edit import EditRecipe, layer_rows, projection_stds, render_recipe, sample_latents, synthesize
from interp.models.stylegan2 import Generator, SynthesisCache

TITLE = "Explore"

K_MAX = 10                       # sliders created up front; "Number of directions" shows the first K
STRENGTH = 5.0                   # slider range: -STRENGTH .. +STRENGTH standard deviations
MAX_SEED = 2**32 - 1
PSI_RANGE = (0.0, 1.5)
METHODS = {"SeFa": "sefa", "GANSpace": "ganspace"}
PRESET_CHOICES = ["all", "coarse", "middle", "fine", "custom"]
GANSPACE_SAMPLES = 10_000        # latents per PCA (cached on disk per model and parameters)
STD_SAMPLES = 2_000              # latents used to measure a SeFa direction's standard deviation
NAMING_SAMPLES = 8               # samples per direction for CLIP naming (both signs)
EFFECT_SAMPLES = 16              # samples per direction for the ground-truth effect matrix
MAX_GRID_SEEDS, MAX_GRID_STRENGTHS = 6, 9
RENDER_CONCURRENCY = 4           # slider renders running at once (all users); each user has its own cache


class RenderSession:
    """Per-user render state: the base latent of (model, seed, psi) and an incremental synthesis cache."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache = SynthesisCache()
        self.key: tuple | None = None
        self.z: torch.Tensor | None = None
        self.ws: torch.Tensor | None = None
        self.last_image: Image.Image | None = None
        self.last_ms: float = 0.0          # server-side compute time of the last render


# ----------------------------------------------------------------------------------------------------
# Compute (no Gradio objects below this line until build())


def compute_directions(G: Generator, model_id: str, method: str, rows: tuple[int, ...], k: int,
                       preset: str) -> DirectionSet:
    """SeFa or GANSpace directions with standard deviations and shares, as a DirectionSet."""
    mh = diskcache.model_hash(G)
    if method == "sefa":
        dirs, values = sefa.directions(G, rows, k)
        stds = projection_stds(sample_latents(G, "w", STD_SAMPLES, seed=0), dirs)
        shares = values / sefa.total_value(G, rows)
        params = {"normalize": True, "std_samples": STD_SAMPLES}
    elif method == "ganspace":
        comps = ganspace.fit(G, GANSPACE_SAMPLES, k, seed=0, space="w", layers=rows)
        dirs, values, stds, shares = comps.directions, comps.values, comps.stds, comps.variance_ratio
        params = {"n_samples": GANSPACE_SAMPLES, "seed": 0, "pca_space": "w"}
    else:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS.values())}")
    params["preset"] = preset
    return DirectionSet.create(dirs, values, stds, space="w", layers=rows, method=method, model_id=model_id,
                               model_hash=mh, shares=shares, params=params)


@gpu
def _find(G: Generator, model_id: str, method: str, rows: tuple[int, ...], k: int, preset: str,
          vocabulary: str, use_clip: bool, psi: float, device: str) -> tuple[DirectionSet, str]:
    ds = compute_directions(G, model_id, method, rows, k, preset)
    if not use_clip:
        return ds, "CLIP naming is off: the directions keep their index names."
    clip, why = naming.load_paired_clip(model_id, device)
    if clip is None:
        return ds, f"No CLIP is available, so the directions keep their index names: {why}."
    names = naming.name_directions(G, ds, clip, vocabulary, n_samples=NAMING_SAMPLES, truncation_psi=psi)
    labels = [n.label for n in names]
    ds = ds.with_names(labels, naming=[n.to_dict() for n in names], clip=why)
    return ds, f"Named with {why} (both signs, {NAMING_SAMPLES} samples per direction)."


@torch.no_grad()
def render_image(G: Generator, session: RenderSession, model_id: str, seed: int, psi: float,
                 ds: DirectionSet | None, strengths: list[float], device: str) -> Image.Image:
    """The edited image of (seed, psi); reuses the session's base latent and synthesis cache."""
    t0 = time.perf_counter()
    with session.lock:
        key = (model_id, id(G), seed, psi, device)
        if session.key != key:
            session.z = G.sample_z(1, seed).to(device)                     # [1, z_dim]
            session.ws = G.mapping(session.z, truncation_psi=psi)          # [1, num_ws, w_dim]
            session.key = key
            session.cache.clear()
        edits = ds.edits(strengths[:ds.k]) if ds is not None else []
        if any(e.space == "z" for e in edits):
            img = synthesize(G, session.z, edits, psi, cache=session.cache)
        else:
            img = synthesize(G, session.z, edits, psi, cache=session.cache, ws=session.ws)
        pil = tensor_to_pil(img[0])
        session.last_image = pil
        session.last_ms = (time.perf_counter() - t0) * 1000
    return pil


@gpu
def _render(*args: Any) -> Image.Image:
    return render_image(*args)


@gpu
@torch.no_grad()
def _grid(G: Generator, ds: DirectionSet, index: int, seed: int, psi: float, max_strength: float,
          n_strengths: int, n_seeds: int, device: str) -> Image.Image:
    z = torch.cat([G.sample_z(1, seed + i) for i in range(n_seeds)]).to(device)       # [S, z_dim]
    strengths = torch.linspace(-max_strength, max_strength, n_strengths).tolist()
    base = ds.edits([0.0] * index + [1.0])[0]
    cols = [synthesize(G, z, [base.with_strength(s)] if s != 0 else [], psi) for s in strengths]  # T x [S, 3, H, W]
    imgs = torch.stack(cols, dim=1).flatten(0, 1)                          # [S*T, 3, H, W], row = seed
    return grid_image(imgs.cpu(), cols=n_strengths)


@gpu
def _effects(G: Generator, ds: DirectionSet, psi: float, device: str) -> tuple[Image.Image, str]:
    from interp.builtin import load_predictor

    predictor = load_predictor(device)
    eff = effects_mod.effect_matrix(G, predictor, ds, strength=1.0, n_samples=EFFECT_SAMPLES,
                                    truncation_psi=psi)
    fig = effects_mod.plot_effects(eff, f"{ds.method} on {ds.model_id}, layers {_rows_text(ds.layers)}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")                                         # Agg, no GUI backend needed
    image = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    lines = ["| direction | dominant factor | response / std | purity | CLIP name agrees |", "|---|---|---|---|---|"]
    names = [naming.DirectionName(**d) for d in ds.params.get("naming", [])]
    agreement = effects_mod.clip_agreement(names, eff) if len(names) == ds.k else None
    for i, row in enumerate(eff.rows()):
        agree = "" if agreement is None else ("yes" if agreement["per_direction"][i]["agrees"] else "no")
        lines.append(f"| {row['direction']} | {row['dominant']} | {row['response']:+.3f} | {row['purity']:.0%} | {agree} |")
    summary = f"Mean purity {float(eff.purity.mean()):.0%} over {ds.k} directions"
    if agreement is not None:
        summary += (f"; the CLIP name names the dominant true factor for {agreement['factor_agreement']:.0%} of "
                    f"them ({agreement['sign_agreement']:.0%} with the right sign, "
                    f"{agreement['top2_agreement']:.0%} the dominant or runner-up factor); "
                    f"{agreement['n_measurable']} of {ds.k} move a factor by at least "
                    f"{agreement['min_response']:.0%} of its range per std, and the name agrees for "
                    f"{agreement['measurable_agreement']:.0%} of those")
    return image, summary + ".\n\n" + "\n".join(lines)


def _rows_text(rows: tuple[int, ...]) -> str:
    return f"{rows[0]}-{rows[-1]}" if list(rows) == list(range(rows[0], rows[-1] + 1)) else ",".join(map(str, rows))


# ----------------------------------------------------------------------------------------------------
# UI


def slider_updates(ds: DirectionSet | None, k: int | None = None) -> list[gr.Slider]:
    """K_MAX slider updates: labelled (index, share, name) and visible for the first K, reset to 0."""
    out = []
    for i in range(K_MAX):
        if ds is not None and i < ds.k:
            what = "eigenvalue" if ds.method == "sefa" else "variance"
            name = ds.names[i]
            label = f"#{i} · {float(ds.shares[i]):.1%} of {what}" + ("" if name == f"#{i}" else f" · {name}")
            info = None
            named = ds.params.get("naming")
            if named and i < len(named):
                info = f"CLIP confidence {named[i]['confidence']:.0%}"
            out.append(gr.Slider(label=label, info=info, value=0, visible=True))
        else:
            out.append(gr.Slider(label=f"#{i}", info=None, value=0, visible=ds is None and i < (k or 0)))
    return out


def _status(ds: DirectionSet, note: str) -> str:
    what = {"sefa": "SeFa (closed-form factorization of the style weights)",
            "ganspace": f"GANSpace (PCA of W over {ds.params.get('n_samples', '?')} samples)"}.get(ds.method, ds.method)
    return (f"**{ds.k} directions** from {what} on `{ds.model_id}`, ws rows {_rows_text(ds.layers)} "
            f"(space `{ds.space}`). Slider units: standard deviations. {note}")


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""

    def generator(model_id: str | None) -> Generator:
        return get_generator(ctx, model_id)

    def check_ds(ds: DirectionSet | None, model_id: str | None) -> DirectionSet | None:
        if ds is not None and ds.model_id != model_id:
            raise gr.Error(f"The sliders hold directions of model {ds.model_id!r}, but {model_id!r} is selected. "
                           "Press 'Find directions' (or import directions made for this model).")
        return ds

    def strengths_of(values) -> list[float]:
        return [check_float(v, f"Slider #{i}", -STRENGTH, STRENGTH) for i, v in enumerate(values)]

    def find(model_id, method, preset, start, end, k, vocabulary, use_clip, psi):
        if method not in METHODS:
            raise gr.Error(f"Method must be one of {', '.join(METHODS)}, got {method!r}.")
        k = check_int(k, "Number of directions", 1, K_MAX)
        psi = check_float(psi, "Truncation psi", *PSI_RANGE)
        G = generator(model_id)
        try:
            if preset == "custom":
                rows = layer_rows(G, "custom", check_int(start, "First ws row", 0, G.num_ws - 1),
                                  check_int(end, "Last ws row", 0, G.num_ws - 1))
            else:
                rows = layer_rows(G, preset)
            if use_clip:
                naming.parse_vocabulary(vocabulary or "")
            ds, note = _find(G, model_id, METHODS[method], rows, min(k, G.w_dim), preset, vocabulary or "",
                             bool(use_clip), psi, ctx.device)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return [ds, _status(ds, note), *slider_updates(ds)]

    def render(model_id, seed, psi, ds, session, *values):
        seed = check_int(seed, "Seed", 0, MAX_SEED)
        psi = check_float(psi, "Truncation psi", *PSI_RANGE)
        strengths = strengths_of(values)
        G = generator(model_id)
        ds = check_ds(ds, model_id)
        session = session if isinstance(session, RenderSession) else RenderSession()
        try:
            image = _render(G, session, model_id, seed, psi, ds, strengths, ctx.device)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return image, session

    def echo(model_id, seed, psi, ds, session, *values):
        # The same inputs and output as render, without computing: the round-trip baseline.
        if isinstance(session, RenderSession) and session.last_image is not None:
            return session.last_image, session
        entry_res = ctx.zoo.get_entry(model_id).resolution if model_id in ctx.zoo else None
        res = entry_res or 64
        return Image.new("RGB", (res, res), (128, 128, 128)), session

    def reset():
        return [0.0] * K_MAX

    def grid(model_id, seed, psi, ds, index, max_strength, n_strengths, n_seeds):
        seed = check_int(seed, "Seed", 0, MAX_SEED - MAX_GRID_SEEDS)
        psi = check_float(psi, "Truncation psi", *PSI_RANGE)
        max_strength = check_float(max_strength, "Largest strength", 0.1, STRENGTH)
        n_strengths = check_int(n_strengths, "Number of strengths", 2, MAX_GRID_STRENGTHS)
        n_seeds = check_int(n_seeds, "Number of seeds", 1, MAX_GRID_SEEDS)
        G = generator(model_id)
        ds = check_ds(ds, model_id)
        if ds is None:
            raise gr.Error("There are no directions yet: press 'Find directions' first.")
        index = check_int(index, "Direction", 0, ds.k - 1)
        return _grid(G, ds, index, seed, psi, max_strength, n_strengths, n_seeds, ctx.device)

    def measure(model_id, psi, ds):
        psi = check_float(psi, "Truncation psi", *PSI_RANGE)
        ds = check_ds(ds, model_id)
        if model_id not in naming.BUILTIN_IDS:
            return None, (f"The ground-truth effect matrix needs known generative factors, which only the built-in "
                          f"model ({', '.join(naming.BUILTIN_IDS)}) has; `{model_id}` is a Hub/user model.")
        if ds is None:
            raise gr.Error("There are no directions yet: press 'Find directions' first.")
        G = generator(model_id)
        try:
            return _effects(G, ds, psi, ctx.device)
        except FileNotFoundError as exc:
            raise gr.Error(f"The attribute predictor is not available: {exc}") from exc

    def export_directions(ds):
        if ds is None:
            raise gr.Error("There are no directions to export: press 'Find directions' first.")
        folder = Path(tempfile.mkdtemp(prefix="interp-directions-"))
        rows = _rows_text(ds.layers).replace(",", "_")
        return str(save_directions(ds, folder / f"{ds.model_id}-{ds.method}-rows{rows}.safetensors"))

    def import_directions(model_id, file):
        if file is None:
            raise gr.Error("Choose a .safetensors direction file to import.")
        path = file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")
        G = generator(model_id)
        try:
            ds = load_directions(path, expected_hash=diskcache.model_hash(G))
        except DirectionFileError as exc:
            raise gr.Error(str(exc)) from exc
        if ds.model_id != model_id:  # same weights under another id: follow the picker
            ds = DirectionSet(ds.directions, ds.values, ds.stds, ds.shares, ds.space, ds.layers, ds.method,
                              model_id, ds.model_hash, ds.names, ds.params)
        if max(ds.layers) >= G.num_ws or ds.dim != _space_dim(G, ds):
            raise gr.Error(f"The file's directions ({ds.dim}-dimensional, space {ds.space}, rows "
                           f"{_rows_text(ds.layers)}) do not fit model {model_id!r}.")
        if ds.k > K_MAX:
            ds = ds.subset(K_MAX)
        note = f"Imported from {Path(path).name}."
        return [ds, _status(ds, note), *slider_updates(ds)]

    def export_edit(model_id, seed, psi, ds, *values):
        seed = check_int(seed, "Seed", 0, MAX_SEED)
        psi = check_float(psi, "Truncation psi", *PSI_RANGE)
        strengths = strengths_of(values)
        G = generator(model_id)
        ds = check_ds(ds, model_id)
        edits = tuple(ds.edits(strengths[:ds.k])) if ds is not None else ()
        return EditRecipe(model_id, diskcache.model_hash(G), seed, psi, edits).to_json()

    def render_edit(model_id, text):
        if not text or not text.strip():
            raise gr.Error("Paste an edit (JSON, from 'Export edit') first.")
        try:
            recipe = EditRecipe.from_json(text)
        except ValueError as exc:
            raise gr.Error(f"This is not a usable edit: {exc}") from exc
        if recipe.model_id != model_id:
            raise gr.Error(f"This edit was made with model {recipe.model_id!r}; select it in the model list first.")
        G = generator(model_id)
        try:
            img = gpu(render_recipe)(G, recipe, diskcache.model_hash(G))
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        return tensor_to_pil(img[0])

    def default_vocabulary(model_id):
        return "\n".join(naming.default_vocabulary(model_id)), None, *slider_updates(None, 0)

    def use_generated(model_id, latent):
        if not latent:
            raise gr.Error("Nothing has been generated yet: press Generate in the Generate tab first.")
        if latent["model_id"] != model_id:
            raise gr.Error(f"The last generated sample came from {latent['model_id']!r}, not {model_id!r}: "
                           "pick that model here, or generate again with this one.")
        return latent["seed"], latent["truncation_psi"]

    def toggle_custom(preset):
        return gr.Row(visible=preset == "custom")

    # ---- layout
    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                dice = gr.Button("Random seed", scale=0)
                from_gen = gr.Button("Use the Generate tab's sample", scale=0)
            psi = gr.Slider(*PSI_RANGE, value=0.7, step=0.05, label="Truncation psi")
            method = gr.Radio(list(METHODS), value="SeFa", label="Method",
                              info="SeFa: closed form from the style weights. GANSpace: PCA of sampled W.")
            preset = gr.Radio(PRESET_CHOICES, value="all", label="Layer range",
                              info="Which ws rows the directions act on: coarse = pose/shape, middle = features, "
                                   "fine = colour/texture.")
            with gr.Row(visible=False) as custom_row:
                start = gr.Number(value=0, label="First ws row", precision=0, minimum=0)
                end = gr.Number(value=3, label="Last ws row", precision=0, minimum=0)
            k = gr.Slider(1, K_MAX, value=6, step=1, label="Number of directions")
            use_clip = gr.Checkbox(value=True, label="Name directions with CLIP")
            with gr.Accordion("CLIP vocabulary (one phrase per line; 'positive | negative' for pairs)", open=False):
                vocabulary = gr.Textbox("\n".join(naming.default_vocabulary(ctx.model.value)), lines=8,
                                        show_label=False)
            find_btn = gr.Button("Find directions", variant="primary")
            status = gr.Markdown("Press **Find directions** to get sliders.")
        with gr.Column(scale=1):
            image = gr.Image(label="Image", type="pil", format="png", interactive=False, height=320,
                             elem_classes="pixel-image")
            sliders = [gr.Slider(-STRENGTH, STRENGTH, value=0, step=0.1, label=f"#{i}", visible=False)
                       for i in range(K_MAX)]
            reset_btn = gr.Button("Reset sliders")
    with gr.Accordion("Grid: one direction x strengths x seeds", open=False):
        with gr.Row():
            g_index = gr.Number(value=0, label="Direction", precision=0, minimum=0, maximum=K_MAX - 1)
            g_max = gr.Slider(0.5, STRENGTH, value=3.0, step=0.5, label="Largest strength (std)")
            g_steps = gr.Slider(2, MAX_GRID_STRENGTHS, value=5, step=1, label="Strengths")
            g_seeds = gr.Slider(1, MAX_GRID_SEEDS, value=3, step=1, label="Seeds (from the current seed)")
        grid_btn = gr.Button("Show grid")
        grid_img = gr.Image(label="Rows: seeds; columns: strengths", type="pil", format="png", interactive=False,
                            elem_classes="pixel-image")
    with gr.Accordion("Ground truth (built-in model): what each direction really changes", open=False):
        effects_btn = gr.Button("Measure effects")
        effects_md = gr.Markdown()
        effects_img = gr.Image(label="Effect matrix", type="pil", format="png", interactive=False)
    with gr.Accordion("Export / import", open=False):
        with gr.Row():
            export_btn = gr.Button("Export directions")
            export_file = gr.File(label="Directions (.safetensors)", interactive=False)
            import_file = gr.File(label="Import directions (.safetensors)", file_types=[".safetensors"],
                                  type="filepath")
        with gr.Row():
            edit_btn = gr.Button("Export edit as JSON")
            render_edit_btn = gr.Button("Render the JSON edit")
        edit_json = gr.Textbox(label="Edit (JSON: model, seed, psi, directions, strengths)", lines=4)
        edit_img = gr.Image(label="Re-created image", type="pil", format="png", interactive=False)
    echo_btn = gr.Button(visible=False)
    echo_img = gr.Image(type="pil", format="png", visible=False)

    dirs = gr.State(None)
    session = gr.State(None)
    render_inputs = [ctx.model, seed, psi, dirs, session, *sliders]
    find_outputs = [dirs, status, *sliders]
    render_kw = dict(trigger_mode="always_last", concurrency_limit=RENDER_CONCURRENCY,
                     concurrency_id="explore_render", show_progress="hidden")

    # ---- events
    find_btn.click(find, [ctx.model, method, preset, start, end, k, vocabulary, use_clip, psi], find_outputs,
                   api_name="explore_find_directions").success(
        render, render_inputs, [image, session], api_name="explore_render_after_find", **render_kw)
    gr.on([s.input for s in sliders] + [psi.release, seed.change], render, render_inputs, [image, session],
          api_name="explore_render", **render_kw)
    if ctx.tab is not None:                  # opening the tab shows the current sample before any direction exists
        ctx.tab.select(render, render_inputs, [image, session], api_name="explore_render_on_open", **render_kw)
    echo_btn.click(echo, render_inputs, [echo_img, session], api_name="explore_echo", **render_kw)
    reset_btn.click(reset, None, sliders, api_name="explore_reset").success(
        render, render_inputs, [image, session], api_name="explore_render_after_reset", **render_kw)
    dice.click(lambda: random.randint(0, MAX_SEED), None, seed, api_name="explore_random_seed")
    from_gen.click(use_generated, [ctx.model, ctx.latent], [seed, psi], api_name="explore_use_generated").success(
        render, render_inputs, [image, session], api_name="explore_render_after_use_generated", **render_kw)
    preset.change(toggle_custom, preset, custom_row, api_name="explore_toggle_custom")
    ctx.model.change(default_vocabulary, ctx.model, [vocabulary, dirs, *sliders], api_name="explore_model_changed").success(
        render, render_inputs, [image, session], api_name="explore_render_after_model_change", **render_kw)
    grid_btn.click(grid, [ctx.model, seed, psi, dirs, g_index, g_max, g_steps, g_seeds], grid_img,
                   api_name="explore_grid")
    effects_btn.click(measure, [ctx.model, psi, dirs], [effects_img, effects_md], api_name="explore_effects")
    export_btn.click(export_directions, dirs, export_file, api_name="explore_export_directions")
    import_file.upload(import_directions, [ctx.model, import_file], find_outputs,
                       api_name="explore_import_directions").success(
        render, render_inputs, [image, session], api_name="explore_render_after_import", **render_kw)
    edit_btn.click(export_edit, [ctx.model, seed, psi, dirs, *sliders], edit_json, api_name="explore_export_edit")
    render_edit_btn.click(render_edit, [ctx.model, edit_json], edit_img, api_name="explore_render_edit")


def _space_dim(G: Generator, ds: DirectionSet) -> int:
    from interp.methods.edit import latent_dim

    return latent_dim(G, ds.space, ds.layers)
