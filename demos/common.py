"""Helpers shared by the tabs: the app context, model access, input checks, user errors, ZeroGPU.

Tabs stay thin: they build components, validate input with :func:`check_int` /
:func:`check_float`, fetch the generator with :func:`get_generator` and convert
tensors with ``interp.imaging`` (``tensor_to_pil``, ``grid_image``).  Failures surface as
``user_error`` (a gr.Error) with a sentence a person understands.
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

# `spaces` must be imported before anything initialises CUDA on ZeroGPU Spaces.
try:  # pragma: no cover - only on Hugging Face Spaces
    import spaces as _spaces
except ImportError:  # the package is optional: locally GPU work runs in-process
    _spaces = None

import gradio as gr

from interp.models.stylegan2 import Generator
from interp import hub
from interp.zoo import Availability, ModelEntry, ModelUnavailable, UnknownModelError, Zoo

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "AppContext",
    "LONG_WORK",
    "int_slider",
    "ModelChoices",
    "check_float",
    "check_int",
    "export_path",
    "get_generator",
    "gpu",
    "guard_number_inputs",
    "install_atomic_cache_writes",
    "model_choices",
    "preload_markdown",
    "preload_pending",
    "public_text",
    "user_error",
    "ZEROGPU",
]

ZEROGPU = _spaces is not None

# Concurrency (see README "Concurrency"). Every event has its own workers (app.FAST_CONCURRENCY of them, the queue's
# default), so a visitor's slow call never holds up other visitors of *another* endpoint, nor of the same one
# beyond its one worker. The long jobs (inversion, text optimization, attribute training and verification,
# dissection, precomputing the text relevance) share one group of LONG_WORK_LIMIT workers: at most that many run
# at once, whoever asked, and the rest of the CPU stays with the fast edits; a long job waits for its turn
# (the page shows its place in the queue).
LONG_WORK_LIMIT = 2
LONG_WORK = dict(concurrency_id="long-work", concurrency_limit=LONG_WORK_LIMIT)


def gpu(fn: F | None = None, *, duration: int | None = None) -> Any:
    """``spaces.GPU`` on Hugging Face ZeroGPU, a no-op decorator everywhere else.

    Usable bare (``@gpu``) or with a duration in seconds (``@gpu(duration=120)``).
    """

    def wrap(f: F) -> F:
        if _spaces is None:
            return f
        return _spaces.GPU(duration=duration)(f) if duration is not None else _spaces.GPU(f)

    return wrap(fn) if fn is not None else wrap


# ------------------------------------------------------------------ context


@dataclass
class AppContext:
    """What every tab's ``build(ctx)`` receives.

    zoo:      the model registry (shared, read-only for tabs).
    device:   torch device string the generators run on.
    model:    the model picker; pass it as an event input to get the selected zoo id.
    current:  per-user ``gr.State`` holding the current image as an ``interp.edit.Recipe`` (a Latent and
              its edit stack) or None. Every tab starts from it; "Apply" pushes the tab's edit onto it.
    shown:    the outputs that show the current image everywhere: ``[current, image, summary]``; an event
              that changes the current image returns ``demos.current.publish(G, recipe)`` into them.
    tabs:     the ``gr.Tabs`` (select a tab with ``gr.Tabs(selected=tab_id)``); tab ids are module names.
    tab:      the tab being built (its ``select`` event fires when a user opens it), or None.
    demo:     the whole gr.Blocks (its ``load`` event fires when a page opens), or None.
    """

    zoo: Zoo
    device: str
    model: gr.Dropdown
    current: gr.State
    shown: list[Any]
    tabs: gr.Tabs | None = None
    tab: gr.Tab | None = None
    demo: gr.Blocks | None = None


@dataclass(frozen=True)
class ModelChoices:
    choices: list[tuple[str, str]]          # (label, id) for the dropdown
    default: str | None                     # the preselected id, None when nothing is usable
    unavailable: list[tuple[ModelEntry, str]]

    def note_markdown(self) -> str:
        """A Markdown note on the models that cannot be used, and how to add one (no server paths: public_text)."""
        lines = []
        if not self.choices:
            lines.append("**No model is available.** Add one with `python app.py --models /path/to/network.pkl` "
                         "(NVIDIA `.pkl`, rosinality `.pt` or our `.safetensors`; `hf://owner/repo/file.pkl` "
                         "URLs work too) or the `INTERP_MODELS` environment variable.")
        if self.unavailable:
            lines.append(f"{len(self.unavailable)} model(s) are not available right now:")
            for entry, reason in self.unavailable:
                lines.append(f"- **{entry.id}** ({entry.name}): {reason}")
            if any(entry.is_hub for entry, _ in self.unavailable):
                lines.append("\nFetch a Hub model's file by hand on a machine with internet (the `hf download` "
                             "command after the model) and use it with `--models /path/to/file.pkl`.")
            if self.choices:
                lines.append("\nAdd your own model with `--models /path/to/file.pkl` or `INTERP_MODELS`.")
        return public_text("\n".join(lines))


def model_choices(zoo: Zoo) -> ModelChoices:
    """Split the registry into usable models (for the picker) and unavailable ones (with reasons).

    A Hub model whose file is not cached is offered ("downloads on first use") only when the
    Hub can be reached: HF_HUB_OFFLINE unset and one probe of the endpoint (cached ~30 s, at
    most INTERP_HUB_TIMEOUT seconds, done only when some model needs a download) answers.
    Otherwise it is listed as unavailable, with the ``hf download`` command that fetches it.
    """
    choices, unavailable, local = [], [], []
    hub_down: str | None = None
    probed = False
    for entry in zoo.list_models():
        try:
            status = zoo.availability(entry)
        except Exception as exc:  # a broken cache entry must not stop the app from starting
            unavailable.append((entry, f"cannot check the file ({type(exc).__name__}: {exc})"))
            continue
        if status.needs_download:
            if not probed:
                hub_down, probed = hub.reachable(), True
            if hub_down is not None:
                status = Availability(False, f"the Hugging Face Hub is unreachable ({hub_down}).")
        if not status.available and entry.is_hub:
            src = entry.source
            command = hub.download_command(src.repo, src.filename, src.revision, src.repo_type)
            unavailable.append((entry, f"{status.reason.rstrip('.')}; get it by hand: `{command}`."))
            continue
        if status.available:
            label = entry.name + (" - downloads on first use" if status.needs_download else "")
            choices.append((label, entry.id))
            if not status.needs_download:
                local.append(entry.id)
        else:
            unavailable.append((entry, status.reason))
    ids = [i for _, i in choices]
    user = [e.id for e in zoo.list_models() if e.user and e.id in ids]
    # preference: the user's own model, the registry default, any local file, anything
    for candidate in (user[:1], [zoo.default_id] if zoo.default_id in ids else [], local[:1], ids[:1]):
        if candidate:
            return ModelChoices(choices, candidate[0], unavailable)
    return ModelChoices(choices, None, unavailable)


def preload_markdown(zoo: Zoo) -> str:
    """What the page says about the models fetched at start-up (``zoo.start_preload``); "" when none.

    One line per model: ready, queued, downloading, or failed with the reason.
    """
    status = zoo.preload_status()
    if not status:
        return ""
    lines = ["**Models fetched from the Hugging Face Hub at start-up:**"]
    for model_id, state in status.items():
        name = zoo.get_entry(model_id).name if model_id in zoo else model_id
        state = {"downloading": "downloading ...", "queued": "waiting for its turn"}.get(state, state)
        lines.append(f"- {name} (`{model_id}`): {state}")
    return public_text("\n".join(lines))


def preload_pending(zoo: Zoo) -> bool:
    """True while a start-up download is queued or running (the page keeps refreshing its note)."""
    return any(state in ("queued", "downloading") for state in zoo.preload_status().values())


def get_generator(ctx: AppContext, model_id: str | None) -> Generator:
    """The selected generator, loaded through the zoo cache; errors become gr.Error."""
    if not model_id:
        raise user_error("No model is selected. Pick one in the model list at the top, or start the app with "
                       "--models /path/to/network.pkl to add your own.")
    try:
        ctx.zoo.get_entry(model_id)  # only registered ids: API callers must not load arbitrary paths
        return ctx.zoo.load_generator(model_id, ctx.device)
    except (ModelUnavailable, UnknownModelError) as exc:
        raise user_error(str(exc)) from exc
    except ValueError as exc:  # CheckpointError and friends: the file is not a usable checkpoint
        raise user_error(f"Model {model_id!r} could not be loaded: {exc}") from exc


# --------------------------------------------------------------- components


def clip_notice(model_id: str | None, needs: str) -> str:
    """A warning when no CLIP can be paired with the model here, else "": ``needs`` says what needs one
    ("Text editing"). Checked without loading a CLIP (:func:`interp.methods.naming.clip_unavailable`)."""
    from interp.methods import naming

    why = naming.clip_unavailable(model_id)
    return "" if why is None else public_text(f"**No CLIP for this model here.** {needs} needs one, and {why}.")


def shown_markdown(text: str) -> gr.Markdown:
    """An update of a Markdown that is hidden while it has nothing to say."""
    return gr.Markdown(text, visible=bool(text))


def int_slider(*args: Any, **kwargs: Any) -> gr.Slider:
    """A ``gr.Slider`` of whole numbers that the API types ``integer`` (handlers still check with check_int).

    (Not a subclass: Gradio writes a ``.pyi`` stub next to the module of every Component subclass.)
    """
    slider = gr.Slider(*args, **kwargs)
    info = {**slider.api_info(), "type": "integer"}
    slider.api_info = lambda: info                                        # type: ignore[method-assign]
    return slider


# --------------------------------------------------------------- errors

log = logging.getLogger("interp.app")


def user_error(message: str) -> gr.Error:
    """A ``gr.Error`` for an expected mistake (bad input, missing file): one log line, no traceback.

    ``raise user_error("Seed must be ...")``. Unexpected exceptions keep Gradio's full traceback.
    The log keeps the message as is; the visitor sees it through :func:`public_text` (no server paths).
    """
    log.warning("user error: %s", message)
    return gr.Error(public_text(message), print_exception=False)


# --------------------------------------------------------------- what visitors see

APP_ROOT = Path(__file__).resolve().parent.parent

# An absolute POSIX path of at least two parts (``/srv/x/model.pkl``; not ``/generate``), starting a word
# (not inside ``hf://owner/repo`` or ``{app}/...``); Windows: ``C:\\Users\\x\\model.pkl``.
_POSIX_PATH = re.compile(r"(?<![^\s'\"`(\[=,;:*])/(?:[^/\s'\"`<>|()\[\],;]+/)+[^/\s'\"`<>|()\[\],;]*")
_WINDOWS_PATH = re.compile(r"(?<![\w])[A-Za-z]:\\(?:[^\\\s'\"`<>|]+\\)*[^\\\s'\"`<>|]*")
_EXAMPLE_PATH = "/path/to/"            # documentation placeholders in our own help texts stay as written


def _server_dirs() -> list[tuple[str, str]]:
    """(placeholder, directory) pairs for the server's known folders, longest directory first."""
    from interp import diskcache

    pairs: list[tuple[str, Any]] = [("{app}", APP_ROOT), ("{hf-cache}", hub.cache_dir()),
                                    ("{interp-cache}", diskcache.cache_dir()), ("{tmp}", tempfile.gettempdir()),
                                    ("~", Path.home())]
    try:
        from huggingface_hub import constants

        pairs += [("{hf-cache}", constants.HF_HUB_CACHE), ("{hf-home}", constants.HF_HOME)]
    except Exception:  # noqa: BLE001 - an optional refinement
        pass
    if os.environ.get("GRADIO_TEMP_DIR"):
        pairs.append(("{tmp}", os.environ["GRADIO_TEMP_DIR"]))
    out: dict[str, str] = {}
    for placeholder, folder in pairs:
        for variant in {str(folder), os.path.realpath(str(folder))}:
            variant = variant.rstrip("/\\")
            if len(variant) > 1 and variant not in out:
                out[variant] = placeholder
    return sorted(((p, d) for d, p in out.items()), key=lambda pd: -len(pd[1]))


def _file_name(match: re.Match[str]) -> str:
    path = match.group(0)
    if path.startswith(_EXAMPLE_PATH):
        return path
    tail = len(path) - len(path.rstrip(".,:;!?"))                        # sentence punctuation stays outside
    core, end = (path[:-tail], path[-tail:]) if tail else (path, "")
    name = re.split(r"[/\\]", core.rstrip("/\\"))[-1]
    return (name or "{path}") + end


def public_text(text: Any) -> str:
    """``text`` as a visitor may see it: no absolute path of the server.

    Known folders become placeholders (``{app}/`` the checkout, ``{hf-cache}/`` the Hugging Face
    cache, ``{interp-cache}/`` our disk cache, ``{tmp}/`` temporary files, ``~/`` the home folder);
    any other absolute path becomes its file name. ``/path/to/...`` examples in help texts stay.

        public_text("the file /home/me/app/assets/builtin/faces64.safetensors does not exist.")
        # -> 'the file {app}/assets/builtin/faces64.safetensors does not exist.'
    """
    text = str(text)
    for placeholder, folder in _server_dirs():
        text = re.sub(re.escape(folder) + r"(?![^/\\\s'\"`<>|()\[\],;:.!?])", placeholder, text)
        # (the folder must end there: /home/me does not match /home/meg)
    text = _POSIX_PATH.sub(_file_name, text)
    return _WINDOWS_PATH.sub(_file_name, text)


# --------------------------------------------------------------- exported files

EXPORT_TTL_S = 15 * 60          # exported files live this long (Gradio copies a returned file into its cache at once)
_EXPORT_LOCK = threading.Lock()
_EXPORT_DIR: Path | None = None


def export_dir() -> Path:
    """This process's folder for exported files (created on first use in the temporary directory, removed at exit)."""
    global _EXPORT_DIR
    with _EXPORT_LOCK:
        if _EXPORT_DIR is None or not _EXPORT_DIR.is_dir():
            _EXPORT_DIR = Path(tempfile.mkdtemp(prefix=f"interp-exports-{os.getpid()}-"))
            atexit.register(shutil.rmtree, _EXPORT_DIR, ignore_errors=True)      # gone with the process
        return _EXPORT_DIR


def export_path(filename: str, ttl_s: float | None = None) -> Path:
    """A fresh path named ``filename`` in this process's export folder; exports older than the TTL go.

    Each call gets its own sub-folder (two visitors exporting ``faces64-recipe.safetensors`` at once
    never overwrite each other's file) and removes the sub-folders older than ``ttl_s`` seconds
    (default :data:`EXPORT_TTL_S`)::

        return str(recipe.save(export_path(f"{recipe.model_id}-recipe.safetensors")))
    """
    name = str(filename)
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name or "\x00" in name:
        raise ValueError(f"export file name must be a plain file name, got {filename!r}")
    root = export_dir()
    ttl = EXPORT_TTL_S if ttl_s is None else float(ttl_s)
    now = time.time()
    for old in root.iterdir():
        try:
            if now - old.stat().st_mtime > ttl:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:  # another thread removed it first, or a file is still open (Windows)
            pass
    folder = root / uuid.uuid4().hex
    folder.mkdir()
    return folder / name


# --------------------------------------------------------------- validation


def _number_payload_error(block: Any, value: Any) -> str | None:
    """Why ``value`` cannot be the raw payload of the gr.Number / gr.Slider ``block``; None when it can."""
    if value is None and isinstance(block, gr.Number):
        return None                                                       # an empty Number box: the handler decides
    name = block.label or "This number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} must be a number, got {value!r}."
    if not math.isfinite(value):
        return f"{name} must be a finite number, got {value!r}."
    if getattr(block, "precision", None) == 0 and value != int(value):
        return f"{name} must be a whole number, got {value!r}."
    return None


def guard_number_inputs(demo: gr.Blocks) -> gr.Blocks:
    """Refuse text, NaN, infinity and (for ``precision=0`` numbers) fractions in every gr.Number and
    gr.Slider input of ``demo``, with a sentence naming the field, before Gradio preprocesses them.

    Gradio would otherwise crash on them (``"abc" < minimum``, ``int(round(nan))``) with an internal
    error, or silently round ``1.5`` to 2 for an API typed ``integer``. Call once after building every
    tab (``app.build_demo`` does). Ranges stay with Gradio's own bounds check (its refusals are logged in
    one line, without Gradio's traceback) and the handlers' :func:`check_int` / :func:`check_float`. (It
    wraps the Blocks' ``validate_inputs``, which Gradio runs first on every event's raw inputs, and
    ``preprocess_data``; component instances are not patched, since Gradio replaces them per session when
    a handler updates their properties.)
    """
    original = getattr(demo, "validate_inputs", None)
    if original is None:  # pragma: no cover - a Gradio without the hook: the handlers' checks remain
        log.warning("gradio.Blocks has no validate_inputs: number inputs are checked by the handlers only")
        return demo

    def validate_inputs(block_fn: Any, inputs: list[Any]) -> None:
        original(block_fn, inputs)
        for block, value in zip(block_fn.inputs, inputs):
            if isinstance(block, (gr.Number, gr.Slider)) and not isinstance(value, dict):   # dict: a prop input
                why = _number_payload_error(block, value)
                if why is not None:
                    raise user_error(why)

    demo.validate_inputs = validate_inputs                                # type: ignore[method-assign]

    preprocess = demo.preprocess_data

    async def preprocess_data(*args: Any, **kwargs: Any) -> Any:
        # Gradio's own checks while preprocessing (a number out of its range, a choice not offered) raise a
        # gr.Error that prints a full traceback on the server for every such request: one log line instead
        try:
            return await preprocess(*args, **kwargs)
        except gr.Error as exc:
            if exc.print_exception:
                exc.print_exception = False
                log.warning("input refused: %s", exc.message)
            raise

    demo.preprocess_data = preprocess_data                                # type: ignore[method-assign]
    return demo


def _cache_file(data: bytes, cache_dir: str, file_name: str) -> str:
    """Write ``data`` as ``cache_dir/<hash of data>/file_name`` (Gradio's layout) so that a reader never sees part
    of it, and return the path. When the file is already there with that size (the folder is the hash of the
    bytes) it is only touched, so that Gradio's ``delete_cache`` ages it from this use, as Gradio's own
    ``save_file_to_cache`` does; else the bytes go to a temporary file that is renamed into place."""
    from gradio import processing_utils

    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / file_name).resolve()
    try:
        if path.stat().st_size == len(data):
            os.utime(path)
            return str(path)
    except OSError:
        pass
    fd, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(path)


def _save_pil_to_cache(img: Any, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    from gradio import processing_utils

    return _cache_file(processing_utils.encode_pil_to_bytes(img, format), cache_dir, f"{name}.{format}")


def _save_bytes_to_cache(data: bytes, file_name: str, cache_dir: str) -> str:
    from gradio import processing_utils

    if not Path(file_name).suffix:
        file_name += processing_utils.detect_audio_format(data)
    return _cache_file(data, cache_dir, Path(file_name).name)


def install_atomic_cache_writes() -> None:
    """Make Gradio's image and bytes cache writes atomic (idempotent; ``app.build_demo`` calls it).

    Gradio saves every output image under a folder named by the hash of its bytes and rewrites the file in
    place each time the same image is returned again. Here that is common: with its sliders at 0 a tab's
    preview is the current image, so one event returns the same image twice. A browser still loading the
    first copy then reads a file being truncated and rewritten, and the server fails the response ("Too
    little data for declared Content-Length"): a broken image. Same path, same bytes: the file is now
    written once, whole, by a rename.
    """
    from gradio import processing_utils

    processing_utils.save_pil_to_cache = _save_pil_to_cache
    processing_utils.save_bytes_to_cache = _save_bytes_to_cache


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi], else gr.Error naming the allowed range."""
    if value is None or isinstance(value, bool):
        raise user_error(f"{name} must be a whole number between {lo} and {hi}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise user_error(f"{name} must be a whole number between {lo} and {hi}, got {value!r}.") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise user_error(f"{name} must be a whole number between {lo} and {hi}, got {value!r}.")
    return int(number)


def check_float(value: Any, name: str, lo: float, hi: float) -> float:
    """``value`` as a float in [lo, hi], else gr.Error naming the allowed range."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise user_error(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}.") from None
    if not math.isfinite(number) or not lo <= number <= hi:
        raise user_error(f"{name} must be a number between {lo:g} and {hi:g}, got {value!r}.")
    return number
