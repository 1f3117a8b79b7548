"""Tab "Attributes": InterFaceGAN boundaries, counterfactual verification, conditional manipulation.

Layout and wiring only; the method lives in ``interp.methods.interfacegan``. The lecture's
supervised recipe, step by step: sample latents, label their images with a judge (the built-in
attribute predictor, or CLIP prompt pairs for any model), train a linear SVM per attribute, verify
that pushing along its normal really changes the attribute, then move the current image,
optionally with other attributes held fixed (their normals projected out).

API (gradio_client; the boundaries and the current image live in the client's session):

    client.predict(model_id, "Attribute predictor", "", "w", 2000, 0.02, api_name="/attributes_train")
        # judge, CLIP prompt pairs (one "attribute: positive | negative" per line), space, samples, ratio
        # -> status, boundary table, attribute and hold-fixed choices
    client.predict(model_id, "Attribute predictor", "", api_name="/attributes_gradient")
        # instead of training: one first-order pure W direction per attribute from the judge's gradient
    client.predict(model_id, "age", 2.0, ["glasses"], api_name="/attributes_render")   # -> image
    client.predict(model_id, "age", 2.0, ["glasses"], api_name="/attributes_apply")    # push onto the stack
    client.predict(model_id, "Attribute predictor", "", "age", ["glasses"], 32, api_name="/attributes_verify")
        # -> reliable/unreliable text, plot data (attribute, strength, change)
    client.predict(api_name="/attributes_entanglement")                                  # -> heat-map
    client.predict(model_id, api_name="/attributes_export")                             # -> .safetensors
    client.predict(model_id, handle_file(path), api_name="/attributes_import")
"""
from __future__ import annotations

import io
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image

from demos.common import (LONG_WORK, AppContext, check_float, check_int, clip_notice, export_path, get_generator,
                          gpu, int_slider, shown_markdown, user_error)
from demos.current import current_recipe, publish
from interp import diskcache
from interp.directions import DirectionFileError
from interp.edit import Recipe, RenderSession
from interp.imaging import tensor_to_pil
from interp.methods import interfacegan as ifg
from interp.methods import naming
from interp.models.stylegan2 import Generator

TITLE = "Attributes"

JUDGES = ("Attribute predictor", "CLIP prompt pairs")
SPACE_CHOICES = ("w", "w+", "s", "z")
SAMPLES = (200, 20_000, 2_000)        # min, max, default sampled latents
STRENGTH = 5.0                        # slider range in std units
VERIFY_SAMPLES = (8, 256, 32)
PLOTTED_OTHERS = 4                    # the verification plot: the target and the attributes it moves most
TABLE_COLUMNS = ["attribute", "found by", "validation accuracy", "remaining accuracy", "samples used",
                 "std (latent units)"]
GRADIENT_SAMPLES = 8                  # samples the judge's gradient is averaged over


@gpu
def _render(G: Generator, session: RenderSession, recipe: Recipe, edits: list) -> Image.Image:
    return tensor_to_pil(session.render(G, recipe.latent, recipe.edits + tuple(edits))[0])


def _table(bounds: list[ifg.Boundary]) -> pd.DataFrame:
    def accuracy(v: float) -> float | None:
        return None if v != v else round(v, 3)                            # NaN: no classifier (gradient)

    rows = [[b.attribute, "SVM" if b.method == "svm" else "gradient", accuracy(b.val_accuracy),
             accuracy(b.remaining_accuracy), b.n_used or None, round(b.std, 4)] for b in bounds]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _choices(bounds: list[ifg.Boundary]) -> tuple[gr.Dropdown, gr.Dropdown]:
    names = [b.attribute for b in bounds]
    return (gr.Dropdown(choices=names, value=names[0] if names else None),
            gr.Dropdown(choices=names, value=[]))


def _heatmap(ent: ifg.Entanglement) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(ent.labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * k, 1.0 + 0.5 * k), dpi=110)
    im = ax.imshow(ent.cosine.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(k), ent.labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), ent.labels, fontsize=8)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{float(ent.cosine[i, j]):.2f}", ha="center", va="center", fontsize=6)
    ax.set_title("Cosine between boundary normals (0 = independent)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


class Handlers:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def scorer(self, model_id: str, judge: str, prompt_pairs: str) -> ifg.Scorer:
        if judge not in JUDGES:
            raise user_error(f"Judge must be one of {', '.join(JUDGES)}, got {judge!r}.")
        if judge == JUDGES[0]:
            if model_id not in naming.BUILTIN_IDS:
                raise user_error(f"The attribute predictor knows only the built-in model's faces "
                                 f"({', '.join(naming.BUILTIN_IDS)}); for {model_id!r} choose 'CLIP prompt pairs'.")
            try:
                return ifg.PredictorScorer(device=self.ctx.device)
            except FileNotFoundError as exc:
                raise user_error(f"The attribute predictor is not available: {exc}") from exc
        try:
            pairs = ifg.parse_prompt_pairs(prompt_pairs or "")
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        clip, why = naming.load_paired_clip(model_id, self.ctx.device)
        if clip is None:
            raise user_error(f"No CLIP is available to read the prompt pairs: {why}.")
        return ifg.ClipPairScorer(clip, pairs)

    def boundaries(self, bounds: Any, model_id: str, G: Generator) -> list[ifg.Boundary]:
        if not bounds:
            raise user_error("There are no boundaries yet: press 'Score samples and train' first (or import some).")
        if bounds[0].model_hash and bounds[0].model_hash != diskcache.model_hash(G):
            raise user_error(f"The boundaries were trained on other weights than {model_id!r}'s: train them again.")
        return bounds

    def direction(self, bounds: list[ifg.Boundary], attribute: str, hold_fixed: list[str] | None) -> ifg.Boundary:
        by_name = {b.attribute: b for b in bounds}
        if attribute not in by_name:
            raise user_error(f"Choose an attribute to edit; allowed: {', '.join(by_name)}.")
        held = [a for a in (hold_fixed or []) if a != attribute]
        unknown = [a for a in held if a not in by_name]
        if unknown:
            raise user_error(f"Unknown attribute(s) to hold fixed: {', '.join(unknown)}; allowed: {', '.join(by_name)}.")
        try:
            return by_name[attribute].conditioned([by_name[a] for a in held])
        except ValueError as exc:
            raise user_error(str(exc)) from exc

    def train(self, model_id: str, judge: str, prompt_pairs: str, space: str, num_samples: int, ratio: float,
              progress=gr.Progress()):
        if space not in SPACE_CHOICES:
            raise user_error(f"Space must be one of {', '.join(SPACE_CHOICES)}, got {space!r}.")
        n = check_int(num_samples, "Samples", SAMPLES[0], SAMPLES[1])
        ratio = check_float(ratio, "Ratio", 0.001, 0.5)
        if n * ratio < 2 * ifg.MIN_PER_SIDE:
            raise user_error(f"{n} samples x ratio {ratio:g} leaves {int(n * ratio)} per side; need at least "
                             f"{2 * ifg.MIN_PER_SIDE}: use more samples or a larger ratio.")
        G = get_generator(self.ctx, model_id)
        scorer = self.scorer(model_id, judge, prompt_pairs)

        def report(fraction: float, text: str) -> None:
            progress(fraction, desc=text)

        try:
            samples = gpu(ifg.score_samples)(G, scorer, n, seed=0, space=space, progress=report)
            bounds = ifg.train_boundaries(samples, ratio=ratio, progress=report)
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        how = "read from the disk cache" if samples.cached else f"scored in {samples.seconds:.0f} s"
        status = (f"**{len(bounds)} boundaries** in `{space}` from {n:,} samples ({how}, judge: {judge}); each "
                  f"SVM saw the top and bottom {ratio:.0%}. Validation accuracy is on the held-out 30% of those "
                  "extremes, remaining accuracy on the samples between them.")
        return [bounds, status, _table(bounds), *_choices(bounds)]

    def gradient(self, model_id: str, judge: str, prompt_pairs: str, progress=gr.Progress()):
        G = get_generator(self.ctx, model_id)
        scorer = self.scorer(model_id, judge, prompt_pairs)
        try:
            bounds = gpu(ifg.gradient_boundaries)(G, scorer, n=GRADIENT_SAMPLES,
                                                  progress=lambda f, t: progress(f, desc=t))
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        status = (f"**{len(bounds)} first-order pure directions** in `w` from the judge's gradient ({judge}, "
                  f"{GRADIENT_SAMPLES} samples): each moves its attribute and, to first order, none of the others "
                  "the judge reads. There is no classifier, so no accuracies; **Verify** shows what they do.")
        return [bounds, status, _table(bounds), *_choices(bounds)]

    def render(self, model_id, recipe, bounds, session, attribute: str, strength: float,
               hold_fixed: list[str] | None):
        strength = check_float(strength, "Strength", -STRENGTH, STRENGTH)
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        session = session if isinstance(session, RenderSession) else RenderSession()
        edits = []
        if bounds and attribute and strength:
            edits = [self.direction(self.boundaries(bounds, model_id, G), attribute, hold_fixed).edit(strength)]
        try:
            return _render(G, session, recipe, edits), session
        except ValueError as exc:
            raise user_error(str(exc)) from exc

    def render_if_current(self, model_id, recipe, bounds, session, attribute, strength, hold_fixed):
        if not isinstance(recipe, Recipe) or recipe.model_id != model_id:
            return gr.skip(), session
        return self.render(model_id, recipe, bounds, session, attribute, strength, hold_fixed)

    def apply(self, model_id, recipe, bounds, attribute: str, strength: float, hold_fixed: list[str] | None):
        strength = check_float(strength, "Strength", -STRENGTH, STRENGTH)
        G, recipe = current_recipe(self.ctx, recipe, model_id)
        if not strength:
            raise user_error("The strength is 0: move the slider first, then apply.")
        edit = self.direction(self.boundaries(bounds, model_id, G), attribute, hold_fixed).edit(strength)
        shown = publish(G, recipe.push(edit))
        return [*shown, 0.0, shown[1]]

    def verify(self, model_id, bounds, judge: str, prompt_pairs: str, attribute: str, hold_fixed: list[str] | None,
               num_samples: int, progress=gr.Progress()):
        n = check_int(num_samples, "Verification samples", *VERIFY_SAMPLES[:2])
        G = get_generator(self.ctx, model_id)
        direction = self.direction(self.boundaries(bounds, model_id, G), attribute, hold_fixed)
        scorer = self.scorer(model_id, judge, prompt_pairs)
        target = direction.attribute
        try:
            check = gpu(ifg.verify)(G, direction, scorer, n=n, attribute=target,
                                    progress=lambda f, t: progress(f, desc=t))
        except ValueError as exc:
            raise user_error(str(exc)) from exc
        badge = "**Reliable**" if check.reliable else "**Unreliable**"
        text = (f"{badge} — {check.summary()}. Measured on {n} fresh samples pushed along `{direction.label}` at "
                f"strengths {', '.join(f'{s:g}' for s in check.strengths)} std.")
        shown = [target] + [c for c, _ in check.off_target()[:PLOTTED_OTHERS]]      # a readable number of lines
        records = check.records()
        rows = [r for c in shown for r in records if r["attribute"] == c]
        return text, pd.DataFrame(rows)[["attribute", "strength", "change"]]

    def entanglement(self, model_id, bounds):
        G = get_generator(self.ctx, model_id)
        bounds = self.boundaries(bounds, model_id, G)
        try:
            return _heatmap(ifg.entanglement(bounds))
        except ValueError as exc:
            raise user_error(str(exc)) from exc

    def export(self, model_id, bounds):
        G = get_generator(self.ctx, model_id)
        bounds = self.boundaries(bounds, model_id, G)
        name = f"{model_id}-interfacegan-{bounds[0].space}.safetensors"
        return str(ifg.save_boundaries(bounds, export_path(name), model_id=model_id))

    def import_(self, model_id, file):
        if file is None:
            raise user_error("Choose a .safetensors boundary or direction file to import.")
        path = file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")
        G = get_generator(self.ctx, model_id)
        try:
            bounds = ifg.load_boundaries(path, expected_hash=diskcache.model_hash(G))
        except (DirectionFileError, ValueError) as exc:
            raise user_error(str(exc)) from exc
        status = f"**{len(bounds)} boundaries** imported ({bounds[0].space}, rows {list(bounds[0].rows)})."
        return [bounds, status, _table(bounds), *_choices(bounds)]

    def model_changed(self, model_id):
        pairs = ifg.format_prompt_pairs(ifg.default_prompt_pairs(model_id))
        judge = JUDGES[0] if model_id in naming.BUILTIN_IDS else JUDGES[1]
        return [pairs, judge, None, "Press **Score samples and train**.", _table([]), *_choices([])]


def _clip_notice(model_id: str, judge: str) -> str:
    """Judging by CLIP prompt pairs on a model no CLIP can be paired with here: say why, before a run fails."""
    return clip_notice(model_id, "Judging by CLIP prompt pairs") if judge == JUDGES[1] else ""


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""
    h = Handlers(ctx)
    builtin = ctx.model.value in naming.BUILTIN_IDS
    with gr.Row():
        with gr.Column(scale=1):
            gr.Markdown("**1. Label samples and train one linear boundary per attribute.**")
            judge = gr.Radio(list(JUDGES), value=JUDGES[0] if builtin else JUDGES[1], label="Judge",
                             info="Who reads the attributes from the images: the built-in predictor (faces64 only) "
                                  "or CLIP zero-shot prompt pairs (any model).")
            notice = _clip_notice(ctx.model.value, judge.value)
            clip_md = gr.Markdown(notice, visible=bool(notice), elem_id="attributes-clip-notice")
            pairs = gr.Textbox(ifg.format_prompt_pairs(ifg.default_prompt_pairs(ctx.model.value)), lines=5,
                               label="CLIP prompt pairs (one 'attribute: positive | negative' per line)",
                               visible=not builtin)
            space = gr.Radio(list(SPACE_CHOICES), value="w", label="Latent space",
                             info="w: the mapping output; w+: the same per ws row; s: StyleSpace; z: the input.")
            with gr.Row():
                samples = int_slider(SAMPLES[0], SAMPLES[1], value=SAMPLES[2], step=100, label="Samples",
                                     elem_id="attributes-samples",
                                     info="More samples: better boundaries, longer scoring (cached afterwards).")
                ratio = gr.Slider(0.01, 0.5, value=0.02, step=0.01, label="Ratio", elem_id="attributes-ratio",
                                  info="Top and bottom share of the scores the SVM trains on (InterFaceGAN: 2%).")
            train_btn = gr.Button("Score samples and train", variant="primary")
            gradient_btn = gr.Button("Or: directions from the judge's gradient (first-order pure, W)", size="sm")
            status = gr.Markdown("Press **Score samples and train**.")
            table = gr.Dataframe(_table([]), label="Boundaries", interactive=False, wrap=True)
        with gr.Column(scale=1):
            gr.Markdown("**2. Move the current image along a boundary.**")
            image = gr.Image(label="Current image with this edit", type="pil", format="png", interactive=False,
                             height=320, elem_classes="pixel-image", elem_id="attributes-image")
            # custom values allowed: the handlers check the names against the session's boundaries and say why
            attribute = gr.Dropdown([], label="Attribute", info="Positive strength: more of it.",
                                    allow_custom_value=True)
            strength = gr.Slider(-STRENGTH, STRENGTH, value=0, step=0.1, label="Strength (std)",
                                 elem_id="attributes-strength")
            hold = gr.Dropdown([], multiselect=True, label="Hold fixed", allow_custom_value=True,
                               info="Conditional manipulation: these attributes' normals are projected out, so the "
                                    "edit leaves them unchanged (the lecture's 'older faces get glasses' fix). "
                                    "Directions from the judge's gradient hold every other attribute already.")
            with gr.Row():
                apply_btn = gr.Button("Apply to the current image", variant="primary")
                verify_btn = gr.Button("Verify this direction")
            verify_n = int_slider(*VERIFY_SAMPLES[:2], value=VERIFY_SAMPLES[2], step=8, label="Verification samples")
            verdict = gr.Markdown("**Verify** pushes fresh samples along the direction and re-reads every attribute: "
                                  "a reliable boundary moves its own attribute steadily.")
            # no initial frame (an empty one has float columns, and the plot keeps colouring by a number: no
            # lines) and no height (it clips the legend)
            plot = gr.LinePlot(None, x="strength", y="change", color="attribute",
                               label=f"Change vs strength: the attribute and the {PLOTTED_OTHERS} others it moves most",
                               elem_id="attributes-verify-plot")
    with gr.Accordion("Entanglement: how similar the boundaries are", open=False):
        ent_btn = gr.Button("Show the cosine matrix")
        ent_img = gr.Image(label="Cosine between normals", type="pil", format="png", interactive=False)
    with gr.Accordion("Export / import boundaries", open=False):
        with gr.Row():
            export_btn = gr.Button("Export boundaries")
            import_btn = gr.UploadButton("Import boundaries (.safetensors)", file_types=[".safetensors"])
        export_file = gr.File(label="Boundaries (.safetensors, a direction file every tab can import)",
                              interactive=False)

    bounds = gr.State(None)
    session = gr.State(None)
    private = dict(api_visibility="private")
    edit_inputs = [ctx.model, ctx.current, bounds, session, attribute, strength, hold]
    render_kw = dict(trigger_mode="always_last", show_progress="hidden", concurrency_limit=4,
                     concurrency_id="attributes_render")
    train_outputs = [bounds, status, table, attribute, hold]

    train_btn.click(h.train, [ctx.model, judge, pairs, space, samples, ratio], train_outputs,
                    api_name="attributes_train", show_progress_on=status, **LONG_WORK)
    gradient_btn.click(h.gradient, [ctx.model, judge, pairs], train_outputs, api_name="attributes_gradient",
                       show_progress_on=status, **LONG_WORK)
    strength.input(h.render, edit_inputs, [image, session], api_name="attributes_render", **render_kw)
    gr.on([attribute.change, hold.change], h.render_if_current, edit_inputs, [image, session], **private,
          **render_kw)
    if ctx.tab is not None:
        ctx.tab.select(h.render_if_current, edit_inputs, [image, session], **private, **render_kw)
    apply_btn.click(h.apply, [ctx.model, ctx.current, bounds, attribute, strength, hold],
                    [*ctx.shown, strength, image], api_name="attributes_apply", show_progress="hidden")
    verify_btn.click(h.verify, [ctx.model, bounds, judge, pairs, attribute, hold, verify_n], [verdict, plot],
                     api_name="attributes_verify", show_progress_on=verdict, **LONG_WORK)
    ent_btn.click(h.entanglement, [ctx.model, bounds], ent_img, api_name="attributes_entanglement",
                  show_progress_on=ent_img)
    export_btn.click(h.export, [ctx.model, bounds], export_file, api_name="attributes_export",
                     show_progress="hidden")
    import_btn.upload(h.import_, [ctx.model, import_btn], train_outputs, api_name="attributes_import",
                      show_progress_on=status)
    ctx.model.change(h.model_changed, ctx.model, [pairs, judge, *train_outputs], **private)
    judge.change(lambda j: gr.Textbox(visible=j == JUDGES[1]), judge, pairs, **private)
    gr.on([judge.change, ctx.model.change], lambda m, j: shown_markdown(_clip_notice(m, j)), [ctx.model, judge],
          clip_md, show_progress="hidden", **private)
