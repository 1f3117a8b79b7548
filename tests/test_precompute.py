"""python -m interp.precompute: one process and torchrun give the entries the methods read; resume; bad arguments.

Small sample counts on the built-in faces64 (offline). The single-process runs call ``main`` in this
process with one thread; the sharded ones run ``python -m torch.distributed.run --nproc-per-node 2``
(gloo, one thread per rank) in a subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interp import diskcache, load_generator
from interp import precompute
from interp.methods import dissect, ganspace, styleclip

REPO = Path(__file__).resolve().parent.parent

DISSECT = ["dissect", "--model", "faces64", "--samples", "96", "--batch-size", "16", "--shard-size", "16",
           "--layers", "b8.conv1,b16.conv1,b32.conv0,b64.conv1"]
DISSECT_LAYERS = ["b8.conv1", "b16.conv1", "b32.conv0", "b64.conv1"]
# 6 shards of 16 samples; b32.conv0 and b64.conv1 calibrate on the first 64 samples (4 shards), b8.conv1 and
# b16.conv1 on all 96: their thresholds need the tails of both ranks, and a resumed run the kept activations
RELEVANCE = ["relevance", "--model", "faces64", "--samples", "8", "--batch-size", "2", "--basis-samples", "24",
             "--std-samples", "200", "--dims", "8"]


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_here(cache: Path, args: list[str], monkeypatch) -> int:
    """``main(args)`` in this process (one thread) with the disk cache in ``cache``."""
    monkeypatch.setenv("INTERP_CACHE_DIR", str(cache))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return precompute.main([*args, "--quiet"])


def run_torchrun(cache: Path, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "INTERP_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "interp.precompute", *args, "--quiet"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def entries(cache: Path, monkeypatch, namespace: str) -> dict[str, dict[str, torch.Tensor]]:
    """Every entry of a cache namespace, by key."""
    monkeypatch.setenv("INTERP_CACHE_DIR", str(cache))
    out = {}
    for path in sorted((cache / namespace).glob("*.safetensors")):
        hit = diskcache.load(namespace, path.stem)
        assert hit is not None, path
        out[path.stem] = hit[0]
    return out


def assert_same(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]],
                exact: tuple[str, ...] = (), atol: float = 1e-6) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key].keys() == b[key].keys()
        for name, x in a[key].items():
            if name in exact:
                assert torch.equal(x, b[key][name]), name
            else:
                torch.testing.assert_close(x, b[key][name], rtol=0, atol=atol, msg=f"{name} differs")


def diskcache_levels(work: Path) -> set[str]:
    """The layers whose thresholds a dissect run has saved in its work folder."""
    from safetensors import safe_open

    with safe_open(str(work / "levels.safetensors"), framework="pt") as f:
        return {k.split("/")[0] for k in f.keys()}


def test_dissect_two_processes_match_one_and_the_app_reads_them(tmp_path, monkeypatch, one_thread):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_here(one, DISSECT, monkeypatch) == 0
    run_torchrun(two, DISSECT)
    single, sharded = entries(one, monkeypatch, "dissect"), entries(two, monkeypatch, "dissect")
    assert len(single) == len(DISSECT_LAYERS)
    # thresholds are exact order statistics (the ranks' tails), counts are float64 sums
    assert_same(single, sharded, exact=("thresholds", "low", "part_area"))
    assert not (two / "precompute").exists() or not any((two / "precompute").iterdir())   # partials removed

    # the method reads the precomputed entries: a cache hit, the same numbers as computing them here
    from interp.builtin import load_segmenter

    G, seg = load_generator("faces64"), load_segmenter()
    monkeypatch.setenv("INTERP_CACHE_DIR", str(two))

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although precomputed")

    monkeypatch.setattr(dissect, "_compute", boom)
    ds = dissect.dissect_layers(G, seg, DISSECT_LAYERS, 96, batch_size=16)
    keys = {name: key for name, (key, _) in dissect.cache_entries(G, seg, DISSECT_LAYERS, 96, batch_size=16).items()}
    for name in DISSECT_LAYERS:                # (test_resume... compares the entries with dissect_layers itself)
        assert torch.equal(ds[name].thresholds, single[keys[name]]["thresholds"])
        torch.testing.assert_close(ds[name].iou, single[keys[name]]["iou"], rtol=0, atol=1e-6)
    # a second run finds everything cached and computes nothing
    monkeypatch.setattr(dissect, "batch_activations", boom)
    assert run_here(two, DISSECT, monkeypatch) == 0


def test_relevance_two_processes_match_one_and_the_app_reads_it(tmp_path, monkeypatch, one_thread):
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_here(one, RELEVANCE, monkeypatch) == 0
    run_torchrun(two, RELEVANCE)
    single, sharded = entries(one, monkeypatch, "styleclip"), entries(two, monkeypatch, "styleclip")
    assert len(single) == 1
    assert_same(single, sharded, atol=1e-6)

    from interp.methods.naming import load_paired_clip

    G, (clip, _) = load_generator("faces64"), load_paired_clip("faces64")
    kwargs = dict(n=8, batch_size=2, basis_samples=24, std_samples=200, dims=8)
    monkeypatch.setenv("INTERP_CACHE_DIR", str(two))

    def boom(*args, **kw):
        raise AssertionError("recomputed although precomputed")

    monkeypatch.setattr(styleclip, "_compute_relevance", boom)
    rel = styleclip.channel_relevance(G, clip, **kwargs)
    monkeypatch.undo()
    fresh = styleclip.channel_relevance(G, clip, cache=False, **kwargs)
    torch.testing.assert_close(rel.changes, fresh.changes, rtol=0, atol=1e-6)
    torch.testing.assert_close(rel.basis, fresh.basis, rtol=0, atol=1e-6)


def test_resume_after_an_interrupted_run(tmp_path, monkeypatch, one_thread):
    cache = tmp_path / "cache"
    calls = []
    real = dissect.batch_activations

    def crash(*args, **kwargs):                                 # the process dies in its sixth batch
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dissect, "batch_activations", crash)
    with pytest.raises(KeyboardInterrupt):
        run_here(cache, DISSECT, monkeypatch)
    work = next((cache / "precompute").iterdir())
    done = sorted(p.name for p in work.glob("shard-*.safetensors"))
    assert done == [f"shard-00000{i}.safetensors" for i in range(5)]           # five shards of 16 samples saved
    levels = diskcache_levels(work)
    assert levels == {"b32.conv0", "b64.conv1"}                   # b8.conv1, b16.conv1: still calibrating

    calls.clear()
    monkeypatch.setattr(dissect, "batch_activations", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert run_here(cache, DISSECT, monkeypatch) == 0
    assert len(calls) == 1                                        # only the sixth shard was computed
    assert not work.exists()                                       # partials removed after writing the entries

    # --max-shards: stop (exit 3) and continue, on another number of shards per call
    other = tmp_path / "other"
    calls.clear()
    assert run_here(other, [*DISSECT, "--max-shards", "3"], monkeypatch) == precompute.EXIT_STOPPED
    assert len(calls) == 3
    assert run_here(other, DISSECT, monkeypatch) == 0
    assert len(calls) == 6                                         # the other three shards
    assert_same(entries(cache, monkeypatch, "dissect"), entries(other, monkeypatch, "dissect"),
                exact=("thresholds", "low"))
    monkeypatch.setattr(dissect, "batch_activations", real)
    G = load_generator("faces64")
    from interp.builtin import load_segmenter

    fresh = dissect.dissect_layers(G, load_segmenter(), DISSECT_LAYERS, 96, batch_size=16, cache=False)
    hits = dissect.dissect_layers(G, load_segmenter(), DISSECT_LAYERS, 96, batch_size=16)
    for name in DISSECT_LAYERS:
        assert torch.equal(hits[name].low, fresh[name].low)
        torch.testing.assert_close(hits[name].mean_out, fresh[name].mean_out, rtol=0, atol=1e-6)


def test_ganspace_and_scores_write_the_entries_the_methods_read(tmp_path, monkeypatch, one_thread, tiny_checkpoint):
    cache = tmp_path / "cache"
    args = ["ganspace", "--model", str(tiny_checkpoint), "--samples", "9000", "--k", "4", "--shard-size", "4096"]
    assert run_here(cache, args, monkeypatch) == 0                # three shards, gathered in order
    G = load_generator(str(tiny_checkpoint))
    monkeypatch.setattr(ganspace, "_compute", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    comps = ganspace.fit(G, 9000, 4, 0, space="w", layers="all")
    monkeypatch.undo()
    monkeypatch.setenv("INTERP_CACHE_DIR", str(cache))
    fresh = ganspace.fit(G, 9000, 4, 0, space="w", layers="all", cache=False)
    assert torch.equal(comps.directions, fresh.directions) and torch.equal(comps.values, fresh.values)

    from interp.methods import interfacegan as ifg

    faces = load_generator("faces64")
    scorer = ifg.PredictorScorer()
    args = ["scores", "--model", "faces64", "--samples", "48", "--batch-size", "8", "--shard-size", "16",
            "--precision", "float32"]
    assert run_here(cache, args, monkeypatch) == 0
    monkeypatch.setattr(ifg, "_score_all", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    samples = ifg.score_samples(faces, scorer, 48, seed=0, batch=8, precision="float32")
    assert samples.cached
    monkeypatch.undo()
    fresh = ifg.score_samples(faces, scorer, 48, seed=0, batch=8, precision="float32", cache=False)
    for col, v in fresh.scores.items():
        assert torch.equal(samples.scores[col], v), col


@pytest.mark.parametrize("args, message", [
    (["dissect", "--model", "no-such-model"], "no-such-model"),
    (["dissect", "--model", "faces64", "--quantile", "1.5"], "quantile must be within"),
    (["dissect", "--model", "faces64", "--layers", "b16.conv9"], "unknown layer 'b16.conv9'; allowed: b4.conv1"),
    (["dissect", "--model", "faces64", "--batch-size", "32", "--shard-size", "48"],
     "--shard-size must be a multiple of the batch size 32"),
    (["relevance", "--model", "faces64", "--psi", "5"], "psi must be a number in [0, 2]"),
    (["ganspace", "--model", "faces64", "--space", "x"], "unknown GANSpace space 'x'; allowed: w, z, s, features"),
    (["ganspace", "--model", "faces64", "--samples", "1"], "n_samples must be an integer >= 2"),
    (["ganspace", "--model", "faces64", "--samples", "100", "--k", "500"], "k must be an integer between 1 and 100"),
    (["scores", "--model", "faces64", "--precision", "half"], "unknown precision 'half'"),
])
def test_bad_arguments_exit_2_with_a_sentence(args, message, tmp_path, monkeypatch, capsys):
    assert run_here(tmp_path, args, monkeypatch) == precompute.EXIT_BAD_ARGS
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ")
    assert not (tmp_path / "precompute").exists()


@pytest.mark.parametrize("args, message", [
    (["dissect", "--model", "faces64", "--samples", "0"], "--samples: must be an integer >= 1, got 0"),
    (["dissect", "--model", "faces64", "--samples", "ten"], "--samples: must be an integer >= 1, got 'ten'"),
    (["relevance", "--model", "faces64", "--max-shards", "0"], "--max-shards: must be an integer >= 1"),
    (["sefa", "--model", "faces64"], "invalid choice: 'sefa'"),
    (["dissect"], "the following arguments are required: --model"),
])
def test_bad_counts_and_tasks_are_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        precompute.main(args)
    assert exc.value.code == precompute.EXIT_BAD_ARGS and message in capsys.readouterr().err


def test_models_without_a_segmenter_or_predictor(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    assert run_here(tmp_path, ["dissect", "--model", str(tiny_checkpoint)], monkeypatch) == 2
    assert "dissect needs a part segmenter; only the built-in model has one (faces64)" in capsys.readouterr().err
    assert run_here(tmp_path, ["scores", "--model", str(tiny_checkpoint), "--judge", "predictor"], monkeypatch) == 2
    assert "the attribute predictor reads only the built-in model's faces" in capsys.readouterr().err


def test_shards_and_the_exact_tail_merge():
    shards = precompute.plan_shards(100, 32)
    assert [(s.start, s.stop) for s in shards] == [(0, 32), (32, 64), (64, 96), (96, 100)]
    # the k-th smallest of the union equals kthvalue over everything, whatever the split and ties
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 50, (3, 1000), generator=g).float()            # many ties
    for q in (0.99, 0.9, 0.51):
        m = values.shape[1]
        k_hi, k_lo = dissect.quantile_rank(q, m), dissect.quantile_rank(1 - q, m)
        pieces = values.split([0, 10, 600, 390], dim=1)
        top = torch.cat([precompute._tail(p, m - k_hi + 1, True) for p in pieces], dim=1)
        bottom = torch.cat([precompute._tail(p, k_lo, False) for p in pieces], dim=1)
        assert torch.equal(top.topk(m - k_hi + 1, dim=1).values[:, -1], values.kthvalue(k_hi, dim=1).values)
        assert torch.equal(bottom.topk(k_lo, dim=1, largest=False).values[:, -1], values.kthvalue(k_lo, dim=1).values)
