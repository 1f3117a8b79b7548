"""Tab "Generate": random samples from the selected model; one of them becomes the current image.

API (gradio_client):

    client.predict(model_id, seed, truncation_psi, num_samples, api_name="/generate")
        # -> samples (one image or a grid, ceil(sqrt(N)) columns), current image, recipe summary;
        #    sample 1 becomes the session's current image
    client.predict(model_id, seed, truncation_psi, num_samples, sample, api_name="/use_sample")
        # -> current image, recipe summary: sample `sample` (1..N) becomes the current image
"""
from __future__ import annotations

import random

import gradio as gr
import torch

from demos.common import AppContext, check_float, check_int, get_generator, gpu, int_slider
from demos.current import publish
from interp.edit import Latent, Recipe
from interp.imaging import grid_image

TITLE = "Generate"

MAX_SEED = 2**32 - 1      # numpy's RandomState accepts seeds in [0, 2**32 - 1]
MAX_SAMPLES = 16
PSI_RANGE = (0.0, 1.5)    # 0: every sample is the average face; 1: no truncation


@gpu
def _synthesize(G, seed: int, truncation_psi: float, num_samples: int, device: str) -> torch.Tensor:
    with torch.no_grad():
        z = G.sample_z(num_samples, seed)                                  # [N, z_dim]
        ws = G.mapping(z.to(device), truncation_psi=truncation_psi)        # [N, num_ws, w_dim]
        return G.synthesis(ws, noise_mode="const").cpu()                   # [N, 3, H, W]


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""

    def checked(seed, truncation_psi, num_samples):
        return (check_int(seed, "Seed", 0, MAX_SEED), check_float(truncation_psi, "Truncation psi", *PSI_RANGE),
                check_int(num_samples, "Number of samples", 1, MAX_SAMPLES))

    def generate(model_id: str | None, seed: int, truncation_psi: float, num_samples: int):
        seed, truncation_psi, num_samples = checked(seed, truncation_psi, num_samples)
        G = get_generator(ctx, model_id)
        img = _synthesize(G, seed, truncation_psi, num_samples, ctx.device)
        recipe = Recipe(Latent.from_seed(G, model_id, seed, truncation_psi, index=0, n=num_samples))
        return grid_image(img), *publish(G, recipe)

    def use_sample(model_id: str | None, seed: int, truncation_psi: float, num_samples: int, sample: int):
        seed, truncation_psi, num_samples = checked(seed, truncation_psi, num_samples)
        index = check_int(sample, "Sample", 1, num_samples) - 1
        G = get_generator(ctx, model_id)
        return publish(G, Recipe(Latent.from_seed(G, model_id, seed, truncation_psi, index=index, n=num_samples)))

    def default_psi(model_id: str | None):
        if model_id and model_id in ctx.zoo:
            return ctx.zoo.get_entry(model_id).defaults.truncation_psi
        return gr.skip()

    def on_open(model_id: str | None, seed, truncation_psi, num_samples):
        if not model_id:                 # nothing usable: the model note already says why
            return (gr.skip(),) * 4
        return generate(model_id, seed, truncation_psi, num_samples)

    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED,
                                 info="Same seed, same samples.")
                dice = gr.Button("Random seed", scale=0)
            psi = gr.Slider(*PSI_RANGE, value=0.7, step=0.05, label="Truncation psi",
                            info="Lower: more typical samples, less variety (1 = no truncation).")
            count = int_slider(1, MAX_SAMPLES, value=1, step=1, label="Number of samples")
            run = gr.Button("Generate", variant="primary")
            gr.Markdown("Generating makes sample 1 the **current image** (shown above every tab). "
                        "To edit another sample, pick its number:")
            with gr.Row():
                sample = gr.Number(value=1, label="Sample (left to right, top to bottom)", precision=0, minimum=1,
                                   maximum=MAX_SAMPLES)
                use_btn = gr.Button("Make it the current image", scale=0)
            to_explore = gr.Button("Edit the current image in Explore")
        with gr.Column(scale=2):
            image = gr.Image(label="Samples", type="pil", format="png", interactive=False, height=384,
                             elem_classes="pixel-image")

    inputs = [ctx.model, seed, psi, count]
    outputs = [image, *ctx.shown]
    run.click(generate, inputs, outputs, api_name="generate", show_progress_on=image)
    dice.click(lambda: random.randint(0, MAX_SEED), None, seed, api_visibility="private").then(
        generate, inputs, outputs, api_visibility="private", show_progress_on=image)
    use_btn.click(use_sample, [*inputs, sample], ctx.shown, api_name="use_sample", show_progress="hidden")
    if ctx.tabs is not None:
        to_explore.click(lambda: gr.Tabs(selected="explore"), None, ctx.tabs, api_visibility="private")
    ctx.model.change(default_psi, ctx.model, psi, api_visibility="private").then(
        on_open, inputs, outputs, api_visibility="private", show_progress_on=image)
    if ctx.demo is not None:                 # a visitor sees a sample as soon as the page opens
        ctx.demo.load(on_open, inputs, outputs, api_visibility="private", show_progress_on=image)
