"""Precompute at scale: the methods' expensive, disk-cached statistics, on one process or many.

One command per precomputation; each writes the very cache entry the method (and so the app) reads,
under the same key, so the next call in the app is a cache hit::

    python -m interp.precompute dissect   --model faces64 --samples 500      # the Paint tab's dissection
    python -m interp.precompute relevance --model faces64 --samples 64       # the Text tab's channel relevance
    python -m interp.precompute ganspace  --model faces64 --samples 1000000 --k 6
    python -m interp.precompute scores    --model faces64 --samples 20000    # the Attributes tab's scored samples

    torchrun --nproc-per-node 4 -m interp.precompute dissect --model faces64 --samples 5000
    OMP_NUM_THREADS=1 python -m torch.distributed.run --nproc-per-node 2 -m interp.precompute relevance ...

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` set) the processes join a ``torch.distributed`` group
(gloo on CPU, nccl on CUDA, one GPU per local rank), share the work and merge the results; rank 0
writes the entry. The work is cut into *shards* (``--shard-size`` samples; the count does not
depend on the number of processes), dealt round-robin to the ranks:

- ``ganspace``: shards of sampled latents (or layer features), gathered in order on rank 0, which
  runs the method's own PCA: the entry is the single-process one.
- ``scores``: shards of scored samples, gathered in order on rank 0.
- ``relevance``: the CLIP embeddings of the basis samples are gathered (rank 0 derives the basis and
  broadcasts it); then shards of samples, each summing every S channel's embedding change. The
  relevance is computed for all channels at once by autodiff (one backward pass per embedding
  axis, see :mod:`interp.methods.styleclip`), so the samples are what is split, not the channels.
  Sums are added with ``all_reduce`` in float64.
- ``dissect``: the IoU counts and part means are sums (``all_reduce``, float64). The thresholds are
  order statistics of each layer's first samples (the method's calibration set): each rank keeps the
  top ``M - k + 1`` and bottom ``k'`` activations per unit of its share, the ranks exchange these
  tails and the k-th value of the union is exactly the single-process ``kthvalue``. Nothing is
  approximated; results agree with one process to float32 rounding (float64 sums in another order).

Same numbers as one process: blocks start at multiples of the methods' batch sizes, so every batch
is the one a single process renders. Measured differences are in ``bench/bench_precompute.py``.

Resumable: every finished shard is saved as a safetensors file under
``$INTERP_CACHE_DIR/precompute/<task>-<run id>/`` (or ``--work-dir``); a run with the same arguments
skips the shards found there, on any number of processes, and deletes the folder after writing the
entry (``--keep-partials`` keeps it). ``--max-shards N`` stops each rank after computing N shards
(exit code 3; run again to continue), e.g. to fit a job into time slots. For ``dissect`` the
shards of a layer still calibrating hold its activations (and the part labels) until the
thresholds are known, as one process holds them in memory.

Exit codes: 0 written (or already cached), 2 bad arguments (the message names the allowed values),
3 stopped by ``--max-shards``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from interp import diskcache
from interp.methods.dissect import LayerTally

__all__ = ["EXIT_BAD_ARGS", "EXIT_STOPPED", "TASKS", "Context", "Shard", "main", "plan_shards"]

TASKS = ("ganspace", "dissect", "relevance", "scores")
EXIT_BAD_ARGS = 2
EXIT_STOPPED = 3
PARTIALS = "precompute"           # folder under the cache root holding the runs' per-shard files


class UsageError(ValueError):
    """A bad argument: printed as one line, exit code 2."""


class Stopped(Exception):
    """--max-shards reached on some rank: every rank stops after saving its shards."""


# ----------------------------------------------------------------------------------------------------
# Processes


class Context:
    """This process's place in the run: rank, world size, device, and the collectives (no-ops alone).

    Collectives go through ``comm`` (the CPU for gloo, the GPU for nccl); inputs and outputs live
    where the caller keeps them.
    """

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, device: str = "cpu") -> None:
        self.rank, self.world, self.local_rank, self.device = rank, world, local_rank, torch.device(device)
        self.comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        self.group = False

    @classmethod
    def from_env(cls, device: str = "auto") -> "Context":
        """Rank and world size from torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (1 process without them)."""
        from interp.devices import resolve_device

        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
        if not (world >= 1 and 0 <= rank < world):
            raise UsageError(f"RANK={rank} must be within 0 .. WORLD_SIZE - 1 = {world - 1}")
        spec = resolve_device(device)
        if spec == "cuda" and world > 1:                                  # one GPU per local rank
            spec = f"cuda:{local % torch.cuda.device_count()}"
        if spec.startswith("cuda"):
            torch.cuda.set_device(torch.device(spec))
        return cls(rank, world, local, spec)

    def start_group(self) -> None:
        if self.world > 1 and not self.group:
            import torch.distributed as dist

            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.group = True

    def close(self) -> None:
        if self.group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.group = False

    # collectives -------------------------------------------------------------------------------

    def all_reduce_sum(self, t: Tensor) -> Tensor:
        if self.world == 1:
            return t
        import torch.distributed as dist

        x = t.to(self.comm).contiguous()
        dist.all_reduce(x)
        return x.to(t.device)

    def any(self, flag: bool) -> bool:
        """True when ``flag`` is set on any rank."""
        return bool(self.all_reduce_sum(torch.tensor([int(bool(flag))], dtype=torch.int64)).item() > 0)

    def all_gather(self, t: Tensor) -> list[Tensor]:
        """Every rank's tensor (all of the same shape), in rank order."""
        if self.world == 1:
            return [t]
        import torch.distributed as dist

        x = t.to(self.comm).contiguous()
        out = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(out, x)
        return [o.to(t.device) for o in out]

    def gather_flat(self, t: Tensor) -> list[Tensor] | None:
        """Every rank's 1-D tensor (any lengths, one dtype) on rank 0, in rank order; None elsewhere."""
        if self.world == 1:
            return [t]
        import torch.distributed as dist

        sizes = [int(s) for s in self.all_gather(torch.tensor([t.numel()], dtype=torch.int64))]
        x = torch.zeros(max(sizes), dtype=t.dtype, device=self.comm)
        x[:t.numel()] = t.to(self.comm)
        out = [torch.empty_like(x) for _ in range(self.world)] if self.rank == 0 else None
        dist.gather(x, out, dst=0)
        if self.rank != 0:
            return None
        return [o[:s].cpu() for o, s in zip(out, sizes)]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small, picklable values)."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.comm if self.comm.type == "cuda" else None)
        return box[0]

    def broadcast_tensors(self, tensors: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        """Rank 0's tensors (pass None elsewhere) on every rank, on the CPU."""
        if self.world == 1:
            return dict(tensors)
        import torch.distributed as dist

        spec = self.broadcast_object({k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}
                                     if self.rank == 0 else None)
        out = {}
        for name, (shape, dtype) in spec.items():
            x = tensors[name].to(self.comm).contiguous() if self.rank == 0 else \
                torch.empty(shape, dtype=dtype, device=self.comm)
            dist.broadcast(x, src=0)
            out[name] = x.cpu()
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if self.comm.type == "cuda":
                dist.barrier(device_ids=[self.comm.index or 0])
            else:
                dist.barrier()

    # messages ----------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        """A line on stderr from rank 0 (the others stay quiet)."""
        if self.rank == 0:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)


# ----------------------------------------------------------------------------------------------------
# Shards and their files


@dataclass(frozen=True)
class Shard:
    """Samples ``start .. stop`` of a precomputation, the ``index``-th shard."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"{self.index:06d}"


def plan_shards(n: int, shard_size: int) -> list[Shard]:
    """``n`` samples in shards of ``shard_size`` (the last one shorter)."""
    return [Shard(i, start, min(n, start + shard_size)) for i, start in enumerate(range(0, n, shard_size))]


class Partials:
    """The per-shard files of one run (safetensors, written atomically); a file present is a shard done."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.safetensors"

    def load(self, name: str) -> dict[str, Tensor] | None:
        from safetensors.torch import load_file

        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except Exception:  # noqa: BLE001 - a damaged partial (killed mid-write elsewhere) is recomputed
            return None

    def save(self, name: str, tensors: Mapping[str, Tensor]) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=self.folder)
        os.close(fd)
        try:
            save_file(data, tmp)
            os.replace(tmp, self.path(name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def count(self) -> int:
        return len(list(self.folder.glob("[!.]*.safetensors"))) if self.folder.is_dir() else 0

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Budget:
    """How many shards this rank may still compute in this run (``--max-shards``; None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit, self.used = limit, 0

    @property
    def spent(self) -> bool:
        return self.limit is not None and self.used >= self.limit


def _bar(ctx: Context, total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", disable=quiet or ctx.rank != 0, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def run_blocks(ctx: Context, partials: Partials, stage: str, shards: Sequence[Shard],
               compute: Callable[[Shard], dict[str, Tensor]], budget: Budget, bar=None) -> dict[int, dict[str, Tensor]]:
    """This rank's shards (``shards[rank::world]``): loaded from ``partials`` or computed and saved.

    Raises :class:`Stopped` on every rank when some rank's budget ran out before its last shard.
    """
    out, stopped = {}, False
    for shard in shards[ctx.rank::ctx.world]:
        name = f"{stage}-{shard.name}"
        got = partials.load(name)
        if got is None:
            if budget.spent:
                stopped = True
                break
            got = compute(shard)
            partials.save(name, got)
            budget.used += 1
        elif bar is not None:
            bar.update(shard.size)
        out[shard.index] = got
    if ctx.any(stopped):
        raise Stopped
    return out


def gather_blocks(ctx: Context, blocks: Mapping[int, Mapping[str, Tensor]], shards: Sequence[Shard],
                  keys: Sequence[str]) -> dict[str, Tensor] | None:
    """Rank 0: each key's rows of every shard (``[shard.size, ...]``), concatenated in shard order; None elsewhere."""
    first = shards[0].index
    spec = ctx.broadcast_object({k: (tuple(blocks[first][k].shape[1:]), blocks[first][k].dtype) for k in keys}
                                if ctx.rank == 0 else None)
    out = {}
    for key in keys:
        tail, dtype = spec[key]
        mine = [blocks[s.index][key].reshape(-1) for s in shards[ctx.rank::ctx.world]]
        flat = torch.cat(mine) if mine else torch.zeros(0, dtype=dtype)
        parts = ctx.gather_flat(flat.to(dtype))
        if parts is None:
            continue
        per_row = math.prod(tail)
        rows: dict[int, Tensor] = {}
        for r, part in enumerate(parts):
            own = shards[r::ctx.world]
            for s, piece in zip(own, part.split([s.size * per_row for s in own])):
                rows[s.index] = piece.reshape(s.size, *tail)
        out[key] = torch.cat([rows[s.index] for s in shards])
    return out if ctx.rank == 0 else None


def sum_blocks(ctx: Context, blocks: Mapping[int, Mapping[str, Tensor]], zeros: Mapping[str, Tensor]
               ) -> dict[str, Tensor]:
    """Every rank: the sum over all shards of each key (float64; this rank's shards in order, then all_reduce)."""
    out = {}
    for key, zero in zeros.items():
        total = zero.to(torch.float64).clone()
        for index in sorted(blocks):
            total += blocks[index][key].to(torch.float64)
        out[key] = ctx.all_reduce_sum(total)
    return out


# ----------------------------------------------------------------------------------------------------
# Jobs: what to compute and where it goes


@dataclass
class Job:
    """One precomputation: the cache entries it writes and how to compute them on this rank."""

    task: str
    entries: dict[str, tuple[str, str, dict[str, str]]]    # label -> (namespace, key, metadata)
    run: Callable[["Job", Context, Partials, Budget], dict[str, dict[str, Tensor]] | None]
    shard_size: int
    settings: dict[str, Any] = field(default_factory=dict)

    def run_id(self) -> str:
        blob = json.dumps({"task": self.task, "keys": sorted(k for _, k, _ in self.entries.values()),
                           "shard_size": self.shard_size}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def cached(self) -> list[str]:
        """The labels of the entries already in the disk cache."""
        return [label for label, (ns, key, _) in self.entries.items() if diskcache.load(ns, key) is not None]


def _load_model(model: str, device: str):
    from interp.zoo import ModelUnavailable, UnknownModelError, load_generator

    try:
        return load_generator(model, device)
    except UnknownModelError as exc:
        raise UsageError(str(exc)) from None
    except ModelUnavailable as exc:
        raise UsageError(f"model {model!r} is not available: {exc}") from None


def _shard_size(args, batch: int, default: int) -> int:
    size = default if args.shard_size is None else args.shard_size
    if size % batch:
        raise UsageError(f"--shard-size must be a multiple of the batch size {batch} (so that every batch is the one "
                         f"a single process computes), got {size}")
    return size


def _layers_arg(text: str):
    """'all', 'coarse', ... or a comma list of ws rows / style layer names."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if len(items) == 1 and not items[0].isdigit():
        return items[0]
    return [int(t) if t.isdigit() else t for t in items]


def prepare_ganspace(args, ctx: Context) -> Job:
    from interp.methods import ganspace

    G = _load_model(args.model, str(ctx.device))
    feature = args.feature_layer
    try:
        key, meta, rows = ganspace.cache_entry(G, args.samples, args.k, args.seed, args.space,
                                               _layers_arg(args.layers), feature, args.psi)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    batch = ganspace.FEATURE_BATCH if args.space == "features" else ganspace.SAMPLE_BATCH
    size = _shard_size(args, batch, 4 * batch)
    n, seed, space, psi, k = args.samples, args.seed, args.space, float(args.psi), args.k

    def run(job: Job, ctx: Context, partials: Partials, budget: Budget):
        shards = plan_shards(n, size)
        with _bar(ctx, sum(s.size for s in shards[ctx.rank::ctx.world]), f"ganspace {space}", args.quiet) as bar:
            def compute(shard: Shard) -> dict[str, Tensor]:
                out = ganspace.block_samples(G, n, seed, space, rows, feature, psi, shard.start, shard.stop)
                bar.update(shard.size)
                return out

            blocks = run_blocks(ctx, partials, "samples", shards, compute, budget, bar)
        samples = gather_blocks(ctx, blocks, shards, ["samples", "w"] if space == "features" else ["samples"])
        if ctx.rank != 0:
            return None
        ctx.log(f"PCA of {n:,} samples ({samples['samples'].shape[1]} dimensions)")
        return {"ganspace": ganspace.from_samples(samples, k, seed, space)}

    return Job("ganspace", {"ganspace": (ganspace.CACHE_NAMESPACE, key, meta)}, run, size)


def prepare_dissect(args, ctx: Context) -> Job:
    from interp.methods import dissect, naming

    G = _load_model(args.model, str(ctx.device))
    if args.model not in naming.BUILTIN_IDS:
        raise UsageError(f"dissect needs a part segmenter; only the built-in model has one "
                         f"({', '.join(naming.BUILTIN_IDS)}), not {args.model!r} (the Paint tab's 'what I painted' "
                         f"needs no precomputation)")
    from interp.builtin import load_segmenter

    segmenter = load_segmenter(str(ctx.device))
    layers = None if args.layers == "all" else [t.strip() for t in args.layers.split(",") if t.strip()]
    try:
        entries = dissect.cache_entries(G, segmenter, layers, args.samples, args.seed, args.quantile,
                                        truncation_psi=args.psi, batch_size=args.batch_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    size = _shard_size(args, args.batch_size, 4 * args.batch_size)
    def run(job: Job, ctx: Context, partials: Partials, budget: Budget):
        return _DissectRun(job, args, G, segmenter, ctx, partials, budget).run()

    return Job("dissect", {name: (dissect.CACHE_NAMESPACE, key, meta) for name, (key, meta) in entries.items()},
               run, size)


def prepare_relevance(args, ctx: Context) -> Job:
    from interp.methods import naming, styleclip

    G = _load_model(args.model, str(ctx.device))
    clip, why = naming.load_paired_clip(args.model, str(ctx.device))
    if clip is None:
        raise UsageError(f"no CLIP for {args.model!r}: {why}")
    bs = args.batch_size
    try:
        key, meta, _ = styleclip.relevance_entry(G, clip, args.samples, args.seed, args.psi, args.dims,
                                                 args.basis_samples, args.std_samples, bs)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    size = _shard_size(args, bs, bs)
    n, seed, psi, dims, basis_n = args.samples, args.seed, float(args.psi), args.dims, args.basis_samples

    def run(job: Job, ctx: Context, partials: Partials, budget: Budget):
        s_samples, channel_std = styleclip.style_samples(G, seed, args.std_samples)   # cheap: every rank
        basis = partials.load("basis") if ctx.rank == 0 else None
        if not ctx.broadcast_object(basis is not None):                   # CLIP embeddings of the basis samples
            ctx.log(f"embedding basis: {basis_n} samples")
            embed = plan_shards(basis_n, 4 * bs)
            blocks = run_blocks(ctx, partials, "embeddings", embed, lambda s: {"embs": styleclip.basis_embeddings(
                G, clip, seed, psi, basis_n, bs, s.start, s.stop)}, budget)
            embs = gather_blocks(ctx, blocks, embed, ["embs"])
            basis = styleclip.embedding_basis(embs["embs"], dims) if ctx.rank == 0 else None
            if ctx.rank == 0:
                partials.save("basis", basis)
        basis = ctx.broadcast_tensors(basis if ctx.rank == 0 else None)
        shards = plan_shards(n, size)
        z = G.sample_z(n, seed)
        with _bar(ctx, sum(s.size for s in shards[ctx.rank::ctx.world]), "channel relevance", args.quiet) as bar:
            blocks = run_blocks(ctx, partials, "sums", shards, lambda s: {"total": styleclip.relevance_sums(
                G, clip, z[s.start:s.stop], psi, channel_std, basis["basis"], bs, bar.update)}, budget, bar)
        zero = torch.zeros(channel_std.numel(), basis["basis"].shape[0], dtype=torch.float64)
        total = sum_blocks(ctx, blocks, {"total": zero})["total"]
        if ctx.rank != 0:
            return None
        return {"relevance": styleclip.relevance_tensors(total, n, basis, s_samples, channel_std)}

    return Job("relevance", {"relevance": (styleclip.CACHE_NAMESPACE, key, meta)}, run, size)


def prepare_scores(args, ctx: Context) -> Job:
    from interp.methods import interfacegan as ifg
    from interp.methods import naming

    G = _load_model(args.model, str(ctx.device))
    judge = args.judge or ("predictor" if args.model in naming.BUILTIN_IDS else "clip")
    if judge == "predictor":
        if args.model not in naming.BUILTIN_IDS:
            raise UsageError(f"the attribute predictor reads only the built-in model's faces "
                             f"({', '.join(naming.BUILTIN_IDS)}); for {args.model!r} use --judge clip")
        scorer = ifg.PredictorScorer(device=str(ctx.device))
    else:
        clip, why = naming.load_paired_clip(args.model, str(ctx.device))
        if clip is None:
            raise UsageError(f"no CLIP for {args.model!r}: {why}")
        try:
            pairs = ifg.parse_prompt_pairs(args.prompts) if args.prompts else ifg.default_prompt_pairs(args.model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        scorer = ifg.ClipPairScorer(clip, pairs)
    try:
        key, meta, precision = ifg.score_entry(G, scorer, args.samples, args.seed, args.psi, args.precision)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    bs = args.batch_size
    size = _shard_size(args, bs, 8 * bs)
    n, seed, psi = args.samples, args.seed, float(args.psi)
    columns = list(json.loads(meta["kinds"]))

    def run(job: Job, ctx: Context, partials: Partials, budget: Budget):
        shards = plan_shards(n, size)
        z = G.sample_z(n, seed)
        with _bar(ctx, sum(s.size for s in shards[ctx.rank::ctx.world]), f"scores ({judge}, {precision})",
                  args.quiet) as bar:
            def compute(shard: Shard) -> dict[str, Tensor]:
                out = ifg.score_latents(G, scorer, z[shard.start:shard.stop], psi, bs, precision)
                bar.update(shard.size)
                return out

            blocks = run_blocks(ctx, partials, "scores", shards, compute, budget, bar)
        scores = gather_blocks(ctx, blocks, shards, columns)
        return {"scores": scores} if ctx.rank == 0 else None

    return Job("scores", {"scores": (ifg.SCORE_CACHE, key, meta)}, run, size, {"judge": judge})


# ----------------------------------------------------------------------------------------------------
# Dissection: exact thresholds from the ranks' tails, then summed counts


class _DissectShard:
    """One shard's statistics: counts of the layers whose thresholds are known, activations of the others."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.counts: dict[str, dict[str, Tensor]] = {}
        self.acts: dict[str, Tensor] = {}        # [S, C, h, w] float32 on the CPU, until the layer's thresholds exist
        self.labels: Tensor | None = None        # [S, H, W] uint8 while any activations are kept

    def tensors(self) -> dict[str, Tensor]:
        out = {f"counts/{name}/{k}": v for name, c in self.counts.items() for k, v in c.items()}
        out.update({f"acts/{name}": a for name, a in self.acts.items()})
        if self.labels is not None:
            out["labels"] = self.labels
        return out

    @classmethod
    def from_tensors(cls, shard: Shard, tensors: Mapping[str, Tensor], names: Sequence[str],
                     known: Mapping[str, Any]) -> "_DissectShard | None":
        """The shard of a partial file, or None when it does not fit this run (then it is recomputed)."""
        st = cls(shard)
        for name in names:
            counts = {k: tensors.get(f"counts/{name}/{k}") for k in _COUNTS}
            if all(v is not None for v in counts.values()) and name in known:
                st.counts[name] = counts
            elif f"acts/{name}" in tensors and "labels" in tensors:
                st.acts[name] = tensors[f"acts/{name}"]
            else:
                return None
        st.labels = tensors.get("labels") if st.acts else None
        if st.labels is not None and st.labels.shape[0] != shard.size:
            return None
        return st


_COUNTS = LayerTally.COUNTS


class _DissectRun:
    """Rounds of one shard per rank; after a round that completes a layer's calibration samples, the
    ranks exchange that layer's tails and every rank counts the activations it kept."""

    def __init__(self, job: Job, args, G, segmenter, ctx: Context, partials: Partials, budget: Budget) -> None:
        from interp.methods import dissect

        self.dissect = dissect
        self.job, self.args, self.G, self.segmenter = job, args, G, segmenter
        self.ctx, self.partials, self.budget = ctx, partials, budget
        self.names = list(job.entries)
        self.parts = dissect.segmenter_parts(segmenter)
        self.n, self.bs, self.q = args.samples, args.batch_size, args.quantile
        self.psi = float(args.psi)
        self.shards = plan_shards(self.n, job.shard_size)
        self.cal = {}                                                      # layer -> samples in its calibration set
        for name in self.names:
            n_calib = self.tally(name).n_calib
            self.cal[name] = min(self.n, math.ceil(n_calib / self.bs) * self.bs)   # whole batches, as buffered
        self.cal_shards = {name: math.ceil(c / job.shard_size) for name, c in self.cal.items()}
        self.levels: dict[str, tuple[Tensor, Tensor]] = {}

    def tally(self, name: str) -> LayerTally:
        return LayerTally.of(self.G, name, len(self.parts), self.n, self.bs, self.q)

    # levels ------------------------------------------------------------------------------------

    def load_levels(self) -> None:
        saved = self.ctx.broadcast_tensors((self.partials.load("levels") or {}) if self.ctx.rank == 0 else None)
        for name in self.names:
            if f"{name}/thresholds" in saved and f"{name}/low" in saved:
                self.levels[name] = (saved[f"{name}/thresholds"], saved[f"{name}/low"])

    def save_levels(self) -> None:
        if self.ctx.rank == 0:
            flat = {f"{name}/{k}": v for name, (t, low) in self.levels.items() for k, v in (("thresholds", t),
                                                                                             ("low", low))}
            self.partials.save("levels", flat)
        self.ctx.barrier()                            # saved before any shard file drops the activations

    def exact_levels(self, name: str, states: Mapping[int, _DissectShard]) -> tuple[Tensor, Tensor]:
        """The thresholds and low levels of ``name`` over its calibration samples, exactly as one process
        (``kthvalue`` of all of them): the k-th smallest of M values is the (M - k + 1)-th largest, which
        is among the (M - k + 1) largest of the rank holding it."""
        cs = self.cal[name]
        units = self.tally(name).sum_all.numel()
        mine = [st.acts[name][:cs - st.shard.start] for _, st in sorted(states.items()) if st.shard.start < cs]
        values = torch.cat([a.transpose(0, 1).reshape(units, -1) for a in mine], dim=1) if mine else \
            torch.zeros(units, 0)                                          # [C, M_rank]
        res = self.G.synthesis.layer(name).resolution
        m = cs * res * res                                                 # values per unit on all ranks
        k_hi = self.dissect.quantile_rank(self.q, m)
        k_lo = self.dissect.quantile_rank(1 - self.q, m)
        top = _tail(values, m - k_hi + 1, largest=True)                    # [C, m - k_hi + 1]
        bottom = _tail(values, k_lo, largest=False)                        # [C, k_lo]
        top = torch.cat(self.ctx.all_gather(top), dim=1)
        bottom = torch.cat(self.ctx.all_gather(bottom), dim=1)
        thresholds = top.topk(m - k_hi + 1, dim=1).values[:, -1]
        low = bottom.topk(k_lo, dim=1, largest=False).values[:, -1]
        return thresholds.contiguous(), low.contiguous()

    # counting ----------------------------------------------------------------------------------

    def count_kept(self, st: _DissectShard) -> bool:
        """Count the kept activations of the layers whose levels are known; True if anything changed."""
        changed = False
        for name in [n for n in st.acts if n in self.levels]:
            t = self.tally(name)
            t.set_levels(*self.levels[name])
            for a, lab in zip(st.acts[name].split(self.bs), st.labels.split(self.bs)):
                t.add(a.to(self.ctx.device), lab.to(self.ctx.device).long())
            st.counts[name] = {k: v.clone() for k, v in t.counts().items()}
            del st.acts[name]
            changed = True
        if not st.acts:
            st.labels = None
        return changed

    def compute(self, shard: Shard, z: Tensor, bar) -> _DissectShard:
        st = _DissectShard(shard)
        tallies = {}
        for name in self.names:
            if name in self.levels:
                tallies[name] = self.tally(name)
                tallies[name].set_levels(*self.levels[name])
        kept: dict[str, list[Tensor]] = {name: [] for name in self.names if name not in self.levels}
        labels_kept = []
        for zb in z[shard.start:shard.stop].split(self.bs):
            acts, labels = self.dissect.batch_activations(self.G, self.segmenter, zb, self.names, len(self.parts),
                                                          self.psi)
            for name in self.names:
                if name in tallies:
                    tallies[name].add(acts[name], labels)
                else:
                    kept[name].append(acts[name].cpu())
            if kept:
                labels_kept.append(labels.to(torch.uint8).cpu())
            bar.update(zb.shape[0])
        st.counts = {name: {k: v.clone() for k, v in t.counts().items()} for name, t in tallies.items()}
        st.acts = {name: torch.cat(v) for name, v in kept.items()}
        st.labels = torch.cat(labels_kept) if kept else None
        return st

    # the run -----------------------------------------------------------------------------------

    def run(self) -> dict[str, dict[str, Tensor]] | None:
        ctx, W = self.ctx, self.ctx.world
        self.load_levels()
        pending = [name for name in self.names if name not in self.levels]
        states: dict[int, _DissectShard] = {}
        z = self.G.sample_z(self.n, self.args.seed)
        S = len(self.shards)
        mine = self.shards[ctx.rank::W]
        with _bar(ctx, sum(s.size for s in mine), f"dissect {len(self.names)} layers", self.args.quiet) as bar:
            for t in range(math.ceil(S / W)):
                if self.budget.limit is not None and ctx.any(self.budget.spent):
                    raise Stopped
                dirty = set()
                i = t * W + ctx.rank
                if i < S:
                    shard = self.shards[i]
                    saved = self.partials.load(f"shard-{shard.name}")
                    st = None if saved is None else \
                        _DissectShard.from_tensors(shard, saved, self.names, self.levels)
                    if st is None:
                        st = self.compute(shard, z, bar)
                        self.budget.used += 1
                        dirty.add(i)
                    else:
                        bar.update(shard.size)
                    if self.count_kept(st):
                        dirty.add(i)
                    states[i] = st
                done = min(S, (t + 1) * W)                                 # shards finished on every rank
                ready = [name for name in pending if self.cal_shards[name] <= done]
                if ready:
                    for name in ready:
                        self.levels[name] = self.exact_levels(name, states)
                    pending = [name for name in pending if name not in ready]
                    self.save_levels()
                    for j, st in states.items():
                        if self.count_kept(st):
                            dirty.add(j)
                for j in sorted(dirty):
                    self.partials.save(f"shard-{self.shards[j].name}", states[j].tensors())
        out = {}
        for name in self.names:
            zero = self.tally(name).counts()
            total = sum_blocks(ctx, {i: st.counts[name] for i, st in states.items()}, zero)
            if ctx.rank == 0:
                t = self.tally(name)
                t.set_levels(*self.levels[name])
                t.add_counts(total)
                out[name] = t.result()
        return out if ctx.rank == 0 else None


def _tail(values: Tensor, k: int, largest: bool) -> Tensor:
    """The ``k`` largest (smallest) values of each row of [C, M], padded with -inf (+inf) when M < k."""
    have = min(k, values.shape[1])
    got = values.topk(have, dim=1, largest=largest).values if have else values[:, :0]
    pad = torch.full((values.shape[0], k - have), -math.inf if largest else math.inf, dtype=values.dtype)
    return torch.cat([got, pad], dim=1)


# ----------------------------------------------------------------------------------------------------
# Command line


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interp.precompute",
        description="Precompute a method's cached statistics (the app then reads them from the disk cache). "
                    "Run under torchrun --nproc-per-node N to share the work between N processes.")
    sub = parser.add_subparsers(dest="task", required=True, metavar="{" + ",".join(TASKS) + "}")

    def common(p: argparse.ArgumentParser, samples: int, psi: float) -> None:
        p.add_argument("--model", required=True, help="a model id of the zoo (faces64, ...), a file or an hf:// URL")
        p.add_argument("--samples", type=_count(1), default=samples, help=f"sampled latents (default {samples})")
        p.add_argument("--seed", type=_count(0), default=0, help="seed of the samples (default 0)")
        p.add_argument("--psi", type=_number, default=psi, help=f"truncation psi of the samples (default {psi})")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (torchrun on CUDA: one GPU "
                                                       "per local rank)")
        p.add_argument("--threads", type=_count(1), help="torch threads per process (default: OMP_NUM_THREADS)")
        p.add_argument("--shard-size", type=_count(1), help="samples per partial file (a multiple of the batch)")
        p.add_argument("--max-shards", type=_count(1), help="compute at most this many shards per process, then "
                                                           "stop with exit code 3 (run again to continue)")
        p.add_argument("--work-dir", type=Path, help="where the partial files go (default: "
                                                     "$INTERP_CACHE_DIR/precompute/<task>-<run id>)")
        p.add_argument("--keep-partials", action="store_true", help="keep the partial files after writing the entry")
        p.add_argument("--restart", action="store_true", help="delete this run's partial files first")
        p.add_argument("--force", action="store_true", help="recompute even when the entry is already cached")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("ganspace", help="GANSpace: PCA of sampled latents (Explore tab)")
    common(p, 10_000, 1.0)
    p.add_argument("--k", type=_count(1), default=6, help="principal axes kept (default 6, the Explore tab's)")
    p.add_argument("--space", default="w", help="w, z, s or features (default w)")
    p.add_argument("--layers", default="all", help="ws rows: all, coarse, middle, fine, or a comma list of rows or "
                                                  "style layers (default all)")
    p.add_argument("--feature-layer", help="the layer analysed by --space features (b16.conv1, ...)")

    p = sub.add_parser("dissect", help="GAN Dissection statistics of every unit layer (Paint tab)")
    common(p, 500, 1.0)
    p.add_argument("--layers", default="all", help="comma list of unit layers (b16.conv1, ...) or all (default)")
    p.add_argument("--quantile", type=_number, default=0.99, help="a unit is on above this quantile (default 0.99)")
    p.add_argument("--batch-size", type=_count(1), default=32, help="samples per batch (default 32)")

    p = sub.add_parser("relevance", help="StyleCLIP channel relevance (Text tab)")
    common(p, 64, 0.7)
    p.add_argument("--dims", type=_count(1), default=16, help="principal axes of the CLIP embedding (default 16)")
    p.add_argument("--basis-samples", type=_count(2), default=256, help="samples for the embedding axes (default 256)")
    p.add_argument("--std-samples", type=_count(2), default=4000, help="samples for the channel stds (default 4000)")
    p.add_argument("--batch-size", type=_count(1), default=8, help="samples per backward pass (default 8)")

    p = sub.add_parser("scores", help="InterFaceGAN: scored samples for the boundaries (Attributes tab)")
    common(p, 2000, 1.0)
    p.add_argument("--judge", choices=("predictor", "clip"), help="the built-in attribute predictor (default for "
                                                                  "faces64) or CLIP prompt pairs")
    p.add_argument("--prompts", help="CLIP prompt pairs, 'name: positive | negative' per line or ';' "
                                     "(default: the model domain's pairs)")
    p.add_argument("--precision", default="auto", help="auto, float32, bfloat16 or float16 (default auto)")
    p.add_argument("--batch-size", type=_count(1), default=32, help="images per synthesis batch (default 32)")
    return parser


PREPARE = {"ganspace": prepare_ganspace, "dissect": prepare_dissect, "relevance": prepare_relevance,
           "scores": prepare_scores}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "prompts", None):
        args.prompts = args.prompts.replace(";", "\n")
    try:
        ctx = Context.from_env(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        job = PREPARE[args.task](args, ctx)                 # loads the models and checks every argument
    except UsageError as exc:
        if ctx.rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    ctx.start_group()
    try:
        return _execute(job, args, ctx)
    finally:
        ctx.close()


def _execute(job: Job, args, ctx: Context) -> int:
    cached = ctx.broadcast_object(job.cached() if ctx.rank == 0 else None)
    if not args.force:
        for label in cached:
            ctx.log(f"{job.task} {label}: already in the disk cache ({diskcache.cache_dir()})")
        if len(cached) == len(job.entries):
            return 0
        if job.task == "dissect" and cached:                # compute only the missing layers, as dissect_layers does
            job.entries = {k: v for k, v in job.entries.items() if k not in cached}
    folder = args.work_dir or diskcache.cache_dir() / PARTIALS / f"{job.task}-{job.run_id()}"
    partials = Partials(Path(folder))
    if args.restart and ctx.rank == 0:
        partials.remove()
    ctx.barrier()
    found = partials.count()
    if found:
        ctx.log(f"resuming from {found} partial files in {partials.folder}")
    ctx.log(f"{job.task} on {ctx.world} process(es), {torch.get_num_threads()} thread(s) each, device {ctx.device}")
    budget = Budget(args.max_shards)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        results = job.run(job, ctx, partials, budget)
    except Stopped:
        ctx.barrier()
        ctx.log(f"stopped after --max-shards {args.max_shards} shards per process; partial files in "
                f"{partials.folder}: run the same command again to continue")
        return EXIT_STOPPED
    wall = time.perf_counter() - t0
    cpu = ctx.all_gather(torch.tensor([time.process_time() - c0], dtype=torch.float64))
    if ctx.rank == 0:
        ctx.log(f"computed in {wall:.2f} s (CPU seconds per process: {' / '.join(f'{c.item():.2f}' for c in cpu)})")
        for label, tensors in results.items():
            ns, key, meta = job.entries[label]
            path = diskcache.save(ns, key, tensors, meta)
            ctx.log(f"wrote {job.task} {label}: {path}")
    ctx.barrier()
    if ctx.rank == 0 and not args.keep_partials:
        partials.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
