"""Training speed of the built-in GAN per batch size: images per second of whole `train_gan` steps.

    python bench/bench_train_step.py --device cuda --batches 64 128 256 --run runs/gan/scratch_hp5e-5
    python bench/bench_train_step.py --device cpu --batches 16 32 --steps 8

Each batch size gets a fresh trainer with the run's config (or the default faces64 recipe), a few
warm-up steps, then `--steps` timed steps including the renders made on that device (on the CPU the
training loop renders in a background thread, which is not modelled here). The host waits for the
device only at the end, as `train_gan` does between its logged steps. The last line names the batch
with the most images per second: on a GPU this small network is bound by kernel launches, so a larger
batch buys images almost for free (`bench/gpu_session.sh` trains with it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.builtin.train_gan import Trainer, TrainConfig, render_batch  # noqa: E402


def images_per_second(cfg: TrainConfig, device: str, steps: int, warmup: int) -> float:
    trainer = Trainer(cfg, device)
    dev = torch.device(device)

    def wait() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for step in range(warmup):
        trainer.train_step(render_batch(cfg, step, dev), sync=False)
    wait()
    t = time.perf_counter()
    for step in range(warmup, warmup + steps):
        trainer.train_step(render_batch(cfg, step, dev), sync=False)
    wait()
    return steps * cfg.batch / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--steps", type=int, default=20, help="timed steps per batch size (a multiple of 16 covers R1)")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--run", type=Path, help="take the config (penalties, sizes) of this train_gan run")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = True
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if any(b < 1 for b in args.batches) or args.steps < 1 or args.warmup < 0:
        raise SystemExit("batches and --steps must be positive, --warmup not negative")
    base = TrainConfig(amp=True)
    if args.run:
        path = args.run / "config.json"
        if not path.is_file():
            raise SystemExit(f"{args.run}: no config.json (is it a train_gan run folder?)")
        base = TrainConfig.from_dict(json.loads(path.read_text()))

    results = {}
    for batch in args.batches:
        cfg = dataclasses.replace(base, batch=batch)
        try:
            results[batch] = images_per_second(cfg, args.device, args.steps, args.warmup)
        except torch.OutOfMemoryError:
            print(f"batch {batch:4d}: out of memory")
            break
        print(f"batch {batch:4d}: {results[batch]:8.1f} images/s", flush=True)
    if results:
        print(f"best batch: {max(results, key=results.get)}")


if __name__ == "__main__":
    main()
