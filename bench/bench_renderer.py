"""Renderer throughput: images/s of interp.builtin.render at 64x64 and 128x128, 1 and 2 threads.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python bench/bench_renderer.py
"""

import time

import torch

from interp.builtin import render, sample_factors


def bench(n: int, size: int, threads: int, repeats: int = 3) -> float:
    torch.set_num_threads(threads)
    f = sample_factors(n, 0)
    render({k: v[:32] for k, v in f.items()}, size)
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        render(f, size)
        best = max(best, n / (time.perf_counter() - t))
    return best


if __name__ == "__main__":
    for size, n in ((64, 4096), (128, 1024)):
        for threads in (1, 2):
            print(f"render {size}x{size}  threads={threads}  {bench(n, size, threads):8.0f} images/s")
