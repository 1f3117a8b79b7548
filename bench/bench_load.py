"""Benchmark: `load_checkpoint` on a ~30M-parameter NVIDIA network pickle (prints figures).

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python bench/bench_load.py

Writes, in a temporary folder, a StyleGAN2 snapshot in the exact layout NVIDIA's training code
pickles (`dict(training_set_kwargs, G, D, G_ema, augment_pipe)`, each network a
`torch_utils.persistence._reconstruct_persistent_obj(meta)` record with embedded storages; written
by `interp.models.unpickle.dump_nvidia_layout`, which uses the same globals as the golden files),
then times: the restricted unpickling alone, `load_checkpoint` on the snapshot (G and G_ema) and on
a G_ema-only pickle, and for reference our safetensors format and a plain `torch.load` state dict.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.models.loaders import load_checkpoint, read_checkpoint, save_generator  # noqa: E402
from interp.models.stylegan2 import Generator, GeneratorConfig  # noqa: E402
from interp.models.unpickle import (EasyDictOut, dump_nvidia_layout, generator_to_nvidia_layout,  # noqa: E402
                                    restricted_load)


def timed(fn, repeat: int) -> tuple[float, float]:
    """Median and min wall time of `repeat` calls, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--channel-base", type=int, default=32768, help="32768 at 256x256 gives ~30M parameters")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    config = GeneratorConfig(img_resolution=args.resolution, channel_base=args.channel_base, conv_clamp=256.0)
    G = Generator(config)
    n_params = sum(t.numel() for t in G.state_dict().values())
    print(f"generator: {args.resolution}x{args.resolution}, channel_base {args.channel_base}, "
          f"{n_params / 1e6:.1f}M parameters+buffers; torch {torch.__version__}, {torch.get_num_threads()} threads")

    with tempfile.TemporaryDirectory() as tmp:
        snapshot, g_ema_only = Path(tmp, "network-snapshot.pkl"), Path(tmp, "g_ema.pkl")
        t0 = time.perf_counter()
        with open(snapshot, "wb") as f:
            dump_nvidia_layout(dict(training_set_kwargs=EasyDictOut(resolution=args.resolution),
                                    G=generator_to_nvidia_layout(G), D=None,
                                    G_ema=generator_to_nvidia_layout(G), augment_pipe=None), f)
        with open(g_ema_only, "wb") as f:
            dump_nvidia_layout(dict(G_ema=generator_to_nvidia_layout(G)), f)
        print(f"wrote NVIDIA-layout pickles in {time.perf_counter() - t0:.1f} s: snapshot (G + G_ema) "
              f"{snapshot.stat().st_size / 2**20:.0f} MiB, G_ema only {g_ema_only.stat().st_size / 2**20:.0f} MiB")

        safetensors_path = Path(tmp, "g.safetensors")
        save_generator(G, safetensors_path)
        state_path = Path(tmp, "state_dict.pt")
        torch.save(G.state_dict(), state_path)

        # Correctness of what is timed: the loaded weights are the written ones.
        loaded = load_checkpoint(snapshot)
        assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), loaded.state_dict().values()))
        del loaded

        def unpickle_only() -> None:
            with open(snapshot, "rb") as f:
                restricted_load(f)

        rows = [
            ("restricted unpickling only, snapshot (G + G_ema)", lambda: unpickle_only()),
            ("read_checkpoint, snapshot (config + state dict)", lambda: read_checkpoint(snapshot)),
            ("load_checkpoint, snapshot (G + G_ema)", lambda: load_checkpoint(snapshot)),
            ("load_checkpoint, G_ema-only pickle", lambda: load_checkpoint(g_ema_only)),
            ("load_checkpoint, interp safetensors", lambda: load_checkpoint(safetensors_path)),
            ("reference: torch.load(state_dict, weights_only=True)",
             lambda: torch.load(state_path, map_location="cpu", weights_only=True)),
            ("reference: Generator(config) random init", lambda: Generator(config)),
        ]
        print(f"\n{'step':56s} {'median':>9s} {'min':>9s}   (repeat {args.repeat})")
        for name, fn in rows:
            med, best = timed(fn, args.repeat)
            print(f"{name:56s} {med:8.2f}s {best:8.2f}s")


if __name__ == "__main__":
    main()
