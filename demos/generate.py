"""Tab "Generate": random samples from the selected model (seed, truncation psi, number of samples).

API (gradio_client):  client.predict(model_id, seed, truncation_psi, num_samples, api_name="/generate")
returns the image (one sample) or a grid (ceil(sqrt(N)) columns, no padding).
"""
from __future__ import annotations

import random

import gradio as gr
import torch

from demos.common import AppContext, check_float, check_int, get_generator, gpu, grid_image

TITLE = "Generate"

MAX_SEED = 2**32 - 1      # numpy's RandomState accepts seeds in [0, 2**32 - 1]
MAX_SAMPLES = 16
PSI_RANGE = (0.0, 1.5)    # 0: every sample is the average face; 1: no truncation


@gpu
def _synthesize(G, seed: int, truncation_psi: float, num_samples: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        z = G.sample_z(num_samples, seed)                                  # [N, z_dim]
        ws = G.mapping(z.to(device), truncation_psi=truncation_psi)        # [N, num_ws, w_dim]
        img = G.synthesis(ws, noise_mode="const")                          # [N, 3, H, W]
    return img.cpu(), ws.cpu()


def build(ctx: AppContext) -> None:
    """Create the tab's components and events inside the current gr.Blocks / gr.Tab."""

    def generate(model_id: str | None, seed, truncation_psi, num_samples):
        seed = check_int(seed, "Seed", 0, MAX_SEED)
        truncation_psi = check_float(truncation_psi, "Truncation psi", *PSI_RANGE)
        num_samples = check_int(num_samples, "Number of samples", 1, MAX_SAMPLES)
        G = get_generator(ctx, model_id)
        img, ws = _synthesize(G, seed, truncation_psi, num_samples, ctx.device)
        latent = {"model_id": model_id, "seed": seed, "truncation_psi": truncation_psi, "ws": ws}
        return grid_image(img), latent

    def default_psi(model_id: str | None):
        if model_id and model_id in ctx.zoo:
            return ctx.zoo.get_entry(model_id).defaults.truncation_psi
        return gr.skip()

    with gr.Row():
        with gr.Column(scale=1):
            with gr.Row():
                seed = gr.Number(value=0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED,
                                 info="Same seed, same samples.")
                dice = gr.Button("Random seed", scale=0)
            psi = gr.Slider(*PSI_RANGE, value=0.7, step=0.05, label="Truncation psi",
                            info="Lower: more typical samples, less variety (1 = no truncation).")
            count = gr.Slider(1, MAX_SAMPLES, value=1, step=1, label="Number of samples")
            run = gr.Button("Generate", variant="primary")
        with gr.Column(scale=2):
            image = gr.Image(label="Samples", type="pil", format="png", interactive=False, height=384,
                            elem_classes="pixel-image")

    inputs = [ctx.model, seed, psi, count]
    outputs = [image, ctx.latent]
    run.click(generate, inputs, outputs, api_name="generate")
    dice.click(lambda: random.randint(0, MAX_SEED), None, seed, api_name="random_seed").then(
        generate, inputs, outputs, api_name=False
    )
    ctx.model.change(default_psi, ctx.model, psi, api_name=False)
    if ctx.demo is not None:                 # a visitor sees a sample as soon as the page opens

        def on_open(model_id: str | None, seed, truncation_psi, num_samples):
            if not model_id:                 # nothing usable: the model note already says why
                return gr.skip(), gr.skip()
            return generate(model_id, seed, truncation_psi, num_samples)

        ctx.demo.load(on_open, inputs, outputs, api_name="generate_on_load")
