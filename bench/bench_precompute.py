"""Precompute at scale: torchrun 2 processes x 1 thread vs 1 process x 1 thread vs 1 process x 2 threads.

    python bench/bench_precompute.py                                  # dissect 1000 samples, relevance 64
    python bench/bench_precompute.py --tasks dissect --dissect-samples 500 --rounds 3

Every configuration runs the real command (``python -m interp.precompute TASK --model faces64 ...``,
under ``python -m torch.distributed.run --standalone --nproc-per-node 2`` for the sharded one) into
a fresh disk cache, with ``OMP_NUM_THREADS`` set per process. Printed per task and configuration:
the wall time of the whole command (start-up, model loading, compute, writing the entry), the
compute time the command reports (``computed in X s``: the samples, the merge), both as a ratio of
one process with one thread (target for 2 x 1: <= 0.6), the CPU seconds of the whole command and of
the busiest process's compute (on a loaded machine the wall time measures the other jobs too; the CPU
time of the busiest process is what its wall time would be on idle cores), and the largest absolute
difference of every cached tensor from the one-process entry. Rounds alternate the order of the configurations; the
median is printed. The load average before and after is printed with the figures: on a shared
machine the other jobs' load changes them.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIGS = {                       # name -> (processes, threads per process)
    "1 proc x 1 thread": (1, 1),
    "1 proc x 2 threads": (1, 2),
    "torchrun 2 procs x 1 thread": (2, 1),
}
NAMESPACES = {"dissect": "dissect", "relevance": "styleclip"}


def task_args(task: str, args) -> list[str]:
    if task == "dissect":
        return ["dissect", "--model", "faces64", "--samples", str(args.dissect_samples)]
    return ["relevance", "--model", "faces64", "--samples", str(args.relevance_samples)]


def run(task_argv: list[str], procs: int, threads: int, cache: Path) -> tuple[float, float, float, float]:
    """(wall s, compute s, CPU s of the whole command, CPU s of the busiest process's compute) of one
    command into the disk cache ``cache``."""
    env = {**os.environ, "INTERP_CACHE_DIR": str(cache), "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    launcher = [sys.executable] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
    cmd = [*launcher, "-m", "interp.precompute", *task_argv, "--threads", str(threads), "--quiet"]
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)    # every process of the command
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    found = re.search(r"computed in ([0-9.]+) s \(CPU seconds per process: ([0-9. /]+)\)", out.stderr)
    if not found:
        raise SystemExit(f"no 'computed in' line in the output of {' '.join(cmd)}:\n{out.stderr[-2000:]}")
    busiest = max(float(c) for c in found.group(2).split("/"))
    return wall, float(found.group(1)), cpu, busiest


def entries(cache: Path, namespace: str) -> dict:
    from safetensors.torch import load_file

    return {p.stem: load_file(str(p)) for p in sorted((cache / namespace).glob("*.safetensors"))}


def max_diff(a: dict, b: dict) -> float:
    if a.keys() != b.keys() or not a:
        return float("nan")
    worst = 0.0
    for key in a:
        for name, x in a[key].items():
            y = b[key][name]
            if x.shape != y.shape:
                return float("nan")
            if x.numel():
                worst = max(worst, float((x.double() - y.double()).abs().max()))
    return worst


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min, {os.cpu_count()} CPUs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="dissect,relevance", help="comma list: dissect, relevance")
    parser.add_argument("--dissect-samples", type=int, default=1000, help="dissect samples (the Paint tab: 500 "
                                                                         "by default, up to 5000)")
    parser.add_argument("--relevance-samples", type=int, default=64, help="relevance samples (the Text tab's 64)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per configuration (median printed)")
    args = parser.parse_args()
    print(f"load average before: {load()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-precompute-") as tmp:
        for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            if task not in NAMESPACES:
                raise SystemExit(f"unknown task {task!r}; allowed: {', '.join(NAMESPACES)}")
            argv = task_args(task, args)
            times = {name: [] for name in CONFIGS}
            caches = {}
            for r in range(args.rounds):
                order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
                for name in order:
                    procs, threads = CONFIGS[name]
                    cache = Path(tmp) / f"{task}-{r}-{procs}x{threads}"
                    times[name].append(run(argv, procs, threads, cache))
                    caches[name] = cache
                    wall, comp, cpu, busiest = times[name][-1]
                    print(f"  {task} round {r + 1} {name}: wall {wall:.1f} s, compute {comp:.1f} s, CPU {cpu:.1f} s, "
                          f"busiest process {busiest:.1f} CPU s (load {os.getloadavg()[0]:.2f})", flush=True)
            med = {name: [statistics.median(t[i] for t in times[name]) for i in range(4)] for name in CONFIGS}
            base = med["1 proc x 1 thread"]
            ref = entries(caches["1 proc x 1 thread"], NAMESPACES[task])
            for name in CONFIGS:
                wall, comp, cpu, busiest = med[name]
                diff = max_diff(ref, entries(caches[name], NAMESPACES[task]))
                rows.append((task, argv[argv.index("--samples") + 1], name, wall, wall / base[0], comp, comp / base[1],
                             cpu, busiest, busiest / base[3], diff))
    print(f"load average after: {load()}")
    print()
    print("| task | samples | configuration | wall s | wall / 1x1 | compute s | compute / 1x1 | CPU s (command) | "
          "busiest process compute, CPU s | its / 1x1 | max abs diff vs 1x1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for task, n, name, wall, wr, comp, cr, cpu, busiest, br, diff in rows:
        print(f"| {task} | {n} | {name} | {wall:.1f} | {wr:.2f} | {comp:.1f} | {cr:.2f} | {cpu:.1f} | {busiest:.1f} | "
              f"{br:.2f} | {diff:.1e} |")
    print()
    print("compute: the command's own 'computed in' (samples and merge; no start-up or model loading). busiest "
          "process: the CPU seconds of the slowest process's compute, what its wall time would be on idle cores "
          "(for 2 threads it counts both threads).")


if __name__ == "__main__":
    main()
