"""Model registry: built-in assets, Hugging Face Hub checkpoints and the user's own files.

The registry data lives in ``assets/zoo.json``; each entry has an id, a display
name, a source (a path under ``assets/`` or a Hub repo + filename + revision),
the checkpoint format, the resolution and defaults (truncation psi).

Users add models with ``--models`` / the ``INTERP_MODELS`` environment variable:
a comma- or semicolon-separated list of local files or Hub URLs

    /data/my-ffhq.pkl; hf://DragGan/DragGan-Models/stylegan2-lhq-256x256.pkl@main

Each becomes an entry whose id is derived from the file name.

    from interp.zoo import load_generator
    G = load_generator("faces64")                         # a zoo id
    G = load_generator("/data/network-snapshot.pkl")      # a local file
    G = load_generator("hf://hysts/StyleGAN2/models/stylegan2-ffhq-256x256.pkl")

An entry may pin its file's content with ``"sha256"`` (64 hex digits): a file that does not match
is refused with a clear :class:`ModelUnavailable`. Hub files are checked anyway against the hash
the Hub published (recorded by the cache), so a truncated or corrupted download is refused, not
half-loaded.

Hub files are fetched by :mod:`interp.hub` into the usual Hub cache: ``HF_HUB_OFFLINE=1``
means only the local cache is used, and an unreachable Hub fails within about
``INTERP_HUB_TIMEOUT`` seconds (default 2) instead of the library's ~23 s, with a
:class:`ModelUnavailable` error that says which model, why, and how to provide the
file by hand.

Entries marked ``"preload": true`` in the registry can be downloaded in the
background when the app starts, so that the page is usable meanwhile:

    zoo = Zoo.from_file()
    zoo.start_preload()          # a daemon thread; never raises, never blocks
    zoo.preload_status()         # {"ffhq256-nv": "downloading", "lhq256": "queued"}
                                 # later "ready" or "failed: <reason>"

Loaded generators are cached in memory (a small LRU keyed by file and device,
``INTERP_ZOO_CACHE`` entries, default 2).  They are shared between callers: they
are put in eval mode with ``requires_grad`` off; ``copy.deepcopy`` one before
changing its weights.
"""
from __future__ import annotations

import json
import os
import re
import threading
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Union

import torch

from interp import hub
from interp.devices import resolve_device

if TYPE_CHECKING:  # imported lazily at run time: loading the zoo must stay cheap
    from interp.models.stylegan2 import Generator

__all__ = [
    "FORMATS",
    "REPO_ROOT",
    "Availability",
    "HubSource",
    "LocalSource",
    "ModelDefaults",
    "ModelEntry",
    "ModelUnavailable",
    "UnknownModelError",
    "Zoo",
    "add_user_models",
    "availability",
    "default_zoo",
    "get_entry",
    "list_models",
    "load_generator",
    "parse_hf_url",
    "parse_model_spec",
    "resolve",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
REGISTRY_PATH = REPO_ROOT / "assets" / "zoo.json"
FORMATS = ("nvidia-pkl", "rosinality-pt", "safetensors")
EXTENSION_FORMATS = {".pkl": "nvidia-pkl", ".pt": "rosinality-pt", ".pth": "rosinality-pt", ".safetensors": "safetensors"}
DEFAULT_CACHE_SIZE = 2


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LocalSource:
    """A file on disk; relative paths are relative to the repository root."""

    path: str

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class HubSource:
    """A file in a Hugging Face Hub repository."""

    repo: str
    filename: str
    revision: str = "main"
    repo_type: str = "model"

    @property
    def url(self) -> str:
        """The ``hf://`` form accepted by ``--models``."""
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[self.repo_type]
        return f"hf://{prefix}{self.repo}/{self.filename}@{self.revision}"

    def web_url(self, endpoint: str | None = None) -> str:
        """Direct download address of the file (on ``endpoint``, default the configured Hub)."""
        return hub.file_url(self.repo, self.filename, self.revision, self.repo_type, at=endpoint)

    def __str__(self) -> str:
        return self.url


Source = Union[LocalSource, HubSource]


@dataclass(frozen=True)
class ModelDefaults:
    truncation_psi: float = 0.7

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ModelDefaults":
        d = dict(d or {})
        unknown = set(d) - {"truncation_psi"}
        if unknown:
            raise ValueError(f"unknown model default(s) {sorted(unknown)}; allowed: ['truncation_psi']")
        psi = float(d.get("truncation_psi", cls.truncation_psi))
        if not 0.0 <= psi <= 2.0:
            raise ValueError(f"defaults.truncation_psi must be between 0 and 2, got {psi}")
        return cls(truncation_psi=psi)


@dataclass(frozen=True)
class ModelEntry:
    """One model of the registry."""

    id: str
    name: str
    source: Source
    format: str                      # one of FORMATS
    resolution: int | None = None    # None when unknown (user files before loading)
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    description: str = ""
    how_to_make: str = ""            # local files: how to create a missing one (said in its error)
    user: bool = False               # added with --models / INTERP_MODELS
    preload: bool = False            # Hub entries: download in the background at app start
    sha256: str | None = None        # the file's content hash (64 lowercase hex digits), checked before loading

    def __post_init__(self) -> None:
        if not _ID_RE.fullmatch(self.id):
            raise ValueError(f"model id {self.id!r} must be lowercase letters, digits, '-', '_' or '.'")
        if self.format not in FORMATS:
            raise ValueError(f"model {self.id!r}: format {self.format!r} is not one of {list(FORMATS)}")
        if self.sha256 is not None and not (isinstance(self.sha256, str) and _SHA256_RE.fullmatch(self.sha256)):
            raise ValueError(f"model {self.id!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    @property
    def is_hub(self) -> bool:
        return isinstance(self.source, HubSource)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelEntry":
        allowed = {"id", "name", "source", "format", "resolution", "defaults", "description", "how_to_make",
                   "preload", "sha256"}
        unknown = set(d) - allowed
        if unknown:
            raise ValueError(f"zoo entry {d.get('id')!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key in ("id", "source", "format"):
            if key not in d:
                raise ValueError(f"zoo entry {d.get('id')!r} lacks the required key {key!r}")
        src = d["source"]
        if isinstance(src, dict) and set(src) == {"path"}:
            source: Source = LocalSource(str(src["path"]))
        elif isinstance(src, dict) and {"repo", "filename"} <= set(src) <= {"repo", "filename", "revision", "repo_type"}:
            repo_type = src.get("repo_type", "model")
            if repo_type not in hub.REPO_TYPES:
                raise ValueError(f"zoo entry {d['id']!r}: repo_type must be one of {list(hub.REPO_TYPES)}")
            source = HubSource(src["repo"], src["filename"], src.get("revision", "main"), repo_type)
        else:
            raise ValueError(
                f"zoo entry {d['id']!r}: source must be {{'path': ...}} or {{'repo': ..., 'filename': ..., 'revision': ...}}, "
                f"got {src!r}"
            )
        resolution = d.get("resolution")
        preload = d.get("preload", False)
        if not isinstance(preload, bool):
            raise ValueError(f"zoo entry {d['id']!r}: preload must be true or false, got {preload!r}")
        return cls(
            id=d["id"],
            name=d.get("name", d["id"]),
            source=source,
            format=d["format"],
            resolution=int(resolution) if resolution is not None else None,
            defaults=ModelDefaults.from_dict(d.get("defaults")),
            description=d.get("description", ""),
            how_to_make=d.get("how_to_make", ""),
            preload=preload,
            sha256=d.get("sha256"),
        )

    def to_dict(self) -> dict[str, Any]:
        if isinstance(self.source, LocalSource):
            src: dict[str, Any] = {"path": self.source.path}
        else:
            src = {"repo": self.source.repo, "filename": self.source.filename, "revision": self.source.revision}
            if self.source.repo_type != "model":
                src["repo_type"] = self.source.repo_type
        return {
            "id": self.id,
            "name": self.name,
            "source": src,
            "format": self.format,
            "resolution": self.resolution,
            "defaults": {"truncation_psi": self.defaults.truncation_psi},
            "description": self.description,
            **({"how_to_make": self.how_to_make} if self.how_to_make else {}),
            **({"preload": True} if self.preload else {}),
            **({"sha256": self.sha256} if self.sha256 else {}),
        }


@dataclass(frozen=True)
class Availability:
    """Whether a model can be used now, and why (not)."""

    available: bool
    reason: str                 # a sentence for the UI
    path: Path | None = None    # the local file, when there is one
    needs_download: bool = False


class ModelUnavailable(RuntimeError):
    """A model's file cannot be obtained: says which model, why, and how to provide it."""

    def __init__(self, model: str, reason: str, how: str) -> None:
        self.model, self.reason, self.how = model, reason, how
        super().__init__(f"Model {model} is unavailable: {reason} {how}")


class UnknownModelError(ValueError):
    """A zoo id that is not in the registry."""


_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


# ------------------------------------------------------------------ spec parsing


def format_from_filename(filename: str) -> str:
    """Checkpoint format implied by a file name's extension."""
    suffix = Path(filename).suffix.lower()
    if suffix not in EXTENSION_FORMATS:
        allowed = ", ".join(f"{ext} ({fmt})" for ext, fmt in EXTENSION_FORMATS.items())
        raise ValueError(f"cannot tell the checkpoint format of {filename!r}: the extension must be one of {allowed}")
    return EXTENSION_FORMATS[suffix]


def parse_hf_url(url: str) -> HubSource:
    """``hf://[datasets/|spaces/]owner/repo[@rev]/path/file.pkl[@rev]`` -> HubSource."""
    usage = "Hub URLs look like hf://owner/repo/path/to/file.pkl or hf://owner/repo/path/to/file.pkl@revision"
    if not url.startswith("hf://"):
        raise ValueError(f"{url!r} is not an hf:// URL. {usage}")
    body = url[len("hf://"):].strip("/")
    repo_type = "model"
    for prefix, kind in (("datasets/", "dataset"), ("spaces/", "space"), ("models/", "model")):
        if body.startswith(prefix):
            body, repo_type = body[len(prefix):], kind
            break
    parts = body.split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"{url!r} names no file inside a repository. {usage}")
    owner, repo, rest = parts[0], parts[1], "/".join(parts[2:])
    revision = None
    if "@" in repo:  # HfFileSystem style: hf://owner/repo@rev/file (a "/" in rev written as %2F)
        repo, revision = repo.split("@", 1)
        revision = urllib.parse.unquote(revision)
    if "@" in rest:  # the style: hf://owner/repo/file@rev
        rest, file_revision = rest.rsplit("@", 1)
        if revision is not None and file_revision != revision:
            raise ValueError(f"{url!r} names two revisions. {usage}")
        revision = file_revision
    if not revision and revision is not None:
        raise ValueError(f"{url!r} has an empty revision after '@'. {usage}")
    return HubSource(repo=f"{owner}/{repo}", filename=rest, revision=revision or "main", repo_type=repo_type)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "model"


def split_spec(spec: str | Iterable[str] | None) -> list[str]:
    """Split a ``--models`` / ``INTERP_MODELS`` value at commas and semicolons."""
    if spec is None:
        return []
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        out.extend(part.strip() for part in re.split(r"[;,]", item) if part.strip())
    return out


def parse_model_spec(spec: str | Iterable[str] | None) -> list[ModelEntry]:
    """Entries for a ``--models`` value (ids derived from file names, not yet deduplicated)."""
    entries = []
    for item in split_spec(spec):
        if item.startswith("hf://"):
            source: Source = parse_hf_url(item)
            filename = source.filename
            name = f"{Path(filename).name} ({source.repo}@{source.revision})"
        elif "://" in item:
            raise ValueError(f"{item!r}: only local paths and hf://owner/repo/file URLs are supported in --models")
        else:
            path = Path(item).expanduser()
            source = LocalSource(str(path.resolve()))
            filename = path.name
            name = f"{path.name} (local)"
        fmt = format_from_filename(filename)
        entries.append(
            ModelEntry(
                id=_slug(Path(filename).name[: -len(Path(filename).suffix)]),
                name=name,
                source=source,
                format=fmt,
                description=f"Added with --models: {item}",
                user=True,
            )
        )
    return entries


# ------------------------------------------------------------ how to fix


def _how_to_provide_local(path: Path, how_to_make: str = "") -> str:
    how = (f"Put the checkpoint at {path}, or add another model with `--models /path/to/file.pkl` "
           "(or INTERP_MODELS); .pkl, .pt and .safetensors files and hf://owner/repo/file URLs are accepted.")
    return f"{how} {how_to_make}" if how_to_make else how


# ----------------------------------------------------------------------- zoo


def _default_loader(path: Path, device: str) -> "Generator":
    from interp.models.loaders import load_checkpoint

    return load_checkpoint(path, device=device)


ModelSource = Union[str, Path, ModelEntry]


class Zoo:
    """A registry of models plus an in-memory LRU of loaded generators.

    Args:
        entries:     registry entries (ids must be unique).
        default_id:  the model shown first (must be one of the entries).
        loader:      ``fn(path, device) -> Generator``; defaults to
                     ``interp.models.loaders.load_checkpoint``.
        cache_size:  how many loaded generators to keep (>= 1).
        root:        directory that relative LocalSource paths are relative to.
    """

    def __init__(
        self,
        entries: Iterable[ModelEntry] = (),
        default_id: str | None = None,
        loader: Callable[[Path, str], "Generator"] | None = None,
        cache_size: int | None = None,
        root: Path | str = REPO_ROOT,
    ) -> None:
        self._entries: OrderedDict[str, ModelEntry] = OrderedDict()
        for entry in entries:
            if entry.id in self._entries:
                raise ValueError(f"duplicate model id {entry.id!r} in the registry")
            self._entries[entry.id] = entry
        if default_id is not None and default_id not in self._entries:
            raise ValueError(f"default model {default_id!r} is not in the registry ({', '.join(self._entries)})")
        self.default_id = default_id
        self.root = Path(root)
        self._loader = loader
        if cache_size is None:
            raw = os.environ.get("INTERP_ZOO_CACHE", str(DEFAULT_CACHE_SIZE))
            if not raw.isdigit():
                raise ValueError(f"INTERP_ZOO_CACHE must be a positive integer, got {raw!r}")
            cache_size = int(raw)
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, "Generator"] = OrderedDict()
        self._lock = threading.RLock()
        self._load_locks: dict[tuple, threading.Lock] = {}
        self._preload: OrderedDict[str, str] = OrderedDict()  # id -> state, see preload_status()
        self._refused: dict[str, str] = {}                     # id -> why its file cannot be used (check_user_models)

    # ---- construction

    @classmethod
    def from_file(cls, path: Path | str = REGISTRY_PATH, **kwargs: Any) -> "Zoo":
        """A zoo from a registry JSON file ({"default": id, "models": [entry, ...]})."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"model registry {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"model registry {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            raise ValueError(f"model registry {path} must be an object with a 'models' list")
        entries = [ModelEntry.from_dict(d) for d in data["models"]]
        kwargs.setdefault("default_id", data.get("default"))
        return cls(entries, **kwargs)

    # ---- registry

    def list_models(self) -> list[ModelEntry]:
        return list(self._entries.values())

    @property
    def ids(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def get_entry(self, model_id: str) -> ModelEntry:
        try:
            return self._entries[model_id]
        except (KeyError, TypeError):
            raise self._unknown(model_id) from None

    def add_entry(self, entry: ModelEntry) -> ModelEntry:
        """Register ``entry``; an entry with the same source is reused, a clashing id gets a suffix."""
        with self._lock:
            for existing in self._entries.values():
                if existing.source == entry.source:
                    return existing
            model_id, n = entry.id, 2
            while model_id in self._entries:
                model_id, n = f"{entry.id}-{n}", n + 1
            if model_id != entry.id:
                entry = replace(entry, id=model_id)
            self._entries[entry.id] = entry
            return entry

    def add_user_models(self, spec: str | Iterable[str] | None) -> list[ModelEntry]:
        """Add ``--models`` / ``INTERP_MODELS`` entries; returns them (with their final ids)."""
        return [self.add_entry(entry) for entry in parse_model_spec(spec)]

    def check_user_models(self, device: str | torch.device = "cpu") -> dict[str, str]:
        """Load each of the user's local models once. One that cannot be used (a StyleGAN3 pickle, a damaged or
        foreign file) is from then on unavailable, with the loader's reason, so that the app lists it among the
        models that cannot be used instead of opening on an error. Returns {id: reason} for those. Hub entries
        are left to their first use (a download). The first is loaded last, so that it stays in the cache: the
        page opens on it."""
        for entry in reversed(self.list_models()):
            if not entry.user or not isinstance(entry.source, LocalSource) or not self.availability(entry).available:
                continue
            try:
                self.load_generator(entry.id, device)
            except Exception as exc:  # noqa: BLE001 - whatever fails, the file is not usable: say why
                self._refused[entry.id] = f"it cannot be loaded: {exc}"
        return dict(self._refused)

    # ---- availability and files

    def _local_path(self, source: LocalSource) -> Path:
        path = Path(source.path).expanduser()
        return path if path.is_absolute() else self.root / path

    def availability(self, source: ModelSource) -> Availability:
        """Whether the model can be used now, without touching the network."""
        entry = self._as_entry(source)
        if entry.id in self._refused and self._entries.get(entry.id) is entry:    # not a path of the same name
            return Availability(False, self._refused[entry.id], None)
        if isinstance(entry.source, LocalSource):
            path = self._local_path(entry.source)
            if path.is_file():
                return Availability(True, f"local file {path}", path)
            return Availability(False, f"the file {path} does not exist.", None)
        src = entry.source
        cached = hub.cached_file(src.repo, src.filename, src.revision, src.repo_type)
        if cached is not None:
            return Availability(True, "in the local Hugging Face cache", cached)
        if hub.is_offline():
            return Availability(False, "the Hugging Face Hub is unreachable (HF_HUB_OFFLINE is set) and the file "
                                       "is not in the local Hugging Face cache.")
        return Availability(True, f"downloaded from the Hub ({entry.source.repo}) on first use", None, needs_download=True)

    def resolve(self, source: ModelSource) -> Path:
        """The local file of a model (downloading it from the Hub when needed)."""
        entry = self._as_entry(source)
        label = f"{entry.id!r} ({entry.source})"
        if isinstance(entry.source, LocalSource):
            path = self._local_path(entry.source)
            if not path.is_file():
                raise ModelUnavailable(label, f"the file {path} does not exist.",
                                       _how_to_provide_local(path, entry.how_to_make))
            if entry.sha256 and hub.file_digest(path) != entry.sha256:
                raise ModelUnavailable(label, f"the content of {path.name} is not the one the registry names (its "
                                              f"SHA-256 starts with {hub.file_digest(path)[:12]}, the registry's "
                                              f"with {entry.sha256[:12]}): the file is damaged or another one.",
                                       _how_to_provide_local(path, entry.how_to_make))
            return path
        src = entry.source
        try:
            return hub.download(src.repo, src.filename, src.revision, src.repo_type, label=label, sha256=entry.sha256)
        except hub.HubUnavailable as exc:       # also hub.DamagedFile: a truncated or corrupted copy in the cache
            raise ModelUnavailable(label, exc.reason, exc.how) from None

    # ---- background downloads

    @property
    def preload_ids(self) -> list[str]:
        """Ids of the registry entries marked ``"preload": true``."""
        return [e.id for e in self._entries.values() if e.preload]

    def start_preload(self, ids: Iterable[str] | None = None) -> threading.Thread | None:
        """Fetch the files of ``ids`` (default :attr:`preload_ids`) in a background daemon thread.

        Returns at once: the thread (join it to wait), or None when there is nothing new to
        fetch.  Models are fetched one after another; follow them with :meth:`preload_status`.
        The thread never raises: a model that cannot be fetched (offline, Hub unreachable,
        missing file) ends as ``"failed: <reason>"`` within about the Hub timeout.  Ids
        already queued, downloading or ready are skipped; failed ones are tried again.
        Unknown ids raise :class:`UnknownModelError` here, before any thread starts.
        """
        wanted = self.preload_ids if ids is None else [self.get_entry(i).id for i in ids]
        with self._lock:
            busy = ("queued", "downloading", "ready")
            todo = [i for i in dict.fromkeys(wanted) if self._preload.get(i, "failed") not in busy]
            for model_id in todo:
                self._preload[model_id] = "queued"
        if not todo:
            return None
        thread = threading.Thread(target=self._run_preload, args=(todo,), name="interp-zoo-preload", daemon=True)
        thread.start()
        return thread

    def preload_status(self) -> dict[str, str]:
        """{id: state} of every model passed to :meth:`start_preload`, in order.

        States: ``"queued"``, ``"downloading"``, ``"ready"`` (the file is on this machine) or
        ``"failed: <reason>"`` (a sentence; the model's error says how to provide the file).
        """
        with self._lock:
            return dict(self._preload)

    def _run_preload(self, ids: list[str]) -> None:
        for model_id in ids:
            with self._lock:
                self._preload[model_id] = "downloading"
            try:
                self.resolve(model_id)
                state = "ready"
            except ModelUnavailable as exc:
                state = f"failed: {exc.reason}"
            except Exception as exc:  # noqa: BLE001 - a background thread must report, never raise
                state = f"failed: {type(exc).__name__}: {exc}"
            with self._lock:
                self._preload[model_id] = state

    def _as_entry(self, source: ModelSource) -> ModelEntry:
        """A registry entry for an id, or an ad-hoc (unregistered) one for a path / hf:// URL."""
        if isinstance(source, ModelEntry):
            return source
        if isinstance(source, Path):
            source = str(source)
        if not isinstance(source, str):
            raise TypeError(f"model source must be a zoo id, a path or an hf:// URL, got {type(source).__name__}")
        if source in self._entries:
            return self._entries[source]
        looks_like_file = (
            source.startswith("hf://") or "/" in source or os.sep in source
            or Path(source).suffix.lower() in EXTENSION_FORMATS
        )
        if not looks_like_file:
            raise self._unknown(source)
        entries = parse_model_spec(source)
        if len(entries) != 1:
            raise ValueError(f"{source!r} names {len(entries)} models; pass one path, id or hf:// URL at a time")
        return entries[0]

    def _unknown(self, model_id: str) -> UnknownModelError:
        return UnknownModelError(
            f"unknown model id {model_id!r}; known ids: {', '.join(self._entries) or '(none)'}. "
            "Add your own with --models /path/file.pkl or hf://owner/repo/file.pkl"
        )

    # ---- loading

    def load_generator(self, source: ModelSource, device: str | torch.device = "cpu") -> "Generator":
        """A loaded generator for a zoo id, a local path or an hf:// URL (cached, shared, frozen)."""
        dev = resolve_device(device)
        path = self.resolve(source)
        key = (str(path.resolve()), path.stat().st_mtime_ns, str(dev))
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            load_lock = self._load_locks.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                if key in self._cache:
                    self._cache.move_to_end(key)
                    return self._cache[key]
            loader = self._loader or _default_loader
            G = loader(path, str(dev))
            G.eval()
            G.requires_grad_(False)
            with self._lock:
                self._cache[key] = G
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
                self._load_locks.pop(key, None)
        return G

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


# ---------------------------------------------------------- module-level zoo

_default_zoo: Zoo | None = None
_default_lock = threading.Lock()


def default_zoo() -> Zoo:
    """The process-wide zoo: ``assets/zoo.json`` plus the models named in ``INTERP_MODELS``."""
    global _default_zoo
    with _default_lock:
        if _default_zoo is None:
            zoo = Zoo.from_file(REGISTRY_PATH)
            zoo.add_user_models(os.environ.get("INTERP_MODELS"))
            _default_zoo = zoo
        return _default_zoo


def list_models() -> list[ModelEntry]:
    return default_zoo().list_models()


def get_entry(model_id: str) -> ModelEntry:
    return default_zoo().get_entry(model_id)


def add_user_models(spec: str | Iterable[str] | None) -> list[ModelEntry]:
    return default_zoo().add_user_models(spec)


def availability(source: ModelSource) -> Availability:
    return default_zoo().availability(source)


def resolve(source: ModelSource) -> Path:
    return default_zoo().resolve(source)


def load_generator(source: ModelSource, device: str | torch.device = "cpu") -> "Generator":
    """Load a generator from a zoo id, a local checkpoint path or an hf://owner/repo/file URL."""
    return default_zoo().load_generator(source, device)
