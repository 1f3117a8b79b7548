"""Benchmark the Invert & restore targets on faces64 with held-out renders (prints figures; no thresholds):

    python bench/bench_invert.py                      # every section, 8 renders, 1 CPU thread
    python bench/bench_invert.py --only opt,restore   # some sections: opt, encoder, hybrid, restore, edit
    python bench/bench_invert.py --json out.json      # the figures as JSON too
    python bench/bench_invert.py --make-examples      # (re)write the tab's examples in assets/examples/invert

Held-out renders: ``sample_factors(n, EVAL_SEED)``, a seed no training run of this repository uses (the GAN,
the judges and the encoders train on other seeds). Times are wall-clock on this machine's CPU with
``--threads`` torch threads; optimisation runs the n images as one batch and reports the time per image,
and ``opt`` also times one image alone.

| section | what | target |
|---|---|---|
| opt     | optimization W+ <= 300 steps (also W 300, W+ 100)        | >= 33 dB, <= 5 s per image |
| opt     | optimization S 300 steps                                 | >= W+ at the same steps |
| encoder | encoder W+ and S, one pass (same budget: S vs W+)        | better one >= 25 dB, <= 20 ms per image |
| hybrid  | encoder + 50 steps                                       | >= 31 dB |
| restore | sr4 / sr8 (W+ 300) vs bicubic                            | + 3.5 dB / + 5 dB |
| restore | colorize vs the grey input                               | + 7 dB |
| restore | inpaint, PSNR inside a 16x32 hole, vs mean fill          | + 12 dB |
| edit    | an attribute edit on inverted renders vs on samples      | effect within 20% |
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp import metrics  # noqa: E402
from interp.builtin.common import EVAL_SEED  # noqa: E402
from interp.builtin.faces import images_to_tensor, render, sample_factors  # noqa: E402
from interp.methods.invert import encode, hybrid, invert  # noqa: E402
from interp.methods.restore import baseline, degrade, restore  # noqa: E402

SECTIONS = ("opt", "encoder", "hybrid", "restore", "edit")
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples" / "invert"
FIGURES: dict[str, Any] = {}


def held_out(n: int) -> torch.Tensor:
    images, _ = render(sample_factors(n, EVAL_SEED), size=64)
    return images_to_tensor(images)                                        # [n, 3, 64, 64]


def mean(values) -> float:
    return float(statistics.fmean(float(v) for v in values))


def record(key: str, **values: Any) -> None:
    FIGURES[key] = values


def hole(size: int = 64) -> torch.Tensor:
    """The 16x32 hole (rows 36-51, columns 16-47: the mouth and chin area), 1 = missing."""
    m = torch.zeros(size, size)
    m[36:52, 16:48] = 1
    return m


def bench_opt(G, x: torch.Tensor, steps: int) -> dict[str, float]:
    print(f"[opt] optimisation from the mean latent, {len(x)} held-out renders in one batch")
    psnrs = {}
    for space, n_steps in (("w", steps), ("w+", 100), ("w+", steps), ("s", 100), ("s", steps)):
        t0 = time.perf_counter()
        res = invert(G, x, space, n_steps, model_id="faces64")
        per_image = (time.perf_counter() - t0) / len(x)
        p = mean(r.metrics["psnr"] for r in res)
        psnrs[(space, n_steps)] = p
        extra = f", ws-only {mean(r.metrics['psnr_ws_only'] for r in res):.2f} dB" if space == "s" else ""
        print(f"    {space:2s} {n_steps:4d} steps: PSNR {p:6.2f} dB, SSIM {mean(r.metrics['ssim'] for r in res):.3f}, "
              f"{per_image:5.2f} s per image{extra}")
        record(f"opt_{space}_{n_steps}", psnr=p, ssim=mean(r.metrics["ssim"] for r in res), seconds_per_image=per_image,
               perceptual=res[0].perceptual)
    t0 = time.perf_counter()
    one = invert(G, x[:1], "w+", steps, model_id="faces64")
    alone = time.perf_counter() - t0
    print(f"    one image alone, w+ {steps} steps: {alone:.2f} s (PSNR {one.metrics['psnr']:.2f} dB)")
    print(f"    perceptual term: {one.perceptual}")
    record("opt_single_image", seconds=alone, psnr=one.metrics["psnr"])
    print(f"    -> W+ {steps}: {psnrs[('w+', steps)]:.2f} dB (target >= 33); S {steps} - W+ {steps}: "
          f"{psnrs[('s', steps)] - psnrs[('w+', steps)]:+.2f} dB (target >= 0)")
    return {"w+": psnrs[("w+", steps)]}


def bench_encoders(G, x: torch.Tensor, repeat: int = 20) -> None:
    from interp.builtin.encoder import load_encoder

    print("[encoder] one forward pass, same budget for both (see assets/builtin/encoder_*.json)")
    for space in ("w+", "s"):
        try:
            E = load_encoder(space)
        except FileNotFoundError as exc:
            print(f"    {space}: {exc}")
            continue
        res = encode(G, E, x, model_id="faces64")
        times_enc, times_all = [], []
        for i in range(repeat):
            img = x[i % len(x):i % len(x) + 1]
            t0 = time.perf_counter()
            with torch.no_grad():
                E(img)
            times_enc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            encode(G, E, img, model_id="faces64", perceptual=None)
            times_all.append(time.perf_counter() - t0)
        p = mean(r.metrics["psnr"] for r in res)
        ms_enc, ms_all = statistics.median(times_enc) * 1000, statistics.median(times_all) * 1000
        print(f"    {space:2s}: PSNR {p:6.2f} dB, SSIM {mean(r.metrics['ssim'] for r in res):.3f}; encoder "
              f"{ms_enc:5.1f} ms, encode + synthesis + metrics {ms_all:5.1f} ms per image (median of {repeat})")
        record(f"encoder_{space}", psnr=p, encoder_ms=ms_enc, encode_ms=ms_all)
    if "encoder_w+" in FIGURES and "encoder_s" in FIGURES:
        d = FIGURES["encoder_s"]["psnr"] - FIGURES["encoder_w+"]["psnr"]
        print(f"    -> S - W+ with equal budgets: {d:+.2f} dB: the lecture's claim (S is the better encoder target) "
              f"{'holds' if d >= 0 else 'does not hold'} here")


def bench_hybrid(G, x: torch.Tensor, steps: int = 50) -> None:
    from interp.builtin.encoder import load_encoder

    print(f"[hybrid] encoder, then {steps} optimisation steps in its space")
    for space in ("w+", "s"):
        try:
            E = load_encoder(space)
        except FileNotFoundError as exc:
            print(f"    {space}: {exc}")
            continue
        t0 = time.perf_counter()
        res = hybrid(G, E, x, steps, model_id="faces64")
        per_image = (time.perf_counter() - t0) / len(x)
        p = mean(r.metrics["psnr"] for r in res)
        print(f"    {space:2s} + {steps}: PSNR {p:6.2f} dB, {per_image:5.2f} s per image (target >= 31 dB)")
        record(f"hybrid_{space}_{steps}", psnr=p, seconds_per_image=per_image)


def bench_restore(G, x: torch.Tensor, steps: int) -> None:
    print(f"[restore] W+ {steps} steps with the degradation inside the loss, vs the simple baseline")
    targets = {"sr4": 3.5, "sr8": 5.0, "colorize": 7.0, "inpaint": 12.0}
    for task in ("sr4", "sr8", "colorize", "inpaint"):
        mask = hole() if task == "inpaint" else None
        observed = degrade(x, task, mask)
        t0 = time.perf_counter()
        res = restore(G, observed, task, mask, steps=steps, model_id="faces64", truth=x)
        per_image = (time.perf_counter() - t0) / len(x)
        base = baseline(observed, task, mask, 64)
        if task == "inpaint":
            m = hole()[None, None]
            p, b = mean(r.metrics["psnr_mask"] for r in res), mean(metrics.psnr(base, x, mask=m))
            what = "inside the hole"
        else:
            p, b = mean(r.metrics["psnr"] for r in res), mean(metrics.psnr(base, x))
            what = "whole image"
        name = {"sr4": "bicubic", "sr8": "bicubic", "colorize": "grey input", "inpaint": "mean fill"}[task]
        print(f"    {task:8s}: {p:6.2f} dB vs {name} {b:6.2f} dB ({what}): {p - b:+.2f} dB (target "
              f"+{targets[task]:.1f}); consistency {mean(r.metrics['consistency_psnr'] for r in res):.2f} dB; "
              f"{per_image:.2f} s per image")
        record(f"restore_{task}", psnr=p, baseline=b, gain=p - b, target_gain=targets[task], seconds_per_image=per_image)


def bench_edit(G, x: torch.Tensor, steps: int, attribute: str = "age", strength: float = 2.0) -> None:
    from interp.builtin import load_predictor
    from interp.edit import Latent, render as render_latent
    from interp.methods import interfacegan as ifg

    print(f"[edit] InterFaceGAN '{attribute}' boundary (2,000 samples), +{strength} std on every row")
    samples = ifg.score_samples(G, ifg.PredictorScorer(), 2000, seed=0, space="w")
    boundary = ifg.train_boundary(samples, attribute, ratio=0.2)
    edit = boundary.edit(strength)
    P = load_predictor()
    inverted = [r.latent for r in invert(G, x, "w+", steps, model_id="faces64")]
    generated = [Latent.from_seed(G, "faces64", 1000 + i, 0.7) for i in range(len(x))]

    def effect(latents) -> float:
        with torch.no_grad():
            before = torch.cat([render_latent(G, lat) for lat in latents])
            after = torch.cat([render_latent(G, lat, [edit]) for lat in latents])
            return float((P(after)[attribute] - P(before)[attribute]).mean())

    e_inv, e_gen = effect(inverted), effect(generated)
    print(f"    predicted {attribute} change: inverted renders {e_inv:+.3f}, generated samples {e_gen:+.3f}; "
          f"ratio {e_inv / e_gen:.2f} (target 0.8 .. 1.2)")
    record("edit", attribute=attribute, inverted=e_inv, generated=e_gen, ratio=e_inv / e_gen)


def make_examples(G) -> None:
    """Held-out renders (seed EVAL_SEED + 1, not the benchmark's images), degraded versions, a photo-like one."""
    from PIL import Image, ImageFilter

    EXAMPLES.mkdir(parents=True, exist_ok=True)
    images, _ = render(sample_factors(3, EVAL_SEED + 1), size=64)
    big, _ = render(sample_factors(1, EVAL_SEED + 2), size=256)
    for i, im in enumerate(images):
        Image.fromarray(im).save(EXAMPLES / f"render_{i}.png")
    x = images_to_tensor(images)
    from interp.imaging import tensor_to_pil

    tensor_to_pil(degrade(x[:1], "colorize")).save(EXAMPLES / "render_0_grey.png")
    tensor_to_pil(degrade(x[1:2], "sr4")).save(EXAMPLES / "render_1_16px.png")
    tensor_to_pil(degrade(x[2:3], "sr8")).save(EXAMPLES / "render_2_8px.png")
    photo = Image.fromarray(big[0]).filter(ImageFilter.GaussianBlur(1.2))
    noise = torch.randn(256, 256, 3, generator=torch.Generator().manual_seed(0)) * 9
    arr = (torch.from_numpy(__import__("numpy").asarray(photo)).float() + noise).clamp(0, 255).byte().numpy()
    canvas = Image.new("RGB", (320, 256), (70, 64, 58))                     # wider than tall, off-centre face
    canvas.paste(Image.fromarray(arr), (40, 0))
    canvas.save(EXAMPLES / "photo_like.jpg", quality=70)
    print(f"wrote {len(list(EXAMPLES.iterdir()))} examples to {EXAMPLES}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=8, help="held-out renders (default 8)")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--make-examples", action="store_true", help="write the tab's examples and exit")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        p.error(f"unknown sections {unknown}; allowed: {', '.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    from interp.zoo import load_generator

    G = load_generator("faces64")
    if args.make_examples:
        make_examples(G)
        return
    x = held_out(args.n)
    print(f"faces64, {args.n} held-out renders (seed {EVAL_SEED}), {args.threads} thread(s)")
    if "opt" in only:
        bench_opt(G, x, args.steps)
    if "encoder" in only:
        bench_encoders(G, x)
    if "hybrid" in only:
        bench_hybrid(G, x)
    if "restore" in only:
        bench_restore(G, x, args.steps)
    if "edit" in only:
        bench_edit(G, x, args.steps)
    if args.json:
        Path(args.json).write_text(json.dumps(FIGURES, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
