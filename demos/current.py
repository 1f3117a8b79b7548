"""The current image, above every tab: the image, its recipe (source + edit stack), undo, clear, save, open.

Every tab starts from the session's current image (``ctx.current``, an ``interp.edit.Recipe``) and
shows its own edit on top of it; "Apply" pushes that edit onto the stack and returns
``publish(G, recipe)`` into ``ctx.shown`` so this panel follows.

API (gradio_client; the current image lives in the client's session):

    client.predict(model_id, api_name="/current_image")              # -> image, summary (Markdown)
    client.predict(model_id, api_name="/recipe_undo")                # -> image, summary
    client.predict(model_id, api_name="/recipe_clear")               # -> image, summary
    client.predict(api_name="/recipe_save")                          # -> .safetensors recipe file
    client.predict(model_id, handle_file(path), api_name="/recipe_open")   # re-create a saved image
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import gradio as gr
from PIL import Image

from demos.common import AppContext, export_path, get_generator, gpu, user_error
from interp import diskcache
from interp.edit import Recipe, RecipeError
from interp.imaging import tensor_to_pil
from interp.models.stylegan2 import Generator

NO_IMAGE = "No current image yet: generate one in the **Generate** tab (or open a saved recipe)."


@gpu
def _render(G: Generator, recipe: Recipe) -> Image.Image:
    return tensor_to_pil(recipe.render(G))


def summary_markdown(recipe: Recipe | None) -> str:
    if recipe is None:
        return NO_IMAGE
    return "\n\n".join(recipe.summary().splitlines())


def publish(G: Generator, recipe: Recipe) -> tuple[Recipe, Image.Image, str]:
    """The values for ``ctx.shown``: the new recipe, its image and its summary."""
    try:
        return recipe, _render(G, recipe), summary_markdown(recipe)
    except ValueError as exc:
        raise user_error(str(exc)) from exc


def current_recipe(ctx: AppContext, recipe: Any, model_id: str | None) -> tuple[Generator, Recipe]:
    """The generator and the session's current recipe, checked against the selected model."""
    if not isinstance(recipe, Recipe):
        raise user_error("There is no current image yet: press Generate in the Generate tab first "
                         "(or open a saved recipe above).")
    if recipe.model_id != model_id:
        raise user_error(f"The current image was made with model {recipe.model_id!r}, but {model_id!r} is "
                         "selected: select that model again, or generate a new image with this one.")
    G = get_generator(ctx, model_id)
    try:
        recipe.check_model(diskcache.model_hash(G))
    except RecipeError as exc:
        raise user_error(str(exc)) from exc
    return G, recipe


def build(ctx: AppContext) -> list[Any]:
    """Create the panel; returns ``[current, image, summary]`` (the outputs that show the current image)."""

    def show(model_id, recipe):
        if recipe is None:
            return None, NO_IMAGE
        G, recipe = current_recipe(ctx, recipe, model_id)
        return publish(G, recipe)[1:]

    def undo(model_id, recipe):
        G, recipe = current_recipe(ctx, recipe, model_id)
        if not recipe.edits:
            raise user_error("There is no edit to undo.")
        return publish(G, recipe.undo())

    def clear(model_id, recipe):
        G, recipe = current_recipe(ctx, recipe, model_id)
        return publish(G, recipe.cleared())

    def save(recipe):
        if not isinstance(recipe, Recipe):
            raise user_error("There is nothing to save yet: generate an image first.")
        return str(recipe.save(export_path(f"{recipe.model_id}-recipe.safetensors")))

    def open_recipe(model_id, file):
        if file is None:
            raise user_error("Choose a recipe file (.safetensors, saved with 'Save recipe').")
        path = file if isinstance(file, str) else getattr(file, "name", None) or file.get("path")
        try:
            recipe = Recipe.load(path)
        except RecipeError as exc:
            raise user_error(f"This recipe cannot be used: {exc}") from exc
        G = get_generator(ctx, model_id)
        if recipe.latent.model_hash != diskcache.model_hash(G):
            raise user_error(f"This recipe was made with model {recipe.model_id!r} (weights "
                             f"{recipe.latent.model_hash}), not with the selected {model_id!r}: select that model "
                             "in the model list first.")
        if recipe.model_id != model_id:                  # the same weights under another id: follow the picker
            recipe = replace(recipe, latent=replace(recipe.latent, model_id=model_id))
        return publish(G, recipe)

    with gr.Accordion("Current image: every tab edits it; the edits stack", open=True):
        with gr.Row():
            image = gr.Image(label="Current image", type="pil", format="png", interactive=False, height=192,
                             elem_id="current-image",
                             elem_classes="pixel-image", scale=1)
            with gr.Column(scale=3):
                summary = gr.Markdown(NO_IMAGE, label="Recipe")
                with gr.Row():
                    undo_btn = gr.Button("Undo last edit", size="sm")
                    clear_btn = gr.Button("Clear edits", size="sm")
                    save_btn = gr.Button("Save recipe", size="sm")
                    open_btn = gr.UploadButton("Open recipe", file_types=[".safetensors"], size="sm")
                recipe_file = gr.File(label="Recipe (.safetensors): re-creates this image", interactive=False,
                                      visible=False)
    shown = [ctx.current, image, summary]
    show_btn = gr.Button(visible=False)
    # A failed event marks its outputs with an "Error" pill until their next update; these events
    # are quick, so they show no progress there and a mistake is only a toast.
    quiet = dict(show_progress="hidden")
    show_btn.click(show, [ctx.model, ctx.current], [image, summary], api_name="current_image", **quiet)
    undo_btn.click(undo, [ctx.model, ctx.current], shown, api_name="recipe_undo", **quiet)
    clear_btn.click(clear, [ctx.model, ctx.current], shown, api_name="recipe_clear", **quiet)
    save_btn.click(save, ctx.current, recipe_file, api_name="recipe_save", **quiet).success(
        lambda: gr.File(visible=True), None, recipe_file, api_visibility="private")
    open_btn.upload(open_recipe, [ctx.model, open_btn], shown, api_name="recipe_open", **quiet)
    # A saved file re-creates the image of its moment: it goes away once the recipe changes.
    summary.change(lambda: gr.File(value=None, visible=False), None, recipe_file, api_visibility="private", **quiet)
    return shown
