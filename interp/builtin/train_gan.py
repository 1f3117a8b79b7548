"""Train the built-in StyleGAN2 on synthetic faces rendered on the fly.

    python -m interp.builtin.train_gan --run runs/gan/faces64 --kimg 400
    python -m interp.builtin.train_gan --run runs/gan/faces64 --export assets/builtin/faces64.safetensors

StyleGAN2 recipe: non-saturating logistic loss, lazy R1 on reals, style mixing, EMA generator, `w_avg`
tracking, optional path-length regularisation, optional Hessian penalty (Peebles et al., ECCV 2020: a
training-time push towards disentangled latents) and bf16 autocast. The data is unlimited (a new render for
every image), so there is no augmentation. Every step is seeded by its index, so a run interrupted and resumed
from `state.pt` continues exactly as an uninterrupted one. A resumed run may change its batch size, EMA
half-life, Hessian-penalty and attribute-statistics weights and style-mixing probability
(`--config '{"batch": 64}'`), e.g. to go on with a larger batch on a GPU, where the faces are rendered on the
device itself. A new run may start from an exported generator (`--init assets/builtin/faces64.safetensors`, a
fresh discriminator), e.g. to fine-tune it with the Hessian penalty (`--config '{"hessian_weight": 0.1}'`);
`"d_warmup_kimg": 20` first trains that discriminator alone against the held generator for 20 k images (a
resumed run may lengthen it), and `"d_features": "segmenter"` gives D heads on the frozen part segmenter's
features, which tell a trained generator from the renders where a fresh pixel D is at chance
(`"d_head_hidden": 64`: a hidden layer in each head). `"stats_weight": 1, "stats_judge": <predictor stem>`
adds attribute-statistics matching (AttributeStatistics): the generator is pulled towards the renders' mean
and correlations of a second attribute predictor's outputs, e.g. the age-glasses correlation.
The run folder holds `state.pt` (resumable), `log.jsonl` (losses, speed, quick metrics) and
`samples_<kimg>.png` grids.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from interp.builtin.faces import FACTOR_BY_NAME, images_to_tensor, render, render_torch, sample_factors
from interp.models.stylegan2 import (Discriminator, DiscriminatorConv, FullyConnectedLayer, Generator,
                                     GeneratorConfig)

DEFAULT_CHANNELS = {4: 128, 8: 128, 16: 128, 32: 64, 64: 32}
RESUMABLE_KEYS = ("batch", "ema_kimg", "d_warmup_kimg", "hessian_weight", "stats_weight",
                  "style_mixing")                                      # keys a resumed run may change


@dataclass(frozen=True)
class TrainConfig:
    resolution: int = 64                      # Image side; renders are made at this size.
    z_dim: int = 128                          # Z dimensionality.
    w_dim: int = 128                          # W dimensionality.
    mapping_layers: int = 4                   # Mapping network depth.
    channels: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_CHANNELS))  # G (and D), per resolution.
    d_channels: dict[int, int] | None = None  # D's channels per resolution if not G's (D is not shipped: the app's
                                              # speed does not depend on it).
    batch: int = 16                           # Images per step.
    lr_g: float = 0.0015                      # Generator Adam learning rate.
    lr_d: float = 0.002                       # Discriminator Adam learning rate.
    betas: tuple[float, float] = (0.0, 0.99)  # Adam betas.
    r1_gamma: float = 0.8                     # R1 weight.
    r1_every: int = 16                        # Lazy R1 interval (steps).
    pl_weight: float = 0.0                    # Path-length regularisation weight, 0 = off.
    pl_every: int = 4                         # Lazy path-length interval (steps).
    hessian_weight: float = 0.0               # Hessian penalty weight (w.r.t. W), 0 = off.
    hessian_every: int = 4                    # Lazy Hessian penalty interval (steps).
    hessian_k: int = 2                        # Rademacher directions per estimate (>= 2: it is a variance).
    hessian_epsilon: float = 0.1              # Finite-difference step.
    style_mixing: float = 0.9                 # Probability of mixing two latents per batch.
    ema_kimg: float = 5.0                     # EMA half-life in thousands of images.
    ema_rampup: float = 0.05                  # EMA half-life ramps up to ema_kimg over the first 1/rampup of images.
    amp: bool = False                         # bf16 autocast for the forward passes.
    seed: int = 0                             # Everything random derives from (seed, step).
    d_warmup_kimg: float = 0.0                # First images of a run: train D only (G and G_ema held), e.g. a
                                              # fresh D against a generator started with --init.
    d_features: str | None = None             # "segmenter": D also judges the frozen part segmenter's encoder
                                              # features (FeatureHeads), so a fresh D sees faces from the start.
    d_head_hidden: int = 0                    # FeatureHeads: a hidden layer of this width before each logit (0 = a
                                              # linear logit), so a head can judge how regions combine.
    stats_weight: float = 0.0                 # Attribute-statistics matching weight (AttributeStatistics), 0 = off.
    stats_judge: str | None = None            # Its judge: the stem of an attribute predictor (.safetensors + .json),
                                              # best not the one evaluate_gan measures with.
    stats_every: int = 4                      # Lazy attribute-statistics interval (steps): its judge halves the speed.
    stats_momentum: float = 0.02              # Share of each batch in the running statistics of generated images.
    stats_real_n: int = 8192                  # Renders the target statistics are measured on.

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", {int(k): int(v) for k, v in self.channels.items()})
        if self.d_channels is not None:
            object.__setattr__(self, "d_channels", {int(k): int(v) for k, v in self.d_channels.items()})
            if set(self.d_channels) != set(self.channels):
                raise ValueError(f"d_channels needs the resolutions {sorted(self.channels)}, "
                                 f"got {sorted(self.d_channels)}")
        object.__setattr__(self, "betas", tuple(self.betas))
        if self.hessian_k < 2 or self.hessian_epsilon <= 0 or self.hessian_every < 1 or self.hessian_weight < 0:
            raise ValueError("the Hessian penalty needs hessian_k >= 2, hessian_epsilon > 0, hessian_every >= 1 and "
                             "hessian_weight >= 0")
        if not self.d_warmup_kimg >= 0:
            raise ValueError(f"d_warmup_kimg must be >= 0, got {self.d_warmup_kimg}")
        if self.d_features not in (None, "segmenter"):
            raise ValueError(f"d_features must be null or \"segmenter\", got {self.d_features!r}")
        if self.d_head_hidden < 0:
            raise ValueError(f"d_head_hidden must be >= 0, got {self.d_head_hidden}")
        if not (self.stats_weight >= 0 and 0 < self.stats_momentum <= 1 and self.stats_real_n >= 2
                and self.stats_every >= 1):
            raise ValueError("attribute-statistics matching needs stats_weight >= 0, 0 < stats_momentum <= 1, "
                             "stats_real_n >= 2 and stats_every >= 1")
        if self.stats_weight > 0 and not self.stats_judge:
            raise ValueError("stats_weight > 0 needs stats_judge: the stem of an attribute predictor")

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(z_dim=self.z_dim, w_dim=self.w_dim, img_resolution=self.resolution,
                               mapping_layers=self.mapping_layers, channels=self.channels)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        if self.d_channels is not None:
            d["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; allowed: {sorted(known)}")
        return cls(**d)


class FeatureHeads(nn.Module):
    """Discriminator heads on a frozen network's features, one per scale, logits summed [N].

    After Projected GANs (Sauer et al., NeurIPS 2021): a discriminator on features that already know
    faces separates generated from real images long before one learning its own features from pixels
    does (a fresh D is at chance against a trained generator for tens of thousands of images).
    Each head: a 3x3 conv (leaky ReLU), average-pooled to 4x4, a linear layer to one logit; with
    ``hidden`` > 0 a hidden layer (leaky ReLU) first, as in StyleGAN's D epilogue: a linear logit sums
    what each of the 16 cells says, a hidden layer can judge their combination (glasses and grey hair).
    """

    def __init__(self, widths: Sequence[int], width: int = 64, hidden: int = 0):
        super().__init__()
        self.convs = nn.ModuleList([DiscriminatorConv(c, width, 3) for c in widths])

        def out() -> nn.Module:
            if hidden == 0:
                return FullyConnectedLayer(width * 16, 1)
            return nn.Sequential(FullyConnectedLayer(width * 16, hidden, lrelu=True), FullyConnectedLayer(hidden, 1))

        self.outs = nn.ModuleList([out() for _ in widths])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        logits = [out(F.adaptive_avg_pool2d(conv(f), 4).flatten(1)) for f, conv, out
                  in zip(features, self.convs, self.outs, strict=True)]
        return torch.stack(logits).sum(0).squeeze(1)


def step_seed(seed: int, step: int, stream: int) -> int:
    """Seed of one random stream of one step: below 8e6 for seed 0 and fewer than a million steps."""
    return seed * 2**40 + step * 8 + stream


def hessian_penalty(fn, x: torch.Tensor, k: int = 2, epsilon: float = 0.1,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The Hessian penalty of ``fn`` at ``x`` (Peebles et al., ECCV 2020), differentiable.

    For Rademacher directions v (entries +-1), ``v^T H v = sum_ij H_ij v_i v_j`` varies with v only
    through the off-diagonal entries of the Hessian H of each output with respect to the input, so its
    variance over v is zero exactly when every input coordinate acts on the output independently of
    the others. Each ``v^T H v`` is a central second difference
    ``(fn(x + eps v) - 2 fn(x) + fn(x - eps v)) / eps^2`` (exact for quadratic fn); the unbiased variance
    over ``k`` directions is taken per output element, its maximum per sample, averaged over the batch.
    x: [N, ...]; fn returns [N, ...].
    """
    v = to_device(torch.randint(0, 2, (k, *x.shape), generator=generator), x.device).to(x.dtype) * 2 - 1
    center = fn(x)
    second = torch.stack([(fn(x + epsilon * vi) - 2 * center + fn(x - epsilon * vi)) / epsilon ** 2 for vi in v])
    return second.var(dim=0, unbiased=True).flatten(1).amax(dim=1).mean()


class AttributeStatistics:
    """Attribute-statistics matching: a generator loss that pulls the mean and the correlations of a frozen
    attribute predictor's soft outputs on generated images towards their values on renders.

    A discriminator judges images one at a time, so a generator can make each image plausible and still get the
    joint distribution of the factors wrong: every fine-tune here amplified the renders' age-glasses correlation
    (0.35) to 0.55 (style mixing let them: bench/bench_mixing.py). This loss sees it directly. The judge's
    outputs (binary probabilities, categorical class probabilities, continuous values) are standardised by their
    mean and deviation on ``real_n`` renders, whose correlation matrix R is the target. On generated images a
    running mean mu and second moment M (``momentum``: each batch's share) give the covariance C = M - mu mu^T,
    and the loss is ``weight * (|mu|^2 + |C - R|_F^2) / momentum``: its gradient through the current batch is
    that of the mismatch itself, while the running statistics average the noise of a 32-image batch out. Only
    batches without style mixing count: a mixed batch takes age from one latent and glasses from another (the
    cutoff is random), so its correlation is far lower than that of the images a user samples. The judge should
    not be the predictor that ``evaluate_gan`` measures with (a second predictor, trained with another seed), so
    the evaluation stays an independent check.
    """

    def __init__(self, judge: nn.Module, real: Iterable[torch.Tensor], momentum: float):
        """``real``: batches of renders [B, 3, H, W] in [-1, 1]."""
        self.judge, self.momentum = judge, momentum
        with torch.no_grad():
            v = torch.cat([self.vector(batch) for batch in real])                     # [n, D]
        self.mean, self.std = v.mean(0), v.std(0).clamp_min(1e-3)
        z = (v - self.mean) / self.std
        self.target = z.T @ z / (len(z) - 1)                                          # R [D, D]
        self.running: tuple[torch.Tensor, torch.Tensor] | None = None                # (mu, M), saved in state.pt

    def vector(self, img: torch.Tensor) -> torch.Tensor:
        """The judge's soft outputs [N, D]: binary probabilities, class probabilities, continuous values."""
        out = self.judge.raw(self.judge.features(img))
        cols = []
        for name, o in out.items():
            kind = FACTOR_BY_NAME[name].kind
            cols.append(o.softmax(-1) if kind == "categorical" else (o.sigmoid() if kind == "binary" else o)[:, None])
        return torch.cat(cols, dim=1)

    def loss(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss, differentiable; the mismatch |mu|^2 + |C - R|^2, detached) for generated images."""
        z = (self.vector(img.float()) - self.mean) / self.std
        mu_b, m_b = z.mean(0), z.T @ z / len(z)
        if self.running is None:                                   # the first batch starts the running values
            mu, m, a = mu_b, m_b, 1.0
        else:
            a = self.momentum
            mu, m = self.running[0].lerp(mu_b, a), self.running[1].lerp(m_b, a)
        mismatch = mu.square().sum() + (m - torch.outer(mu, mu) - self.target).square().sum()
        self.running = (mu.detach(), m.detach())
        return mismatch / a, mismatch.detach()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {} if self.running is None else {"mu": self.running[0], "m": self.running[1]}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.running = (state["mu"], state["m"]) if state else None


def load_stats_judge(stem: str | Path, device: torch.device) -> nn.Module:
    """A frozen attribute predictor from ``stem``.safetensors/.json; ValueError if it is not there."""
    from interp.builtin import _frozen
    from interp.builtin.common import load_config, load_weights
    from interp.builtin.predictor import AttributePredictor, PredictorConfig

    stem = Path(stem)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    if not stem.with_suffix(".safetensors").exists() or not stem.with_suffix(".json").exists():
        raise ValueError(f"stats_judge: {stem}.safetensors and {stem}.json are needed (python -m "
                         f"interp.builtin.train_predictor --seed 1 --out {stem})")
    return _frozen(load_weights(AttributePredictor(load_config(stem, PredictorConfig)), stem), device)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` (on the CPU) on ``device``; to a GPU through pinned memory without waiting for the copy, so the
    host keeps queueing kernels (a plain copy from pageable memory waits for the GPU's queue to drain)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def render_batch(cfg: TrainConfig, step: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """The real images of one step: deterministic in (seed, step), 8-bit like the CPU renders.

    On the CPU through ``render``; on another device through ``render_torch`` on that device.
    """
    factors = sample_factors(cfg.batch, seed=step_seed(cfg.seed, step, 0))
    if torch.device(device).type == "cpu":
        images, _ = render(factors, size=cfg.resolution)
        return images_to_tensor(images)                                     # [N, 3, H, W] in [-1, 1]
    return to_8bit(render_torch(factors, size=cfg.resolution, device=device)[0])


def to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Round [-1, 1] images to the 256 levels that ``render``'s uint8 output has."""
    return (images + 1).mul_(127.5).add_(0.5).floor_().div_(127.5).sub_(1)


class RenderPrefetcher:
    """Renders the batches of the coming steps in a background thread so the step never waits."""

    def __init__(self, cfg: TrainConfig, start_step: int, depth: int = 4):
        self.cfg, self.next_step = cfg, start_step
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.waited = 0.0
        self.thread = threading.Thread(target=self._work, args=(start_step,), daemon=True)
        self.thread.start()

    def _work(self, step: int) -> None:
        while not self.stop.is_set():
            batch = render_batch(self.cfg, step)
            while not self.stop.is_set():
                try:
                    self.queue.put((step, batch), timeout=0.1)
                    break
                except queue.Full:
                    continue
            step += 1

    def get(self, step: int) -> torch.Tensor:
        t = time.perf_counter()
        got, batch = self.queue.get()
        self.waited += time.perf_counter() - t
        if got != step:
            raise RuntimeError(f"render prefetcher out of order: expected step {step}, got {got}")
        return batch

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


class Trainer:
    def __init__(self, cfg: TrainConfig, device: str | torch.device = "cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        torch.manual_seed(cfg.seed)
        self.G = Generator(cfg.generator_config()).to(self.device).train()
        self.G_ema = Generator(cfg.generator_config()).to(self.device).eval().requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.D = Discriminator(cfg.resolution, channels=cfg.d_channels or cfg.channels).to(self.device).train()
        self.features, self.heads = None, None           # d_features: a frozen judge and D's heads on it
        if cfg.d_features == "segmenter":
            from interp.builtin import load_segmenter

            self.features = load_segmenter(self.device)
            self.heads = FeatureHeads(self.features.config.widths, hidden=cfg.d_head_hidden).to(self.device).train()
        self.d_modules = [self.D] + ([self.heads] if self.heads is not None else [])  # what opt_d trains
        self.attr_stats = None                           # stats_weight: attribute-statistics matching
        if cfg.stats_weight > 0:
            factors = sample_factors(cfg.stats_real_n, seed=step_seed(cfg.seed, 2**36, 3))  # beyond every step's
            real = (to_8bit(render_torch({k: v[i:i + 512] for k, v in factors.items()}, size=cfg.resolution,
                                         device=self.device)[0]) for i in range(0, cfg.stats_real_n, 512))
            self.attr_stats = AttributeStatistics(load_stats_judge(cfg.stats_judge, self.device), real,
                                                  cfg.stats_momentum)
        r = cfg.r1_every / (cfg.r1_every + 1)            # lazy regularisation: adjust lr and betas
        fused = self.device.type == "cuda"              # one kernel for all parameters on a GPU
        self.opt_d = torch.optim.Adam([p for m in self.d_modules for p in m.parameters()], lr=cfg.lr_d * r,
                                      betas=(cfg.betas[0] ** r, cfg.betas[1] ** r), eps=1e-8, fused=fused)
        rg = cfg.pl_every / (cfg.pl_every + 1) if cfg.pl_weight > 0 else 1.0
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g * rg,
                                      betas=(cfg.betas[0] ** rg, cfg.betas[1] ** rg), eps=1e-8, fused=fused)
        self.step = 0
        self.images = 0                                  # images shown so far (batches may change on resume)
        self.pl_mean = torch.zeros([], device=self.device)
        self.lazy_stats: dict[str, torch.Tensor] = {}   # the lazy regularisers' last values, in every step's stats

    @property
    def nimg(self) -> int:
        return self.images

    def _train_d(self, on: bool) -> None:
        for module in self.d_modules:
            module.requires_grad_(on)

    def discriminate(self, img: torch.Tensor) -> torch.Tensor:
        """D's logits [N]: the pixel discriminator's, plus the feature heads' when ``d_features`` is set."""
        logits = self.D(img)
        if self.heads is not None:
            logits = logits + self.heads(self.features.encode(img))
        return logits

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp)

    def _latents(self, gen: torch.Generator) -> tuple[torch.Tensor, bool]:
        """A batch's ws [N, num_ws, w_dim], and whether two latents were mixed (``style_mixing``: its chance)."""
        z = to_device(torch.randn([self.cfg.batch, self.cfg.z_dim], generator=gen), self.device)
        ws = self.G.mapping(z, update_w_avg=True)
        if torch.rand([], generator=gen).item() < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], [], generator=gen))
            z2 = to_device(torch.randn([self.cfg.batch, self.cfg.z_dim], generator=gen), self.device)
            return torch.cat([ws[:, :cutoff], self.G.mapping(z2)[:, cutoff:]], dim=1), True
        return ws, False

    def train_step(self, real: torch.Tensor, sync: bool = True) -> dict[str, Any]:
        """One step of D and (after the warm-up) G. Returns the losses and the lazy regularisers' last values:
        floats, or with ``sync=False`` 0-d tensors, so that on a GPU the host need not wait for the step."""
        cfg, stats = self.cfg, {}
        gen = torch.Generator().manual_seed(step_seed(cfg.seed, self.step, 1))
        torch.manual_seed(step_seed(cfg.seed, self.step, 2))                # synthesis noise
        real = real.to(self.device)
        warming_up = self.d_warming_up
        if not warming_up:
            self._generator_step(gen, stats)

        # Discriminator: logistic loss, lazy R1 on reals.
        self._train_d(True)
        with torch.no_grad(), self._autocast():
            fake = self.G.synthesis(self._latents(gen)[0], noise_mode="random")
        do_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        real_in = real.detach().requires_grad_(do_r1)
        with self._autocast():
            logits_fake = self.discriminate(fake.float()).float()
            logits_real = self.discriminate(real_in).float()
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        if do_r1:
            (grad,) = torch.autograd.grad(logits_real.sum(), real_in, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss_d = loss_d + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
            self.lazy_stats["r1"] = r1.detach()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        stats.update(loss_d=loss_d.detach(), real=logits_real.detach().mean(), fake=logits_fake.detach().mean())

        self.step += 1
        self.images += cfg.batch
        if not warming_up:
            self._update_ema()
        stats.update(self.lazy_stats)
        return {k: float(v) for k, v in stats.items()} if sync else stats

    @property
    def d_warming_up(self) -> bool:
        """Whether this step trains D only (the run's first ``d_warmup_kimg`` thousand images)."""
        return self.images < self.cfg.d_warmup_kimg * 1000

    def _generator_step(self, gen: torch.Generator, stats: dict[str, float]) -> None:
        """Non-saturating logistic loss, plus the lazy path-length and Hessian regularisers when due."""
        cfg = self.cfg
        self._train_d(False)
        with self._autocast():
            ws, mixed = self._latents(gen)
            fake = self.G.synthesis(ws, noise_mode="random")
            loss_g = F.softplus(-self.discriminate(fake).float()).mean()
        stats["loss_g"] = loss_g.detach()
        if self.attr_stats is not None and not mixed and self.step % cfg.stats_every == 0:   # unmixed: as sampled
            loss_stats, self.lazy_stats["attr_stats"] = self.attr_stats.loss(fake)
            loss_g = loss_g + loss_stats * (cfg.stats_weight * cfg.stats_every)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if cfg.pl_weight > 0 and self.step % cfg.pl_every == 0:
            self.lazy_stats["pl"] = self._path_length(gen)
        if cfg.hessian_weight > 0 and self.step % cfg.hessian_every == 0:
            self.lazy_stats["hessian"] = self._hessian(gen)
        self.opt_g.step()

    def _path_length(self, gen: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        n = max(cfg.batch // 2, 1)
        ws = self.G.mapping(to_device(torch.randn([n, cfg.z_dim], generator=gen), self.device))
        img = self.G.synthesis(ws, noise_mode="random")
        noise = to_device(torch.randn(img.shape, generator=gen), self.device) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
        # The running mean starts at the first measurement (NVIDIA's starts at 0, which for a fine-tune of a
        # trained generator means a large pull towards short paths for the first few hundred steps).
        # 0 until measured (lengths are > 0); saved in state.pt. torch.where: no wait for the GPU.
        mean = lengths.mean().detach()
        self.pl_mean = torch.where(self.pl_mean == 0, mean, self.pl_mean.lerp(mean, 0.01))
        loss = (lengths - self.pl_mean).square().mean() * cfg.pl_weight * cfg.pl_every
        loss.backward()
        return mean

    def _hessian(self, gen: torch.Generator) -> torch.Tensor:
        """Hessian penalty of the synthesis w.r.t. w (one w for every layer), on a half batch."""
        cfg = self.cfg
        n = max(cfg.batch // 2, 1)
        w = self.G.mapping(to_device(torch.randn([n, cfg.z_dim], generator=gen), self.device))[:, 0]  # [n, w_dim]

        def synthesize(w_: torch.Tensor) -> torch.Tensor:        # constant noise: the same in every evaluation
            return self.G.synthesis(w_[:, None].expand(-1, self.G.num_ws, -1), noise_mode="const")

        with self._autocast():
            penalty = hessian_penalty(synthesize, w, cfg.hessian_k, cfg.hessian_epsilon, gen).float()
        (penalty * cfg.hessian_weight * cfg.hessian_every).backward()
        return penalty.detach()

    @torch.no_grad()
    def _update_ema(self) -> None:
        cfg = self.cfg
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup > 0:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1 - beta)  # few kernels
        torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))

    def init_generator(self, path: Path) -> None:
        """Start G and G_ema from an exported generator (a new run; D stays fresh). ValueError on a mismatch."""
        from interp.models.loaders import read_checkpoint

        if self.step:
            raise ValueError("--init starts a new run; this run has already trained")
        config, state_dict = read_checkpoint(path)
        ours = self.G.state_dict()
        shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
        if shapes != {k: tuple(v.shape) for k, v in ours.items()}:
            raise ValueError(f"{Path(path).name} does not fit this training config (its generator: {config}); "
                             "give the same sizes with --config")
        self.G.load_state_dict(state_dict)
        self.G_ema.load_state_dict(state_dict)

    # -- checkpointing ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"config": json.dumps(self.cfg.to_dict()), "step": self.step, "images": self.images,
                "pl_mean": self.pl_mean, "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(),
                "D": self.D.state_dict(), "heads": self.heads.state_dict() if self.heads is not None else {},
                "attr_stats": self.attr_stats.state_dict() if self.attr_stats is not None else {},
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(path)                                  # atomic: an interrupted save keeps the old state

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu",
             overrides: dict[str, Any] | None = None) -> "Trainer":
        """Resume from ``state.pt``; ``overrides`` may change the keys of ``RESUMABLE_KEYS``."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        cfg = TrainConfig.from_dict(json.loads(state["config"]))
        bad = sorted(set(overrides or {}) - set(RESUMABLE_KEYS))
        if bad:
            raise ValueError(f"a resumed run can only change {list(RESUMABLE_KEYS)}, not {bad}")
        trainer = cls(dataclasses.replace(cfg, **(overrides or {})), device)
        trainer.G.load_state_dict(state["G"])
        trainer.G_ema.load_state_dict(state["G_ema"])
        trainer.D.load_state_dict(state["D"])
        if trainer.heads is not None:
            trainer.heads.load_state_dict(state["heads"])
        if trainer.attr_stats is not None:
            running = state.get("attr_stats", {})
            trainer.attr_stats.load_state_dict({k: v.to(trainer.device) for k, v in running.items()})
        trainer.opt_g.load_state_dict(state["opt_g"])
        trainer.opt_d.load_state_dict(state["opt_d"])
        trainer.step, trainer.pl_mean = int(state["step"]), state["pl_mean"].to(trainer.device)
        trainer.images = int(state.get("images", trainer.step * cfg.batch))  # older states: fixed batch
        return trainer


# ------------------------------------------------------------------------------------------------
# Samples and export


@torch.no_grad()
def sample_grid(G: Generator, seed: int = 0, rows: int = 8, psi: float = 1.0) -> np.ndarray:
    """An uint8 [rows*H, rows*W, 3] grid of generated faces for fixed seeds."""
    z = G.sample_z(rows * rows, seed)
    img = G.synthesis(G.mapping(z, truncation_psi=psi), noise_mode="const")
    img = (img.clamp(-1, 1) + 1) * 127.5                                    # [N, 3, H, W]
    n, c, h, w = img.shape
    grid = img.reshape(rows, rows, c, h, w).permute(0, 3, 1, 4, 2).reshape(rows * h, rows * w, c)
    return grid.round().to(torch.uint8).cpu().numpy()


def save_samples(G: Generator, path: Path, seed: int = 0) -> None:
    """Two 8x8 grids side by side: psi 1.0 (left) and psi 0.7 (right)."""
    from PIL import Image

    a, b = sample_grid(G, seed, psi=1.0), sample_grid(G, seed, psi=0.7)
    gap = np.full((a.shape[0], 8, 3), 255, dtype=np.uint8)
    Image.fromarray(np.concatenate([a, gap, b], axis=1)).save(path)


def quick_metrics(G: Generator, n: int = 256, seed: int = 12345) -> dict[str, float]:
    """Factor-distribution gaps on a small batch (the judges of interp.builtin), for the training log."""
    from interp.builtin.evaluate_gan import factor_gaps

    return factor_gaps(G, n=n, seed=seed)


def export(trainer: Trainer, out: Path) -> None:
    from interp.models.loaders import save_generator

    out.parent.mkdir(parents=True, exist_ok=True)
    save_generator(trainer.G_ema.cpu(), out)
    save_samples(trainer.G_ema, out.parent / "samples.png")


# ------------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m interp.builtin.train_gan", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, default=Path("runs/gan/faces64"), help="run folder (resumes if it has state.pt)")
    p.add_argument("--kimg", type=float, default=400, help="train until this many thousand images in total")
    p.add_argument("--minutes", type=float, default=None, help="also stop (and save) after this much wall time")
    p.add_argument("--config", type=str, default=None,
                   help=f"JSON with TrainConfig overrides (a resumed run: only {', '.join(RESUMABLE_KEYS)})")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (new runs only)")
    p.add_argument("--save-every", type=float, default=2.0, help="checkpoint interval, kimg")
    p.add_argument("--snapshot-every", type=float, default=20.0, help="sample grid + quick metrics interval, kimg")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    p.add_argument("--export", type=Path, default=None, help="write the EMA generator (safetensors) and samples.png")
    p.add_argument("--init", type=Path, default=None,
                   help="a new run starts G and G_ema from this exported generator (safetensors); D starts fresh")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = True

    args.run.mkdir(parents=True, exist_ok=True)
    state_path = args.run / "state.pt"
    if args.export is not None and not state_path.exists():
        p.error(f"nothing to export: {state_path} does not exist (train first)")
    try:
        overrides = json.loads(args.config) if args.config else {}
        if not isinstance(overrides, dict):
            raise ValueError(f"--config must be a JSON object, got {args.config!r}")
        if state_path.exists():
            if args.init is not None:
                raise ValueError(f"--init starts a new run, but {state_path} exists (it would resume)")
            trainer = Trainer.load(state_path, args.device, overrides)
            print(f"resumed {state_path} at {trainer.nimg / 1000:.1f} kimg")
        else:
            if args.amp:
                overrides["amp"] = True
            trainer = Trainer(TrainConfig.from_dict(overrides), args.device)
            if args.init is not None:
                trainer.init_generator(args.init)
                print(f"new run from the generator {args.init.name}")
    except (ValueError, OSError) as e:                             # json.JSONDecodeError is a ValueError too
        p.error(str(e))
    if args.export is not None:
        export(trainer, args.export)
        print(f"wrote {args.export} and {args.export.parent / 'samples.png'} ({trainer.nimg / 1000:.1f} kimg)")
        return
    (args.run / "config.json").write_text(json.dumps(trainer.cfg.to_dict(), indent=1))

    cfg, on_cpu = trainer.cfg, trainer.device.type == "cpu"
    total = int(args.kimg * 1000)
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else math.inf
    prefetch = RenderPrefetcher(cfg, trainer.step) if on_cpu else None     # elsewhere: render on the device

    def crossed(every_kimg: float, before: int) -> bool:
        every = max(int(every_kimg * 1000), 1)
        return trainer.nimg // every > before // every

    log = (args.run / "log.jsonl").open("a")
    bar = tqdm(total=total, initial=trainer.nimg, unit="img", unit_scale=True, dynamic_ncols=True)
    t0, n0 = time.perf_counter(), trainer.nimg
    stop = threading.Event()                     # SIGTERM / SIGINT: finish the step, save, exit
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while trainer.nimg < total and not stop.is_set() and time.monotonic() < deadline:
            real = prefetch.get(trainer.step) if prefetch else render_batch(cfg, trainer.step, trainer.device)
            before = trainer.nimg
            logged = (trainer.step + 1) % 50 == 0            # only then the host waits for the step's numbers
            stats = trainer.train_step(real, sync=logged)
            bar.update(cfg.batch)
            if logged:
                dt = time.perf_counter() - t0
                stats.update(kimg=trainer.nimg / 1000, img_s=(trainer.nimg - n0) / dt,
                             render_wait_s=prefetch.waited if prefetch else 0.0, time=time.time())
                log.write(json.dumps(stats) + "\n")
                log.flush()
                g = f"{stats['loss_g']:.2f}" if "loss_g" in stats else "held"         # D warm-up: G is held
                bar.set_postfix(g=g, d=f"{stats['loss_d']:.2f}", ips=f"{stats['img_s']:.0f}")
            if crossed(args.save_every, before):
                trainer.save(state_path)
            if crossed(args.snapshot_every, before):
                G = trainer.G_ema if on_cpu else copy.deepcopy(trainer.G_ema).cpu()  # the judges run on the CPU
                save_samples(G, args.run / f"samples_{trainer.nimg // 1000:05d}.png")
                try:
                    metrics = quick_metrics(G)
                    log.write(json.dumps({"kimg": trainer.nimg / 1000, "metrics": metrics}) + "\n")
                    log.flush()
                except Exception as e:                          # noqa: BLE001 - judges may not be trained yet
                    print(f"quick metrics skipped: {e}")
    finally:
        trainer.save(state_path)
        if prefetch:
            prefetch.close()
        bar.close()
        log.close()
    print(f"saved {state_path} at {trainer.nimg / 1000:.1f} kimg")


if __name__ == "__main__":
    main()
