"""Renderer throughput: images/s of interp.builtin.render at 64x64 and 128x128, 1 and 2 threads.

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python bench/bench_renderer.py
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.builtin.evaluate import renderer_speed  # noqa: E402

if __name__ == "__main__":
    for size, n in ((64, 4096), (128, 1024)):
        for threads in (1, 2):
            print(f"render {size}x{size}  threads={threads}  {renderer_speed(n, size, threads):8.0f} images/s")
