"""Synthesis speed at batch 1, fp32, on this machine's CPU cores: full passes and late-layer edits.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python bench/bench_synthesis.py

Models: an FFHQ-256-size generator (channel_base 16384, 512-d latents, random weights) and the
tiny 64x64 golden checkpoints of ../shared/golden (or INTERP_GOLDEN_DIR). "late edit" changes ws rows
>= num_ws // 2 and resynthesises through a SynthesisCache (incremental synthesis); its ratio to a full
pass is printed.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.models.loaders import load_checkpoint  # noqa: E402
from interp.models.stylegan2 import Generator, GeneratorConfig, SynthesisCache  # noqa: E402


def timeit(fn, repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@torch.no_grad()
def bench(name: str, G: Generator, repeat: int) -> None:
    G.eval()
    ws = G.mapping(G.sample_z(1, seed=0))
    full = timeit(lambda: G.synthesis(ws), repeat)
    cache = SynthesisCache()
    G.synthesis(ws, cache=cache)
    k = G.num_ws // 2
    direction = torch.randn(G.w_dim)
    state = {"t": 0.0}

    def late_edit():
        state["t"] += 0.01                                   # a new slider value each call
        edited = ws.clone()
        edited[:, k:] += state["t"] * direction
        G.synthesis(edited, cache=cache)

    late = timeit(late_edit, repeat)
    params = sum(p.numel() for p in G.parameters()) / 1e6
    print(f"{name:28s} {G.img_resolution:4d}px {params:6.1f}M  full {full * 1000:7.1f} ms   "
          f"late edit (ws >= {k}) {late * 1000:7.1f} ms  = {late / full:.2f} x full")


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    bench("ffhq256-size (random)", Generator(GeneratorConfig(z_dim=512, w_dim=512, img_resolution=256,
                                                             channel_base=16384)), repeat=10)
    fixtures = Path(os.environ.get("INTERP_GOLDEN_DIR") or ROOT.parent / "shared" / "golden")
    for name, file in [("sg2ada-tiny64", "network.pkl"), ("sg3repo-sg2-tiny64", "network.pkl"),
                       ("rosinality-tiny64", "stylegan2.pt")]:
        bench(name, load_checkpoint(fixtures / name / file), repeat=30)
    builtin = ROOT / "assets" / "builtin" / "faces64.safetensors"
    if builtin.exists():
        bench("faces64 (built-in)", load_checkpoint(builtin), repeat=30)


if __name__ == "__main__":
    main()
