"""Text-driven editing with CLIP (StyleCLIP, Patashnik et al., ICCV 2021), in PyTorch, for any generator.

Two methods, both through open_clip (the built-in tiny CLIP for ``faces64``, ViT-B-32 for Hub models;
see :func:`interp.methods.naming.load_paired_clip`):

**Global directions in StyleSpace S** (real time after a one-off precomputation per model and CLIP)::

    clip, _ = load_paired_clip("faces64")
    rel = channel_relevance(G, clip, progress=lambda f, text: print(f"{f:.0%} {text}"))   # cached on disk
    side = side_directions(clip, default_vocabulary("faces64"), neutral="a face")      # once per vocabulary
    edit, n = global_edit(rel, clip, "a smiling face", "a face", alpha=3.0, beta=0.5, side=side)
    img = render(G, latent, [edit])                  # a DirectionEdit in s: it stacks, saves in recipes

- :func:`channel_relevance`: for every S channel (the concatenated styles of every style layer), the
  mean change of the CLIP image embedding when the channel is pushed by its standard deviation,
  over ``n`` samples. StyleCLIP measures it by pushing each channel both ways (two syntheses per
  channel and sample); here it is the same quantity to first order, computed exactly by reverse-mode
  autodiff: one backward pass per embedding axis gives every channel at once. On ``faces64`` the two
  agree (median cosine 0.995 between the per-channel changes for pushes of 2 std), and the gradient
  version is about 25x faster (4x more with the reduced embedding below), so more samples fit in the
  budget, and the sample count is what matters most for purity (16 samples: 57%, 64: 62%). The
  embedding is first reduced to its top ``dims`` principal axes over generated images (the axes along
  which images actually differ; 16 keep the purity of all 64 on ``faces64``). Cached on disk by model
  hash, CLIP weights and parameters (``interp.diskcache``). The sum over samples splits into blocks
  (:func:`relevance_sums`), which is how ``python -m interp.precompute relevance`` shares the work
  between processes, after the embedding basis (:func:`basis_embeddings`, :func:`embedding_basis`).
- :func:`global_edit`: the text direction ``t(target) - t(neutral)`` (each averaged over prompt
  ``TEMPLATES``), one score per channel, channels scoring at most ``beta`` times the best one zeroed,
  the rest pushed in proportion to their standard deviation and the *square* of their score (signed),
  so that the purest channels carry most of the edit (faces64, mean purity of the 14 prompts: score
  65.0%, squared 65.3%, cubed 65.0%; rewordings 65.6 / 66.0 / 65.8%). ``alpha`` is the strength in
  standard deviations of sampled styles along the resulting direction (the unit of every tab).

Scores (``scoring``):

- ``"conditional"`` (default): a channel's share of its CLIP change that goes to the target, with the
  side effects read along the *other* attributes of a vocabulary (``side``; by default the model
  domain's vocabulary of :mod:`interp.methods.naming`): ``p / (|p| + sum_j |r_j|)``, where ``p`` is the
  change along the text direction and ``r_j`` along side attribute ``j``, each in units of how much
  images naturally vary along that text direction. Attributes the target itself names (text cosine
  >= ``SAME_ATTRIBUTE``) are not side effects. This is InterFaceGAN's conditional manipulation asked
  of CLIP, channel by channel: on ``faces64`` it raises the mean purity of the edits (the named
  factor's share of all factor changes, measured by the built-in predictor) from 56% to 61% at the
  same strength (bench/bench_text.py).
- Categorical values: "blond hair" against "a face" hardly moves the hair (every face has some hair
  colour; the text direction mostly says "a hair colour is mentioned": +0.01 of the factor's range,
  purity 8%). When the target names one value of a ``"a / b / c"`` vocabulary line, it is compared
  with the other values, weighted by how often CLIP sees each in generated images
  (:func:`categorical_contrast`; the edit's name shows it): +0.11, purity 49%. A target that names
  no value of such a line counts all its values as side effects, whatever their text cosine ("an old
  face" is close to "a face with blond hair" in the tiny CLIP, yet hair colour is not age). Together:
  the mean purity of the 14 prompts rises from 61.2% to 65.0% (rewordings 61.7% to 65.6%).
- ``"styleclip"``: StyleCLIP's relevance, the cosine between a channel's (normalised) CLIP change and
  the text direction.

What did *not* help, measured on ``faces64`` (so the next person need not retry it): whitening the
embedding changes, t-statistics or sign agreement across samples, weighting by the size of a channel's
effect, and least-squares combinations of channels that make the *predicted* CLIP change point exactly
along the text (or hold every side attribute fixed). The last one looks pure to CLIP and is not: with
a thousand channels the solver finds combinations that move CLIP's reading ("glasses +0.09") without
moving the face (the predictor: +0.015), an adversarial edit. Selecting channels keeps the edit honest.

**Latent optimization in W+** (seconds on a CPU at 64x64; an S inversion is optimized in S)::

    result = optimize(G, latent, clip, "a face with glasses", steps=100, l2=0.02, identity=0.1,
                      neutral="a face", features=load_predictor().features, edits=recipe.edits, mask=brush)
    result.ws, result.origin["scores"]               # a new Latent; the CLIP score after every step

The CLIP score is ``e(image) . t(text)`` (with a neutral text: ``e . (t(text) - t(neutral))``, which
rewards what the text adds to the neutral one), averaged over ``views`` randomly shifted and scaled
copies of the image: a single view lets the optimizer fool a small CLIP with pixel patterns. The loss
is ``1 - score``, plus ``direction`` times ``1 - cos(e - e0, text direction)`` (the change itself
should point along the text, StyleGAN-NADA's directional loss; off by default, it did not help
here), plus ``l2`` times the squared distance to the start in W+ (per row), plus ``identity`` times a
feature distance to the start (``features``, e.g. the built-in predictor's penultimate features;
pixels when None). The stacked ``edits`` are applied during the optimization. Early stop when the
score has not improved for ``patience`` steps. With ``mask`` (paint by word: [H, W] in [0, 1], 1 =
the painted region) CLIP sees the image only inside the mask (outside it sees the start image) and
``preserve`` times the squared change outside the mask keeps the rest of the image as it was; use the
``PAINT`` settings (no L2 or identity term: they would hold the painted region too). Optimizing
against CLIP remains fragile (StyleCLIP's "stability issues"): on ``faces64`` some starting faces
move the wrong way (bench/bench_text.py).

Inputs are checked: empty text, a neutral equal to the target, NaN alpha, beta outside [0, 1] and an
empty mask raise ``ValueError`` with a sentence a person understands.
"""
from __future__ import annotations

import hashlib
import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from interp import diskcache
from interp.edit import (AnyEdit, DirectionEdit, Latent, layer_rows, projection_stds, sample_latents, split_styles,
                         style_layers_for_rows, synthesize_styles, synthesize_ws)
from interp.models.stylegan2 import Generator

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BETA",
    "OPT_SPACES",
    "PAINT",
    "SAME_ATTRIBUTE",
    "SCORINGS",
    "TEMPLATES",
    "Relevance",
    "Side",
    "basis_embeddings",
    "channel_relevance",
    "categorical_contrast",
    "channel_scores",
    "check_texts",
    "clip_hash",
    "embedding_basis",
    "factor_changes",
    "global_edit",
    "kept_channels",
    "optimize",
    "relevance_entry",
    "relevance_sums",
    "relevance_tensors",
    "side_directions",
    "style_samples",
    "text_direction",
    "text_embedding",
]

TEMPLATES = ("{}", "a photo of {}", "a picture of {}", "an image of {}", "a rendering of {}")
SCORINGS = ("conditional", "styleclip")
OPT_SPACES = ("ws", "w")    # optimize one offset per ws row (W+), or one offset shared by the rows (W)
SAME_ATTRIBUTE = 0.3        # a vocabulary entry this close (text cosine) to the target names the same attribute
DEFAULT_ALPHA = 3.0         # strength, std of sampled styles along the direction
DEFAULT_BETA = 0.5          # keep channels scoring more than half the best one
# Paint by word on faces64 (glasses in a brushed eye region): the outside-mask term replaces the L2 pull and
# the identity term, which otherwise hold the painted region too (measured: glasses +1.00 instead of +0.01).
PAINT = {"l2": 0.0, "identity": 0.0, "preserve": 10.0, "steps": 200}
MAX_TEXT = 200              # characters
GENERIC_NEUTRALS = ("a face", "a photo", "a photo of a person", "a person")   # edit names omit these
CACHE_NAMESPACE = "styleclip"
CACHE_VERSION = 3           # 3: with the image embeddings
ProgressFn = Callable[[float, str], Any]
_CLIP_MEMO_LOCK = threading.Lock()          # guards the per-CLIP memos below


# ----------------------------------------------------------------------------------------------------
# Text


def _clean_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"the {what} text is empty: describe the change, e.g. 'a smiling face'")
    value = " ".join(value.split())
    if len(value) > MAX_TEXT:
        raise ValueError(f"the {what} text is {len(value)} characters long; at most {MAX_TEXT}")
    return value


def check_texts(target: Any, neutral: Any = None) -> tuple[str, str | None]:
    """Stripped target (and neutral) text; ValueError for empty, too long or identical texts."""
    target = _clean_text(target, "target")
    if neutral is None:
        return target, None
    neutral = _clean_text(neutral, "neutral")
    if neutral.lower() == target.lower():
        raise ValueError(f"the neutral text equals the target text ({target!r}): the neutral text describes "
                         "the image without the change, e.g. 'a face' for 'a smiling face'")
    return target, neutral


_TEXT_MEMO: "weakref.WeakKeyDictionary[Any, dict[tuple, Tensor]]" = weakref.WeakKeyDictionary()
_TEXT_MEMO_SIZE = 256       # texts remembered per CLIP (a slider move re-uses the texts of the last edit)


def text_embedding(clip, text: str, templates: Sequence[str] = TEMPLATES) -> Tensor:
    """Unit embedding [E] of ``text``: the normalised mean over prompt templates (``"{}"`` is the text).

    Remembered per CLIP object (the last ``_TEXT_MEMO_SIZE`` texts): moving alpha or beta encodes nothing.
    """
    key = (text, tuple(templates))
    with _CLIP_MEMO_LOCK:
        memo = _TEXT_MEMO.setdefault(clip, {})
        hit = memo.get(key)
    if hit is not None:
        return hit
    emb = clip.encode_text([t.format(text) for t in templates]).float()   # [T, E], unit rows
    emb = F.normalize(emb.mean(0), dim=0).cpu()
    with _CLIP_MEMO_LOCK:
        if len(memo) >= _TEXT_MEMO_SIZE:
            memo.pop(next(iter(memo)))
        memo[key] = emb
    return emb


def text_direction(clip, target: str, neutral: str, templates: Sequence[str] = TEMPLATES) -> Tensor:
    """Unit text direction [E]: ``t(target) - t(neutral)``, each averaged over ``templates``."""
    target, neutral = check_texts(target, neutral)
    return F.normalize(text_embedding(clip, target, templates) - text_embedding(clip, neutral, templates), dim=0)


@dataclass(frozen=True)
class Side:
    """A vocabulary's attributes as text directions: the side effects ``conditional`` scoring reads.

    directions: [K, E] unit ``t(positive) - t(negative or neutral)`` per phrase
    values:     [K, E] unit ``t(positive)`` per phrase (a categorical value's own embedding)
    phrases:    the parsed vocabulary (:class:`interp.methods.naming.Phrase`; ``group`` marks categorical values)
    neutral:    the neutral text the single phrases were compared with
    """

    directions: Tensor
    values: Tensor
    phrases: tuple
    neutral: str

    @property
    def shape(self) -> torch.Size:
        return self.directions.shape

    def group_of(self, index: int) -> list[int]:
        """Indices of the values of the categorical attribute phrase ``index`` belongs to ([] if none)."""
        group = self.phrases[index].group
        return [i for i, p in enumerate(self.phrases) if group is not None and p.group == group]


def side_directions(clip, vocabulary: str | Sequence[str], neutral: str,
                    templates: Sequence[str] = TEMPLATES) -> Side:
    """The vocabulary's attributes (the side effects ``conditional`` looks at), as a :class:`Side`.

    Lines as in :func:`interp.methods.naming.parse_vocabulary`: ``"positive | negative"`` gives
    ``t(positive) - t(negative)``, a single phrase (or a value of a ``"a / b / c"`` line)
    ``t(phrase) - t(neutral)``. Pass the domain's neutral text (``naming.NEUTRAL``); compute once per
    vocabulary and pass it to :func:`global_edit` as ``side``.
    """
    from interp.methods.naming import parse_vocabulary

    neutral = _clean_text(neutral, "neutral")
    phrases = tuple(parse_vocabulary(vocabulary))
    values = [text_embedding(clip, p.positive, templates) for p in phrases]
    rows = [v - text_embedding(clip, p.negative or neutral, templates) for v, p in zip(values, phrases)]
    return Side(F.normalize(torch.stack(rows), dim=1), torch.stack(values), phrases, neutral)


# ----------------------------------------------------------------------------------------------------
# Channel relevance


@dataclass(frozen=True)
class Relevance:
    """What pushing each S channel does to the CLIP image embedding (text independent; one per model and CLIP).

    changes:     [C, K] mean embedding change per +1 std push of each channel, in ``basis`` coordinates
    basis:       [K, E] orthonormal principal axes of the image embeddings (rows)
    variances:   [K] variance of image embeddings along each axis (readouts are z-scored with it)
    channel_std: [C] standard deviation of each channel over sampled styles
    s_samples:   [m, C] sampled styles: an edit's unit is their standard deviation along its direction
    image_embeddings: [b, E] unit CLIP embeddings of the generated images the basis came from, or None
    layers:      the style layers, in synthesis order; the C channels are their concatenation
    rows:        the ws rows feeding them (every row): the ``layers`` of the edits
    """

    changes: Tensor
    basis: Tensor
    variances: Tensor
    channel_std: Tensor
    s_samples: Tensor
    layers: tuple[str, ...]
    sizes: tuple[int, ...]
    rows: tuple[int, ...]
    model_id: str = ""
    model_hash: str = ""
    clip_id: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    image_embeddings: Tensor | None = None

    @property
    def num_channels(self) -> int:
        return int(self.changes.shape[0])

    def channel_name(self, index: int) -> str:
        """``'b16.conv0:30'``: the layer and channel of a concatenated index."""
        for name, size in zip(self.layers, self.sizes):
            if index < size:
                return f"{name}:{index}"
            index -= size
        raise IndexError(f"channel {index} is out of range; the model has {self.num_channels} S channels")


_CLIP_HASHES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, str]]" = weakref.WeakKeyDictionary()


def clip_hash(clip) -> str:
    """Short sha256 of a CLIP's weights (memoised per model until its weights change in place)."""
    model = clip.model
    version = sum(t._version for t in model.state_dict(keep_vars=True).values())
    with _CLIP_MEMO_LOCK:
        hit = _CLIP_HASHES.get(model)
        if hit is not None and hit[0] == version:
            return hit[1]
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    value = h.hexdigest()[:16]
    with _CLIP_MEMO_LOCK:
        _CLIP_HASHES[model] = (version, value)
    return value


def _check_count(value: Any, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def _split(G: Generator, s: Tensor) -> dict[str, Tensor]:
    sizes = [G.synthesis.layer(n).affine.weight.shape[0] for n in G.style_layers]
    return dict(zip(G.style_layers, s.split(sizes, dim=1)))


def style_samples(G: Generator, seed: int, std_samples: int) -> tuple[Tensor, Tensor]:
    """Sampled styles [m, C] (truncation 1, seed + 1: the edit unit) and each channel's std [C]."""
    s_samples = sample_latents(G, "s", std_samples, seed + 1)              # [m, C]
    return s_samples, s_samples.std(0).clamp_min(1e-8)


@torch.no_grad()
def basis_embeddings(G: Generator, clip, seed: int, psi: float, basis_samples: int, batch_size: int,
                     start: int = 0, stop: int | None = None) -> Tensor:
    """CLIP embeddings [stop - start, E] of the basis samples ``start .. stop`` (of ``basis_samples``).

    Rendered ``4 * batch_size`` at a time; blocks starting at multiples of that give the numbers of one pass.
    """
    stop = basis_samples if stop is None else stop
    z = G.sample_z(basis_samples, seed + 2)[start:stop]
    return torch.cat([clip.embed_images(G.synthesis(G.mapping(zc, truncation_psi=psi))).cpu()
                      for zc in z.split(batch_size * 4)])


def embedding_basis(embs: Tensor, dims: int) -> dict[str, Tensor]:
    """From image embeddings [b, E]: the top ``dims`` principal axes ``basis`` [K, E], the ``variances``
    [K] along them and the ``image_embeddings`` themselves."""
    values, vectors = torch.linalg.eigh(torch.cov(embs.T.double()))       # ascending
    k = min(dims, embs.shape[1])
    return {"basis": vectors.flip(1)[:, :k].T.float(), "variances": values.flip(0)[:k].float().clamp_min(1e-12),
            "image_embeddings": embs}


def relevance_sums(G: Generator, clip, z: Tensor, psi: float, channel_std: Tensor, basis: Tensor, batch_size: int,
                   on_batch: Callable[[int], Any] | None = None) -> Tensor:
    """Sum over the samples z [n, z_dim] of each channel's embedding change per std push: [C, K] float64.

    The relevance is this sum over all ``n`` samples divided by ``n``, so sums of disjoint blocks add
    up. ``on_batch(samples)`` is called after every batch of ``batch_size`` samples.
    """
    device = G.mapping.w_avg.device
    k = basis.shape[0]
    std_dev = channel_std.to(device)
    basis_dev = basis.to(device)
    cot = torch.eye(k, device=device)                                      # one backward pass per axis
    total = torch.zeros(channel_std.numel(), k, dtype=torch.float64)
    for zc in z.split(batch_size):
        with torch.no_grad():
            ws = G.mapping(zc, truncation_psi=psi)
            s0 = torch.cat(list(G.styles(ws).values()), dim=1)              # [B, C]
        s = s0.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            e = clip.embed_images(G.synthesis_from_styles(_split(G, s))) @ basis_dev.T   # [B, K]
            grads, = torch.autograd.grad(e, s, cot[:, None, :].expand(k, s.shape[0], k), is_grads_batched=True)
        total += (grads * std_dev).sum(1).T.double().cpu()                 # [K, B, C] -> [C, K]
        if on_batch is not None:
            on_batch(zc.shape[0])
    return total


def relevance_tensors(total: Tensor, n: int, basis: Mapping[str, Tensor], s_samples: Tensor,
                      channel_std: Tensor) -> dict[str, Tensor]:
    """The cache entry of :func:`channel_relevance`: the summed changes of all ``n`` samples, the
    :func:`embedding_basis` and the :func:`style_samples`."""
    return {"changes": (total / n).float(), "basis": basis["basis"], "variances": basis["variances"],
            "channel_std": channel_std, "s_samples": s_samples[:min(s_samples.shape[0], 1000)].contiguous(),
            "image_embeddings": basis["image_embeddings"]}


def _compute_relevance(G: Generator, clip, n: int, seed: int, psi: float, dims: int, basis_samples: int,
                       std_samples: int, batch_size: int, progress: ProgressFn | None) -> dict[str, Tensor]:
    report = progress or (lambda fraction, text: None)
    report(0.0, "sampling styles")
    s_samples, channel_std = style_samples(G, seed, std_samples)
    basis = embedding_basis(basis_embeddings(G, clip, seed, psi, basis_samples, batch_size), dims)
    report(0.05, f"CLIP embedding reduced to its top {basis['basis'].shape[0]} axes")
    done = 0

    def on_batch(count: int) -> None:
        nonlocal done
        done += count
        report(0.05 + 0.95 * done / n, f"channel relevance: {done}/{n} samples")

    total = relevance_sums(G, clip, G.sample_z(n, seed), psi, channel_std, basis["basis"], batch_size, on_batch)
    return relevance_tensors(total, n, basis, s_samples, channel_std)


def relevance_entry(G: Generator, clip, n: int = 64, seed: int = 0, psi: float = 0.7, dims: int = 16,
                    basis_samples: int = 256, std_samples: int = 4000, batch_size: int = 8
                    ) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(cache key, metadata, params) of :func:`channel_relevance`'s entry (arguments checked as it checks them)."""
    _check_count(n, "n (samples)", 1)
    _check_count(dims, "dims", 1)
    _check_count(basis_samples, "basis_samples", 2)
    _check_count(std_samples, "std_samples", 2)
    _check_count(batch_size, "batch_size", 1)
    if not (isinstance(psi, (int, float)) and math.isfinite(psi) and 0 <= psi <= 2):
        raise ValueError(f"psi must be a number in [0, 2], got {psi!r}")
    mh = diskcache.model_hash(G)
    params = {"v": CACHE_VERSION, "clip": clip_hash(clip), "n": n, "seed": int(seed), "psi": float(psi),
              "dims": dims, "basis_samples": basis_samples, "std_samples": std_samples}
    return diskcache.make_key(mh, params), {"model_hash": mh, "clip": params["clip"]}, params


def channel_relevance(G: Generator, clip, n: int = 64, seed: int = 0, psi: float = 0.7, dims: int = 16,
                      basis_samples: int = 256, std_samples: int = 4000, batch_size: int = 8, cache: bool = True,
                      model_id: str = "", progress: ProgressFn | None = None) -> Relevance:
    """How each S channel moves the CLIP image embedding (see the module docstring); cached on disk.

    n samples (seed, truncation psi) are averaged; dims: principal axes of the embedding kept;
    batch_size: samples per backward pass (lower it for large generators);
    progress(fraction, text) is called after every batch.
    """
    key, metadata, params = relevance_entry(G, clip, n, seed, psi, dims, basis_samples, std_samples, batch_size)
    mh = metadata["model_hash"]
    tensors = diskcache.cached(
        CACHE_NAMESPACE, key,
        lambda: _compute_relevance(G, clip, n, int(seed), float(psi), dims, basis_samples, std_samples, batch_size,
                                   progress),
        metadata=metadata, enabled=cache)
    if progress is not None:
        progress(1.0, "channel relevance ready")
    layers = tuple(G.style_layers)
    sizes = tuple(G.synthesis.layer(n_).affine.weight.shape[0] for n_ in layers)
    return Relevance(tensors["changes"], tensors["basis"], tensors["variances"], tensors["channel_std"],
                     tensors["s_samples"], layers, sizes, layer_rows(G, "all"), model_id, mh, params["clip"], params,
                     tensors["image_embeddings"])


# ----------------------------------------------------------------------------------------------------
# Global directions


def _readout_scale(relevance: Relevance, directions: Tensor) -> Tensor:
    """Std over images of the embedding projected on unit text directions [D, E] -> [D] (in the basis)."""
    coords = directions @ relevance.basis.T                                # [D, K]
    return (coords.square() * relevance.variances).sum(1).sqrt().clamp_min(1e-8)


def channel_scores(relevance: Relevance, direction: Tensor, side: "Side | Tensor | None" = None,
                   scoring: str = "conditional", ignore: Sequence[int] = (), always: Sequence[int] = ()) -> Tensor:
    """One score in [-1, 1] per channel [C] for a unit text direction [E] (see the module docstring).

    side: other attributes (``side_directions``, or unit directions [K, E]); entries naming the
    target's own attribute (|cosine| >= SAME_ATTRIBUTE) and the entries in ``ignore`` are not side
    effects, the entries in ``always`` are (whatever their cosine). ``conditional`` without any side
    attribute falls back to ``styleclip``.
    """
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; allowed: {', '.join(SCORINGS)}")
    if isinstance(side, Side):
        side = side.directions
    direction = F.normalize(direction.float().cpu(), dim=0)
    changes = relevance.changes                                            # [C, K]
    target = changes @ (relevance.basis @ direction)                       # [C] change along the text
    if scoring == "conditional" and side is not None and side.numel():
        side = F.normalize(side.float().cpu(), dim=1)
        other = ((side @ direction).abs() < SAME_ATTRIBUTE) | torch.isin(torch.arange(side.shape[0]),
                                                                          torch.tensor(list(always), dtype=torch.long))
        other[list(ignore)] = False
        side = side[other]
        if side.shape[0]:
            p = target / _readout_scale(relevance, direction[None])
            r = (changes @ (relevance.basis @ side.T)) / _readout_scale(relevance, side)   # [C, K']
            return p / (p.abs() + r.abs().sum(1)).clamp_min(1e-12)
    return target / changes.norm(dim=1).clamp_min(1e-12) / (relevance.basis @ direction).norm().clamp_min(1e-12)


def _check_beta(beta: Any) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or not 0 <= beta <= 1:
        raise ValueError(f"beta (the disentanglement threshold) must be a number in [0, 1], got {beta!r}: "
                         "0 keeps every channel, 1 none")
    return float(beta)


def kept_channels(scores: Tensor, beta: float) -> Tensor:
    """Channels [C] (bool) scoring more than ``beta`` times the best score: beta 0 keeps all, 1 none."""
    beta = _check_beta(beta)
    if beta == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    return scores.abs() > beta * scores.abs().max()


def categorical_contrast(relevance: Relevance, clip, side: Side, target: str, neutral: str,
                         templates: Sequence[str] = TEMPLATES) -> tuple[Tensor, str, list[int]] | None:
    """What to contrast ``target`` with when it names one value of a categorical attribute, or None.

    "blond hair" against "a face" moves little: every face has *some* hair colour, so that text
    direction mostly says "a hair colour is mentioned" (faces64: the hair colour moves by 0.01 of its
    range). When the target is closest to one value of a ``"a / b / c"`` vocabulary line (cosine >=
    SAME_ATTRIBUTE) and the neutral text is not itself another value of it, the neutral becomes the
    other values, weighted by how often CLIP sees each of them in generated images
    (``relevance.image_embeddings``, zero-shot): "blond rather than the hair colours faces have here".
    Returns (the neutral embedding [E], a readable description, the group's indices in ``side``).
    """
    if relevance.image_embeddings is None or not any(p.group for p in side.phrases) \
            or target.lower() == side.neutral.lower():
        return None
    cos = side.directions @ text_direction(clip, target, side.neutral, templates)
    j = int(cos.abs().argmax())
    group = side.group_of(j)
    if not group or float(cos[j]) < SAME_ATTRIBUTE:
        return None
    others = [i for i in group if i != j]
    if neutral.lower() != side.neutral.lower():
        said = side.directions[others] @ text_direction(clip, neutral, side.neutral, templates)
        if float(said.max()) >= SAME_ATTRIBUTE:        # the person already contrasts with another value
            return None
    shown = (relevance.image_embeddings.float() @ side.values[group].T).argmax(1)      # zero-shot, per image
    counts = torch.bincount(shown, minlength=len(group)).float()[[group.index(i) for i in others]]
    weights = counts / counts.sum() if counts.sum() > 0 else torch.full((len(others),), 1 / len(others))
    text = ", ".join(f"{side.phrases[i].positive} {float(w):.0%}" for i, w in zip(others, weights) if w >= 0.05)
    return weights @ side.values[others], text, group


def global_edit(relevance: Relevance, clip, target: str, neutral: str, alpha: float = DEFAULT_ALPHA,
                beta: float = DEFAULT_BETA, side: "Side | Tensor | None" = None, scoring: str = "conditional",
                templates: Sequence[str] = TEMPLATES) -> tuple[DirectionEdit, int]:
    """A StyleSpace edit for a text, and the number of channels it moves.

    alpha: strength in std of the sampled styles along the direction (0: the original image exactly);
    beta:  in [0, 1], channels scoring at most beta times the best one are left alone;
    side:  the vocabulary's attributes for the ``conditional`` score (``side_directions``); with a
           :class:`Side`, a target naming one value of a categorical attribute is contrasted with the
           other values (:func:`categorical_contrast`; the edit's name says with which).
    ValueError when no channel passes ``beta``.
    """
    target, neutral = check_texts(target, neutral)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha (the strength) must be a finite number, got {alpha!r}")
    beta = _check_beta(beta)
    contrast = categorical_contrast(relevance, clip, side, target, neutral, templates) \
        if isinstance(side, Side) and scoring == "conditional" else None
    ignore: list[int] = []
    always: list[int] = []
    if contrast is None:
        direction = text_direction(clip, target, neutral, templates)
        if isinstance(side, Side):           # the target names no categorical value: every value is a side effect
            always = [i for i, p in enumerate(side.phrases) if p.group is not None]
    else:                                    # the target's attribute is its group: every other entry is a side effect
        embedding, neutral, ignore = contrast
        always = [i for i in range(len(side.phrases)) if i not in ignore]
        direction = F.normalize(text_embedding(clip, target, templates) - embedding, dim=0)
    if direction.numel() != relevance.basis.shape[1]:
        raise ValueError(f"the CLIP embeds text in {direction.numel()} dimensions but the relevance was computed "
                         f"with a CLIP of {relevance.basis.shape[1]}; compute it with this CLIP")
    scores = channel_scores(relevance, direction, side, scoring, ignore, always)
    keep = kept_channels(scores, beta)
    n = int((keep & (scores != 0)).sum())
    if n == 0:
        raise ValueError(f"beta {beta:.2f} keeps no channel: lower beta (1 keeps none, 0 keeps all)")
    weights = torch.where(keep, scores * scores.abs(), torch.zeros_like(scores)) * relevance.channel_std   # [C]
    std = float(projection_stds(relevance.s_samples, weights[None])[0])
    name = target if neutral.lower() in GENERIC_NEUTRALS else f"{target} (vs {neutral})"
    return DirectionEdit(weights, "s", relevance.rows, float(alpha), std, name, "styleclip"), n


# ----------------------------------------------------------------------------------------------------
# Latent optimization


def _check_mask(mask: Any, resolution: int) -> Tensor:
    m = torch.as_tensor(mask, dtype=torch.float32).detach().cpu()
    if m.ndim != 2 or tuple(m.shape) != (resolution, resolution):
        raise ValueError(f"the mask must be [H, W] = [{resolution}, {resolution}] (the image size), "
                         f"got shape {list(m.shape)}")
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("mask values must be finite and within [0, 1]")
    if m.max() == 0:
        raise ValueError("the mask is empty: paint the region the text should change")
    if m.min() == 1:
        raise ValueError("the mask covers the whole image: paint only the region to change, or use no mask")
    return m


def optimize(G: Generator, latent: Latent, clip, text: str, steps: int = 100, l2: float = 0.02,
             identity: float = 0.1, mask: Tensor | None = None, progress: ProgressFn | None = None, *,
             neutral: str | None = None, edits: Sequence[AnyEdit] = (),
             features: Callable[[Tensor], Tensor] | None = None,
             rows: Sequence[int] | None = None, lr: float = 0.1, preserve: float = 10.0, patience: int = 20,
             views: int = 8, seed: int = 0, space: str = "ws", direction: float = 0.0,
             templates: Sequence[str] = TEMPLATES) -> Latent:
    """W+ optimization towards a text (see the module docstring); returns the optimized :class:`Latent`.

    steps: at most this many Adam steps (early stop after ``patience`` steps without a better score);
    l2, identity, preserve: weights of the pull to the start, the feature distance, the outside-mask term;
    rows: the ws rows to optimize (default all); space: ``ws`` (one offset per row) or ``w`` (one shared);
    edits: the current image's stack, applied throughout.
    A StyleSpace (S) inversion (``latent.styles``) has no exact W+ code: its styles are optimized instead
    (one offset per S channel of the layers the rows feed; ``space`` does not apply), and the result keeps
    them as its styles override, with the closest W+ code as ``ws``.
    views: CLIP scores the mean of this many randomly shifted and scaled copies of the image (seeded by
    ``seed``; 1: the image only), so the optimization cannot fool CLIP with pixel patterns.
    The result's ``origin`` holds the text, the steps run and ``scores``: the CLIP score after each step.
    """
    text, neutral = check_texts(text, neutral)
    _check_count(steps, "steps", 1)
    _check_count(patience, "patience", 1)
    _check_count(views, "views", 1)
    if space not in OPT_SPACES:
        raise ValueError(f"unknown optimization space {space!r}; allowed: {', '.join(OPT_SPACES)}")
    for value, what in ((l2, "l2"), (identity, "identity"), (preserve, "preserve"), (lr, "lr"),
                        (direction, "direction")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    if tuple(latent.ws.shape) != (G.num_ws, G.w_dim):
        raise ValueError(f"the latent has ws {list(latent.ws.shape)} but the model needs [{G.num_ws}, {G.w_dim}]")
    if any(isinstance(e, DirectionEdit) and e.space == "z" and e.strength for e in edits):
        raise ValueError("the image has z-space edits, which W+ optimization cannot keep; apply them in w or s")
    rows = tuple(range(G.num_ws)) if rows is None else tuple(int(r) for r in rows)
    if not rows or min(rows) < 0 or max(rows) >= G.num_ws:
        raise ValueError(f"rows must be ws rows within 0 .. {G.num_ws - 1}, got {rows!r}")
    device = G.mapping.w_avg.device
    m = None if mask is None else _check_mask(mask, G.img_resolution).to(device)[None, None]   # [1, 1, H, W]
    report = progress or (lambda fraction, text_: None)

    target = text_embedding(clip, text, templates)                          # [E]
    if neutral is not None:                                                # score: sim(text) - sim(neutral)
        target = target - text_embedding(clip, neutral, templates)
    target = target.to(clip.device)
    ws0 = latent.ws.to(device)[None]                                       # [1, num_ws, w_dim]
    in_s = latent.styles is not None
    if in_s:                                                               # offsets on the rows' S channels
        s0 = latent.styles.to(device)[None]                                # [1, S]
        names = set(style_layers_for_rows(G, rows))
        chosen = torch.cat([torch.full((s.shape[1],), n in names, dtype=torch.bool)
                            for n, s in split_styles(G, s0).items()]).nonzero()[:, 0].to(device)
        offset = torch.zeros(1, chosen.numel(), device=device, requires_grad=True)

        def full(off: Tensor) -> Tensor:
            return s0.index_add(1, chosen, off)

        def image(off: Tensor) -> Tensor:
            return synthesize_styles(G, ws0, split_styles(G, full(off)), edits)

        def pull(off: Tensor) -> Tensor:                                  # squared distance to the start
            return off.square().sum()
    else:
        offset = torch.zeros(1, len(rows) if space == "ws" else 1, G.w_dim, device=device, requires_grad=True)
        row_index = torch.tensor(rows, device=device)

        def full(off: Tensor) -> Tensor:
            return ws0.index_add(1, row_index, off.expand(1, len(rows), -1))

        def image(off: Tensor) -> Tensor:
            return synthesize_ws(G, full(off), edits)

        def pull(off: Tensor) -> Tensor:
            return off.expand(1, len(rows), -1).square().sum()
    opt = torch.optim.Adam([offset], lr=lr)
    with torch.no_grad():
        x0 = image(torch.zeros_like(offset))                               # [1, 3, H, W]
        f0 = features(x0) if features is not None else None

    rng = torch.Generator().manual_seed(int(seed))

    def clip_score(x: Tensor, augment: bool) -> Tensor:
        if augment and views > 1:                                          # random shift +-6 %, scale 0.9 .. 1.1
            shift = (torch.rand(views, 2, generator=rng) - 0.5) * 0.12
            scale = 0.9 + 0.2 * torch.rand(views, generator=rng)
            theta = torch.zeros(views, 2, 3)
            theta[:, 0, 0] = theta[:, 1, 1] = scale
            theta[:, :, 2] = shift
            grid = F.affine_grid(theta.to(x), [views, *x.shape[1:]], align_corners=False)
            x = F.grid_sample(x.expand(views, -1, -1, -1), grid, padding_mode="reflection", align_corners=False)
        emb = clip.embed_images(x)                                          # [views, E]
        return (emb @ target).mean(), emb.mean(0)

    with torch.no_grad():
        e0 = clip_score(x0, augment=False)[1]                              # [E]
    scores: list[float] = []
    best, since = -math.inf, 0
    for step in range(steps):
        with torch.enable_grad():
            x = image(offset)
            seen = x if m is None else x * m + x0 * (1 - m)               # CLIP sees the painted region only
            score, emb = clip_score(seen, augment=True)                   # the CLIP score, over views
            loss = 1 - score + l2 * pull(offset) / G.num_ws
            if direction:                                                  # the change itself along the text
                change = emb - e0
                loss = loss + direction * (1 - (change @ target) / (change.norm() * target.norm() + 1e-3))
            if identity:
                if features is not None:
                    loss = loss + identity * (1 - F.cosine_similarity(features(x), f0, dim=-1).mean())
                else:
                    loss = loss + identity * (x - x0).square().mean()
            if m is not None:
                loss = loss + preserve * ((x - x0).square() * (1 - m)).sum() / ((1 - m).sum() * 3).clamp_min(1)
            grad, = torch.autograd.grad(loss, offset)
        offset.grad = grad
        opt.step()
        value = float(score.detach())
        scores.append(round(value, 5))
        report((step + 1) / steps, f"step {step + 1}/{steps}: CLIP score {value:.3f}")
        if value > best + 1e-4:
            best, since = value, 0
        else:
            since += 1
            if since >= patience:
                break
    with torch.no_grad():
        x = image(offset)
        final = float(clip_score(x if m is None else x * m + x0 * (1 - m), augment=False)[0])
        code = full(offset.detach())
    origin = {"kind": "optimization", "text": text, **({"neutral": neutral} if neutral else {}),
              "steps": len(scores), "from": latent.describe(), **({"space": "s"} if in_s else {}),
              "clip_score": round(final, 4), "scores": scores + [round(final, 5)]}
    if mask is not None:
        origin["painted"] = round(float(m.mean()), 4)
    if in_s:
        from interp.methods.invert import project_styles

        return Latent(latent.model_id, latent.model_hash, project_styles(G, code)[0].cpu(), origin,
                      styles=code[0].cpu())
    return Latent(latent.model_id, latent.model_hash, code[0].cpu(), origin)


# ----------------------------------------------------------------------------------------------------
# What the judges say (built-in model)


def factor_changes(predictor: torch.nn.Module, before: Tensor, after: Tensor) -> dict[str, float]:
    """Mean change of every factor between two image batches [N, 3, H, W], in fractions of its range.

    Continuous factors: signed change / range; glasses: change of the probability; hair colour: the
    total-variation distance of the class probabilities (unsigned), reported as ``hair_color`` plus
    ``hair_color:<class>`` for each class's signed change.
    """
    from interp.builtin import FACTORS
    from interp.methods.effects import factor_columns

    with torch.no_grad():
        a = factor_columns(predictor(before)).float().mean(0)
        b = factor_columns(predictor(after)).float().mean(0)
    d = (b - a).cpu()
    out: dict[str, float] = {}
    i = 0
    for f in FACTORS:
        if f.kind == "categorical":
            k = len(f.categories)
            out[f.name] = float(0.5 * d[i:i + k].abs().sum())
            for c, v in zip(f.categories, d[i:i + k].tolist()):
                out[f"{f.name}:{c}"] = float(v)
            i += k
        else:
            out[f.name] = float(d[i])
            i += 1
    return out
