"""Hugging Face Hub I/O: offline detection, fast failure, download, how-to-fix messages.

Every Hub access of the project goes through this module, so that all of it honours
``HF_HUB_OFFLINE``, fails within seconds when the Hub cannot be reached (the library's
own default waits about 23 s) and explains what to do instead:

    from interp import hub

    path = hub.cached_file("hysts/StyleGAN2", "models/stylegan2-ffhq-256x256.pkl")   # Path | None, no network
    why = hub.reachable()              # None: downloads can work; else a reason ("HF_HUB_OFFLINE is set", ...)
    try:
        path = hub.download("hysts/StyleGAN2", "models/stylegan2-ffhq-256x256.pkl", label="FFHQ 256")
    except hub.HubUnavailable as exc:  # exc.reason: why; exc.how: how to provide the file by hand
        print(exc)

Settings, read at call time (``huggingface_hub`` reads its own only once, at import):

- ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) = 1: only the local cache is used.
- ``HF_ENDPOINT``: the Hub address (default https://huggingface.co).
- ``HF_HUB_CACHE`` / ``HF_HOME``: the cache directory (default: huggingface_hub's).
- ``INTERP_HUB_TIMEOUT``: seconds for the reachability probe and the download's first
  answer (default 2).

Before a download the endpoint is probed once with an HTTP HEAD request; the answer is
reused for :data:`PROBE_TTL` seconds, so listing 20 Hub models costs one probe.

Damaged files: ``download`` checks the content of the file it returns (cached or just
downloaded) against the hash the Hub published, which the cache's layout records (the
blob of a Git LFS file, every checkpoint, is named by its SHA-256), or against a
``sha256`` the caller pins. A truncated or corrupted copy raises :class:`DamagedFile`
(a :class:`HubUnavailable`) saying how to remove it; each file is hashed once per
(size, modification time).
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import urllib.parse
from pathlib import Path

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_TIMEOUT",
    "PROBE_TTL",
    "REPO_TYPES",
    "DamagedFile",
    "HubUnavailable",
    "cache_dir",
    "cached_file",
    "check_file",
    "download",
    "download_command",
    "endpoint",
    "expected_digest",
    "file_digest",
    "file_url",
    "how_to_provide",
    "is_offline",
    "probe_endpoint",
    "reachable",
    "reset_probe_cache",
    "timeout",
]

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_TIMEOUT = 2.0  # seconds: an unreachable Hub must fail within about 3 s
PROBE_TTL = 30.0       # seconds a probe's answer is reused
REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


class HubUnavailable(RuntimeError):
    """A Hub file cannot be obtained now.

    ``what`` names the file (or the model), ``reason`` says why in a sentence, ``how``
    says how to provide the file by hand.  ``str(exc)`` is all three.
    """

    def __init__(self, what: str, reason: str, how: str) -> None:
        self.what, self.reason, self.how = what, reason, how
        super().__init__(f"{what} is unavailable: {reason} {how}")


class DamagedFile(HubUnavailable):
    """A file whose content is not the published one (a truncated or interrupted download, a corrupted disk).

    ``expected`` and ``actual`` are the hex digests (``algorithm``: ``"sha256"`` or ``"git-sha1"``).
    """

    def __init__(self, what: str, reason: str, how: str, algorithm: str = "sha256", expected: str = "",
                 actual: str = "") -> None:
        self.algorithm, self.expected, self.actual = algorithm, expected, actual
        super().__init__(what, reason, how)


# ------------------------------------------------------------------ settings


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set: use the local cache only."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def endpoint() -> str:
    """The Hub address: ``HF_ENDPOINT`` or https://huggingface.co, without a trailing slash."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def cache_dir() -> Path:
    """The Hub cache directory: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def timeout() -> float:
    """Seconds to wait for the Hub: ``INTERP_HUB_TIMEOUT`` (a positive number), default 2."""
    raw = os.environ.get("INTERP_HUB_TIMEOUT", "")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"INTERP_HUB_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"INTERP_HUB_TIMEOUT must be a positive number of seconds, got {value}")
    return value


def _check_repo_type(repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type {repo_type!r} is not one of {list(REPO_TYPES)}")


def file_url(repo: str, filename: str, revision: str = "main", repo_type: str = "model",
             at: str | None = None) -> str:
    """The direct download address of a file on the Hub (``at``: an endpoint, default :func:`endpoint`)."""
    _check_repo_type(repo_type)
    base = (at or endpoint()).rstrip("/")
    rev = urllib.parse.quote(revision, safe="")
    return f"{base}/{_URL_PREFIX[repo_type]}{repo}/resolve/{rev}/{filename}"


def download_command(repo: str, filename: str, revision: str = "main", repo_type: str = "model") -> str:
    """The ``hf download ...`` command line that fetches a file (huggingface_hub's CLI)."""
    _check_repo_type(repo_type)
    rev = f" --revision {revision}" if revision != "main" else ""
    kind = f" --repo-type {repo_type}" if repo_type != "model" else ""
    return f"hf download {repo} {filename}{rev}{kind}"


def how_to_provide(repo: str, filename: str, revision: str = "main", repo_type: str = "model") -> str:
    """A sentence telling a person how to get a Hub file without the app's help."""
    return (
        f"To use it, download {file_url(repo, filename, revision, repo_type)} by hand (e.g. "
        f"`{download_command(repo, filename, revision, repo_type)}` on a machine with internet) and start the app "
        f"with `--models /path/to/{Path(filename).name}` (or add that path to INTERP_MODELS)."
    )


# --------------------------------------------------------------- reachability


def probe_endpoint(address: str, wait: float) -> str | None:
    """None when ``address`` answers HTTP within ``wait`` seconds, else the reason (uncached).

    The request runs in a daemon thread that is abandoned after ``wait``, so slow DNS
    lookups cannot extend the wait.  Any HTTP answer counts as reachable.  Proxies from
    the environment are honoured (httpx's default).
    """
    result: dict[str, str | None] = {}

    def probe() -> None:
        try:
            import httpx

            httpx.head(address, timeout=wait, follow_redirects=False)
            result["error"] = None
        except Exception as exc:  # only transport errors land here
            result["error"] = f"{type(exc).__name__}: {exc}".strip().rstrip(":")

    thread = threading.Thread(target=probe, name="interp-hub-probe", daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        return f"no answer within {wait:g} s"
    return result.get("error", "probe failed")


_probe_cache: dict[tuple[str, float], tuple[float, str | None]] = {}
_probe_lock = threading.Lock()  # held during a probe: concurrent callers wait for its answer


def reachable() -> str | None:
    """None when downloads from the Hub can work now, else the reason (no exception).

    The reason is ``"HF_HUB_OFFLINE is set"`` in offline mode (no network access at all),
    else the failure of a HEAD request to :func:`endpoint`, e.g. ``"http://...: no answer
    within 2 s"``.  The probe's answer is reused for :data:`PROBE_TTL` seconds.
    """
    if is_offline():
        return "HF_HUB_OFFLINE is set"
    address, wait = endpoint(), timeout()
    key = (address, wait)
    with _probe_lock:
        hit = _probe_cache.get(key)
        if hit is None or time.monotonic() - hit[0] >= PROBE_TTL:
            hit = (time.monotonic(), probe_endpoint(address, wait))
            _probe_cache[key] = hit
    error = hit[1]
    return None if error is None else f"{address}: {error}"


def reset_probe_cache() -> None:
    """Forget earlier probe answers (tests; or after the network came back)."""
    with _probe_lock:
        _probe_cache.clear()


# ----------------------------------------------------------------- files


def cached_file(repo: str, filename: str, revision: str = "main", repo_type: str = "model") -> Path | None:
    """The file from the local Hub cache, or None; never touches the network."""
    _check_repo_type(repo_type)
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(repo, filename, cache_dir=cache_dir(), revision=revision, repo_type=repo_type)
    return Path(hit) if isinstance(hit, str) and Path(hit).exists() else None


_DIGEST_NAMES = {"sha256": "SHA-256", "git-sha1": "Git blob id"}
_BLOB_NAME = {"sha256": re.compile(r"[0-9a-f]{64}"), "git-sha1": re.compile(r"[0-9a-f]{40}")}
_digests: dict[tuple[str, int, int, str], str] = {}
_digest_lock = threading.Lock()   # one file hashed at a time (a first load of several large checkpoints)


def expected_digest(path: str | Path) -> tuple[str, str] | None:
    """``(algorithm, hex digest)`` the Hub published for a file of its cache, or None when the layout says nothing.

    huggingface_hub keeps each file once, as ``blobs/<etag>``, and links ``snapshots/<commit>/<filename>``
    to it. The etag of a Git LFS file (every checkpoint) is the SHA-256 of its content (``"sha256"``); that
    of a small file kept in Git is its Git blob id, the SHA-1 of ``b"blob <size>\\0"`` + content
    (``"git-sha1"``). A plain file (no link into ``blobs/``, e.g. a copy on a system without symlinks) has none.
    """
    path = Path(path)
    if not path.is_symlink():
        return None
    target = path.resolve()
    if target.parent.name != "blobs":
        return None
    for algorithm, pattern in _BLOB_NAME.items():
        if pattern.fullmatch(target.name):
            return algorithm, target.name
    return None


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's content (``"sha256"`` or ``"git-sha1"``), memoised per (size, mtime)."""
    if algorithm not in _BLOB_NAME:
        raise ValueError(f"digest algorithm {algorithm!r} is not one of {list(_BLOB_NAME)}")
    real = os.path.realpath(path)
    stat = os.stat(real)
    key = (real, stat.st_size, stat.st_mtime_ns, algorithm)
    with _digest_lock:
        if key not in _digests:
            h = hashlib.sha256() if algorithm == "sha256" else hashlib.sha1(b"blob %d\0" % stat.st_size)
            with open(real, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _digests[key] = h.hexdigest()
        return _digests[key]


def _repair_how(repo: str, filename: str, revision: str, repo_type: str) -> str:
    uri = f"hf://{repo_type}s/{repo}/{filename}"
    return (f"Remove the damaged copy (`hf cache rm {uri} --yes`) and use the model again: it downloads anew. "
            + how_to_provide(repo, filename, revision, repo_type))


def check_file(path: str | Path, what: str, repo: str, filename: str, revision: str = "main",
               repo_type: str = "model", sha256: str | None = None) -> Path:
    """``path`` when its content is the published one, else :class:`DamagedFile` (what, why, how to repair).

    The expected digest is ``sha256`` when given (a registry pin), else the one the cache's layout records
    (:func:`expected_digest`); a file with neither passes unchecked.
    """
    expected = ("sha256", sha256.lower()) if sha256 else expected_digest(path)
    if expected is None:
        return Path(path)
    algorithm, digest = expected
    actual = file_digest(path, algorithm)
    if actual != digest:
        source = "the registry's" if sha256 else "the published"
        reason = (f"the copy of {filename} in the local Hugging Face cache is damaged (a truncated or interrupted "
                  f"download?): its {_DIGEST_NAMES[algorithm]} starts with {actual[:12]}, {source} one with "
                  f"{digest[:12]}.")
        raise DamagedFile(what, reason, _repair_how(repo, filename, revision, repo_type), algorithm, digest, actual)
    return Path(path)


def download(repo: str, filename: str, revision: str = "main", repo_type: str = "model",
             label: str | None = None, sha256: str | None = None) -> Path:
    """The local path of a Hub file: from the cache, else downloaded (blocking until done).

    Raises :class:`HubUnavailable` (``label`` names the file in its message, default
    ``repo/filename``) within about :func:`timeout` seconds when the Hub cannot be used:
    offline mode, an unreachable endpoint, a gated or missing repository, revision or
    file, or a failed transfer; :class:`DamagedFile` (a HubUnavailable) when the file's
    content is not the published one (or not ``sha256``, when given): see :func:`check_file`.
    """
    what = label or f"{repo}/{filename}"
    cached = cached_file(repo, filename, revision, repo_type)
    if cached is not None:
        return check_file(cached, what, repo, filename, revision, repo_type, sha256)
    how = how_to_provide(repo, filename, revision, repo_type)
    if is_offline():
        raise HubUnavailable(
            what, f"HF_HUB_OFFLINE is set and the file is not in the local Hugging Face cache ({cache_dir()}).", how
        )
    error = reachable()
    if error is not None:
        raise HubUnavailable(what, f"the Hugging Face Hub is unreachable ({error}).", how)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        path = hf_hub_download(repo, filename, revision=revision, repo_type=repo_type, cache_dir=cache_dir(),
                               endpoint=endpoint(), etag_timeout=timeout())
    except GatedRepoError:  # a subclass of RepositoryNotFoundError: test it first
        reason = f"the repository {repo} is gated: accept its terms on the Hub and log in (`hf auth login`)."
        raise HubUnavailable(what, reason, how) from None
    except RepositoryNotFoundError:
        raise HubUnavailable(what, f"the repository {repo} does not exist on the Hub or is private.", how) from None
    except RevisionNotFoundError:
        raise HubUnavailable(what, f"the revision {revision!r} does not exist in {repo}.", how) from None
    except LocalEntryNotFoundError as exc:  # network trouble after the probe
        raise HubUnavailable(what, f"the download failed ({exc}).", how) from None
    except EntryNotFoundError:
        raise HubUnavailable(what, f"{repo} has no file {filename!r} at revision {revision!r}.", how) from None
    except OSError as exc:  # HTTP / connection errors, disk full, ...
        raise HubUnavailable(what, f"the download failed ({type(exc).__name__}: {exc}).", how) from None
    return check_file(path, what, repo, filename, revision, repo_type, sha256)
