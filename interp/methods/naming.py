"""Name latent directions with CLIP: which phrase does moving along a direction make truer?

For each direction, a batch of samples is moved ``strength`` standard deviations both ways and
the change of CLIP image embeddings, ``e(+) - e(-)``, is compared (cosine) with the text
direction of every vocabulary entry:

- ``"a smiling face | a frowning face"`` (a pair): ``t(positive) - t(negative)``
- ``"a face with glasses"`` (a single phrase): ``t(phrase) - t(neutral)``, the domain's neutral prompt
- ``"a face with black hair / a face with blond hair / ..."`` (the values of one categorical
  attribute): each value is a single phrase here; text editing (:mod:`interp.methods.styleclip`)
  contrasts a value with the others instead of with the neutral prompt

The best entry by mean absolute cosine names the direction; its sign says which way the slider
makes the phrase truer (+: moving right). Confidence is the fraction of samples whose own best
entry and sign agree with that name (1: every sample agrees).

    clip, reason = load_paired_clip("faces64")            # the built-in tiny CLIP
    names = name_directions(G, ds, clip, default_vocabulary("faces64"))
    names[0].label                                         # '+ a smiling face'

Without any CLIP, :func:`load_paired_clip` returns ``(None, reason)`` and callers keep the index
names (``#0``, ``#1``, ...), showing the reason.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.directions import DirectionSet
from interp.edit import DirectionEdit, synthesize
from interp.models.stylegan2 import Generator

__all__ = [
    "BUILTIN_IDS",
    "ClipScorer",
    "DirectionName",
    "Phrase",
    "VOCABULARIES",
    "clip_unavailable",
    "default_vocabulary",
    "distinct_phrases",
    "domain_of",
    "load_paired_clip",
    "name_directions",
    "parse_vocabulary",
    "stored_names",
]

BUILTIN_IDS = ("faces64",)
HUB_CLIP = ("ViT-B-32", "laion2b_s34b_b79k")      # open_clip model for Hub generators
_HUB_CLIPS: dict[tuple[str, str, str], "ClipScorer"] = {}   # loaded once per process and device
_CLIP_LOCK = threading.Lock()

# One entry per line: "positive | negative", a single phrase, or "value / value / ..." (one categorical attribute).
VOCABULARIES: dict[str, list[str]] = {
    "faces-builtin": [
        "a smiling face | a frowning face",
        "an old face | a young face",
        "a face with glasses | a face without glasses",
        "a face with long hair | a face with short hair",
        "a face turned to the right | a face turned to the left",
        "a face with wide open eyes | a face with closed eyes",
        "a face lit from the right | a face lit from the left",
        "a face with dark skin | a face with light skin",
        "a face on an orange background | a face on a blue background",
        "a wide face | a narrow face",
        "a face with black hair / a face with brown hair / a face with blond hair / a face with red hair",
    ],
    "faces": [
        "a smiling person | a person with a neutral expression",
        "an old person | a young person",
        "a person wearing eyeglasses | a person without eyeglasses",
        "a man | a woman",
        "a person with long hair | a person with short hair",
        "a face turned to the right | a face turned to the left",
        "a person with a beard | a clean-shaven person",
        "a bald person",
        "a person with blond hair / a person with black hair / a person with brown hair / a person with grey hair",
        "a person with dark skin | a person with light skin",
        "a brightly lit photo | a dark photo",
        "a person with an open mouth | a person with a closed mouth",
        "a person wearing makeup",
        "a person wearing a hat",
    ],
    "animals": [
        "a cat with open eyes | a cat with closed eyes",
        "a fluffy animal | a short-haired animal",
        "an animal facing the camera | an animal turned sideways",
        "an orange animal / a black animal / a white animal / a grey animal",
        "a striped animal", "an animal with an open mouth",
        "a brightly lit photo | a dark photo",
        "a close-up photo | a photo taken from far away",
    ],
    "landscapes": [
        "a sunny landscape | a cloudy landscape",
        "a landscape at sunset", "a landscape at night", "a snowy landscape",
        "mountains", "a lake", "a forest", "a beach", "green grass", "a desert",
        "a bright photo | a dark photo",
    ],
    "buildings": [
        "a church with a tall tower", "a building at night", "a brick building", "a white building",
        "a cloudy sky | a clear blue sky", "a building seen from far away | a close-up of a building",
        "trees in front of a building", "a bright photo | a dark photo",
    ],
    "generic": [
        "a bright photo | a dark photo", "a colourful photo | a black and white photo",
        "a close-up photo | a photo taken from far away", "a blurry photo | a sharp photo",
        "a warm-toned photo | a cool-toned photo", "a photo with a simple background | a cluttered photo",
    ],
}
NEUTRAL: dict[str, str] = {
    "faces-builtin": "a face", "faces": "a photo of a person", "animals": "a photo of an animal",
    "landscapes": "a photo of a landscape", "buildings": "a photo of a building", "generic": "a photo",
}
# Vocabulary phrases of the built-in domain -> the true factor they describe (for measuring agreement).
BUILTIN_PHRASE_FACTORS: dict[str, str] = {
    "a smiling face": "smile", "an old face": "age", "a face with glasses": "glasses",
    "a face with long hair": "hair_length", "a face turned to the right": "yaw",
    "a face with wide open eyes": "eye_open", "a face lit from the right": "light",
    "a face with dark skin": "skin_tone", "a face on an orange background": "background",
    "a wide face": "face_width", "a face with black hair": "hair_color", "a face with brown hair": "hair_color",
    "a face with blond hair": "hair_color", "a face with red hair": "hair_color",
}
_DOMAIN_WORDS = (
    ("faces", ("ffhq", "celeba", "metfaces", "face")),
    ("animals", ("afhq", "cat", "dog", "wild", "horse")),
    ("landscapes", ("lhq", "landscape")),
    ("buildings", ("church", "bedroom", "tower")),
)


def domain_of(model_id: str | None) -> str:
    """The vocabulary domain of a zoo id (``faces-builtin`` for the built-in model, else by name)."""
    if model_id in BUILTIN_IDS:
        return "faces-builtin"
    mid = (model_id or "").lower()
    for domain, words in _DOMAIN_WORDS:
        if any(w in mid for w in words):
            return domain
    return "generic"


def default_vocabulary(model_id: str | None) -> list[str]:
    """The default vocabulary lines for a model (a copy; edit freely)."""
    return list(VOCABULARIES[domain_of(model_id)])


@dataclass(frozen=True)
class Phrase:
    positive: str
    negative: str | None = None    # None: compared against the domain's neutral prompt
    group: str | None = None       # the whole entry of a categorical attribute this phrase is one value of

    @property
    def text(self) -> str:
        return self.positive if self.negative is None else f"{self.positive} | {self.negative}"


def parse_vocabulary(vocabulary: str | Sequence[str]) -> list[Phrase]:
    """Lines ``positive | negative``, ``phrase`` or ``value / value / ...``; blank and '#' lines are skipped.

    A ``/`` line gives one single :class:`Phrase` per value, each with ``group`` set to the line.
    """
    lines = vocabulary.splitlines() if isinstance(vocabulary, str) else list(vocabulary)
    out, seen = [], set()
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise ValueError(f"vocabulary entries must be text, got {type(line).__name__} at entry {i}")
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        values = [v.strip() for v in line.split("/")]
        if len(parts) > 2 or not all(parts) or (len(values) > 1 and (len(parts) > 1 or not all(values))):
            raise ValueError(f"vocabulary line {i} {line!r}: write 'a phrase', 'a positive phrase | its opposite' "
                             "or 'one value / another value / ...'")
        if max(len(v) for v in parts + values) > 200:
            raise ValueError(f"vocabulary line {i} has a phrase longer than 200 characters")
        if len(values) > 1:
            group = " / ".join(values)
            phrases = [Phrase(v, None, group) for v in values]
        else:
            phrases = [Phrase(parts[0], parts[1] if len(parts) == 2 else None)]
        for phrase in phrases:
            if phrase.text not in seen:
                seen.add(phrase.text)
                out.append(phrase)
    if not out:
        raise ValueError("the vocabulary is empty: give at least one phrase (one per line, optionally 'a | b')")
    return out


# ----------------------------------------------------------------------------------------------------
# CLIP


class ClipScorer:
    """An open_clip model with the image normalisation of its preprocess, for generator images in [-1, 1]."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, name: str = "clip"):
        self.model, self.tokenizer, self.name = model, tokenizer, name
        size = getattr(getattr(model, "visual", None), "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
        for t in getattr(preprocess, "transforms", []):
            if type(t).__name__ == "Normalize":
                mean, std = tuple(t.mean), tuple(t.std)
        self.mean, self.std = mean, std

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        """Unit embeddings [N, E] of images [N, 3, H, W] in about [-1, 1]."""
        return self.embed_images(images)

    def embed_images(self, images: Tensor) -> Tensor:
        """:meth:`encode_images` with autograd (resize to the CLIP's input size, clamp, its mean and std)."""
        x = images.to(self.device, torch.float32)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.image_size)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        x = ((x.clamp(-1, 1) + 1) * 0.5 - mean) / std
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Unit embeddings [P, E] of texts."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def text_directions(self, phrases: Sequence[Phrase], neutral: str) -> Tensor:
        """Unit text directions [P, E]: positive - negative (or - neutral)."""
        pos = self.encode_text([p.positive for p in phrases])
        neg = self.encode_text([p.negative or neutral for p in phrases])
        return F.normalize(pos - neg, dim=-1)


def _hub_unreachable() -> str | None:
    """Why open_clip's weights cannot be downloaded now (None: they can, or offline, where only the cache counts)."""
    from interp import hub

    if hub.is_offline():
        return None
    error = hub.reachable()
    if error is None:
        return None
    return f"open_clip {HUB_CLIP[0]} needs the Hugging Face Hub on first use, which is unreachable ({error})"


def _cached_clip_weights() -> str | None:
    """open_clip's weights file in the Hugging Face cache, without any network access (None: not there)."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    from interp import hub

    repo, filename = get_pretrained_cfg(*HUB_CLIP)["hf_hub"].rstrip("/"), None
    if repo.count("/") > 1:                                                # "owner/repo/file"
        repo, filename = repo.rsplit("/", 1)
    for name in (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        path = try_to_load_from_cache(repo, name, cache_dir=hub.cache_dir())
        if isinstance(path, str):
            return path
    return None


def _download_clip_weights() -> str:
    """The local file of open_clip's weights, downloaded into the Hub cache (offline: an error)."""
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    from interp import hub

    weights = download_pretrained(get_pretrained_cfg(*HUB_CLIP), cache_dir=str(hub.cache_dir()))
    if not weights:
        raise FileNotFoundError(f"no download address for {HUB_CLIP[0]} {HUB_CLIP[1]}")
    return weights


def _not_cached_offline() -> str:
    return (f"the weights of open_clip {HUB_CLIP[0]} ({HUB_CLIP[1]}) are not in the Hugging Face cache and "
            "HF_HUB_OFFLINE is set (they download, about 600 MB, on first use online)")


def _not_loaded(exc: Exception) -> str:
    from interp import hub

    if hub.is_offline() and isinstance(exc, OSError):               # FileNotFoundError, LocalEntryNotFoundError
        return _not_cached_offline()
    text = " ".join(str(exc).split())
    text = text if len(text) <= 140 else text[:140].rsplit(" ", 1)[0] + " ..."
    return (f"open_clip {HUB_CLIP[0]} ({HUB_CLIP[1]}) could not be loaded ({type(exc).__name__}: {text}); "
            "it downloads from the Hugging Face Hub on first use")


def clip_unavailable(model_id: str | None) -> str | None:
    """Why no CLIP can be paired with a model here, found without building one (None: it can, or may).

    Built-in: whether the tiny CLIP's weights exist. Hub CLIP: whether its weights are in the cache, else
    (online) whether the Hub answers; the download itself waits for the first use."""
    if model_id in BUILTIN_IDS:
        from interp.builtin.clip import CLIP_WEIGHTS

        return None if CLIP_WEIGHTS.exists() else f"the built-in CLIP is not available ({CLIP_WEIGHTS.name} is missing)"
    with _CLIP_LOCK:
        if any(k[:2] == HUB_CLIP for k in _HUB_CLIPS):
            return None
    from interp import hub

    if _cached_clip_weights():
        return None
    return _not_cached_offline() if hub.is_offline() else _hub_unreachable()


def load_paired_clip(model_id: str | None, device: str | torch.device = "cpu") -> tuple[ClipScorer | None, str]:
    """The CLIP paired with a model: the built-in tiny CLIP for ``faces64``, else open_clip ViT-B-32.

    Returns ``(scorer, description)`` or ``(None, reason)`` when no CLIP can be loaded (weights not
    trained / not downloadable offline).
    """
    if model_id in BUILTIN_IDS:
        try:
            from interp.builtin import load_clip

            model, preprocess, tokenizer = load_clip(device)
        except (FileNotFoundError, ImportError, RuntimeError) as exc:
            return None, f"the built-in CLIP is not available ({exc})"
        return ClipScorer(model, preprocess, tokenizer, "built-in tiny CLIP"), "built-in tiny CLIP"
    name, pretrained = HUB_CLIP
    key = (name, pretrained, str(device))
    with _CLIP_LOCK:
        if key in _HUB_CLIPS:
            return _HUB_CLIPS[key], f"open_clip {name} ({pretrained})"
    weights = _cached_clip_weights()
    why = None if weights else _hub_unreachable()
    if why is not None:
        return None, why
    try:
        import open_clip

        weights = weights or _download_clip_weights()    # before building a large model: fails fast offline
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:  # noqa: BLE001 - download / offline / missing package: explain and go on without
        return None, _not_loaded(exc)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scorer = ClipScorer(model, preprocess, tokenizer, f"open_clip {name}")
    with _CLIP_LOCK:
        _HUB_CLIPS[key] = scorer
    return scorer, f"open_clip {name} ({pretrained})"


# ----------------------------------------------------------------------------------------------------
# Naming


@dataclass(frozen=True)
class DirectionName:
    index: int
    phrase: str            # the vocabulary entry's positive phrase
    entry: str             # the whole vocabulary entry ("positive | negative")
    sign: int              # +1: moving the slider right makes the phrase truer; -1: moving it left
    score: float           # mean cosine between the embedding change and the text direction
    confidence: float      # fraction of samples whose own best entry and sign agree
    runner_up: str = ""    # the next best entry (another attribute), "" if none
    runner_sign: int = 0   # its sign, as `sign`
    runner_score: float = 0.0

    @property
    def label(self) -> str:
        return self.signed(self.phrase)

    def signed(self, text: str) -> str:
        """``text`` with the name's sign in front ('+ a smiling face')."""
        return f"{'+' if self.sign > 0 else '-'} {text}"

    @property
    def also(self) -> str:
        """What else moving toward `phrase` does, in the runner-up's words ("" without a runner-up):
        its positive phrase when it gets truer too, else its negative phrase (or "not ...")."""
        if not self.runner_up:
            return ""
        positive, _, negative = (p.strip() for p in self.runner_up.partition("|"))
        if self.runner_sign == self.sign:
            return positive
        return negative or f"not {positive}"

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "phrase": self.phrase, "entry": self.entry, "sign": self.sign,
                "score": self.score, "confidence": self.confidence, "runner_up": self.runner_up,
                "runner_sign": self.runner_sign, "runner_score": self.runner_score}


def _and(phrase: str, also: str) -> str:
    """"a face with wide open eyes" + "not a face with black hair" -> "... eyes and not black hair"
    (a shared opening of two or more words is said once)."""
    words, negated = also.split(), also.startswith("not ")
    other = words[1:] if negated else words
    first = phrase.split()
    shared = 0
    while shared < min(len(first), len(other)) - 1 and first[shared] == other[shared]:
        shared += 1
    rest = " ".join(other[shared:] if shared >= 2 else other)
    return f"{phrase} and {'not ' if negated else ''}{rest}"


def stored_names(ds: DirectionSet | None) -> list[DirectionName]:
    """The CLIP names a direction set carries (``params["naming"]``), [] for none."""
    return [DirectionName(**d) for d in ds.params.get("naming", [])] if ds is not None else []


def distinct_phrases(names: Sequence[DirectionName]) -> list[str]:
    """Each direction's phrase; where several directions share one, "phrase and <runner-up>" tells them
    apart, and where that is shared too, the direction's index."""
    def repeated(texts: list[str]) -> list[bool]:                          # the same words and sign
        keys = [(n.sign, t) for n, t in zip(names, texts)]
        return [keys.count(k) > 1 for k in keys]

    texts = [n.phrase for n in names]
    texts = [_and(n.phrase, n.also) if rep and n.also else t for n, t, rep in zip(names, texts, repeated(texts))]
    return [f"{t} #{n.index}" if rep else t for n, t, rep in zip(names, texts, repeated(texts))]


@torch.no_grad()
def embedding_changes(G: Generator, edits: Sequence[DirectionEdit], clip: ClipScorer, n_samples: int, seed: int,
                      truncation_psi: float, batch_size: int = 64) -> Tensor:
    """CLIP embedding change e(+edit) - e(-edit) [K, n, E] for each edit (its strength gives the step)."""
    z = G.sample_z(n_samples, seed)                                        # [n, z_dim]
    out = []
    for e in edits:
        diffs = []
        for zc in z.split(batch_size):
            plus = clip.encode_images(synthesize(G, zc, [e], truncation_psi))
            minus = clip.encode_images(synthesize(G, zc, [e.with_strength(-e.strength)], truncation_psi))
            diffs.append((plus - minus).cpu())
        out.append(torch.cat(diffs))
    return torch.stack(out)                                                # [K, n, E]


def name_from_changes(deltas: Tensor, text_dirs: Tensor, phrases: Sequence[Phrase]) -> list[DirectionName]:
    """Names from embedding changes [K, n, E] and unit text directions [P, E]."""
    cos = F.normalize(deltas.float(), dim=-1) @ text_dirs.float().T.cpu()  # [K, n, P]
    mean = cos.mean(1)                                                     # [K, P]
    names = []
    for k in range(deltas.shape[0]):
        order = mean[k].abs().argsort(descending=True).tolist()
        best = order[0]
        sign = 1 if mean[k, best] >= 0 else -1
        entry = phrases[best].group or phrases[best].text                  # another attribute, not another value
        runner = next((j for j in order[1:] if (phrases[j].group or phrases[j].text) != entry), None)
        per_sample = cos[k].abs().argmax(dim=1)                            # [n]
        per_sign = cos[k].gather(1, per_sample[:, None]).squeeze(1).sign()
        agree = ((per_sample == best) & (per_sign == sign)).float().mean()
        names.append(DirectionName(k, phrases[best].positive, phrases[best].text, sign, float(mean[k, best]),
                                   float(agree), *(() if runner is None else (
                                       phrases[runner].text, 1 if mean[k, runner] >= 0 else -1,
                                       float(mean[k, runner])))))
    return names


def name_directions(G: Generator, directions: DirectionSet, clip: ClipScorer, vocabulary: str | Sequence[str],
                    n_samples: int = 12, strength: float = 3.0, seed: int = 0, truncation_psi: float = 0.7,
                    neutral: str | None = None) -> list[DirectionName]:
    """Best vocabulary phrase, sign and confidence for every direction of ``directions``."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not strength > 0:
        raise ValueError(f"strength must be positive (standard deviations), got {strength!r}")
    phrases = parse_vocabulary(vocabulary)
    text_dirs = clip.text_directions(phrases, neutral or NEUTRAL[domain_of(directions.model_id)])
    edits = [DirectionEdit(directions.directions[i], directions.space, directions.layers, strength,
                  float(directions.stds[i])) for i in range(directions.k)]
    deltas = embedding_changes(G, edits, clip, n_samples, seed, truncation_psi)
    return name_from_changes(deltas, text_dirs, phrases)
