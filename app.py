"""Interpretable GANs: a Gradio suite for steering StyleGAN2 with understandable controls.

    python app.py                                   # built-in model, http://127.0.0.1:7860
    python app.py --models /data/network.pkl        # add your own checkpoint(s)
    python app.py --models "hf://DragGan/DragGan-Models/stylegan2-lhq-256x256.pkl" --device cuda
    python app.py --host 0.0.0.0 --port 8080 --share
    python app.py --no-preload                      # do not download the registry's preload models

Flags: --host --port --share --device (auto|cpu|cuda|cuda:N|mps) --models (comma/semicolon
separated local paths or hf://owner/repo/path/file.pkl[@revision]; also read from the
INTERP_MODELS environment variable) --queue-size (pending requests before new ones are refused)
--max-file-size (largest upload, e.g. 20mb; larger ones are refused) --no-preload (skip the
background download of the registry entries marked "preload", which otherwise starts at once;
the page shows which of them are ready). INTERP_TRIM_MEMORY_S: seconds between handing freed
memory back to the OS (glibc malloc_trim; default 10, 0: off). INTERP_RENDER_CACHE_MB: memory all
visitors' incremental-render caches may hold together (default 1024; the least recently used are emptied).
INTERP_RENDER_PRECISION: float32 (default), bfloat16 or auto: the precision of the tabs' interactive renders
(bfloat16 is 1.6-3.9x faster for large models on CPUs with AMX; README "Speed").

The app starts offline even when no checkpoint exists; the model picker then says which
model is missing and how to add one.  Tabs live in demos/ (registry: demos.TABS).

Faster CPU inference (about 1.6x here): glibc's allocator otherwise returns the large
activation buffers to the OS after every layer.  Start the app with

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python app.py
"""
from __future__ import annotations

import argparse
import dataclasses
import ctypes
import logging
import os
import platform
import re
import threading
from typing import Sequence

import demos.common  # noqa: F401  (imports `spaces` before torch touches CUDA, on ZeroGPU)
import gradio as gr

import demos
import demos.current
from demos.common import (AppContext, guard_number_inputs, install_atomic_cache_writes, model_choices,
                          preload_markdown, preload_pending, public_text)
from interp import devices
from interp.edit import preview_precision, render_cache_budget
from interp.zoo import REGISTRY_PATH, Zoo

DEFAULT_QUEUE_SIZE = 32
# Workers per event (the queue's default concurrency limit): one visitor's slow call of an endpoint (a model's
# first download, a cold precomputation) holds one of them, the others keep serving that endpoint. The long
# jobs share their own, smaller group: demos.common.LONG_WORK. README "Concurrency" explains the choice.
FAST_CONCURRENCY = 4
DEFAULT_MAX_FILE_SIZE = "20mb"   # the largest upload (images, recipes, direction files); larger ones are refused
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
# Gradio's cache of uploaded and returned files: every 15 minutes, files older than an hour are deleted
# (an open page keeps working for an hour; a long-lived public Space does not fill its disk).
DELETE_CACHE = (15 * 60, 60 * 60)

INTRO = """# Interpretable GANs
Steer a pretrained StyleGAN2 with controls a person understands. Every control is also an API:
see "Use via API" at the bottom of the page."""

# Small GAN outputs (64x64) are shown enlarged with visible pixels instead of as thumbnails.
CSS = (".pixel-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }\n"
       ".model-about code { white-space: normal; overflow-wrap: anywhere; }")   # a long source wraps, not clipped


def resolve_device(device: str) -> str:
    """``--device`` through :func:`interp.devices.resolve_device`; a bad value exits with its message."""
    try:
        return devices.resolve_device(device)
    except ValueError as exc:
        raise SystemExit(f"--device: {exc}") from None


def build_zoo(models: str | None = None, registry: str | os.PathLike = REGISTRY_PATH) -> Zoo:
    """The registry plus the user's models from INTERP_MODELS and --models."""
    zoo = Zoo.from_file(registry)
    for spec in (os.environ.get("INTERP_MODELS"), models):
        try:
            zoo.add_user_models(spec)
        except ValueError as exc:
            raise SystemExit(f"Cannot add models {spec!r}: {exc}") from None
    return zoo


def build_demo(zoo: Zoo, device: str = "cpu") -> gr.Blocks:
    """Assemble the Blocks: header, model picker, one tab per module in demos.TABS."""
    picked = model_choices(zoo)
    with gr.Blocks(title="Interpretable GANs", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(INTRO)
        with gr.Row():
            model = gr.Dropdown(
                choices=picked.choices,
                value=picked.default,
                label="Model",
                info="Checkpoints from the Hugging Face Hub download on first use and are cached.",
                interactive=bool(picked.choices),
                scale=2,
            )
            about = gr.Markdown(_describe(zoo, picked.default), elem_classes="model-about")
        preload = gr.Markdown(preload_markdown(zoo), visible=bool(zoo.preload_status()))
        preload_timer = gr.Timer(2.0, active=False)  # ticks while a start-up download runs

        def show_preload() -> tuple[str, gr.Timer]:
            return preload_markdown(zoo), gr.Timer(active=preload_pending(zoo))

        for event in (demo.load, preload_timer.tick):  # plumbing, not in the API
            event(show_preload, None, [preload, preload_timer], api_visibility="private", queue=False)
        note = picked.note_markdown()
        if note:
            with gr.Accordion("Models that cannot be used", open=not picked.choices):
                gr.Markdown(note)
        model.change(lambda m: _describe(zoo, m), model, about, api_visibility="private")
        ctx = AppContext(zoo=zoo, device=device, model=model, current=gr.State(None), shown=[], demo=demo)
        ctx.shown = demos.current.build(ctx)          # the current image and its recipe, above every tab
        with gr.Tabs() as tabs:
            ctx.tabs = tabs
            for tab in demos.TABS:
                with gr.Tab(tab.TITLE, id=tab.__name__.rsplit(".", 1)[-1]) as gr_tab:
                    tab.build(dataclasses.replace(ctx, tab=gr_tab))
    install_atomic_cache_writes()          # an image returned twice is never served half-written
    return guard_number_inputs(demo)       # text, NaN, inf, fractions of whole numbers: a sentence, not a crash


def _describe(zoo: Zoo, model_id: str | None) -> str:
    """The model's name, format, source and description, as a visitor may see them (no server paths)."""
    if not model_id or model_id not in zoo:
        return "No model selected."
    entry = zoo.get_entry(model_id)
    facts = [f"{entry.resolution}x{entry.resolution}"] if entry.resolution else []
    facts += [f"`{entry.format}`", f"source `{entry.source}`"]    # own line: a long source wraps on its own
    return public_text(f"**{entry.name}**  \n{' · '.join(facts)}  \n{entry.description}")


def parse_file_size(text: str) -> int:
    """``"20mb"`` -> bytes: a whole number with an optional unit b, kb, mb or gb (powers of 1024, as Gradio)."""
    match = re.fullmatch(r"\s*(\d+)\s*([a-z]*)\s*", str(text).lower())
    if not match or match.group(2) not in ("", *_SIZE_UNITS) or int(match.group(1)) < 1:
        raise ValueError(f"a file size is a positive whole number with an optional unit b, kb, mb or gb "
                         f"(e.g. 20mb), got {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2) or "b"]


def start_memory_trim(every_s: float | None = None) -> threading.Thread | None:
    """Every ``every_s`` seconds (default ``INTERP_TRIM_MEMORY_S`` or 10; 0: never) hand freed heap memory back to
    the OS with glibc's ``malloc_trim``; returns the daemon thread, or None (off, or not glibc).

    glibc keeps memory freed by the many worker threads in their arenas: under load the server's resident
    memory then creeps up although what it holds does not (bench/bench_sessions.py: +20 % over 2,400 calls,
    flat once trimmed). Trimming takes milliseconds and leaves the allocator's speed settings alone.
    """
    if every_s is None:
        raw = os.environ.get("INTERP_TRIM_MEMORY_S", "10")
        try:
            every_s = float(raw)
        except ValueError:
            raise SystemExit(f"INTERP_TRIM_MEMORY_S must be a number of seconds (0: off), got {raw!r}") from None
    if not every_s > 0 or platform.libc_ver()[0] != "glibc":
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            trim(0)

    thread = threading.Thread(target=run, name="interp-malloc-trim", daemon=True)
    thread.stop = stop                                                    # type: ignore[attr-defined]
    thread.start()
    return thread


def configure_queue(demo: gr.Blocks, queue_size: int = DEFAULT_QUEUE_SIZE) -> gr.Blocks:
    """The queue of a public app: ``queue_size`` pending requests at most (more are refused with "Queue is full"),
    FAST_CONCURRENCY workers per event, the long jobs in their own group (demos.common.LONG_WORK)."""
    return demo.queue(max_size=queue_size, default_concurrency_limit=FAST_CONCURRENCY)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Interpretable GANs: a Gradio suite for StyleGAN2.")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=None, help="port (default 7860, or GRADIO_SERVER_PORT)")
    p.add_argument("--share", action="store_true", help="also create a public gradio.live share link")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--models", default=None,
                   help="extra checkpoints: local .pkl/.pt/.safetensors paths or hf://owner/repo/file.pkl[@rev], "
                        "separated by commas or semicolons (added to INTERP_MODELS)")
    p.add_argument("--queue-size", type=int, default=DEFAULT_QUEUE_SIZE,
                   help=f"pending requests before new ones are refused (default {DEFAULT_QUEUE_SIZE})")
    p.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                   help=f"largest upload, e.g. 500kb, 20mb, 1gb; larger files are refused (default {DEFAULT_MAX_FILE_SIZE})")
    p.add_argument("--no-preload", action="store_true",
                   help="do not download the registry entries marked 'preload' from the Hub in the background")
    args = p.parse_args(argv)
    if args.queue_size < 1:
        p.error("--queue-size must be at least 1")
    if args.port is not None and not 0 < args.port < 65536:
        p.error("--port must be between 1 and 65535")
    try:
        args.max_file_size = parse_file_size(args.max_file_size)
    except ValueError as exc:
        p.error(f"--max-file-size: {exc}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    zoo = build_zoo(args.models)
    for model_id, why in zoo.check_user_models(device).items():    # the page opens on a model that works
        logging.getLogger("interp.app").warning("model %r is not offered: %s", model_id, why)
    if not args.no_preload:
        zoo.start_preload()  # a daemon thread; the page shows which models are ready
    demo = build_demo(zoo, device)
    configure_queue(demo, args.queue_size)
    try:
        render_cache_budget()
        preview_precision()
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    start_memory_trim()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=args.max_file_size, theme=gr.themes.Soft(), css=CSS)


if __name__ == "__main__":
    main()
