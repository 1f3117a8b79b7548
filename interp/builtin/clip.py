"""Tiny CLIP for the built-in faces: an open_clip model config, templated captions, prompt pairs.

The architecture is an ordinary open_clip config (``assets/builtin/interp-faces-clip.json``:
a ModifiedResNet image tower at 64x64 and a 2-layer text transformer over open_clip's default
BPE tokenizer), registered with ``open_clip.add_model_config``. It is created and loaded through
open_clip's own API, so every CLIP feature of the suite treats it exactly like a Hub CLIP::

    model, preprocess, tokenizer = interp.builtin.load_clip()
    # equivalent to
    open_clip.create_model_and_transforms(CLIP_NAME, pretrained=str(CLIP_WEIGHTS))

``preprocess`` maps PIL images to normalised tensors (OpenAI mean/std, 64x64). For generator
outputs (float [N, 3, H, W] in [-1, 1]) use ``clip_image_input`` instead.

Captions (``caption``) describe a random subset of the factors with varied templates and
synonyms, e.g. "a smiling old face with glasses, lit from the left". Evaluation prompt pairs
live in ``PROMPT_PAIRS`` (one per binary and continuous factor) and ``HAIR_PROMPTS``.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .common import ASSETS
from .faces import HAIR_COLORS

CLIP_NAME = "interp-faces-clip"
CLIP_CONFIG = ASSETS / f"{CLIP_NAME}.json"
CLIP_WEIGHTS = ASSETS / "clip.safetensors"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # open_clip's default (OpenAI) normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# (positive prompt, negative prompt): score = sim(positive) - sim(negative) rises with the factor
PROMPT_PAIRS: dict[str, tuple[str, str]] = {
    "glasses": ("a face with glasses", "a face without glasses"),
    "smile": ("a smiling face", "a frowning face"),
    "age": ("an old face", "a young face"),
    "hair_length": ("a face with long hair", "a face with short hair"),
    "yaw": ("a face turned to the right", "a face turned to the left"),
    "eye_open": ("a face with wide open eyes", "a face with closed eyes"),
    "light": ("a face lit from the right", "a face lit from the left"),
    "skin_tone": ("a face with dark skin", "a face with light skin"),
    "background": ("a face on an orange background", "a face on a blue background"),
    "face_width": ("a wide face", "a narrow face"),
}
HAIR_PROMPTS: tuple[str, ...] = tuple(f"a face with {c} hair" for c in HAIR_COLORS)


def register() -> str:
    """Register the shipped config with open_clip (idempotent); returns the model name."""
    import open_clip

    if CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(CLIP_CONFIG)
    return CLIP_NAME


def clip_image_input(x: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Generator-style images float [N, 3, H, W] in [-1, 1] -> the tiny CLIP's normalised input."""
    from .common import check_images

    x = check_images(x, size)
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x + 1.0) * 0.5 - mean) / std


# ----------------------------------------------------------------------------- captions

def _bin(v: float, edges: Sequence[float], words: Sequence[Sequence[str]], rng) -> str:
    i = int(np.searchsorted(edges, v))
    opts = words[i]
    return opts[rng.integers(len(opts))]


_SMILE = ([-0.5, -0.15, 0.15, 0.5],
          [["frowning", "sad", "unhappy", "scowling", "frowning"], ["slightly frowning", "somewhat sad", "glum"],
           ["neutral", "expressionless", "straight-faced", "serious"],
           ["slightly smiling", "softly smiling", "gently smiling"],
           ["smiling", "broadly smiling", "laughing", "grinning", "happy", "smiling"]])
_AGE = ([0.25, 0.5, 0.75],
        [["young", "youthful", "young"], ["adult", "young adult"], ["middle-aged", "older", "mature"],
         ["old", "elderly", "aged", "old"]])
_SKIN = ([0.33, 0.66], [["light-skinned", "pale", "fair-skinned"], ["tan", "olive-skinned", "medium-skinned"],
                        ["dark-skinned", "dark", "brown-skinned"]])
_WIDTH = ([0.33, 0.66], [["narrow", "thin", "slim"], [""], ["wide", "broad", "round"]])
_YAW = ([-0.5, -0.15, 0.15, 0.5],
        [["turned to the left", "facing left", "looking to the left"],
         ["turned slightly to the left", "facing a little left"],
         ["facing the camera", "facing forward", "looking straight ahead"],
         ["turned slightly to the right", "facing a little right"],
         ["turned to the right", "facing right", "looking to the right"]])
_LIGHT = ([-0.5, -0.15, 0.15, 0.5],
          [["lit from the left", "with light from the left", "lit from the left side"],
           ["lit slightly from the left", "with soft light from the left"],
           ["lit from the front", "evenly lit", "front-lit"],
           ["lit slightly from the right", "with soft light from the right"],
           ["lit from the right", "with light from the right", "lit from the right side"]])
_EYES = ([0.15, 0.45, 0.75],
         [["with closed eyes", "with eyes shut", "with eyes closed"], ["with half-closed eyes", "squinting"],
          ["with open eyes", "with eyes open"], ["with wide open eyes", "wide-eyed", "with eyes wide open"]])
_HLEN = ([0.25, 0.6], [["short", "cropped", "short"], ["medium-length", "chin-length"],
                       ["long", "shoulder-length", "long"]])
_BG = ([0.125, 0.375, 0.625, 0.875], [["blue"], ["teal", "turquoise"], ["green"], ["yellow"], ["orange"]])
_HAIRC = (("black", "dark"), ("brown", "brunette"), ("blond", "blonde", "fair"), ("red", "ginger", "auburn"))
_NOUNS = ("face", "person", "portrait", "head", "face")
_ASPECTS = ("smile", "age", "skin_tone", "face_width", "glasses", "hair_length", "hair_color",
            "eye_open", "yaw", "light", "background")
_TEMPLATES = ("a {x}", "a photo of a {x}", "a picture of a {x}", "a rendering of a {x}", "{x}", "an image of a {x}")


def caption(f: Mapping[str, float], rng: np.random.Generator, must: Sequence[str] = ()) -> str:
    """A caption for one face's factors (scalars), naming a random subset with varied wording.

    Between one and five of the eleven describable aspects (factor names) are named, so that no
    single easy aspect (background, skin) suffices to match a caption to its image within a
    batch; the aspects in ``must`` are always named.
    """
    k = int(rng.choice([1, 2, 3, 4, 5], p=[0.25, 0.25, 0.2, 0.15, 0.15]))
    chosen = set(rng.choice(len(_ASPECTS), size=k, replace=False).tolist())
    say = {name: (i in chosen) or (name in must) for i, name in enumerate(_ASPECTS)}
    adjs, clauses = [], []
    if say["smile"]:
        adjs.append(_bin(f["smile"], *_SMILE, rng))
    if say["age"]:
        adjs.append(_bin(f["age"], *_AGE, rng))
    if say["skin_tone"]:
        s = _bin(f["skin_tone"], *_SKIN, rng)
        if rng.random() < 0.5:
            adjs.append(s)
        else:
            word = {"pale": "light", "fair-skinned": "light", "dark": "dark", "tan": "tan"}.get(s, s.split("-")[0])
            clauses.append(f"with {word} skin")
    if say["face_width"]:
        wd = _bin(f["face_width"], *_WIDTH, rng)
        if rng.random() < 0.5:
            adjs.append(wd + "-faced" if wd else "average-faced")
        else:
            clauses.append(f"with a {wd} face" if wd else "with an average face")
    if say["glasses"]:
        if f["glasses"] > 0.5:
            clauses.append(["with glasses", "wearing glasses", "with spectacles", "wearing eyeglasses"][rng.integers(4)])
        else:
            clauses.append(["without glasses", "with no glasses", "not wearing glasses"][rng.integers(3)])
    hair = []
    if say["hair_length"]:
        hair.append(_bin(f["hair_length"], *_HLEN, rng))
    if say["hair_color"]:
        if f["age"] > 0.75 and rng.random() < 0.5:
            hair.append("grey")
        else:
            opts = _HAIRC[int(f["hair_color"])]
            hair.append(opts[rng.integers(len(opts))])
    if hair:
        clauses.append("with " + " ".join(hair) + " hair")
    if say["eye_open"]:
        clauses.append(_bin(f["eye_open"], *_EYES, rng))
    if say["yaw"]:
        clauses.append(_bin(f["yaw"], *_YAW, rng))
    if say["light"]:
        clauses.append(_bin(f["light"], *_LIGHT, rng))
    if say["background"]:
        c = _bin(f["background"], *_BG, rng)
        clauses.append([f"on a {c} background", f"against a {c} backdrop", f"in front of a {c} wall"][rng.integers(3)])
    rng.shuffle(adjs)
    rng.shuffle(clauses)
    noun = _NOUNS[rng.integers(len(_NOUNS))]
    head = " ".join(adjs + [noun])
    if clauses:
        if len(clauses) > 1 and rng.random() < 0.5:
            tail = ", ".join(clauses[:-1]) + " and " + clauses[-1]
        else:
            tail = ", ".join(clauses)
        head = head + " " + tail
    text = _TEMPLATES[rng.integers(len(_TEMPLATES))].format(x=head)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def captions(factors: Mapping[str, np.ndarray], seed: int, must: Sequence[Sequence[str]] | None = None) -> list[str]:
    """One caption per face of a factor batch (deterministic in ``seed``); ``must[i]``: aspects face i must name."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(factors.values())))
    return [caption({k: float(v[i]) for k, v in factors.items()}, rng, must[i] if must is not None else ())
            for i in range(n)]


# aspects that twin batches change, with sampling weights (fine details get more practice)
TWIN_WEIGHTS = {"smile": 3, "age": 1, "skin_tone": 1, "face_width": 3, "glasses": 1, "hair_length": 1,
                "hair_color": 1, "eye_open": 3, "yaw": 2, "light": 2, "background": 1}


def twin_batch(n: int, seed: int, weights: Mapping[str, float] | None = None
               ) -> tuple[dict[str, np.ndarray], list[tuple[str, ...]]]:
    """Factors for a contrastive batch of counterfactual twins, and the aspect each caption must name.

    The second half repeats the first half with one aspect changed (drawn from ``TWIN_WEIGHTS``),
    so a caption matches its own image and not its twin only through that aspect.
    """
    from .faces import FACTOR_BY_NAME, sample_factors

    half = n // 2
    f = sample_factors(n, seed)
    other = sample_factors(half, seed + 7_777_777)
    rng = np.random.default_rng(seed)
    weights = {**TWIN_WEIGHTS, **(weights or {})}
    names = list(TWIN_WEIGHTS)
    w = np.array([weights[k] for k in names], dtype=float)
    pick = rng.choice(len(names), size=half, p=w / w.sum())
    for k in f:
        f[k][half:2 * half] = f[k][:half]
    for i, j in enumerate(pick):
        name = names[j]
        spec = FACTOR_BY_NAME[name]
        if spec.kind == "binary":
            f[name][half + i] = 1 - f[name][i]
        elif spec.kind == "categorical":
            f[name][half + i] = (f[name][i] + rng.integers(1, len(spec.categories))) % len(spec.categories)
        else:   # a clearly different value: at least a third of the range away
            lo, hi = spec.low, spec.high
            v = f[name][i]
            cand = other[name][i]
            if abs(cand - v) < (hi - lo) / 3:
                cand = v + (hi - lo) / 3 if v + (hi - lo) / 3 <= hi else v - (hi - lo) / 3
            f[name][half + i] = cand
    must = [() for _ in range(n)]
    for i, j in enumerate(pick):
        must[i] = must[half + i] = (names[j],)
    return f, must


# ----------------------------------------------------------------------------- zero-shot scores

@torch.no_grad()
def text_embeddings(model, tokenizer, prompts: Sequence[str], device) -> torch.Tensor:
    return F.normalize(model.encode_text(tokenizer(list(prompts)).to(device)).float(), dim=-1)


@torch.no_grad()
def zero_shot_scores(model, tokenizer, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    """Prompt-pair scores for float images [N, 3, H, W] in [-1, 1].

    Returns {factor: sim(positive) - sim(negative) [N]} for every ``PROMPT_PAIRS`` entry, plus
    ``'hair_color'``: similarities to ``HAIR_PROMPTS`` [N, 4].
    """
    dev = next(model.parameters()).device
    pos = text_embeddings(model, tokenizer, [p for p, _ in PROMPT_PAIRS.values()], dev)
    neg = text_embeddings(model, tokenizer, [n for _, n in PROMPT_PAIRS.values()], dev)
    hair = text_embeddings(model, tokenizer, HAIR_PROMPTS, dev)
    feats = []
    for s in range(0, images.shape[0], batch):
        x = clip_image_input(images[s:s + batch].to(dev))
        feats.append(F.normalize(model.encode_image(x).float(), dim=-1))
    img = torch.cat(feats)
    diff = img @ (pos - neg).T                          # [N, num_pairs]
    out = {name: diff[:, i].cpu() for i, name in enumerate(PROMPT_PAIRS)}
    out["hair_color"] = (img @ hair.T).cpu()
    return out


__all__ = ["CLIP_NAME", "CLIP_CONFIG", "CLIP_WEIGHTS", "PROMPT_PAIRS", "HAIR_PROMPTS", "register",
           "clip_image_input", "caption", "captions", "zero_shot_scores", "text_embeddings"]
