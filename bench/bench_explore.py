"""Benchmark the Explore tab's targets (prints figures; no thresholds):

    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 python bench/bench_explore.py

1. SeFa directions on a 1024x1024-size generator (random weights)               target < 1 s
2. GANSpace, 10,000 samples on the built-in model (disk cache off)              target < 30 s
3. slider -> image, server-side compute (RenderSession.render + PIL)            target <= 15 ms
4. slider -> image through gradio_client vs a no-compute echo endpoint          target <= 1.3x
5. ground truth: CLIP names vs dominant true factor, top SeFa directions        target >= 60 %;
   and the Z / W / S disentanglement summary (GANSpace PCA in each, plus SeFa)

The model is the zoo id ``faces64`` when its file exists, else ``--model PATH`` (e.g. the training
snapshot runs/gan/faces64_latest.safetensors), else a random generator of the faces64 architecture
(timings only; section 5 needs trained weights, the predictor and the tiny CLIP and says when
they are missing).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp import diskcache  # noqa: E402
from interp.methods import effects, ganspace, naming, sefa  # noqa: E402
from interp.edit import layer_rows, projection_stds, sample_latents  # noqa: E402
from interp.models.stylegan2 import Generator, GeneratorConfig  # noqa: E402

SNAPSHOT = Path("runs/gan/faces64_latest.safetensors")


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def load_model(spec: str | None) -> tuple[Generator, str, str]:
    """(G, model id for the app, description)."""
    from interp.builtin.train_gan import TrainConfig
    from interp.zoo import default_zoo, load_generator

    if spec is None and default_zoo().availability("faces64").available:
        return load_generator("faces64"), "faces64", "zoo id faces64 (assets/builtin/faces64.safetensors)"
    path = Path(spec) if spec else SNAPSHOT
    if path.is_file():
        return load_generator(str(path.resolve())), "faces64", f"snapshot {path}"
    torch.manual_seed(0)
    G = Generator(TrainConfig().generator_config()).eval().requires_grad_(False)
    return G, "", "RANDOM weights of the faces64 architecture (no trained model found)"


def bench_sefa(repeat: int) -> None:
    torch.manual_seed(0)
    t0 = time.perf_counter()
    G = Generator(GeneratorConfig()).eval().requires_grad_(False)          # 1024x1024, 512-d, 18 ws rows
    build = time.perf_counter() - t0
    print(f"[1] SeFa, 1024x1024-size generator (random weights, built in {build:.1f} s, "
          f"{sum(p.numel() for p in G.parameters()) / 1e6:.1f}M parameters)")
    for preset in ("all", "coarse", "fine"):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            dirs, values = sefa.directions(G, preset, k=10)
            times.append(time.perf_counter() - t0)
        print(f"    layers {preset:6s}: median {median_ms(times):7.1f} ms, max {max(times) * 1000:7.1f} ms "
              f"(target < 1000 ms)")


def bench_ganspace(G: Generator, repeat: int) -> None:
    print("[2] GANSpace, 10,000 samples, cache off")
    for space in ("w", "s"):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ganspace.fit(G, 10_000, 10, seed=0, space=space, cache=False)
            times.append(time.perf_counter() - t0)
        print(f"    PCA of {space}: median {median_ms(times) / 1000:6.2f} s (target < 30 s)")
    t0 = time.perf_counter()
    ganspace.fit(G, 10_000, 10, seed=0, space="w", cache=True)
    t1 = time.perf_counter()
    ganspace.fit(G, 10_000, 10, seed=0, space="w", cache=True)
    print(f"    with the disk cache: first {1000 * (t1 - t0):.0f} ms, then {1000 * (time.perf_counter() - t1):.1f} ms")


def _directions(G: Generator, model_id: str, preset: str, k: int = 6):
    from interp.explore import compute_directions

    return compute_directions(G, model_id or "random", "sefa", layer_rows(G, preset), k, preset)


def bench_server(G: Generator, model_id: str, steps: int) -> None:
    from interp.edit import Latent, RenderSession
    from interp.imaging import tensor_to_pil

    print(f"[3] slider -> image, server-side (the current image + the slider's edit, cached synthesis, PIL), "
          f"{torch.get_num_threads()} torch threads")
    latent = Latent.from_seed(G, model_id or "random", 7, 0.7)
    for preset in ("all", "middle", "fine"):
        ds = _directions(G, model_id, preset)
        session = RenderSession()
        session.render(G, latent, [])                                       # warm: the cache holds every block
        times = []
        for i in range(steps):                                              # a drag of slider #0
            strengths = [3.0 * (i / steps) - 1.5] + [0.0] * (ds.k - 1)
            t0 = time.perf_counter()
            tensor_to_pil(session.render(G, latent, ds.edits(strengths))[0])
            times.append(time.perf_counter() - t0)
        print(f"    layer range {preset:6s}: median {median_ms(times):6.1f} ms, p90 "
              f"{sorted(times)[int(0.9 * len(times))] * 1000:6.1f} ms (target <= 15 ms)")


def bench_client(G: Generator, model_path: Path | None, steps: int) -> None:
    import app
    from gradio_client import Client

    from interp.models.loaders import save_generator
    from interp.zoo import Zoo

    print("[4] slider -> image through gradio_client vs the no-compute echo endpoint (same inputs, same image)")
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            model_path = Path(tmp) / "bench-model.safetensors"
            save_generator(G, model_path)
        zoo = Zoo.from_file(root=tmp)
        model_id = zoo.add_user_models(str(model_path))[0].id
        demo = app.build_demo(zoo, "cpu")
        demo.queue(default_concurrency_limit=1)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
        try:
            client = Client(url, verbose=False, download_files=str(Path(tmp) / "dl"))
            client.predict(model_id, 7, 0.7, 1, api_name="/generate")              # the current image
            client.predict(model_id, "SeFa", "fine", 0, 0, 6, "", False, api_name="/explore_find_directions")
            zeros = [0.0] * 9
            for _ in range(3):
                client.predict(model_id, 1.0, *zeros, api_name="/explore_render")
                client.predict(model_id, 1.0, *zeros, api_name="/explore_echo")
            render, echo = [], []
            for i in range(steps):                                          # interleaved: same conditions
                value = round(3.0 * (i / steps) - 1.5, 1)
                t0 = time.perf_counter()
                client.predict(model_id, value, *zeros, api_name="/explore_render")
                t1 = time.perf_counter()
                client.predict(model_id, value, *zeros, api_name="/explore_echo")
                t2 = time.perf_counter()
                render.append(t1 - t0)
                echo.append(t2 - t1)
            r, e = median_ms(render), median_ms(echo)
            print(f"    render {r:6.1f} ms, echo {e:6.1f} ms (medians of {steps}); ratio {r / e:.2f} (target <= 1.3)")
        finally:
            demo.close()


def bench_calibration(n_samples: int) -> None:
    """The judges on a generator whose W axes are the factors: the best agreement CLIP naming can reach."""
    from interp.directions import DirectionSet

    print("[5a] judge calibration: FactorAxisGenerator (each W axis = one renderer factor, pure by construction)")
    try:
        from interp.builtin import load_predictor

        predictor = load_predictor()
    except FileNotFoundError as exc:
        print(f"    skipped: {exc}")
        return
    G = effects.FactorAxisGenerator()
    k = G.w_dim
    ds = DirectionSet.create(torch.eye(k), torch.ones(k), torch.ones(k), space="w", layers=(0,), method="axes",
                             model_id="faces64", model_hash="axes", names=G.axes)
    eff = effects.effect_matrix(G, predictor, ds, strength=1.0, n_samples=n_samples, seed=1, truncation_psi=1.0)
    hits = sum(a == d for a, d in zip(G.axes, eff.dominant))
    print(f"    predictor: dominant factor = true axis for {hits}/{k}, mean purity {float(eff.purity.mean()):.0%}")
    clip, why = naming.load_paired_clip("faces64")
    if clip is None:
        print(f"    CLIP naming skipped ({why})")
        return
    names = naming.name_directions(G, ds, clip, naming.default_vocabulary("faces64"), n_samples=n_samples,
                                   strength=1.5, seed=2, truncation_psi=1.0)
    truth = effects.EffectMatrix(eff.matrix, eff.factors, eff.labels)
    agree = effects.clip_agreement(names, truth)
    for axis, name in zip(G.axes, names):
        print(f"      {axis:<12s} named {name.label!r:38s} confidence {name.confidence:.0%}")
    print(f"    CLIP name = measured dominant factor for {agree['factor_agreement']:.0%} of the axes "
          f"({agree['sign_agreement']:.0%} with sign)")


def bench_truth(G: Generator, model_id: str, k: int, n_samples: int) -> None:
    print("[5b] ground truth on the built-in model")
    if model_id != "faces64":
        print("    skipped: needs trained faces64 weights")
        return
    try:
        from interp.builtin import load_predictor

        predictor = load_predictor()
    except FileNotFoundError as exc:
        print(f"    skipped: {exc}")
        return
    clip, why = naming.load_paired_clip("faces64")
    mh = diskcache.model_hash(G)
    vocab = naming.default_vocabulary("faces64")
    totals: list[dict] = []
    for preset in ("all", "coarse", "middle", "fine"):
        rows = layer_rows(G, preset)
        dirs, values = sefa.directions(G, rows, k)
        stds = projection_stds(sample_latents(G, "w", 4000, seed=0), dirs)
        from interp.directions import DirectionSet

        ds = DirectionSet.create(dirs, values, stds, space="w", layers=rows, method="sefa", model_id="faces64",
                                 model_hash=mh)
        eff = effects.effect_matrix(G, predictor, ds, strength=1.0, n_samples=n_samples, seed=1)
        line = f"    SeFa top {k}, layers {preset:6s}: mean purity {float(eff.purity.mean()):.0%}"
        if clip is not None:
            names = naming.name_directions(G, ds, clip, vocab, n_samples=16, seed=2)
            agree = effects.clip_agreement(names, eff)
            line += (f"; CLIP name = dominant true factor {agree['factor_agreement']:.0%}, "
                     f"with sign {agree['sign_agreement']:.0%} (target >= 60 %); dominant or runner-up "
                     f"{agree['top2_agreement']:.0%}; measurable directions (>= {agree['min_response']} / std) "
                     f"{agree['n_measurable']}/{k}, agreement among them {agree['measurable_agreement']:.0%}")
            totals.append(agree)
            details = [f"      {p['direction']:>4s}: true {p['true_factor']:<12s} {p['response']:+.3f} "
                       f"(runner-up {p['runner_up']:<12s}) named {p['name']!r} ({'+' if p['sign'] > 0 else '-'}) "
                       f"{'ok' if p['agrees'] else 'no'}" for p in agree["per_direction"]]
        else:
            line += f"; CLIP naming skipped ({why})"
            details = []
        print("\n".join([line, *details]))
    if totals:
        rows_all = [p for a in totals for p in a["per_direction"]]
        meas = [p for p in rows_all if p["measurable"]]
        print(f"    all presets: CLIP name = dominant true factor {sum(p['agrees'] for p in rows_all)}/{len(rows_all)}; "
              f"dominant or runner-up {sum(p['top2'] for p in rows_all)}/{len(rows_all)}; "
              f"measurable directions {sum(p['agrees'] for p in meas)}/{len(meas)}")
    print("    Z vs W vs S (GANSpace PCA top-k in each space; SeFa in W):")
    for s in effects.compare_spaces(G, predictor, k=k, n_pca=10_000, n_samples=n_samples, model_id="faces64"):
        print(f"      {s.space:7s}: mean purity {s.mean_purity:.0%}, distinct dominant factors "
              f"{s.distinct_factors}/{k}: {', '.join(s.effects.dominant)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint path when the zoo's faces64 file does not exist "
                                                  f"(default: {SNAPSHOT} if present)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for one 64x64 image)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="slider positions per drag")
    ap.add_argument("--k", type=int, default=10, help="directions for the ground-truth section")
    ap.add_argument("--samples", type=int, default=32, help="samples per direction for the effect matrix")
    ap.add_argument("--only", default="12345", help="sections to run, e.g. 34")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    G, model_id, what = load_model(args.model)
    print(f"model: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs (shared with other jobs)")
    if "1" in args.only:
        bench_sefa(args.repeat)
    if "2" in args.only:
        bench_ganspace(G, args.repeat)
    if "3" in args.only:
        bench_server(G, model_id, args.steps)
    if "4" in args.only:
        path = None
        if model_id == "faces64" and what.startswith("zoo"):
            from interp.zoo import resolve

            path = resolve("faces64")
        elif what.startswith("snapshot"):
            path = Path(args.model) if args.model else SNAPSHOT
        bench_client(G, path, args.steps)
    if "5" in args.only:
        bench_calibration(min(args.samples, 12))
        bench_truth(G, model_id, args.k, args.samples)


if __name__ == "__main__":
    main()
