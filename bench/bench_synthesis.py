"""Synthesis speed on this machine's CPU: models, ours vs NVIDIA's code, and the cost of an edit.

    export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824
    python bench/bench_synthesis.py                                        # full pass and late edit per model
    python bench/bench_synthesis.py --official ../stylegan2-ada-pytorch    # ours / official at 256, 512, 1024
    python bench/bench_synthesis.py --edit-cost                            # per edited ws row: time vs FLOP share
    python bench/bench_synthesis.py --official PATH --variants             # + bf16 and torch.compile opt-ins
    python bench/bench_synthesis.py --device cuda [--official PATH]       # ms/image, batch 1 and 16, fp32/bf16/fp16

Default mode: an FFHQ-256-size generator (random weights), the tiny 64x64 golden checkpoints of
../shared/golden (or INTERP_GOLDEN_DIR) and the built-in model; "late edit" changes ws rows
>= num_ws // 2 and resynthesises through a SynthesisCache (incremental synthesis).

--official PATH: a checkout of NVlabs/stylegan2-ada-pytorch (its `training.networks` is imported from
there; on CPU it runs its reference ops, no compilation). Both generators get the same weights (FFHQ
config-f sizes: channel_base 16384 at 256, 32768 at 512 and 1024, channel_max 512, no conv_clamp, fp32,
non-zero noise strengths) and the same ws; the script checks that the images agree, then times paired
rounds (ours and official back to back, the order alternating) and prints the median of the per-round
ratios ours / official. Load average is printed beside each row: the ratio is what to read on a busy
machine, the milliseconds are not.

--edit-cost: for every row k of ws, an edit of rows >= k through a SynthesisCache recomputes the blocks
from the first one whose styles change (only its ToRGB when only the ToRGB style changed). Printed per
row: measured time / full pass (median of paired rounds) next to the FLOP share of the recomputed layers,
counted analytically from the config (`interp.models.stylegan2.layer_flops`), and next to their time
share: the time of the same layers run alone, without a cache, from the features before them / full pass
(so "measured / time share - 1" is what the cache machinery adds or saves). The FLOP share predicts the time
only where every layer runs at the same speed; the speed of each block (GFLOP/s, measured alone) is
printed too: on a CPU the narrow high-resolution layers run well below the wide low-resolution ones.
The memory floor of a row is the least time its layers can take at this machine's copy bandwidth (measured):
each must read its input activations and weight and write its output once (`layer_bytes`). Where that floor
alone exceeds the FLOP share by more than 15 %, no kernel can bring the row within 15 % of its FLOP share.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.models.loaders import load_checkpoint  # noqa: E402
from interp.models.stylegan2 import Generator, GeneratorConfig, SynthesisCache, layer_flops  # noqa: E402


def load() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def ffhq_config(res: int) -> GeneratorConfig:
    """NVIDIA's FFHQ config-f sizes (paper256: channel_base 16384; paper512/1024 and config-f: 32768)."""
    return GeneratorConfig(z_dim=512, w_dim=512, img_resolution=res, mapping_layers=8,
                           channel_base=16384 if res <= 256 else 32768, channel_max=512, conv_clamp=None)


def random_generator(cfg: GeneratorConfig, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(cfg).eval().requires_grad_(False)
    with torch.no_grad():                                   # exercise the noise inputs and truncation
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        G.mapping.w_avg.normal_(0, 0.1)
    return G


def timeit(fn: Callable[[], object], repeat: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def paired(fa: Callable[[], object], fb: Callable[[], object], rounds: int) -> tuple[float, float, list[float]]:
    """Median times of fa and fb and the per-round ratios fa / fb, running them back to back (order alternating)."""
    fa()
    fb()
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        t = {}
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            (fa, fb)[i]()
            t[i] = time.perf_counter() - start
        ta.append(t[0])
        tb.append(t[1])
        ratios.append(t[0] / t[1])
    return statistics.median(ta), statistics.median(tb), ratios


# ----------------------------------------------------------------------------------------------------
# Default mode: models


@torch.no_grad()
def bench_model(name: str, G: Generator, repeat: int) -> None:
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


def models() -> None:
    bench_model("ffhq256-size (random)", random_generator(ffhq_config(256)), repeat=10)
    fixtures = Path(os.environ.get("INTERP_GOLDEN_DIR") or ROOT.parent / "shared" / "golden")
    for name, file in [("sg2ada-tiny64", "network.pkl"), ("sg3repo-sg2-tiny64", "network.pkl"),
                       ("rosinality-tiny64", "stylegan2.pt")]:
        if (fixtures / name / file).exists():
            bench_model(name, load_checkpoint(fixtures / name / file), repeat=30)
    builtin = ROOT / "assets" / "builtin" / "faces64.safetensors"
    if builtin.exists():
        bench_model("faces64 (built-in)", load_checkpoint(builtin), repeat=30)


# ----------------------------------------------------------------------------------------------------
# --official: ours vs NVIDIA's stylegan2-ada-pytorch


def official_generator(path: Path, cfg: GeneratorConfig) -> torch.nn.Module:
    if not (path / "training" / "networks.py").exists():
        sys.exit(f"--official {path}: not a checkout of NVlabs/stylegan2-ada-pytorch (no training/networks.py)")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from training.networks import Generator as NvidiaGenerator
    return NvidiaGenerator(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                           img_channels=cfg.img_channels, mapping_kwargs=dict(num_layers=cfg.mapping_layers),
                           synthesis_kwargs=dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                                 num_fp16_res=0, conv_clamp=cfg.conv_clamp)).eval().requires_grad_(False)


def default_rounds(res: int) -> int:
    return {256: 15, 512: 9}.get(res, 7)


@torch.no_grad()
def against_official(path: Path, resolutions: list[int], rounds: int | None, batch: int, variants: bool) -> None:
    print(f"ours / official (NVlabs stylegan2-ada-pytorch at {path}), batch {batch}, fp32, "
          f"{torch.get_num_threads()} threads; median of paired rounds")
    print(f"{'res':>5} {'ours ms':>9} {'official ms':>12} {'ours/official':>14} {'ratio range':>15} "
          f"{'rounds':>6} {'max |diff|':>11}  load before -> after")
    rows = []
    for res in resolutions:
        cfg = ffhq_config(res)
        G = random_generator(cfg)
        nv = official_generator(path, cfg)
        nv.load_state_dict(G.state_dict())
        ws = G.mapping(G.sample_z(batch, seed=0), truncation_psi=0.7)
        ours = lambda: G.synthesis(ws, noise_mode="const")                              # noqa: E731
        official = lambda: nv.synthesis(ws, noise_mode="const", force_fp32=True)        # noqa: E731
        diff = (ours() - official()).abs().max().item()
        before = load()
        n = rounds or default_rounds(res)
        t_ours, t_nv, ratios = paired(ours, official, n)
        ratio = statistics.median(ratios)
        rows.append((res, ratio))
        print(f"{res:5d} {t_ours * 1000:9.0f} {t_nv * 1000:12.0f} {ratio:13.2f}x "
              f"{min(ratios):7.2f}-{max(ratios):.2f} {n:6d} {diff:11.1e}  {before} -> {load()}", flush=True)
        if variants:
            opt_ins(G, ws, official, t_nv, n)
        del G, nv
    print("target <= 1.00x at every resolution: " + ("met" if all(r <= 1.0 for _, r in rows) else "NOT met"))


def opt_ins(G: Generator, ws: torch.Tensor, official: Callable[[], object], t_nv: float, rounds: int) -> None:
    """bf16 weights and activations, and torch.compile of the fp32 synthesis: time vs official, error vs fp32."""
    reference = G.synthesis(ws)
    scale = reference.abs().max().item()
    G16 = Generator(G.config).eval().requires_grad_(False)
    G16.load_state_dict(G.state_dict())
    G16 = G16.to(torch.bfloat16)
    styles16 = {k: v.to(torch.bfloat16) for k, v in G.styles(ws).items()}
    bf16 = lambda: G16.synthesis_from_styles(styles16).float()                          # noqa: E731
    t16, _, ratios = paired(bf16, official, rounds)
    err = (bf16() - reference).abs()
    print(f"      bf16 (opt-in)      {t16 * 1000:7.0f} ms  ours/official {statistics.median(ratios):.2f}x   "
          f"error vs fp32: max {err.max().item():.3f}, mean {err.mean().item():.4f} (image range +-{scale:.1f})")
    try:
        start = time.perf_counter()
        compiled = torch.compile(G.synthesis)
        compiled(ws)
        warm = time.perf_counter() - start
        run = lambda: compiled(ws)                                                      # noqa: E731
        tc, _, ratios = paired(run, official, rounds)
        err = (run() - reference).abs().max().item()
        print(f"      torch.compile      {tc * 1000:7.0f} ms  ours/official {statistics.median(ratios):.2f}x   "
              f"error vs eager: max {err:.1e}; first call (compilation) {warm:.0f} s")
    except Exception as e:                                  # the opt-in is reported, not required
        print(f"      torch.compile      failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}")


# ----------------------------------------------------------------------------------------------------
# --device: ms per image at batch 1 and 16, fp32 / bf16 / fp16 (the GPU figures; runs on CPU too)


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` that returns once the device has finished its work (CUDA launches are asynchronous)."""
    if device.type != "cuda":
        return fn

    def run() -> object:
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return run


@torch.no_grad()
def precisions(device: torch.device, resolutions: list[int], batches: list[int], official: Path | None,
               repeat: int) -> None:
    """Per resolution, batch and precision: ms per image of our synthesis (and of NVIDIA's in fp32 when a
    checkout is given), and the half-precision images' largest error against fp32."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"ms per image on {name}; median of {repeat} timed calls after 2 warm-up calls")
    print(f"{'res':>5} {'batch':>5} {'fp32':>8} {'bf16':>8} {'fp16':>8} {'official fp32':>14}  "
          f"max |error| vs fp32 (bf16, fp16; image range +-scale)")
    for res in resolutions:
        cfg = ffhq_config(res)
        G = random_generator(cfg).to(device)
        nv = None
        if official is not None:
            nv = official_generator(official, cfg).to(device)
            nv.load_state_dict(G.state_dict())
        halves = {}
        for dtype in (torch.bfloat16, torch.float16):
            H = Generator(G.config).eval().requires_grad_(False)
            H.load_state_dict(G.state_dict())
            halves[dtype] = H.to(device, dtype)
        for batch in batches:
            ws = G.mapping(G.sample_z(batch, seed=0).to(device), truncation_psi=0.7)
            reference = G.synthesis(ws)
            scale = reference.abs().max().item()
            cells, errors = [timeit(_synced(lambda: G.synthesis(ws), device), repeat)], []
            for dtype, H in halves.items():
                styles = {k: v.to(dtype) for k, v in G.styles(ws).items()}
                run = _synced(lambda: H.synthesis_from_styles(styles), device)
                cells.append(timeit(run, repeat))
                errors.append((run().float() - reference).abs().max().item())
            if nv is not None:
                cells.append(timeit(_synced(lambda: nv.synthesis(ws, noise_mode="const", force_fp32=True), device),
                                    repeat))
            ms = [f"{t * 1000 / batch:8.2f}" for t in cells] + ([] if nv is not None else [f"{'-':>8}"])
            print(f"{res:5d} {batch:5d} {ms[0]} {ms[1]} {ms[2]} {ms[3]:>14}  "
                  f"{errors[0]:.3f}, {errors[1]:.3f} (+-{scale:.1f})", flush=True)
        del G, nv, halves
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------
# --edit-cost: an edit's time vs the FLOP share of the layers it recomputes


def _names(block) -> list[str]:
    """The block's style layer names as in ``G.ws_index`` ("b64.conv0", "b64.conv1", "b64.torgb")."""
    return [f"b{block.resolution}.{n}" for n in block.layer_names]


def recomputed_from(G: Generator, k: int) -> str:
    """The first layer an edit of ws rows >= k recomputes (SynthesisCache semantics): the whole block whose
    conv styles change, or only the ToRGB of the block before it when just its ToRGB style reads row k."""
    for block in G.synthesis.blocks():
        names = _names(block)
        if any(G.ws_index[n] >= k for n in names[:-1]):
            return names[0]
        if G.ws_index[names[-1]] >= k:
            return names[-1]
    raise ValueError(f"row {k} feeds no layer")


def layer_bytes(cfg: GeneratorConfig) -> dict[str, int]:
    """The least memory traffic of each style layer for one image in fp32 (execution order, like
    ``layer_flops``): its input activations and weight read once and its output written once. conv0 reads
    the previous block's features and writes this block's; ToRGB reads the features and the running image
    at half size and writes the image."""
    out: dict[str, int] = {}
    for res in cfg.block_resolutions:
        c = cfg.channels_at(res)
        if res > 4:
            inp = cfg.channels_at(res // 2)
            out[f"b{res}.conv0"] = 4 * (inp * (res // 2) ** 2 + inp * c * 9 + c * res**2)
        out[f"b{res}.conv1"] = 4 * (2 * c * res**2 + c * c * 9)
        out[f"b{res}.torgb"] = 4 * (c * res**2 + c * cfg.img_channels + cfg.img_channels * ((res // 2) ** 2 + res**2))
    return out


def copy_bandwidth(mbytes: int = 256, repeat: int = 7) -> float:
    """Bytes per second that a tensor copy moves (read + write), median of ``repeat``."""
    src = torch.ones(mbytes * 2**20 // 4)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / timeit(lambda: dst.copy_(src), repeat)


@torch.no_grad()
def edit_cost(resolutions: list[int], rounds: int | None) -> None:
    print(f"edit cost: an edit of ws rows >= k through a SynthesisCache, batch 1, fp32, "
          f"{torch.get_num_threads()} threads; median of paired rounds (full pass, edit)")
    bandwidth = copy_bandwidth()
    print(f"copy bandwidth (read + write): {bandwidth / 1e9:.1f} GB/s")
    worst: dict[str, float] = {}
    worst_time: dict[str, float] = {}
    bound: dict[str, float] = {}
    for res in resolutions:
        G = random_generator(ffhq_config(res))
        flops = layer_flops(G.config)
        traffic = layer_bytes(G.config)
        order = list(flops)                                  # execution order
        total = sum(flops.values())
        ws = G.mapping(G.sample_z(1, seed=0), truncation_psi=0.7)
        direction = torch.randn(G.w_dim)
        full = lambda: G.synthesis(ws)                                                  # noqa: E731
        n = rounds or default_rounds(res)
        print(f"\n{res}x{res}: {total / 1e9:.1f} GFLOP per image, {load()}")
        block_speed(G, ws, flops, n)
        t_pass = timeit(full, n)
        print(f"{'row':>4} {'recomputes from':>16} {'measured/full':>14} {'FLOP share':>11} {'relative':>9} "
              f"{'time share':>11} {'relative':>9} {'memory floor':>13}")
        for k in range(G.num_ws):
            first = recomputed_from(G, k)
            share = sum(flops[n] for n in order[order.index(first):]) / total
            cache = SynthesisCache()
            state = {"t": 0.0}

            def edit():
                state["t"] += 0.01                            # a new slider value each call: rows >= k change
                edited = ws.clone()
                edited[:, k:] += state["t"] * direction
                G.synthesis(edited, cache=cache)

            G.synthesis(ws, cache=cache)
            hits, feature_hits = cache.hits, cache.feature_hits
            edit()
            expected = (_blocks_before(G, first), int(first.endswith("torgb")))
            if (cache.hits - hits, cache.feature_hits - feature_hits) != expected:
                print(f"     row {k}: the cache reused other blocks than expected")
            t_edit, t_full, ratios = paired(edit, full, n)
            measured = statistics.median(ratios)
            time_share = statistics.median(paired(suffix(G, ws, k, first), full, n)[2])
            rel, rel_time = measured / share - 1, measured / time_share - 1
            floor = sum(traffic[n] for n in order[order.index(first):]) / bandwidth / t_pass
            worst[f"{res}px row {k}"] = rel
            worst_time[f"{res}px row {k}"] = rel_time
            if floor > 1.15 * share:
                bound[f"{res}px row {k}"] = floor / share - 1
            print(f"{k:4d} {first:>16} {measured:14.3f} {share:11.3f} {rel:+9.0%} {time_share:11.3f} "
                  f"{rel_time:+9.0%} {floor:13.3f}", flush=True)
        print(f"full pass {t_full * 1000:.0f} ms, {load()}")
        del G
    for what, table in (("FLOP share", worst), ("time share", worst_time)):
        off = {k: v for k, v in table.items() if abs(v) > 0.15}
        print(f"\nrows off by more than 15% of their {what}: {len(off)} of {len(table)}"
              + "".join(f"\n  {k}: {v:+.0%}" for k, v in off.items()))
    print(f"\nrows whose memory floor alone is more than 15% above their FLOP share: {len(bound)}"
          + "".join(f"\n  {k}: floor {v:+.0%}" for k, v in bound.items()))


def suffix(G: Generator, ws: torch.Tensor, k: int, first: str) -> Callable[[], object]:
    """The work an edit of rows >= ``k`` recomputing from layer ``first`` does, run alone without a cache: the
    styles of rows >= k and every layer from ``first`` on, from the features and image computed before it."""
    blocks = G.synthesis.blocks()
    styles = G.synthesis.styles(ws)
    changed = [n for n in G.ws_index if G.ws_index[n] >= k]
    x = img = None
    start = 0
    for i, block in enumerate(blocks):                       # the state before `first`, computed once
        names = _names(block)
        if first in names:
            start = i
            if first.endswith("torgb"):
                x = block.features(x, [styles[n] for n in names[:-1]], "const")
            break
        x = block.features(x, [styles[n] for n in names[:-1]], "const")
        img = block.to_image(x, img, styles[names[-1]])

    def run() -> None:
        fresh = dict(styles, **{n: G.synthesis.layer(n).affine(ws[:, G.ws_index[n]]) for n in changed})
        y, out = x, img
        for i, block in enumerate(blocks[start:], start):
            names = _names(block)
            if not (i == start and first.endswith("torgb")):
                y = block.features(y, [fresh[n] for n in names[:-1]], "const")
            out = block.to_image(y, out, fresh[names[-1]])
        out.contiguous()

    return run


def block_speed(G: Generator, ws: torch.Tensor, flops: dict[str, int], rounds: int) -> None:
    """Each block's time alone (median of ``rounds``) and its GFLOP/s."""
    styles = G.synthesis.styles(ws)
    x = img = None
    cells = []
    for block in G.synthesis.blocks():
        names = _names(block)
        block_styles = [styles[n] for n in names]
        run = lambda b=block, x=x, img=img, s=block_styles: b(x, img, s, "const")         # noqa: E731
        t = timeit(run, rounds)
        x, img = run()
        cells.append(f"b{block.resolution} {sum(flops[n] for n in names) / t / 1e9:.0f}")
    print("GFLOP/s per block, alone: " + ", ".join(cells))


def _blocks_before(G: Generator, layer: str) -> int:
    return [f"b{b.resolution}" for b in G.synthesis.blocks()].index(layer.split(".")[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--official", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch to compare with")
    p.add_argument("--edit-cost", action="store_true", help="per edited ws row: time share vs FLOP share")
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--rounds", type=int, help="paired rounds per row (default: 15 at 256, 9 at 512, 7 at 1024)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", action="store_true", help="with --official: also bf16 and torch.compile")
    p.add_argument("--device", help="cuda, cuda:N or cpu: ms per image at --batches in fp32, bf16 and fp16 there "
                                    "(with --official: NVIDIA's fp32 beside them)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.device:
        official = args.official.resolve() if args.official else None
        precisions(torch.device(args.device), args.resolutions, args.batches, official, args.rounds or 10)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {load()}, "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}")
    if args.official:
        against_official(args.official.resolve(), args.resolutions, args.rounds, args.batch, args.variants)
    if args.edit_cost:
        edit_cost(args.resolutions, args.rounds)
    if not args.official and not args.edit_cost:
        models()


if __name__ == "__main__":
    main()
