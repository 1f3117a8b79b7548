"""Train an encoder for the built-in generator, predicting W+ or StyleSpace S from an image.

    python -m interp.builtin.train_encoder --make-data --data /root/interp-runs/encoder/pairs.pt   # once
    python -m interp.builtin.train_encoder --space w+ --run /root/interp-runs/encoder/wplus \
        --data /root/interp-runs/encoder/pairs.pt
    python -m interp.builtin.train_encoder --space s  --run /root/interp-runs/encoder/s \
        --data /root/interp-runs/encoder/pairs.pt
    python -m interp.builtin.train_encoder --space w+ --run /root/interp-runs/encoder/wplus --export
        # -> assets/builtin/encoder_wplus.safetensors + .json (or --out STEM)

Resumable: the run folder holds ``state.pt`` (encoder, optimiser, step), ``log.jsonl`` (losses, speed,
validation PSNR); running the same command again continues where it stopped (``--minutes`` limits one
session's wall time). Every step's data is seeded by (seed, step), so an interrupted and resumed run is
the same as an uninterrupted one, and two runs with the same seed see exactly the same images: the
"w+" and "s" encoders get equal budgets (steps, batch, data, losses, network; only the output layer's
size differs) and their comparison answers the lecture's question.

Two stages, sized for a CPU (the generator's backward pass is what costs):

1. ``--code-steps`` steps of code regression on generator samples computed once (``--make-data``:
   truncation psi ~ U(0.5, 1), style mixing half of the time; the codes are known), loss = the code's
   squared error in units of its spread. No generator in the loop: cheap, and both encoders share the data.
2. the remaining steps through the frozen generator: three quarters of each batch are fresh generator
   samples (image + code losses), one quarter renders of the synthetic-faces domain (the "real photos"
   the encoder will meet; image losses only): MSE + 0.2 x the LPIPS-style distance on the built-in
   predictor's features + 0.05 x the code loss.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from interp import diskcache
from interp.builtin.common import EVAL_SEED, TRAIN_SEED_BASE, save_model
from interp.builtin.encoder import ENCODER_SPACES, Encoder, EncoderConfig, encoder_stem
from interp.builtin.faces import images_to_tensor, render, sample_factors
from interp.edit import split_styles, style_sizes
from interp.metrics import perceptual, psnr
from interp.models.stylegan2 import Generator

VAL_SEED = EVAL_SEED + 1          # validation renders (the benchmark's held-out set is EVAL_SEED)
W_PERCEPTUAL = 0.2
W_CODE = 0.05
RENDER_FRACTION = 0.25
PSI_RANGE = (0.5, 1.0)
STYLE_MIXING = 0.5


def flat_styles(G: Generator, ws: torch.Tensor) -> torch.Tensor:
    """ws [N, num_ws, w_dim] -> the flat S code [N, S] (every style layer, ``G.style_layers`` order)."""
    return torch.cat(list(G.styles(ws).values()), dim=1)


def code_of(G: Generator, space: str, ws: torch.Tensor) -> torch.Tensor:
    return ws.flatten(1) if space == "w+" else flat_styles(G, ws)


def image_of(G: Generator, space: str, code: torch.Tensor) -> torch.Tensor:
    if space == "w+":
        return G.synthesis(code.reshape(code.shape[0], G.num_ws, G.w_dim))
    return G.synthesis_from_styles(split_styles(G, code))


@torch.no_grad()
def code_statistics(G: Generator, space: str, n: int = 10000, seed: int = 123) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std [out_dim] of the code over generator samples (psi 1, no mixing)."""
    z = G.sample_z(n, seed)
    codes = torch.cat([code_of(G, space, G.mapping(chunk)) for chunk in z.split(1000)])
    return codes.mean(0), codes.std(0).clamp_min(1e-4)


def sample_batch(G: Generator, space: str, n: int, seed: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generator samples of one step: (images [n, 3, H, W], codes [n, out_dim]); seeded by (seed, step)."""
    gen = torch.Generator().manual_seed(seed * 2**40 + step * 8 + 1)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=gen))
        psi = torch.empty(n, 1, 1).uniform_(*PSI_RANGE, generator=gen)
        ws = G.mapping.w_avg.lerp(ws, psi)
        if torch.rand([], generator=gen).item() < STYLE_MIXING:
            cutoff = int(torch.randint(1, G.num_ws, [], generator=gen))
            other = G.mapping.w_avg.lerp(G.mapping(torch.randn(n, G.z_dim, generator=gen)), psi)
            ws = torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)
        return G.synthesis(ws), code_of(G, space, ws)


@torch.no_grad()
def make_data(G: Generator, path: Path, n: int, seed: int = 7, chunk: int = 256) -> None:
    """``n`` generator samples (ws float16, images uint8) for stage 1, written to ``path``."""
    ws_all, img_all = [], []
    for start in range(0, n, chunk):
        images, codes = sample_batch(G, "w+", min(chunk, n - start), seed, start // chunk)
        ws_all.append(codes.reshape(-1, G.num_ws, G.w_dim).half())
        img_all.append(((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
        print(f"pairs {start + len(codes)}/{n}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"ws": torch.cat(ws_all), "images": torch.cat(img_all), "model_hash": diskcache.model_hash(G)}, tmp)
    os.replace(tmp, path)


def render_batch(n: int, seed: int) -> torch.Tensor:
    images, _ = render(sample_factors(n, seed), size=64)
    return images_to_tensor(images)                                         # [n, 3, 64, 64]


def load_model_generator() -> tuple[Generator, str]:
    from interp.zoo import load_generator

    G = load_generator("faces64")
    return G, diskcache.model_hash(G)


def make_encoder(G: Generator, space: str, model_hash: str) -> Encoder:
    out_dim = G.num_ws * G.w_dim if space == "w+" else sum(style_sizes(G))
    cfg = EncoderConfig(space=space, out_dim=out_dim, num_ws=G.num_ws, w_dim=G.w_dim,
                        image_size=G.img_resolution, model_id="faces64", model_hash=model_hash)
    torch.manual_seed(0)
    E = Encoder(cfg)
    mean, std = code_statistics(G, space)
    E.mean.copy_(mean)
    E.std.copy_(std)
    return E


@torch.no_grad()
def validate(G: Generator, E: Encoder, n: int = 32) -> float:
    x = render_batch(n, VAL_SEED)
    E.eval()
    out = float(psnr(image_of(G, E.config.space, E(x)), x).mean())
    E.train()
    return out


def lr_at(step: int, code_steps: int, total: int, peak: float, warmup: int = 100) -> float:
    """Warm-up and cosine decay in stage 1; in stage 2 a second cosine from a third of the peak."""
    if step < code_steps:
        if step < warmup:
            return peak * (step + 1) / warmup
        t = (step - warmup) / max(code_steps - warmup, 1)
        return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))
    t = (step - code_steps) / max(total - code_steps, 1)
    return peak / 3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    G, model_hash = load_model_generator()
    data = torch.load(args.data, map_location="cpu", weights_only=True) if args.data else None
    if data is not None and data["model_hash"] != model_hash:
        raise SystemExit(f"{args.data} was made with weights {data['model_hash']}, faces64 has {model_hash}")
    E = make_encoder(G, args.space, model_hash)
    opt = torch.optim.Adam(E.parameters(), lr=args.lr, betas=(0.9, 0.99))
    step, seconds = 0, 0.0
    state_path = run / "state.pt"
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["space"] != args.space or state["model_hash"] != model_hash:
            raise SystemExit(f"{state_path} is a run for space {state['space']!r} on weights {state['model_hash']}; "
                             f"use another --run for space {args.space!r} on {model_hash}")
        E.load_state_dict(state["encoder"])
        opt.load_state_dict(state["opt"])
        step, seconds = int(state["step"]), float(state.get("seconds", 0.0))
        total = int(state["steps"]) if args.steps is None else args.steps
        print(f"resuming {run} at step {step}/{total}")
    else:
        total = args.steps or 1800
    code_steps = min(args.code_steps, total) if data is not None else 0
    dist = perceptual("predictor features")
    n_render = max(1, round(args.batch * RENDER_FRACTION))
    n_gen = args.batch - n_render
    log = open(run / "log.jsonl", "a")
    t_session = time.time()
    E.train()

    def save() -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save({"encoder": E.state_dict(), "opt": opt.state_dict(), "step": step, "steps": total,
                    "space": args.space, "model_hash": model_hash, "seconds": seconds,
                    "config": json.dumps(vars(args))}, tmp)
        os.replace(tmp, state_path)

    while step < total:
        t0 = time.time()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, code_steps, total, args.lr)
        if step < code_steps:                                               # stage 1: code regression
            gen = torch.Generator().manual_seed(args.seed * 2**40 + step * 8 + 3)
            idx = torch.randint(len(data["ws"]), (args.code_batch,), generator=gen)
            x = data["images"][idx].float() / 127.5 - 1
            target = code_of(G, args.space, data["ws"][idx].float())
            lat = ((E(x) - target) / E.std).square().mean()
            opt.zero_grad(set_to_none=True)
            lat.backward()
            torch.nn.utils.clip_grad_norm_(E.parameters(), 5.0)
            opt.step()
            step += 1
            seconds += time.time() - t0
            if step % 25 == 0:
                entry = {"step": step, "stage": 1, "code": lat.item(), "lr": opt.param_groups[0]["lr"],
                         "sec_per_step": round(time.time() - t0, 3)}
                if step % args.val_every == 0 or step == code_steps:
                    entry["val_psnr"] = round(validate(G, E), 2)
                log.write(json.dumps(entry) + "\n")
                log.flush()
            if step % args.ckpt_every == 0:
                save()
            if args.minutes and time.time() - t_session > args.minutes * 60:
                break
            continue
        fake, target = sample_batch(G, args.space, n_gen, args.seed, step)
        real = render_batch(n_render, TRAIN_SEED_BASE + args.seed * 10**7 + step)
        x = torch.cat([fake, real])
        code = E(x)
        img = image_of(G, args.space, code)
        rec = F.mse_loss(img, x)
        perc = dist(img, x).mean()
        lat = ((code[:n_gen] - target) / E.std).square().mean()
        loss = rec + W_PERCEPTUAL * perc + W_CODE * lat
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(E.parameters(), 5.0)
        opt.step()
        step += 1
        seconds += time.time() - t0
        if step % 25 == 0 or step == total:
            rec_psnr = float(psnr(img.detach(), x).mean())
            entry: dict[str, Any] = {"step": step, "stage": 2, "loss": loss.item(), "mse": rec.item(), "perceptual": perc.item(),
                                     "code": lat.item(), "train_psnr": round(rec_psnr, 2),
                                     "lr": opt.param_groups[0]["lr"], "sec_per_step": round(time.time() - t0, 3)}
            if step % args.val_every == 0 or step == total:
                entry["val_psnr"] = round(validate(G, E), 2)
            log.write(json.dumps(entry) + "\n")
            log.flush()
        if step % args.ckpt_every == 0 or step == total:
            save()
        if args.minutes and time.time() - t_session > args.minutes * 60:
            break
    save()
    if step < total:
        print(f"stopped after {args.minutes} minutes at step {step}/{total}; run again to resume")
    log.close()
    print(f"step {step}/{total}, {seconds / 60:.1f} min of training in all")


def data_description(run_args: dict[str, Any]) -> str:
    code = f"stage 1: {run_args.get('code_steps')} steps x {run_args.get('code_batch')} of code regression on " \
           f"precomputed generator samples" if run_args.get("data") else "no stage 1"
    return (f"{code}; stage 2: the remaining steps x {run_args.get('batch')}, {1 - RENDER_FRACTION:.0%} fresh "
            f"generator samples (image + code losses), {RENDER_FRACTION:.0%} renders (image losses)")


def export(args: argparse.Namespace) -> None:
    state_path = Path(args.run) / "state.pt"
    if not state_path.exists():
        raise SystemExit(f"--export needs a run state; {state_path} does not exist (train first)")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    G, model_hash = load_model_generator()
    if state["model_hash"] != model_hash:
        raise SystemExit(f"the run was trained on weights {state['model_hash']}, faces64 now has {model_hash}")
    E = make_encoder(G, state["space"], model_hash)
    E.load_state_dict(state["encoder"])
    E.eval()
    stem = Path(args.out) if args.out else encoder_stem(state["space"])
    meta = {"steps": state["step"], "planned_steps": state["steps"], "training_seconds": round(state["seconds"]),
            "val_psnr": round(validate(G, E), 2), "run_args": json.loads(state["config"]),
            "data": data_description(json.loads(state["config"]))}
    save_model(E, E.config, stem, meta)
    size = stem.with_suffix(".safetensors").stat().st_size
    print(f"wrote {stem}.safetensors ({size / 2**20:.1f} MiB) and {stem}.json; validation PSNR {meta['val_psnr']} dB")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train an encoder (W+ or S) for the built-in faces64 generator.")
    p.add_argument("--space", choices=ENCODER_SPACES, default="w+", help="the code the encoder predicts")
    p.add_argument("--run", default=None, help="run folder (resumable state, log); keep it outside the repo")
    p.add_argument("--steps", type=int, default=None, help="total steps (default 1800; a resumed run keeps its own)")
    p.add_argument("--code-steps", type=int, default=1500, help="stage-1 steps (code regression on --data)")
    p.add_argument("--code-batch", type=int, default=32, help="images per stage-1 step")
    p.add_argument("--batch", type=int, default=8, help="images per stage-2 step")
    p.add_argument("--data", default=None, help="stage-1 pairs made by --make-data (without it: stage 2 only)")
    p.add_argument("--make-data", type=int, nargs="?", const=12288, default=0, metavar="N",
                   help="write N generator samples (default 12288) to --data and exit")
    p.add_argument("--lr", type=float, default=5e-4, help="peak Adam learning rate (warm-up, cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="data and init seed (equal for a fair W+ vs S comparison)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--minutes", type=float, default=0, help="stop this session after N minutes (0: no limit)")
    p.add_argument("--ckpt-every", type=int, default=100, help="save state.pt every N steps")
    p.add_argument("--val-every", type=int, default=250, help="validation PSNR on 32 renders every N steps")
    p.add_argument("--export", action="store_true", help="write the run's encoder to --out (no training)")
    p.add_argument("--out", default=None, help="output stem (default assets/builtin/encoder_wplus or encoder_s)")
    args = p.parse_args(argv)
    if args.batch < 2:
        p.error("--batch must be at least 2 (one render and one generator sample)")
    if args.make_data:
        if not args.data:
            p.error("--make-data needs --data PATH")
        torch.set_num_threads(args.threads)
        make_data(load_model_generator()[0], Path(args.data), args.make_data)
        return
    if not args.run:
        p.error("--run is required (a folder outside the repository)")
    export(args) if args.export else train(args)


if __name__ == "__main__":
    main()
